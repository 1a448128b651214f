// The whole Python API of hanzo._native: convert and check with the GIL held, release it
// around the C++ work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "blend.hpp"
#include "feature_gather.hpp"
#include "topk.hpp"

namespace py = pybind11;

#ifndef HANZO_VERSION
#define HANZO_VERSION "dev"
#endif

namespace {

using I64 = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

py::tuple topk(py::array_t<float, py::array::c_style | py::array::forcecast> scores, py::ssize_t k) {
  if (scores.ndim() != 1 && scores.ndim() != 2)
    throw std::invalid_argument("scores must be 1-D or 2-D");
  if (k < 0) throw std::invalid_argument("k must be >= 0");
  const bool flat = scores.ndim() == 1;
  const py::ssize_t rows = flat ? 1 : scores.shape(0);
  const py::ssize_t cols = flat ? scores.shape(0) : scores.shape(1);
  if (k > cols) k = cols;
  std::vector<py::ssize_t> shape = flat ? std::vector<py::ssize_t>{k} : std::vector<py::ssize_t>{rows, k};
  py::array_t<std::int64_t> index(shape);
  py::array_t<float> value(shape);
  const float* src = scores.data();
  std::int64_t* idx = index.mutable_data();
  float* val = value.mutable_data();
  {
    py::gil_scoped_release release;
    hanzo::topk_rows(src, static_cast<std::size_t>(rows), static_cast<std::size_t>(cols),
                     static_cast<std::size_t>(k), idx, val);
  }
  return py::make_tuple(index, value);
}

// A live view of a table array: the exact dtype, C order, never a copy (a copy would
// detach the plan from the table the store keeps updating).
template <class T>
const T* live(const py::array& a, py::ssize_t ndim, const char* name) {
  if (!a.dtype().is(py::dtype::of<T>()))
    throw std::invalid_argument(std::string(name) + ": wrong dtype " + std::string(py::str(a.dtype())));
  if (a.ndim() != ndim) throw std::invalid_argument(std::string(name) + ": wrong number of dimensions");
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": not C-contiguous");
  return static_cast<const T*>(a.data());
}

// Feature reads planned once per (entity, feature list): one call gathers every feature of
// every requested entity into a float32 matrix with the GIL released.
class FeatureGatherPlan {
 public:
  explicit FeatureGatherPlan(int width) : width_(width) {
    if (width <= 0) throw std::invalid_argument("width must be positive");
  }

  void add_window(int kind, int out_col, int width, float fallback, const py::array& values, const py::array& epoch,
                  std::int64_t bucket_ms, int col_a, int col_b) {
    if (kind < 0 || kind > 2) throw std::invalid_argument("window kind must be 0, 1 or 2");
    hanzo::GatherOp op{static_cast<hanzo::OpKind>(kind)};
    place(op, out_col, width, fallback);
    op.values = live<double>(values, 3, "values");
    op.epoch = live<std::int64_t>(epoch, 2, "epoch");
    op.entities = epoch.shape(0);
    op.buckets = epoch.shape(1);
    op.columns = values.shape(2);
    if (values.shape(0) != op.entities || values.shape(1) != op.buckets)
      throw std::invalid_argument("values and epoch disagree in shape");
    if (col_a < 0 || col_a + width > op.columns || col_b >= op.columns)
      throw std::invalid_argument("column out of range");
    if (width > 64) throw std::invalid_argument("a window share is at most 64 columns wide");
    if (bucket_ms <= 0) throw std::invalid_argument("bucket_ms must be positive");
    op.bucket_ms = bucket_ms;
    op.col_a = col_a;
    op.col_b = col_b;
    keep(op, {values, epoch});
  }

  void add_distinct(int out_col, float fallback, const py::array& hashes, const py::array& seen,
                    std::int64_t window_ms) {
    hanzo::GatherOp op{hanzo::OpKind::Distinct};
    place(op, out_col, 1, fallback);
    op.hashes = live<std::uint64_t>(hashes, 2, "hashes");
    op.seen = live<std::int64_t>(seen, 2, "last_seen");
    op.entities = hashes.shape(0);
    op.slots = hashes.shape(1);
    op.window_ms = window_ms;
    keep(op, {hashes, seen});
  }

