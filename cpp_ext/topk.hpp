// Row-wise top-k over dense float scores: the selection step of retrieval and ranking.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
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

}  // namespace hanzo
