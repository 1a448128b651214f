"""The search re-ranker as the paper draws it: a query encoder, a product encoder, cross-attention
from each query word to the product's words, conditioned on the user, and a scorer.

The product encoder runs once per product at index time (its states are stored beside the
model, and a separate small ONNX graph encodes products added later); a query costs the query
encoder, the cross-attention over the candidates' stored states and the scorer."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hanzo.server.search.rerank_inputs import (CATEGORY_SLOTS, LEXICAL_FEATURES, PRODUCT_FEATURES, PRODUCT_LEN,
                                               QUERY_LEN, TITLE_LEN, USER_FEATURES, VOCAB)

class SelfAttention(nn.Module):
    """One pre-norm self-attention block with a feed-forward, written with plain matrix
    products so its ONNX graph keeps every length dynamic (torch's fused layer bakes the
    traced length into reshapes)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.scale = dim ** -0.5

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """x [..., L, d]; pad bool [..., L] (True: padding, never attended to)."""
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        scores = scores.masked_fill(pad.unsqueeze(-2), -1e4)
        x = x + self.proj(torch.matmul(torch.softmax(scores, dim=-1), v))
        return x + self.ff(x)


@dataclass
class RerankerConfig:
    # The scorer runs for every candidate of every query, so it is kept small: wider ones cost
    # more per call and did not score better on validation.
    dim: int = 16
    hidden: int = 16


