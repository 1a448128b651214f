"""BYTES tensors on the wire, as Triton writes them in raw contents (gRPC raw_input_contents and
raw_output_contents, and HTTP's binary tensor data): each element its length as a 4-byte
little-endian unsigned integer, then its bytes, elements in row-major order. A tensor of
strings is an array of Python objects here (numpy has no variable-length bytes type), so these
loops are per element by nature; the message size limit bounds them."""
from __future__ import annotations

import math
import struct

import numpy as np

from .errors import InvalidArgument

_LENGTH = struct.Struct("<I")


def deserialize_bytes(data: bytes | memoryview, shape: tuple[int, ...], field: str) -> np.ndarray:
    """Raw contents -> an object array of `shape` holding bytes. Refused, naming `field`,
    where an element's length runs past the end, or bytes are left over."""
    view = memoryview(data)
    count = math.prod(shape)
    if count * 4 > len(view):  # before anything the size of `shape` is made
        raise InvalidArgument(field, f"raw BYTES content has {len(view)} bytes, too few for the {count} elements "
                                     f"of shape {list(shape)} (4 bytes of length each, at least)")
    out = np.empty(count, dtype=object)
    at, end = 0, len(view)
    for i in range(count):
        if at + 4 > end:
            raise InvalidArgument(field, f"raw BYTES content ends after {i} of {count} elements (shape "
                                         f"{list(shape)}): each element is a 4-byte little-endian length, then "
                                         f"its bytes")
        (length,) = _LENGTH.unpack_from(view, at)
        at += 4
        if at + length > end:
            raise InvalidArgument(field, f"raw BYTES element {i} says {length} bytes, but only {end - at} are left")
        out[i] = bytes(view[at:at + length])
        at += length
    if at != end:
        raise InvalidArgument(field, f"raw BYTES content has {end - at} bytes after its {count} elements (shape "
                                     f"{list(shape)})")
    return out.reshape(shape)


def as_bytes(element: object) -> bytes:
    """One element of a BYTES tensor as bytes (a model may give text)."""
    if isinstance(element, bytes):
        return element
    if isinstance(element, str):
        return element.encode()
    return str(element).encode()


def serialize_bytes(value: np.ndarray) -> bytes:
    """An array of bytes or str elements -> Triton's length-prefixed raw contents."""
    parts = []
    for element in value.reshape(-1):
        raw = as_bytes(element)
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)