  void add_last(int out_col, float fallback, const py::array& value, const py::array& stamps) {
    hanzo::GatherOp op{hanzo::OpKind::Last};
    place(op, out_col, 1, fallback);
    op.last_value = live<double>(value, 1, "value");
    op.stamp_a = live<std::int64_t>(stamps, 1, "stamps");
    op.entities = value.shape(0);
    keep(op, {value, stamps});
  }

  // mode: 0 span (first to last), 1 since the latest event, 2 age (since the first event).
  void add_span(int out_col, float fallback, const py::array& first, const py::array& last, int mode) {
    if (mode < 0 || mode > 2) throw std::invalid_argument("span mode must be 0, 1 or 2");
    hanzo::GatherOp op{mode == 0 ? hanzo::OpKind::Span : mode == 1 ? hanzo::OpKind::Since : hanzo::OpKind::Age};
    place(op, out_col, 1, fallback);
    op.stamp_a = live<std::int64_t>(first, 1, "first");
    op.stamp_b = live<std::int64_t>(last, 1, "last");
    op.entities = first.shape(0);
    keep(op, {first, last});
  }

  py::tuple gather(py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> rows, std::int64_t as_of) {
    if (rows.ndim() != 1) throw std::invalid_argument("rows must be 1-D");
    const auto n = static_cast<std::size_t>(rows.shape(0));
    py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(width_)});
    py::array_t<std::uint8_t> missing({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(width_)});
    const std::int64_t* r = rows.data();
    float* o = out.mutable_data();
    std::uint8_t* m = missing.mutable_data();
    {
      py::gil_scoped_release release;
      hanzo::gather_features(ops_, r, n, as_of, width_, o, m);
    }
    return py::make_tuple(out, missing);
  }

 private:
  void place(hanzo::GatherOp& op, int out_col, int width, float fallback) const {
    if (out_col < 0 || width < 1 || out_col + width > width_) throw std::invalid_argument("output column out of range");
    op.out_col = out_col;
    op.width = width;
    op.fallback = fallback;
  }
  void keep(const hanzo::GatherOp& op, std::initializer_list<py::array> arrays) {
    ops_.push_back(op);
    for (const auto& a : arrays) keep_.push_back(a);
  }

  int width_;
  std::vector<hanzo::GatherOp> ops_;
  std::vector<py::array> keep_;
};

// The recommender's signal tables, held once per model version; score() blends one request's
// candidates with the GIL released.
class BlendPlan {
 public:
  BlendPlan(const py::array& embeddings, const py::array& knn_index, const py::array& knn_weight,
            const py::array& popularity, const py::array& next_pointers, const py::array& next_items,
            const py::array& next_counts, std::int64_t window)
      : keep_{embeddings, knn_index, knn_weight, popularity, next_pointers, next_items, next_counts} {
    t_.embeddings = live<float>(embeddings, 2, "embeddings");
    t_.dim = embeddings.shape(1);
    t_.items = embeddings.shape(0);
    t_.knn_index = live<std::int64_t>(knn_index, 2, "knn_index");
    t_.knn_weight = live<double>(knn_weight, 2, "knn_weight");
    t_.neighbours = knn_index.shape(1);
    if (knn_index.shape(0) != t_.items || knn_weight.shape(0) != t_.items || knn_weight.shape(1) != t_.neighbours)
      throw std::invalid_argument("knn_index and knn_weight must be [items, neighbours]");
    t_.popularity = live<double>(popularity, 1, "popularity");
    if (popularity.shape(0) != t_.items) throw std::invalid_argument("popularity must be [items]");
    t_.next_pointers = live<std::int64_t>(next_pointers, 1, "next_pointers");
    if (next_pointers.shape(0) != t_.items + 1) throw std::invalid_argument("next_pointers must be [items + 1]");
    t_.next_items = live<std::int64_t>(next_items, 1, "next_items");
    t_.next_counts = live<double>(next_counts, 1, "next_counts");
    if (next_items.shape(0) != next_counts.shape(0)) throw std::invalid_argument("next_items and next_counts differ");
    const auto* ptr = t_.next_pointers;
    for (std::int64_t i = 0; i < t_.items; ++i)
      if (ptr[i] < 0 || ptr[i] > ptr[i + 1] || ptr[i + 1] > next_items.shape(0))
        throw std::invalid_argument("next_pointers is not a valid CSR index");
    // Every id the tables hold must name an item (or pad with -1): a stray one would be left
    // out of the pool yet still scale the others' scores.
    const auto* knn = t_.knn_index;
    for (std::int64_t j = 0; j < t_.items * t_.neighbours; ++j)
      if (knn[j] < -1 || knn[j] >= t_.items) throw std::invalid_argument("knn_index: item out of range");
    for (py::ssize_t j = 0; j < next_items.shape(0); ++j)
      if (t_.next_items[j] < 0 || t_.next_items[j] >= t_.items)
        throw std::invalid_argument("next_items: item out of range");
    if (window < 0) throw std::invalid_argument("window must be >= 0");
    t_.window = window;
  }

