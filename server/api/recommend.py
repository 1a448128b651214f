"""Recommend: RecommendRequest <-> the surface's plain query and result."""
from __future__ import annotations

from hanzo.v1 import commerce_pb2

from ..models.errors import InvalidArgument
from ..surfaces.recommend import RecommendQuery, Recommender
from .merchants import merchant_of, own_id

DEFAULT_K = 10  # a request that leaves k out (proto3: 0)
PLACEMENTS = {commerce_pb2.PLACEMENT_UNSPECIFIED: "home", commerce_pb2.HOME: "home",
              commerce_pb2.PRODUCT_PAGE: "product_page", commerce_pb2.CART: "cart", commerce_pb2.EMAIL: "email"}


def to_query(request: commerce_pb2.RecommendRequest) -> RecommendQuery:
    merchant = merchant_of(request)
    k = request.k or DEFAULT_K
    if k < 0:
        raise InvalidArgument("k", f"{request.k}: ask for at least one product (0 or unset: {DEFAULT_K})")
    placement = PLACEMENTS.get(request.placement)
    if placement is None:
        raise InvalidArgument("placement", f"{request.placement} is not a known placement "
                                           f"({', '.join(commerce_pb2.Placement.keys())})")
    if not request.user_id and not request.session_id:
        raise InvalidArgument("user_id", "give a user_id or a session_id (or both)")
    return RecommendQuery(k=k, placement=placement, user_id=own_id(merchant, request.user_id, "user_id"),
                          session_id=own_id(merchant, request.session_id, "session_id"),
                          anchors=list(request.anchor_product_ids), exclude=list(request.exclude_product_ids),
                          request_id=request.request_id, merchant_id=request.merchant_id)


async def recommend(recommender: Recommender, request: commerce_pb2.RecommendRequest,
                    deadline: float | None) -> commerce_pb2.RecommendResponse:
    result = await recommender.recommend(to_query(request), deadline)
    response = commerce_pb2.RecommendResponse(model_version=result.model_version, request_id=request.request_id,
                                              arm=result.arm,
                                              fallback=result.fallback, fallback_reason=result.fallback_reason)
    for item in result.items:
        response.items.add(product_id=item.product_id, score=item.score, source=item.source)
    return response
