"""The sizes a caller's request may reach, field by field ([limits] in the server's TOML).

Every request is bounded as a whole by max_message_bytes; these bound what a single field can
make the server hold, log or echo: an id is a key in the store and a word in a log line, so a
5 MiB id must be refused, not stored."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldLimits:
    # ids, names and keys: *_id fields, model names and versions, map keys (characters)
    max_id_chars: int = 256
    # other text: search queries, titles, descriptions, context values (characters)
    max_text_chars: int = 16_384
    # elements of any repeated field not named below, e.g. anchor_product_ids
    max_repeated: int = 1_000
    # entries of a map field (context, attributes, signals, parameters)
    max_map_entries: int = 256
    # RecommendRequest.k and SearchRequest.k
    max_recommend_k: int = 100
    max_search_k: int = 1_000
    # FeaturesRequest.entity_ids and .feature_names
    max_entities: int = 1_000
    max_feature_names: int = 256

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"[limits] {name} must be a positive integer, not {value!r}")


DEFAULT_LIMITS = FieldLimits()
