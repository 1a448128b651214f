// The recommender's candidate blend for one request: the candidate pool made unique and
// unblocked, then every signal scored for each candidate and weighted. The same arithmetic as
// Signals.parts in server/surfaces/recommend_signals.py (which training uses over the whole
// catalogue); a test holds the two equal.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace hanzo {

constexpr int kSignals = 5;  // two_tower, repeat, co_visitation, transition, popularity

struct BlendTables {
  const float* embeddings = nullptr;  // [items, dim], unit rows
  std::int64_t dim = 0;
  const std::int64_t* knn_index = nullptr;  // [items, neighbours], -1 pads
  const double* knn_weight = nullptr;
  std::int64_t neighbours = 0;
  const double* popularity = nullptr;  // [items]
  const std::int64_t* next_pointers = nullptr;  // [items + 1], CSR of what followed each item
  const std::int64_t* next_items = nullptr;
  const double* next_counts = nullptr;
  std::int64_t items = 0;
  std::int64_t window = 0;
};

struct BlendInput {
  const std::int64_t* ann = nullptr;  // the ANN's labels, -1 pads
  std::size_t n_ann = 0;
  const std::int64_t* history = nullptr;  // oldest first
  std::size_t n_history = 0;
  const std::int64_t* anchors = nullptr;
  std::size_t n_anchors = 0;
  const std::int64_t* popular = nullptr;  // the popular head every pool holds
  std::size_t n_popular = 0;
  const std::uint8_t* blocked = nullptr;  // [items]
  const float* user = nullptr;  // [dim]
  double weights[kSignals] = {0, 0, 0, 0, 0};
};

struct BlendOutput {
  std::vector<std::int64_t> candidates;  // ascending
  std::vector<double> parts;  // [candidates, kSignals], unweighted
  std::vector<double> score;  // weighted sum
  std::vector<std::int8_t> source;  // the signal that contributed most (first on ties)
};

namespace detail {

// Sorted (item, value) pairs summed by item.
inline std::vector<std::pair<std::int64_t, double>> summed(std::vector<std::pair<std::int64_t, double>> pairs) {
  std::sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::pair<std::int64_t, double>> out;
  for (const auto& p : pairs) {
    if (!out.empty() && out.back().first == p.first)
      out.back().second += p.second;
    else
      out.push_back(p);
  }
  return out;
}

inline double lookup(const std::vector<std::pair<std::int64_t, double>>& sorted, std::int64_t key) {
  auto it = std::lower_bound(sorted.begin(), sorted.end(), key,
                             [](const auto& p, std::int64_t k) { return p.first < k; });
  return it != sorted.end() && it->first == key ? it->second : 0.0;
}

inline bool valid(std::int64_t item, std::int64_t items) { return item >= 0 && item < items; }

}  // namespace detail

inline void blend(const BlendTables& t, const BlendInput& in, BlendOutput& out) {
  // The recent items co-visitation looks at and the last one transitions follow.
  std::vector<std::int64_t> sequence(in.history, in.history + in.n_history);
  sequence.insert(sequence.end(), in.anchors, in.anchors + in.n_anchors);
  const std::size_t recent_from = sequence.size() > static_cast<std::size_t>(t.window)
                                      ? sequence.size() - static_cast<std::size_t>(t.window) : 0;

  std::vector<std::int64_t> pool;
  pool.reserve(in.n_ann + in.n_history + in.n_popular + (sequence.size() - recent_from) * t.neighbours + 64);
  auto add = [&](std::int64_t item) {
    if (detail::valid(item, t.items)) pool.push_back(item);
  };
  for (std::size_t j = 0; j < in.n_ann; ++j) add(in.ann[j]);
  for (std::size_t j = 0; j < in.n_history; ++j) add(in.history[j]);
  for (std::size_t j = 0; j < in.n_popular; ++j) add(in.popular[j]);

  std::vector<std::pair<std::int64_t, double>> covisit;
  for (std::size_t r = recent_from; r < sequence.size(); ++r) {
    const std::int64_t item = sequence[r];
    if (!detail::valid(item, t.items)) continue;
    for (std::int64_t j = 0; j < t.neighbours; ++j) {
      const std::int64_t found = t.knn_index[item * t.neighbours + j];
      if (found < 0) continue;
      add(found);
      covisit.emplace_back(found, t.knn_weight[item * t.neighbours + j]);
    }
  }
  covisit = detail::summed(std::move(covisit));
  double covisit_max = 0.0;
  for (const auto& p : covisit) covisit_max = std::max(covisit_max, p.second);

  std::vector<std::pair<std::int64_t, double>> follows;
  double follows_max = 0.0;
  if (!sequence.empty() && detail::valid(sequence.back(), t.items)) {
    const std::int64_t last = sequence.back();
    for (std::int64_t j = t.next_pointers[last]; j < t.next_pointers[last + 1]; ++j) {
      add(t.next_items[j]);
      follows.emplace_back(t.next_items[j], t.next_counts[j]);
      follows_max = std::max(follows_max, t.next_counts[j]);
    }
  }
  follows = detail::summed(std::move(follows));

  std::vector<std::pair<std::int64_t, double>> repeats;
  for (std::size_t j = 0; j < in.n_history; ++j) repeats.emplace_back(in.history[j], 1.0);
  repeats = detail::summed(std::move(repeats));

  std::sort(pool.begin(), pool.end());
  pool.erase(std::unique(pool.begin(), pool.end()), pool.end());
  out.candidates.clear();
  for (std::int64_t item : pool)
    if (!in.blocked[item]) out.candidates.push_back(item);

  const std::size_t n = out.candidates.size();
  out.parts.assign(n * kSignals, 0.0);
  out.score.assign(n, 0.0);
  out.source.assign(n, 0);
  for (std::size_t c = 0; c < n; ++c) {
    const std::int64_t item = out.candidates[c];
    double* part = &out.parts[c * kSignals];
    const float* e = t.embeddings + item * t.dim;
    float dot = 0.0f;  // float32, like the numpy product over float32 embeddings
    for (std::int64_t d = 0; d < t.dim; ++d) dot += e[d] * in.user[d];
    part[0] = dot;
    part[1] = std::log1p(detail::lookup(repeats, item));
    part[2] = covisit_max > 0 ? detail::lookup(covisit, item) / covisit_max : 0.0;
    part[3] = follows_max > 0 ? detail::lookup(follows, item) / follows_max : 0.0;
    part[4] = t.popularity[item];
    double best = 0.0, total = 0.0;
    for (int s = 0; s < kSignals; ++s) {
      const double weighted = in.weights[s] * part[s];
      total += weighted;
      if (s == 0 || weighted > best) {
        best = weighted;
        out.source[c] = static_cast<std::int8_t>(s);
      }
    }
    out.score[c] = total;
  }
}

}  // namespace hanzo
