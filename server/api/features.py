"""IngestEvents and GetFeatures: proto <-> the feature service's plain records and matrices."""
from __future__ import annotations

import time

from hanzo.v1 import commerce_pb2

from ..models.errors import DeadlineExceeded, InvalidArgument, Unavailable
from ..features.definitions import ENTITIES
from ..features.events import EventError, format_timestamp, record_from_proto
from ..features.pseudonyms import PERSONAL_ENTITIES
from ..features.service import FeatureService
from ..features.tenancy import SCOPED_ENTITIES, SEPARATOR, claimed_field
from .merchants import caller_is_bound, merchant_of, own_id

CATALOG_TYPES = frozenset({"catalog_update", "price_change", "stock_update"})
MAX_ECHOED_ID = 256


def _check_open(features: FeatureService) -> None:
    if not features.is_open:
        raise Unavailable("the feature store is opening or closing")


async def ingest_events(features: FeatureService, request: commerce_pb2.EventBatch,
                        deadline: float | None) -> commerce_pb2.IngestAck:
    _check_open(features)
    count = len(request.events)
    if count == 0:
        raise InvalidArgument("events", "the batch is empty")
    limit = features.config.max_batch_events
    if count > limit:
        raise InvalidArgument("events", f"{count} events in one batch; the limit is {limit}")
    if deadline is not None and deadline <= time.monotonic():
        raise DeadlineExceeded("the deadline passed before the batch was read")
    merchant = merchant_of(request)
    shop_bound = caller_is_bound()
    result = await features.ingest([_owned(record_from_proto(event), merchant, shop_bound)
                                    for event in request.events], merchant)
    ack = commerce_pb2.IngestAck(request_id=request.request_id, accepted=result.accepted,
                                 duplicates=result.duplicates)
    for reject in result.rejects:
        ack.rejects.add(index=reject.index, event_id=reject.event_id, field=reject.field, reason=reject.reason)
    ack.watermark.FromMilliseconds(result.watermark)
    return ack


def _owned(record: dict, merchant: str, shop_bound: bool) -> dict | EventError:
    """The record, or why its sender may not write it: the shared catalogue is changed only by
    a caller acting for every merchant; `|` in an event id of the unnamed shop is kept for the
    ids the server scopes to a merchant; and a key bound to the unnamed shop may send no id
    holding it (it would write into a merchant's shopper)."""
    refusal = None
    if shop_bound and record["event_type"] in CATALOG_TYPES:
        refusal = EventError("event_type", f"{record['event_type']} changes the catalogue all merchants share: only "
                                           "a key acting for every merchant (*) may send it")
    elif not merchant and SEPARATOR in str(record["event_id"] or ""):
        refusal = EventError("event_id", f"'{SEPARATOR}' is kept for merchants' ids: name the merchant in "
                                         "merchant_id instead")
    elif not merchant and shop_bound and (field := claimed_field(record)) is not None:
        # a key bound to the unnamed shop would reach a merchant's shopper through `m|id`; a
        # single-shop deployment's own ids (auth0|..., a|b@example.com) stay as they are
        refusal = EventError(field, f"'{SEPARATOR}' is kept for merchants' ids: this key acts for the unnamed "
                                    "shop only")
    if refusal is not None:
        refusal.event_id = str(record["event_id"] or "")[:MAX_ECHOED_ID]  # an ack never outgrows its batch
        return refusal
    return record


async def get_features(features: FeatureService,
                       request: commerce_pb2.FeaturesRequest) -> commerce_pb2.FeaturesResponse:
    _check_open(features)
    store = features.store
    entity = request.entity
    if entity not in ENTITIES:
        raise InvalidArgument("entity", f"{entity!r} is not one of {', '.join(ENTITIES)}")
    ids = list(request.entity_ids)
    if not ids:
        raise InvalidArgument("entity_ids", "empty: name at least one entity")
    merchant = merchant_of(request)
    names = list(request.feature_names) or store.feature_names(entity)
    for name in names:
        feature = store.features.get(name)
        if feature is None:
            raise InvalidArgument("feature_names", f"{name!r} is not a feature (features of a {entity}: "
                                                   f"{', '.join(store.feature_names(entity))})")
        if feature.entity != entity:
            raise InvalidArgument("feature_names", f"{name!r} describes a {feature.entity}, not a {entity}")
    as_of = store.watermark
    if request.HasField("as_of"):
        as_of = request.as_of.ToMilliseconds()
        if as_of < store.watermark:
            raise InvalidArgument("as_of", f"{format_timestamp(as_of)} is before the store's clock "
                                           f"({format_timestamp(store.watermark)}); past values come from the "
                                           "offline join (get_historical_features)")
    response = commerce_pb2.FeaturesResponse(request_id=request.request_id, entity_ids=ids)
    response.as_of.FromMilliseconds(as_of)
    keys = [own_id(merchant, i, f"entity_ids[{n}]") for n, i in enumerate(ids)] if entity in SCOPED_ENTITIES else ids
    if entity in PERSONAL_ENTITIES:  # kept as pseudonyms only: asked for the same way
        keys = [features.pseudonyms.of(k) for k in keys]
    block = await features.read(entity, keys, names, as_of)
    if block.layout:
        columns = response.columns
        for name, _, width in block.layout:
            columns.extend([name] if width == 1 else [f"{name}[{i}]" for i in range(width)])
        response.values = block.values.tobytes()
        response.missing = block.missing.tobytes()
    for name, (items, counts) in block.sequences.items():
        response.sequences.add(name=name, items=items, counts=counts.tolist())
    return response
