// Reads of the online feature store's tables (layouts in kernels/windows.py) into one
// contiguous float32 matrix: a row per entity, a column per feature value. Plain C++: raw
// pointers in, no allocation, no Python objects.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace hanzo {

enum class OpKind : int {
  WindowSum = 0,     // sum of one column over the window
  WindowRatio = 1,   // sum of column a / sum of column b (default when b sums to 0)
  WindowShare = 2,   // `width` columns from a, each divided by their total (a distribution)
  Distinct = 3,      // values seen within the window
  Last = 4,          // latest value, if set at or before as_of
  Span = 5,          // seconds from first to last event, up to as_of
  Since = 6,         // seconds from the latest event to as_of
  Age = 7,           // seconds from the first event to as_of
};

struct GatherOp {
  OpKind kind;
  int out_col = 0;
  int width = 1;
  float fallback = 0.0f;
  // window tables
  const double* values = nullptr;
  const std::int64_t* epoch = nullptr;
  std::int64_t buckets = 0, columns = 0, bucket_ms = 1;
  int col_a = 0, col_b = -1;
  // distinct tables
  const std::uint64_t* hashes = nullptr;
  const std::int64_t* seen = nullptr;
  std::int64_t slots = 0, window_ms = 0;
  // last / span tables
  const double* last_value = nullptr;
  const std::int64_t* stamp_a = nullptr;  // last: stamps; span: first
  const std::int64_t* stamp_b = nullptr;  // span: last
  std::int64_t entities = 0;              // rows the table holds (bounds check)
};

// rows[r] is an entity index, or -1 for an entity the store has never seen. Fills
// out[r * out_width + op.out_col ...] and missing (1 where the fallback stands in).
inline void gather_features(const std::vector<GatherOp>& ops, const std::int64_t* rows, std::size_t n_rows,
                            std::int64_t as_of, int out_width, float* out, std::uint8_t* missing) {
  for (std::size_t r = 0; r < n_rows; ++r) {
    const std::int64_t e = rows[r];
    float* row_out = out + r * out_width;
    std::uint8_t* row_missing = missing + r * out_width;
    for (const GatherOp& op : ops) {
      bool absent = e < 0 || e >= op.entities;
      switch (op.kind) {
        case OpKind::WindowSum:
        case OpKind::WindowRatio:
        case OpKind::WindowShare: {
          const std::int64_t now_bucket = as_of / op.bucket_ms;
          double a[64], b = 0.0;
          for (int w = 0; w < op.width; ++w) a[w] = 0.0;
          if (!absent) {
            const std::int64_t* ep = op.epoch + e * op.buckets;
            const double* v = op.values + e * op.buckets * op.columns;
            for (std::int64_t s = 0; s < op.buckets; ++s) {
              const std::int64_t held = ep[s];
              if (held <= now_bucket - op.buckets || held > now_bucket) continue;
              const double* cell = v + s * op.columns;
              for (int w = 0; w < op.width; ++w) a[w] += cell[op.col_a + w];
              if (op.col_b >= 0) b += cell[op.col_b];
            }
          }
          if (op.kind == OpKind::WindowSum) {
            row_out[op.out_col] = absent ? op.fallback : static_cast<float>(a[0]);
          } else if (op.kind == OpKind::WindowRatio) {
            const bool none = absent || b == 0.0;
            row_out[op.out_col] = none ? op.fallback : static_cast<float>(a[0] / b);
            absent = none;
          } else {
            double total = 0.0;
            for (int w = 0; w < op.width; ++w) total += a[w];
            for (int w = 0; w < op.width; ++w) {
              row_out[op.out_col + w] = total > 0.0 ? static_cast<float>(a[w] / total) : op.fallback;
              row_missing[op.out_col + w] = total > 0.0 ? 0 : 1;
            }
            continue;
          }
          break;
        }
        case OpKind::Distinct: {
          std::int64_t count = 0;
          if (!absent) {
            const std::uint64_t* h = op.hashes + e * op.slots;
            const std::int64_t* seen = op.seen + e * op.slots;
            for (std::int64_t s = 0; s < op.slots; ++s)
              if (h[s] != 0 && seen[s] <= as_of && seen[s] > as_of - op.window_ms) ++count;
          }
          row_out[op.out_col] = absent ? op.fallback : static_cast<float>(count);
          break;
        }
        case OpKind::Last: {
          absent = absent || op.stamp_a[e] < 0 || op.stamp_a[e] > as_of;
          row_out[op.out_col] = absent ? op.fallback : static_cast<float>(op.last_value[e]);
          break;
        }
        case OpKind::Span: {
          absent = absent || op.stamp_a[e] < 0 || op.stamp_a[e] > as_of;
          if (!absent) {
            const std::int64_t end = op.stamp_b[e] < as_of ? op.stamp_b[e] : as_of;
            row_out[op.out_col] = static_cast<float>(end - op.stamp_a[e]) / 1000.0f;
          } else {
            row_out[op.out_col] = op.fallback;
          }
          break;
        }
        case OpKind::Since:
        case OpKind::Age: {
          // A latest event after as_of hides the one before it: unknown, not zero.
          absent = absent || op.stamp_a[e] < 0 || op.stamp_a[e] > as_of ||
                   (op.kind == OpKind::Since && op.stamp_b[e] > as_of);
          const std::int64_t from = op.kind == OpKind::Since ? (absent ? 0 : op.stamp_b[e]) : (absent ? 0 : op.stamp_a[e]);
          row_out[op.out_col] = absent ? op.fallback : static_cast<float>(as_of - from) / 1000.0f;
          break;
        }
      }
      row_missing[op.out_col] = absent ? 1 : 0;
    }
  }
}

// The newest `k` items of each row's sequence at or before as_of, newest first; -1 pads.
inline void gather_sequences(const std::int32_t* items, const std::int64_t* stamps, const std::int64_t* head,
                             std::int64_t entities, std::int64_t length, const std::int64_t* rows,
                             std::size_t n_rows, std::int64_t as_of, std::int64_t k, std::int32_t* out) {
  for (std::size_t r = 0; r < n_rows; ++r) {
    std::int32_t* row_out = out + r * k;
    for (std::int64_t j = 0; j < k; ++j) row_out[j] = -1;
    const std::int64_t e = rows[r];
    if (e < 0 || e >= entities) continue;
    const std::int64_t pushed = head[e];
    const std::int64_t held = pushed < length ? pushed : length;
    std::int64_t j = 0;
    for (std::int64_t back = 1; back <= held && j < k; ++back) {
      const std::int64_t slot = (pushed - back) % length;
      if (stamps[e * length + slot] > as_of) continue;
      row_out[j++] = items[e * length + slot];
    }
  }
}

}  // namespace hanzo
