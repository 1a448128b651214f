// Row-wise top-k over dense float scores: the selection step of retrieval and ranking.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace hanzo {

// Writes, for each of `rows` rows of `cols` scores, the indices and values of the k
// largest scores in descending order (ties broken by lower index, so the result is
// deterministic). NaN scores rank below every number.
inline void topk_rows(const float* scores, std::size_t rows, std::size_t cols, std::size_t k,
                      std::int64_t* out_index, float* out_value) {
  if (k > cols) throw std::invalid_argument("k exceeds the number of columns");
  std::vector<std::int64_t> order(cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = scores + r * cols;
    std::iota(order.begin(), order.end(), 0);
    auto better = [row](std::int64_t a, std::int64_t b) {
      const float sa = row[a], sb = row[b];
      const bool na = sa != sa, nb = sb != sb;  // NaN
      if (na != nb) return nb;
      if (!na && sa != sb) return sa > sb;
      return a < b;
    };
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(), better);
    for (std::size_t j = 0; j < k; ++j) {
      out_index[r * k + j] = order[j];
      out_value[r * k + j] = row[order[j]];
    }
  }
}

// For each query row, the first k candidates (already best-first) whose item is not blocked:
// labels/scores [rows, fetched] in, out_labels/out_scores [rows, k] out, -1 / -inf padding.
// Returns the smallest number of survivors over the rows (so the caller can fetch more).
inline std::size_t first_unblocked(const std::int64_t* labels, const float* scores, std::size_t rows,
                                   std::size_t fetched, const std::uint8_t* blocked, std::size_t n_items,
                                   std::size_t k, std::int64_t* out_labels, float* out_scores) {
  std::size_t fewest = k;
  for (std::size_t r = 0; r < rows; ++r) {
    std::size_t taken = 0;
    for (std::size_t j = 0; j < fetched && taken < k; ++j) {
      const std::int64_t item = labels[r * fetched + j];
      if (item < 0 || static_cast<std::size_t>(item) >= n_items || blocked[item]) continue;
      out_labels[r * k + taken] = item;
      out_scores[r * k + taken] = scores[r * fetched + j];
      ++taken;
    }
    if (taken < fewest) fewest = taken;
    for (; taken < k; ++taken) {
      out_labels[r * k + taken] = -1;
      out_scores[r * k + taken] = -std::numeric_limits<float>::infinity();
    }
  }
  return fewest;
}

}  // namespace hanzo
