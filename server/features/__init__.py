"""Events and the feature store: validation and canonical records (events.py), the durable
log (log.py), ingestion (ingest.py), feature definitions (definitions.py), the online store
and offline point-in-time joins."""
