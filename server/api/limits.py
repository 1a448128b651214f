"""Field limits checked on every decoded request, before any surface sees it: string lengths,
repeated and map sizes, integer caps (k) and Timestamp ranges, each refusal naming the field's
path (`events[3].payload.product_id`) and quoting the value to a bounded length.

Per message type the checks are planned once from its descriptor, so a new RPC or field is
bounded without being listed here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from ..models.errors import InvalidArgument, quote, too_long
from ..models.limits import FieldLimits

TIMESTAMP = "google.protobuf.Timestamp"
# Timestamp's own range (0001-01-01 .. 9999-12-31), as google.protobuf.Timestamp defines it.
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799
# Fields that carry tensors or are checked one element at a time further in (an event batch
# rejects a bad event by its index and takes the rest).
UNCHECKED = frozenset({
    "inference.ModelInferRequest.InferInputTensor.contents",
    "inference.ModelInferRequest.raw_input_contents",
    "hanzo.v1.EventBatch.events",
})
STRING, MESSAGE = FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE


@dataclass(frozen=True)
class _Check:
    field: FieldDescriptor
    kind: str  # text | texts | message | messages | map | timestamp | int | count
    limit: int  # characters, elements, entries or the int cap
    inner: int = 0  # for texts and maps: characters of each element or key


def _is_id(field: FieldDescriptor) -> bool:
    name = field.name
    return name == "id" or name.endswith(("_id", "_ids", "name", "names", "version")) or name in ("entity", "key")


class RequestLimits:
    def __init__(self, limits: FieldLimits) -> None:
        self.limits = limits
        self._caps = {
            "hanzo.v1.RecommendRequest.k": limits.max_recommend_k,
            "hanzo.v1.SearchRequest.k": limits.max_search_k,
        }
        self._counts = {
            # [search] max_caller_candidates bounds it further in
            "hanzo.v1.SearchRequest.candidate_product_ids": 1 << 20,
            "hanzo.v1.FeaturesRequest.entity_ids": limits.max_entities,
            "hanzo.v1.FeaturesRequest.feature_names": limits.max_feature_names,
        }
        self._plans: dict[str, tuple[_Check, ...]] = {}

    def check(self, message: Any, prefix: str = "") -> None:
        """Raise InvalidArgument naming the first field over its limit."""
        plan = self._plans.get(message.DESCRIPTOR.full_name)
        if plan is None:
            plan = self._plan(message.DESCRIPTOR)
        for check in plan:
            self._apply(check, message, prefix)

    def _plan(self, descriptor: Descriptor) -> tuple[_Check, ...]:
        checks = []
        lim = self.limits
        for field in descriptor.fields:
            name = field.full_name
            if name in UNCHECKED:
                continue
            text = lim.max_id_chars if _is_id(field) else lim.max_text_chars
            if field.type == MESSAGE and field.message_type.GetOptions().map_entry:
                checks.append(_Check(field, "map", lim.max_map_entries, lim.max_id_chars))
            elif field.is_repeated:
                count = self._counts.get(name, lim.max_repeated)
                kind = "texts" if field.type == STRING else "messages" if field.type == MESSAGE else "count"
                checks.append(_Check(field, kind, count, text))
            elif field.type == STRING:
                checks.append(_Check(field, "text", text))
            elif field.type == MESSAGE:
                kind = "timestamp" if field.message_type.full_name == TIMESTAMP else "message"
                checks.append(_Check(field, kind, 0))
            elif name in self._caps:
                checks.append(_Check(field, "int", self._caps[name]))
        plan = tuple(checks)
        self._plans[descriptor.full_name] = plan
        return plan

    def _apply(self, check: _Check, message: Any, prefix: str) -> None:
        field, kind, limit = check.field, check.kind, check.limit
        value = getattr(message, field.name)
        if kind == "text":
            if len(value) > limit:
                raise InvalidArgument(prefix + field.name, too_long(value, limit))
        elif kind == "int":
            if value > limit:
                raise InvalidArgument(prefix + field.name, f"{value} is over the limit of {limit}")
        elif kind == "message" or kind == "timestamp":
            if message.HasField(field.name):
                if kind == "timestamp":
                    _check_timestamp(value, prefix + field.name)
                else:
                    self.check(value, f"{prefix}{field.name}.")
        else:
            self._apply_container(check, value, prefix + field.name)

    def _apply_container(self, check: _Check, value: Any, name: str) -> None:
        kind, limit = check.kind, check.limit
        if len(value) > limit:
            what = "entries" if kind == "map" else "elements"
            raise InvalidArgument(name, f"{len(value)} {what}; the limit is {limit} ([limits] in the server's "
                                        "configuration)")
        if kind == "texts":
            for i, text in enumerate(value):
                if len(text) > check.inner:
                    raise InvalidArgument(f"{name}[{i}]", too_long(text, check.inner))
        elif kind == "messages":
            for i, item in enumerate(value):
                self.check(item, f"{name}[{i}].")
        elif kind == "map":
            entry = check.field.message_type.fields_by_name["value"]
            text_value = entry.type == STRING
            for key, item in value.items():
                if isinstance(key, str) and len(key) > check.inner:
                    raise InvalidArgument(name, "a key of " + too_long(key, check.inner))
                if text_value and len(item) > self.limits.max_text_chars:
                    raise InvalidArgument(f"{name}[{quote(key)}]", too_long(item, self.limits.max_text_chars))
                elif entry.type == MESSAGE:
                    self.check(item, f"{name}[{quote(key)}].")



def _check_timestamp(stamp: Any, name: str) -> None:
    if not MIN_SECONDS <= stamp.seconds <= MAX_SECONDS:
        raise InvalidArgument(f"{name}.seconds", f"{stamp.seconds} is outside a Timestamp's range "
                                                 "(0001-01-01 to 9999-12-31)")
    if not 0 <= stamp.nanos <= 999_999_999:
        raise InvalidArgument(f"{name}.nanos", f"{stamp.nanos} is outside 0..999999999")
