"""Search: SearchRequest <-> the surface's plain query and result."""
from __future__ import annotations

from hanzo.v1 import commerce_pb2

from ..models.errors import InvalidArgument
from ..surfaces.search import SearchQuery, Searcher
from .merchants import merchant_of, own_id

DEFAULT_K = 10  # a request that leaves k out (proto3: 0)
MAX_QUERY_CHARS = 512


def to_query(request: commerce_pb2.SearchRequest, max_candidates: int) -> SearchQuery:
    merchant = merchant_of(request)
    if not request.query.strip():
        raise InvalidArgument("query", "is empty")
    if len(request.query) > MAX_QUERY_CHARS:
        raise InvalidArgument("query", f"{len(request.query)} characters is over the limit of {MAX_QUERY_CHARS}")
    k = request.k or DEFAULT_K
    if k < 0:
        raise InvalidArgument("k", f"{request.k}: ask for at least one product (0 or unset: {DEFAULT_K})")
    if len(request.candidate_product_ids) > max_candidates:
        raise InvalidArgument("candidate_product_ids", f"{len(request.candidate_product_ids)} candidates is over "
                                                       f"the limit of {max_candidates}")
    return SearchQuery(query=request.query, k=k, user_id=own_id(merchant, request.user_id, "user_id"),
                       session_id=own_id(merchant, request.session_id, "session_id"),
                       candidates=list(request.candidate_product_ids), request_id=request.request_id,
                       merchant_id=request.merchant_id)


async def search(searcher: Searcher, request: commerce_pb2.SearchRequest,
                 deadline: float | None) -> commerce_pb2.SearchResponse:
    result = await searcher.search(to_query(request, searcher.config.max_caller_candidates), deadline)
    response = commerce_pb2.SearchResponse(corrected_query=result.corrected_query,
                                           model_version=result.model_version, request_id=request.request_id)
    for hit in result.items:
        response.items.add(product_id=hit.product_id, score=hit.score, source=hit.source)
    return response
