"""The Commerce API servicer. Each RPC hands a plain request to its surface."""
from __future__ import annotations

from hanzo.v1 import commerce_pb2_grpc

from ..features.service import FeatureService
from ..surfaces.customers import CustomerScorer
from ..surfaces.fraud import FraudScorer
from ..surfaces.inventory import InventoryPlanner
from ..surfaces.pricing import PriceQuoter
from ..surfaces.recommend import Recommender
from ..surfaces.search import Searcher
from . import customers as customers_api
from . import features as feature_api
from . import fraud as fraud_api
from . import inventory as inventory_api
from . import pricing as pricing_api
from . import recommend as recommend_api
from . import search as search_api
from .edge import Edge, deadline_of

SERVICE = "hanzo.v1.Commerce"

RPCS = ["GetFeatures", "IngestEvents", "Recommend", "Search", "ScoreFraud", "QuotePrice", "PlanInventory",
        "ScoreCustomers"]
# The scope each method needs (api/access.py).
SCOPES = {"IngestEvents": "ingest", "GetFeatures": "decide", "Recommend": "decide", "Search": "decide",
          "ScoreFraud": "decide", "QuotePrice": "decide", "PlanInventory": "decide",
          "ScoreCustomers": "decide"}


class CommerceServicer(commerce_pb2_grpc.CommerceServicer):
    def __init__(self, edge: Edge, features: FeatureService, recommender: Recommender,
                 searcher: Searcher, fraud: FraudScorer, pricing: PriceQuoter, inventory: InventoryPlanner,
                 customers: CustomerScorer) -> None:
        self._features = features
        self._recommender = recommender
        self._searcher = searcher
        self._fraud = fraud
        self._pricing = pricing
        self._inventory = inventory
        self._customers = customers
        edge.wrap_servicer(self, SERVICE, RPCS)  # nothing answers before the store and models

    async def IngestEvents(self, request, context):
        return await feature_api.ingest_events(self._features, request, deadline_of(context))

    async def Recommend(self, request, context):
        return await recommend_api.recommend(self._recommender, request, deadline_of(context))

    async def Search(self, request, context):
        return await search_api.search(self._searcher, request, deadline_of(context))

    async def ScoreFraud(self, request, context):
        return await fraud_api.score_fraud(self._fraud, request, deadline_of(context))

    async def QuotePrice(self, request, context):
        return await pricing_api.quote_price(self._pricing, request)

    async def PlanInventory(self, request, context):
        return await inventory_api.plan_inventory(self._inventory, request)

    async def ScoreCustomers(self, request, context):
        return await customers_api.score_customers(self._customers, request)

    async def GetFeatures(self, request, context):
        return await feature_api.get_features(self._features, request)
