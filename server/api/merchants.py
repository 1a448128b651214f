"""The merchant a request acts for, checked once at the surface's door (its ids are then kept
as that merchant's: features/tenancy.py)."""
from __future__ import annotations

from typing import Any

from ..features.tenancy import merchant_problem
from ..models.errors import InvalidArgument, quote


def merchant_of(request: Any) -> str:
    """The request's merchant_id ("" for none); INVALID_ARGUMENT for one that cannot be an id."""
    merchant = request.merchant_id
    problem = merchant_problem(merchant)
    if problem is not None:
        raise InvalidArgument("merchant_id", f"{quote(merchant)}: {problem}")
    return merchant