  py::tuple score(I64 ann, I64 history, I64 anchors, I64 popular, const py::array& blocked,
                  py::array_t<float, py::array::c_style | py::array::forcecast> user,
                  py::array_t<double, py::array::c_style | py::array::forcecast> weights) {
    const std::uint8_t* mask = live<std::uint8_t>(blocked, 1, "blocked");
    if (blocked.shape(0) != t_.items) throw std::invalid_argument("blocked must be [items]");
    if (user.size() != t_.dim) throw std::invalid_argument("user must have the embeddings' dimension");
    if (weights.size() != hanzo::kSignals) throw std::invalid_argument("weights must have 5 entries");
    for (const I64* a : {&history, &anchors})
      for (py::ssize_t j = 0; j < a->size(); ++j)
        if (a->data()[j] < 0 || a->data()[j] >= t_.items) throw std::invalid_argument("history/anchors: item out of range");
    hanzo::BlendInput in;
    in.ann = ann.data();
    in.n_ann = static_cast<std::size_t>(ann.size());
    in.history = history.data();
    in.n_history = static_cast<std::size_t>(history.size());
    in.anchors = anchors.data();
    in.n_anchors = static_cast<std::size_t>(anchors.size());
    in.popular = popular.data();
    in.n_popular = static_cast<std::size_t>(popular.size());
    in.blocked = mask;
    in.user = user.data();
    for (int s = 0; s < hanzo::kSignals; ++s) in.weights[s] = weights.data()[s];
    hanzo::BlendOutput out;
    {
      py::gil_scoped_release release;
      hanzo::blend(t_, in, out);
    }
    const auto n = static_cast<py::ssize_t>(out.candidates.size());
    py::array_t<std::int64_t> candidates(n);
    py::array_t<double> score(n);
    py::array_t<std::int8_t> source(n);
    py::array_t<double> parts({n, static_cast<py::ssize_t>(hanzo::kSignals)});
    std::copy(out.candidates.begin(), out.candidates.end(), candidates.mutable_data());
    std::copy(out.score.begin(), out.score.end(), score.mutable_data());
    std::copy(out.source.begin(), out.source.end(), source.mutable_data());
    std::copy(out.parts.begin(), out.parts.end(), parts.mutable_data());
    return py::make_tuple(candidates, score, source, parts);
  }

 private:
  hanzo::BlendTables t_;
  std::vector<py::array> keep_;
};

py::tuple first_unblocked(py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> labels,
                          py::array_t<float, py::array::c_style | py::array::forcecast> scores,
                          const py::array& blocked, py::ssize_t k) {
  if (labels.ndim() != 2 || scores.ndim() != 2 || labels.shape(0) != scores.shape(0) ||
      labels.shape(1) != scores.shape(1))
    throw std::invalid_argument("labels and scores must be 2-D of the same shape");
  const std::uint8_t* mask = live<std::uint8_t>(blocked, 1, "blocked");
  if (k < 0) throw std::invalid_argument("k must be >= 0");
  const auto rows = labels.shape(0), fetched = labels.shape(1);
  py::array_t<std::int64_t> out_labels({rows, static_cast<py::ssize_t>(k)});
  py::array_t<float> out_scores({rows, static_cast<py::ssize_t>(k)});
  const std::int64_t* l = labels.data();
  const float* sc = scores.data();
  std::int64_t* ol = out_labels.mutable_data();
  float* os = out_scores.mutable_data();
  const auto n_items = static_cast<std::size_t>(blocked.shape(0));
  std::size_t fewest;
  {
    py::gil_scoped_release release;
    fewest = hanzo::first_unblocked(l, sc, static_cast<std::size_t>(rows), static_cast<std::size_t>(fetched), mask,
                                    n_items, static_cast<std::size_t>(k), ol, os);
  }
  return py::make_tuple(out_labels, out_scores, fewest);
}