class ProductEncoder(nn.Module):
    def __init__(self, embedding: nn.Embedding, config: RerankerConfig) -> None:
        super().__init__()
        self.embedding = embedding
        self.position = nn.Parameter(torch.zeros(PRODUCT_LEN, config.dim))
        self.layer = SelfAttention(config.dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids int64 [N, PRODUCT_LEN] -> states float [N, PRODUCT_LEN, dim] (pads zeroed)."""
        pad = ids == 0
        x = self.layer(self.embedding(ids) + self.position, pad)
        return x.masked_fill(pad.unsqueeze(-1), 0.0)


class QueryScorer(nn.Module):
    """Query encoder, cross-attention over the candidates' stored states, user-conditioned scorer."""

    def __init__(self, embedding: nn.Embedding, config: RerankerConfig) -> None:
        super().__init__()
        d, h = config.dim, config.hidden
        self.embedding = embedding
        self.position = nn.Parameter(torch.zeros(QUERY_LEN, d))
        self.layer = SelfAttention(d)
        self.query_proj = nn.Linear(d, d, bias=False)
        self.token = nn.Sequential(nn.Linear(6, h), nn.ReLU())
        self.film = nn.Linear(USER_FEATURES, 2 * h)
        self.head = nn.Sequential(nn.Linear(3 * h + LEXICAL_FEATURES + PRODUCT_FEATURES + 1, h), nn.ReLU())
        self.out = nn.Linear(h, 1)
        # The score is learned on top of BM25's: a freshly built ranker already orders as BM25
        # does, and training moves it only where the judgments say so.
        self.bm25_weight = nn.Parameter(torch.tensor(8.0))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.scale = d ** -0.5

    def forward(self, query: torch.Tensor, product_ids: torch.Tensor, states: torch.Tensor,
                product_features: torch.Tensor, lexical: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """query int64 [B, Lq]; product_ids int64 [B, N, P]; states [B, N, P, d]; product_features
        [B, N, F]; lexical [B, N, 3]; user [B, U] -> scores [B, N]. Serving passes B = 1."""
        lq = query.shape[1]
        q_pad = query == 0
        q = self.layer(self.embedding(query) + self.position[:lq], q_pad)  # [B, Lq, d]
        q_valid = (~q_pad).float()  # [B, Lq]
        # Layout [B, Lq, N, P]: the query's words outermost, so every mask and comparison
        # broadcasts over whole contiguous blocks (ORT is slow broadcasting a trailing axis of
        # size 1 to 3), and the candidates' words against the query's words are one plain
        # matrix product over all candidates at once rather than a thousand tiny ones.
        b, n, p, d = states.shape
        flat = states.reshape(b, n * p, d).transpose(1, 2)  # [B, d, N*P]
        logits = torch.matmul(self.query_proj(q), flat).reshape(b, lq, n, p) * self.scale
        alike = torch.matmul(q, flat).reshape(b, lq, n, p) * self.scale
        pad = (product_ids == 0).float().unsqueeze(1)  # [B, 1, N, P]
        logits = logits - 1e4 * pad
        attention = torch.softmax(logits, dim=-1)  # over the product's words, per query word
        # How well what each query word attended to agrees with it: the attended vector's dot
        # product with the word, without building the vector.
        agreement = (attention * alike).sum(-1)  # [B, Lq, N]
        best = logits.amax(-1)  # its best single product word
        exact = (product_ids.unsqueeze(1) == query.view(b, lq, 1, 1)).float() * q_valid.view(b, lq, 1, 1)
        in_title = exact[..., :TITLE_LEN].amax(-1)
        in_category = exact[..., TITLE_LEN:].amax(-1)
        # Where in the title a word matches, 1 at the title's last word: a product's kind is
        # usually named last ("Simpson Strong-Tie 12-Gauge Angle"), its maker and sizes first.
        title_len = (1.0 - pad[..., :TITLE_LEN]).sum(-1, keepdim=True).clamp(min=1.0)  # [B, 1, N, 1]
        place = torch.arange(1, TITLE_LEN + 1, dtype=torch.float32) / title_len  # [B, 1, N, T]
        at_end = (exact[..., :TITLE_LEN] * place).amax(-1)  # [B, Lq, N]
        # The query's last word, most often the kind of product wanted ("angle bracket").
        last = (torch.cumsum(q_valid, dim=1) == q_valid.sum(1, keepdim=True)).float() * q_valid  # [B, Lq]
        # Each query word's match as a few numbers: agreement, best word, exact matches in
        # title and category, where in the title, and whether it is the query's last word.
        tokens = self.token(torch.stack([agreement, best, in_title, in_category, at_end,
                                         last.unsqueeze(-1).expand_as(best)], dim=-1))  # [B, Lq, N, h]
        weight = q_valid.view(b, lq, 1, 1)
        mean = (tokens * weight).sum(1) / weight.sum(1).clamp(min=1.0)  # [B, N, h]
        low = (tokens + (1.0 - weight) * 1e4).amin(1)
        head = (tokens * last.view(b, lq, 1, 1)).sum(1)
        categories = product_features[..., 4:4 + CATEGORY_SLOTS]
        affinity = (categories * user[:, :CATEGORY_SLOTS].unsqueeze(1)).sum(-1, keepdim=True)
        hidden = self.head(torch.cat([mean, low, head, lexical, product_features, affinity], dim=-1))  # [B, N, h]
        gamma, beta = self.film(user).unsqueeze(1).chunk(2, dim=-1)
        return self.out(hidden * (1.0 + gamma) + beta).squeeze(-1) + self.bm25_weight * lexical[..., 0]


class Reranker(nn.Module):
    def __init__(self, config: RerankerConfig | None = None) -> None:
        super().__init__()
        self.config = config or RerankerConfig()
        self.embedding = nn.Embedding(VOCAB, self.config.dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.1)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.products = ProductEncoder(self.embedding, self.config)
        self.scorer = QueryScorer(self.embedding, self.config)

    def forward(self, query, product_ids, product_features, lexical, user):
        """As QueryScorer, with the product states computed here (training)."""
        b, n, p = product_ids.shape
        states = self.products(product_ids.reshape(b * n, p)).reshape(b, n, p, -1)
        return self.scorer(query, product_ids, states, product_features, lexical, user)

    def export(self, scorer_path, encoder_path) -> None:
        """Two ONNX graphs: the query scorer (over stored states) and the product encoder."""
        self.eval()
        n = 7
        example = (torch.tensor([[5, 9, 0]], dtype=torch.int64), torch.randint(1, 100, (1, n, PRODUCT_LEN)),
                   torch.randn(1, n, PRODUCT_LEN, self.config.dim), torch.randn(1, n, PRODUCT_FEATURES),
                   torch.randn(1, n, LEXICAL_FEATURES), torch.randn(1, USER_FEATURES))
        torch.onnx.export(self.scorer, example, str(scorer_path), dynamo=False,
                          input_names=["query", "product_ids", "states", "product_features", "lexical", "user"],
                          output_names=["scores"],
                          dynamic_axes={"query": {1: "words"}, "product_ids": {1: "candidates"},
                                        "states": {1: "candidates"}, "product_features": {1: "candidates"},
                                        "lexical": {1: "candidates"}, "scores": {1: "candidates"}})
        torch.onnx.export(self.products, (torch.randint(0, 100, (n, PRODUCT_LEN)),), str(encoder_path), dynamo=False,
                          input_names=["product_ids"], output_names=["states"],
                          dynamic_axes={"product_ids": {0: "products"}, "states": {0: "products"}})
