"""Byte-level mutations of a valid encoding (truncated, bits flipped, garbage inserted, a
length or varint made absurd, wrong wire types, nesting past the parser's recursion limit)
and bodies that were never protobuf at all. Each returns the body and a few words for the
report."""
from __future__ import annotations

import random

MAX_REPEATED_BYTES = 16 << 20  # a repeated encoding stays below the server's message limit


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def truncate(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    if len(body) < 2:
        return body + b"\x0a", "truncated (a tag with no value)"
    cut = rng.randrange(1, len(body))
    return body[:cut], f"truncated at {cut}/{len(body)}"


def flip(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    if not body:
        return b"\xff", "flip of empty: 0xff"
    data = bytearray(body)
    n = rng.choice((1, 2, 8, 32))
    for _ in range(n):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    return bytes(data), f"{n} bits flipped"


def insert_garbage(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    at = rng.randrange(len(body) + 1)
    garbage = rng.randbytes(rng.choice((1, 3, 16, 256)))
    return body[:at] + garbage + body[at:], f"{len(garbage)} garbage bytes inserted at {at}"


def absurd_length(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    """A length-delimited field that claims far more bytes than follow."""
    field = rng.randint(1, 30)
    length = rng.choice((2 ** 31 - 1, 2 ** 32 + 5, 2 ** 63, 1 << 26))
    return body + _varint(field << 3 | 2) + _varint(length) + b"abc", f"field {field} claims {length} bytes"


def overlong_varint(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    field = rng.randint(1, 30)
    return body + _varint(field << 3 | 0) + b"\xff" * 11 + b"\x01", f"field {field}: an 12-byte varint"


def wrong_wire_type(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    """A known field number sent with another wire type (or the deprecated groups, 3 and 4,
    or the invalid 6 and 7)."""
    field = rng.randint(1, 12)
    wire = rng.choice((0, 1, 2, 3, 4, 5, 6, 7))
    payload = {0: b"\x01", 1: b"\x00" * 8, 2: b"\x02hi", 5: b"\x00" * 4}.get(wire, b"")
    return body + _varint(field << 3 | wire) + payload, f"field {field} with wire type {wire}"


def unknown_fields(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    field = rng.choice((99, 1000, 536870911))
    return body + _varint(field << 3 | 2) + _varint(5) + b"hello", f"unknown field {field}"


def nesting_bomb(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    """A length-delimited field nested far deeper than protobuf's recursion limit."""
    depth = rng.choice((101, 1000, 5000))
    field = rng.randint(1, 12)
    inner = b""
    for _ in range(depth):
        inner = _varint(field << 3 | 2) + _varint(len(inner)) + inner
    return body + inner, f"field {field} nested {depth} deep"


def duplicate_chunk(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    """The whole encoding repeated: every repeated field doubled, every scalar sent again."""
    n = max(2, min(rng.choice((2, 10, 1000)), MAX_REPEATED_BYTES // max(1, len(body))))
    return body * n, f"encoding repeated {n}x"


def random_bytes(rng: random.Random, max_bytes: int) -> tuple[bytes, str]:
    size = rng.choice((0, 1, 2, 5, 16, 100, 4096, min(max_bytes, 1 << 20)))
    return rng.randbytes(size), f"{size} random bytes"


def text_body(rng: random.Random) -> tuple[bytes, str]:
    """What a confused client sends: JSON, text, HTTP."""
    text = rng.choice(('{"user_id": "u00001"}', "GET / HTTP/1.1\r\n\r\n", "user_id: 'u00001'", "\x00" * 8,
                       "\xff" * 8))
    return text.encode("utf-8", "surrogatepass"), f"non-protobuf text {text[:16]!r}"


MUTATIONS = (truncate, flip, insert_garbage, absurd_length, overlong_varint, wrong_wire_type, unknown_fields,
             nesting_bomb, duplicate_chunk)


def mutate(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    """One random byte-level mutation of a valid encoding (two, now and then)."""
    data, what = rng.choice(MUTATIONS)(rng, body)
    if rng.random() < 0.2:
        data, more = rng.choice(MUTATIONS)(rng, data)
        what = f"{what}, then {more}"
    return data, what
