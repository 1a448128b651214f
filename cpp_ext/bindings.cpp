// The whole Python API of hanzo._native: convert and check with the GIL held, release it
// around the C++ work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "topk.hpp"

namespace py = pybind11;

#ifndef HANZO_VERSION
#define HANZO_VERSION "dev"
#endif

namespace {

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

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "Hanzo's native core: hot loops with no Python objects inside them.";
  m.attr("__version__") = HANZO_VERSION;
  m.def("topk", &topk, py::arg("scores"), py::arg("k"),
        "Indices and values of the k largest scores, descending, per row (ties: lower index first).");
}
