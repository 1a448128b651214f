"""Structured mutations: messages built from a descriptor with hostile field values (empty and
huge strings, odd unicode, invalid UTF-8, extreme and NaN numbers, out-of-range timestamps,
unknown enum values, repeated fields long or full of duplicates), mixed with the ids the
server's world knows. Each value says in a few words what it is, for the report."""
from __future__ import annotations

import random
import string
import time

from google.protobuf.descriptor import Descriptor
from google.protobuf.descriptor import FieldDescriptor as F
from google.protobuf.message import Message

from .fuzz_schema import Vocabulary

# Serialized, this placeholder is swapped for invalid UTF-8 of the same length, so the
# length prefixes stay right and only the string's bytes are wrong (protobuf will not
# serialize an invalid str itself).
INVALID_UTF8_MARK = "\x01FUZZ-BAD-UTF8\x01"
INVALID_UTF8 = (b"\xff\xfe\xc0\xaf\xed\xa0\x80" + b"\x80" * 16)[:len(INVALID_UTF8_MARK.encode())]
MAX_DEPTH = 4
ODD_STRINGS = ("../../../../etc/passwd", "%s%s%n%x", "{}", "' OR 1=1 --", "\r\n", "NaN", "-1", "1e309", "null",
               "user\x00id", "   ", "\u202eevil\u202c", "ユーザー🛒", "e\u0301\u0301\u0301", "\ud7ff\ue000",
               "A" * 513, "\t", "*", "?", "p00001 ", " u00001", "..", ".", "/", "/etc")
INT_RANGES = {
    F.TYPE_INT32: (-2 ** 31, 2 ** 31 - 1), F.TYPE_SINT32: (-2 ** 31, 2 ** 31 - 1),
    F.TYPE_SFIXED32: (-2 ** 31, 2 ** 31 - 1), F.TYPE_INT64: (-2 ** 63, 2 ** 63 - 1),
    F.TYPE_SINT64: (-2 ** 63, 2 ** 63 - 1), F.TYPE_SFIXED64: (-2 ** 63, 2 ** 63 - 1),
    F.TYPE_UINT32: (0, 2 ** 32 - 1), F.TYPE_FIXED32: (0, 2 ** 32 - 1), F.TYPE_UINT64: (0, 2 ** 64 - 1),
    F.TYPE_FIXED64: (0, 2 ** 64 - 1),
}
FLOATS = (0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324, 3.4e38, 1e12,
          1e12 + 1, 0.5, 0.9999999, 1e-7)