py::array_t<std::int32_t> gather_sequences(const py::array& items, const py::array& stamps, const py::array& head,
                                           py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> rows,
                                           std::int64_t as_of, std::int64_t k) {
  const std::int32_t* it = live<std::int32_t>(items, 2, "items");
  const std::int64_t* st = live<std::int64_t>(stamps, 2, "stamps");
  const std::int64_t* hd = live<std::int64_t>(head, 1, "head");
  if (k < 0) throw std::invalid_argument("k must be >= 0");
  const auto n = static_cast<std::size_t>(rows.shape(0));
  py::array_t<std::int32_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(k)});
  std::int32_t* o = out.mutable_data();
  const std::int64_t* r = rows.data();
  const std::int64_t entities = items.shape(0), length = items.shape(1);
  {
    py::gil_scoped_release release;
    hanzo::gather_sequences(it, st, hd, entities, length, r, n, as_of, k, o);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "Hanzo's native core: hot loops with no Python objects inside them.";
  m.attr("__version__") = HANZO_VERSION;
  m.def("topk", &topk, py::arg("scores"), py::arg("k"),
        "Indices and values of the k largest scores, descending, per row (ties: lower index first).");
  py::class_<FeatureGatherPlan>(m, "FeatureGatherPlan",
                                "Feature reads planned once; gather() fills a float32 matrix, GIL released.")
      .def(py::init<int>(), py::arg("width"))
      .def("add_window", &FeatureGatherPlan::add_window, py::arg("kind"), py::arg("out_col"), py::arg("width"),
           py::arg("fallback"), py::arg("values"), py::arg("epoch"), py::arg("bucket_ms"), py::arg("col_a"),
           py::arg("col_b"))
      .def("add_distinct", &FeatureGatherPlan::add_distinct, py::arg("out_col"), py::arg("fallback"),
           py::arg("hashes"), py::arg("last_seen"), py::arg("window_ms"))
      .def("add_last", &FeatureGatherPlan::add_last, py::arg("out_col"), py::arg("fallback"), py::arg("value"),
           py::arg("stamps"))
      .def("add_span", &FeatureGatherPlan::add_span, py::arg("out_col"), py::arg("fallback"), py::arg("first"),
           py::arg("last"), py::arg("mode") = 0)
      .def("gather", &FeatureGatherPlan::gather, py::arg("rows"), py::arg("as_of"),
           "(values float32 [rows, width], missing uint8 [rows, width])");
  py::class_<BlendPlan>(m, "BlendPlan", "The recommender's signal tables; score() blends one request's candidates.")
      .def(py::init<const py::array&, const py::array&, const py::array&, const py::array&, const py::array&,
                    const py::array&, const py::array&, std::int64_t>(),
           py::arg("embeddings"), py::arg("knn_index"), py::arg("knn_weight"), py::arg("popularity"),
           py::arg("next_pointers"), py::arg("next_items"), py::arg("next_counts"), py::arg("window"))
      .def("score", &BlendPlan::score, py::arg("ann"), py::arg("history"), py::arg("anchors"), py::arg("popular"),
           py::arg("blocked"), py::arg("user"), py::arg("weights"),
           "(candidates int64 ascending, unblocked; score float64; source int8 (signal index); parts [n, 5])");
  m.def("first_unblocked", &first_unblocked, py::arg("labels"), py::arg("scores"), py::arg("blocked"), py::arg("k"),
        "Per row, the first k candidates whose item is not blocked (uint8 mask): (labels, scores, fewest kept).");
  m.def("gather_sequences", &gather_sequences, py::arg("items"), py::arg("stamps"), py::arg("head"), py::arg("rows"),
        py::arg("as_of"), py::arg("k"), "The newest k items per row at or before as_of, newest first, -1 padded.");
}
