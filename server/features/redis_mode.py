"""The parts of a feature service in Redis mode, made from its config: the clients, the store,
the dedup index and the catalogue feed, and what "Redis is away" raises."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .catalog_feed import CatalogFeed
from .redis_durability import replica_name
from .store_config import FeatureStoreConfig


@dataclass
class RedisParts:
    client: Any
    errors: tuple[type[BaseException], ...]
    store: Any  # RedisFeatureStore
    dedup: Any  # RedisDedup
    feed: CatalogFeed
    replica: str


def redis_parts(config: FeatureStoreConfig, horizon_ms: int) -> RedisParts:
    import redis
    import redis.asyncio

    from .redis_store import RedisDedup, RedisFeatureStore

    client = redis.Redis.from_url(config.redis_url)
    # Redis away, out of memory, read-only after a failover, still loading: all "retry later"
    errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.OutOfMemoryError,
              redis.exceptions.ReadOnlyError, redis.exceptions.BusyLoadingError)
    store = RedisFeatureStore(client, config.redis_ttl_days, async_client=redis.asyncio.Redis.from_url(config.redis_url))
    replica = replica_name(config.replica, config.data_dir)
    dedup = RedisDedup(client, horizon_ms, replica=replica, async_client=store.async_redis)
    return RedisParts(client, errors, store, dedup, CatalogFeed(client, store.prefix, replica), replica)