class Builder:
    """Random field values for one call, drawn from `rng`; `notes` says what was drawn."""

    def __init__(self, rng: random.Random, vocab: Vocabulary, max_string_bytes: int) -> None:
        self.rng = rng
        self.vocab = vocab
        self.max_string = max(16, max_string_bytes)
        # what one message may weigh in all: room for a huge string or two and then some, so
        # that a call stays well below the server's message limit and builds fast
        self.budget = 2 * self.max_string + (1 << 20)
        self.notes: list[str] = []

    def note(self, path: str, what: str) -> None:
        if len(self.notes) < 6:
            self.notes.append(f"{path}={what}")

    # ------------------------------------------------------------------ scalars

    def string(self, name: str, path: str) -> str:
        rng = self.rng
        known = self.vocab.known(name)
        roll = rng.random()
        if known and roll < 0.35:
            value = rng.choice(known)
            self.note(path, "known")
            return value
        if roll < 0.45:
            self.note(path, "empty")
            return ""
        if roll < 0.55:
            size = max(1, min(rng.choice((1024, 65536, self.max_string)), self.max_string, self.budget))
            self.budget -= size
            self.note(path, f"huge({size}B)")
            return rng.choice(string.ascii_letters) * size
        if roll < 0.62:
            self.note(path, "invalid-utf8")
            return INVALID_UTF8_MARK
        if roll < 0.8:
            value = rng.choice(ODD_STRINGS)
            self.note(path, f"odd({value[:12]!r})")
            return value
        value = "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 40)))
        self.note(path, "random")
        return value

    def integer(self, field: F, path: str) -> int:
        low, high = INT_RANGES.get(field.type, (-2 ** 31, 2 ** 31 - 1))
        value = self.rng.choice((0, 1, -1, low, high, low + 1, high - 1, 10, 100, 1000, 1001, 10001,
                                 self.rng.randint(low, high)))
        value = min(max(value, low), high)
        self.note(path, str(value))
        return value

    def number(self, path: str) -> float:
        value = self.rng.choice(FLOATS) if self.rng.random() < 0.8 else self.rng.uniform(-1e6, 1e6)
        self.note(path, repr(value))
        return value

    def raw_bytes(self, path: str) -> bytes:
        size = max(0, min(self.rng.choice((0, 1, 7, 64, 4096, self.max_string)), 1 << 20, self.budget))
        self.budget -= size
        self.note(path, f"bytes({size})")
        return self.rng.randbytes(size)

    def enum(self, field: F, path: str) -> int:
        values = [v.number for v in field.enum_type.values]
        value = self.rng.choice(values) if self.rng.random() < 0.6 else self.rng.choice((-1, 99, 2 ** 31 - 1))
        self.note(path, f"enum {value}")
        return value

    def scalar(self, field: F, path: str):
        if field.type == F.TYPE_STRING:
            return self.string(field.name, path)
        if field.type == F.TYPE_BYTES:
            return self.raw_bytes(path)
        if field.type == F.TYPE_BOOL:
            return self.rng.random() < 0.5
        if field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return self.number(path)
        if field.type == F.TYPE_ENUM:
            return self.enum(field, path)
        return self.integer(field, path)

    # ------------------------------------------------------------------ messages

    def timestamp(self, message: Message, path: str) -> None:
        now = int(time.time())
        seconds, nanos = self.rng.choice(((1, -5), (2 ** 63 - 1, 0), (-2 ** 63, 0), (0, 10 ** 9), (now, 999_999_999),
                                          (253402300800, 0), (-62135596801, 0), (now + 86400 * 365, 0),
                                          (now - 86400 * 400, 0), (now, 0), (0, 0), (now, -1)))
        message.seconds, message.nanos = seconds, nanos
        self.note(path, f"ts({seconds},{nanos})")

    def fill(self, message: Message, path: str = "", depth: int = 0, share: float = 0.5) -> None:
        """Set a random share of `message`'s fields to random values."""
        descriptor: Descriptor = message.DESCRIPTOR
        if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            self.timestamp(message, path or "ts")
            return
        for field in descriptor.fields:
            if self.rng.random() < share:
                self.set_field(message, field, path, depth)

    def set_field(self, message: Message, field: F, path: str, depth: int) -> None:
        where = f"{path}.{field.name}" if path else field.name
        try:
            if _is_map(field):
                self.fill_map(message, field, where, depth)
            elif field.is_repeated:
                self.fill_repeated(message, field, where, depth)
            elif field.type == F.TYPE_MESSAGE:
                if depth < MAX_DEPTH:
                    getattr(message, field.name).SetInParent()
                    self.fill(getattr(message, field.name), where, depth + 1)
            else:
                setattr(message, field.name, self.scalar(field, where))
        except (TypeError, ValueError, OverflowError) as exc:  # a value this field's type refuses
            self.note(where, f"refused-by-protobuf({type(exc).__name__})")

    def count(self) -> tuple[int, bool]:
        """How many elements a repeated field gets, and whether they are all one value."""
        n = self.rng.choice((0, 1, 2, 3, 5, 20, 100, 1000, 1001, 10001))
        return n, n > 3 and self.rng.random() < 0.5

    def fill_repeated(self, message: Message, field: F, path: str, depth: int) -> None:
        n, same = self.count()
        target = getattr(message, field.name)
        if field.type == F.TYPE_MESSAGE:
            if depth >= MAX_DEPTH or n == 0:
                return
            first = target.add()
            self.fill(first, f"{path}[0]", depth + 1)
            n = self.bounded(n, first.ByteSize())
            self.budget -= first.ByteSize() * n
            for i in range(1, n):
                element = target.add()
                if same or i > 5:  # beyond a few, copies: the build (and the weight) stays bounded
                    element.CopyFrom(first)
                else:
                    self.fill(element, f"{path}[{i}]", depth + 1)
        elif n:
            first = self.scalar(field, f"{path}[0]")
            n = self.bounded(n, len(first) if isinstance(first, (str, bytes)) else 8)
            self.budget -= (len(first) if isinstance(first, (str, bytes)) else 8) * n
            if same or n > 100:
                target.extend([first] * n)
            else:
                target.extend([first] + [self.scalar(field, f"{path}[{i}]") for i in range(1, n)])
        self.note(path, f"{n}x{' same' if same else ''}")

    def bounded(self, n: int, element_bytes: int) -> int:
        """At most as many elements as keep the message within its size budget."""
        return max(1, min(n, max(0, self.budget) // max(1, element_bytes)))

    def fill_map(self, message: Message, field: F, path: str, depth: int) -> None:
        entry = field.message_type
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        n = self.rng.choice((0, 1, 3, 20, 1000))
        target = getattr(message, field.name)
        weight = 0
        for _ in range(n):
            if weight > self.budget:
                break
            if key_field.type == F.TYPE_STRING and self.rng.random() < 0.6:
                key = self.rng.choice(self.vocab.known("map_keys"))
            else:
                key = self.scalar(key_field, f"{path}.key")
            where = f"{path}[{str(key)[:12]}]"
            if value_field.type == F.TYPE_MESSAGE:
                if depth >= MAX_DEPTH:
                    break
                self.fill(target[key], where, depth + 1)
                weight += target[key].ByteSize()
            else:
                value = self.scalar(value_field, where)
                target[key] = value
                weight += len(value) if isinstance(value, (str, bytes)) else 8
            weight += len(key) if isinstance(key, str) else 8
        self.budget -= weight
        self.note(path, f"map {n}")

    def mutate(self, message: Message, path: str = "", depth: int = 0) -> None:
        """Change one field of an otherwise valid `message`, going down into a sub-message
        (or an element of a repeated one) now and then."""
        fields = message.DESCRIPTOR.fields
        if not fields:
            return
        field = self.rng.choice(fields)
        where = f"{path}.{field.name}" if path else field.name
        if field.type == F.TYPE_MESSAGE and not _is_map(field) and depth < MAX_DEPTH and self.rng.random() < 0.6:
            if field.is_repeated:
                elements = getattr(message, field.name)
                if len(elements):
                    i = self.rng.randrange(len(elements))
                    return self.mutate(elements[i], f"{where}[{i}]", depth + 1)
            elif message.HasField(field.name):
                return self.mutate(getattr(message, field.name), where, depth + 1)
        message.ClearField(field.name)
        self.set_field(message, field, path, depth)


def _is_map(field: F) -> bool:
    return field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def serialize(message: Message) -> bytes:
    """The message's bytes, its invalid-UTF-8 placeholders swapped for the real thing."""
    body = message.SerializeToString()
    mark = INVALID_UTF8_MARK.encode()
    return body.replace(mark, INVALID_UTF8) if mark in body else body
