"""The errors every layer raises; the gRPC edge (api/errors.py) alone maps them to codes.

Messages name the offending field and quote the bad value, so a gateway developer can fix
the call from the message alone.
"""
from __future__ import annotations

QUOTE_CHARS = 64  # a bad value is quoted to this length: a 5 MiB id must not become a 5 MiB message


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """repr() of a value, cut to `limit` characters with the full length said, for messages
    and log lines that quote what a caller sent."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} long)"  # never repr() all of a huge value
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def too_long(value: str | bytes, limit: int) -> str:
    """The reason a value over a length limit is refused, the value quoted short."""
    return f"{len(value)} characters is over the limit of {limit} ({quote(value, 32)})"


class HanzoError(Exception):
    """Base of the errors a client can be told about."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(HanzoError):
    code = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(HanzoError):
    code = "NOT_FOUND"


class PermissionDenied(HanzoError):
    code = "PERMISSION_DENIED"


class DeadlineExceeded(HanzoError):
    code = "DEADLINE_EXCEEDED"


class ResourceExhausted(HanzoError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(HanzoError):
    code = "UNAVAILABLE"


class FailedPrecondition(HanzoError):
    """The call is well formed but what it asks about lacks something it needs (a product
    with no cost to hold a margin above)."""
    code = "FAILED_PRECONDITION"


class Unimplemented(HanzoError):
    code = "UNIMPLEMENTED"
