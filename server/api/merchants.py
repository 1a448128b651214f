"""The merchant a request acts for, checked once at the surface's door (its ids are then kept
as that merchant's: features/tenancy.py)."""
from __future__ import annotations

from typing import Any

from ..features.tenancy import SEPARATOR, merchant_problem, scoped
from ..models.errors import InvalidArgument, quote


def merchant_of(request: Any) -> str:
    """The request's merchant_id ("" for none); INVALID_ARGUMENT for one that cannot be an id."""
    merchant = request.merchant_id
    problem = merchant_problem(merchant)
    if problem is not None:
        raise InvalidArgument("merchant_id", f"{quote(merchant)}: {problem}")
    return merchant


def own_id(merchant: str, value: str, field: str) -> str:
    """`value` as the merchant's own id (features/tenancy.scoped). For the unnamed shop a key
    bound to it may not name `m|id`, merchant m's own entry: INVALID_ARGUMENT naming `field`.
    Without credentials, or with a key acting for every merchant, the id is taken as it is (a
    single shop's ids may hold the separator: auth0|...)."""
    if not merchant and SEPARATOR in value and caller_is_bound():
        raise InvalidArgument(field, f"'{SEPARATOR}' is kept for merchants' ids: this key acts for the unnamed "
                                     "shop only")
    return scoped(merchant, value)


def caller_is_bound() -> bool:
    """Whether the call's credential is bound to some merchants (the unnamed shop perhaps among
    them), not to every one."""
    from .access import CALLER
    from .keys import ANY_MERCHANT

    caller = CALLER.get()
    return caller is not None and ANY_MERCHANT not in caller.merchants
