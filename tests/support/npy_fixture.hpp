// Loads the .npy fixtures written by tools/fixtures/*.py (PyTorch reference outputs).
//
// numpy arrays are C-ordered, so an array of shape (N, F) occupies the same memory as mtlm's
// column-major (F x N) matrix: a (B, T, F) activation tensor loads directly as F x B*T, and a
// PyTorch weight of shape (out, in) loads as its transpose (in x out).
#pragma once

#include <mtlm/backend/cpu.hpp>
#include <mtlm/core/matrix.hpp>

#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

#include <string>
#include <vector>

namespace mtlm::test {

struct NpyArray {
  std::vector<std::size_t> shape;
  std::vector<double> data;  ///< C order

  std::size_t size() const { return data.size(); }
  std::size_t last_dim() const { return shape.empty() ? 1 : shape.back(); }
};

inline std::string fixture_path(const std::string& group, const std::string& name) {
  return std::string(MTLM_TEST_FIXTURES) + "/" + group + "/" + name + ".npy";
}

inline NpyArray load_npy(const std::string& group, const std::string& name) {
  const auto array = xt::load_npy<float>(fixture_path(group, name));
  NpyArray out;
  out.shape.assign(array.shape().begin(), array.shape().end());
  out.data.assign(array.begin(), array.end());
  return out;
}

/// The array as a column-major (last_dim x rest) matrix, i.e. one column per leading index.
template <class S = double>
Matrix<S, Cpu> as_columns(const NpyArray& a) {
  const auto rows = static_cast<Index>(a.last_dim());
  const auto cols = static_cast<Index>(a.size()) / rows;
  Matrix<S, Cpu> m(rows, cols);
  for (std::size_t i = 0; i < a.size(); ++i) m.data()[i] = static_cast<S>(a.data[i]);
  return m;
}

/// A 2-D array (r, c) as the same r x c matrix (transposing numpy's C order).
template <class S = double>
Matrix<S, Cpu> as_matrix(const NpyArray& a) {
  const auto r = static_cast<Index>(a.shape.at(0));
  const auto c = static_cast<Index>(a.shape.size() > 1 ? a.shape[1] : 1);
  Matrix<S, Cpu> m(r, c);
  for (Index i = 0; i < r; ++i)
    for (Index j = 0; j < c; ++j) m(i, j) = static_cast<S>(a.data[static_cast<std::size_t>(i * c + j)]);
  return m;
}

/// Largest |a - b| over two matrices of the same shape (infinity if shapes differ).
template <class S, class T>
double max_abs_diff(const Matrix<S, Cpu>& a, const Matrix<T, Cpu>& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return 1e300;
  double m = 0;
  for (Index i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(double(a.data()[i]) - double(b.data()[i])));
  return m;
}

}  // namespace mtlm::test
