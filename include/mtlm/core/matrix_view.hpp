// @brief A non-owning, column-major view of a matrix in some backend's memory. Layers pass
// views to backend kernels, so the same layer code drives host (Eigen) and device (CUDA) memory.
//
// Activations are laid out one column per token: a batch of B sequences padded to length T is a
// (features x B*T) matrix whose column b*T + t is token t of sequence b. Every per-token layer is
// then one large matrix product over the whole batch.
#pragma once

#include "mtlm/core/config.hpp"

#include <cassert>
#include <type_traits>

namespace mtlm {

template <class S>
struct MatrixView {
  S* data = nullptr;
  Index rows = 0;
  Index cols = 0;
  Index stride = 0;  ///< distance between the starts of two columns (leading dimension), >= rows

  constexpr MatrixView() = default;
  constexpr MatrixView(S* d, Index r, Index c) : data(d), rows(r), cols(c), stride(r) {}
  constexpr MatrixView(S* d, Index r, Index c, Index s) : data(d), rows(r), cols(c), stride(s) {}

  /// Views of non-const data convert to views of const data, never the other way.
  template <class T>
    requires(std::is_same_v<std::add_const_t<T>, S> && !std::is_same_v<T, S>)
  constexpr MatrixView(const MatrixView<T>& other)
      : data(other.data), rows(other.rows), cols(other.cols), stride(other.stride) {}

  constexpr Index size() const { return rows * cols; }
  constexpr bool contiguous() const { return stride == rows || cols <= 1; }
  constexpr S* col_ptr(Index j) const { return data + j * stride; }

  /// Element access; only meaningful for host memory.
  constexpr S& operator()(Index i, Index j) const {
    assert(i >= 0 && i < rows && j >= 0 && j < cols);
    return data[j * stride + i];
  }

  constexpr MatrixView middle_cols(Index first, Index count) const {
    assert(first >= 0 && count >= 0 && first + count <= cols);
    return {data + first * stride, rows, count, stride};
  }
  constexpr MatrixView middle_rows(Index first, Index count) const {
    assert(first >= 0 && count >= 0 && first + count <= rows);
    return {data + first, count, cols, stride};
  }
  constexpr MatrixView col(Index j) const { return middle_cols(j, 1); }

  /// Every `step`-th column starting at `first`: with the batch-major layout, the columns of one
  /// time step across the batch are `strided_cols(t, T, B)`.
  constexpr MatrixView strided_cols(Index first, Index step, Index count) const {
    assert(first >= 0 && step >= 1 && (count == 0 || first + (count - 1) * step < cols));
    return {data + first * stride, rows, count, stride * step};
  }
};

template <class S>
using ConstView = MatrixView<const S>;

}  // namespace mtlm
