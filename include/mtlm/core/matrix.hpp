// @brief An owning column-major matrix in a backend's memory. It keeps its capacity when
// resized to a smaller or equal size, so layer workspaces stop allocating once the largest
// batch has been seen (no heap traffic per call in the steady state).
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/matrix_view.hpp"

#include <utility>

namespace mtlm {

template <class S, class Backend>
class Matrix {
 public:
  using Scalar = S;

  Matrix() = default;
  Matrix(Index rows, Index cols) { resize(rows, cols); }
  Matrix(Index rows, Index cols, S value) {
    resize(rows, cols);
    Backend::fill(view(), value);
  }
  ~Matrix() { release(); }

  Matrix(const Matrix& other) {
    resize(other.rows_, other.cols_);
    Backend::copy(other.view(), view());
  }
  Matrix& operator=(const Matrix& other) {
    if (this != &other) {
      resize(other.rows_, other.cols_);
      Backend::copy(other.view(), view());
    }
    return *this;
  }
  Matrix(Matrix&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        rows_(std::exchange(other.rows_, 0)),
        cols_(std::exchange(other.cols_, 0)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  Matrix& operator=(Matrix&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      rows_ = std::exchange(other.rows_, 0);
      cols_ = std::exchange(other.cols_, 0);
      capacity_ = std::exchange(other.capacity_, 0);
    }
    return *this;
  }

  /// Changes the shape; contents are unspecified afterwards. Reallocates only to grow.
  void resize(Index rows, Index cols) {
    const Index needed = rows * cols;
    if (needed > capacity_) {
      release();
      data_ = Backend::template allocate<S>(needed);
      capacity_ = needed;
    }
    rows_ = rows;
    cols_ = cols;
  }
  /// Resizes and sets every element to zero.
  void set_zero(Index rows, Index cols) {
    resize(rows, cols);
    Backend::fill(view(), S(0));
  }
  void set_zero() { Backend::fill(view(), S(0)); }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index size() const { return rows_ * cols_; }
  S* data() { return data_; }
  const S* data() const { return data_; }

  MatrixView<S> view() { return {data_, rows_, cols_}; }
  ConstView<S> view() const { return {data_, rows_, cols_}; }
  operator MatrixView<S>() { return view(); }
  operator ConstView<S>() const { return view(); }

  /// Host-side element access (for tests and host backends).
  S& operator()(Index i, Index j) { return data_[j * rows_ + i]; }
  const S& operator()(Index i, Index j) const { return data_[j * rows_ + i]; }

 private:
  void release() {
    if (data_) Backend::deallocate(data_, capacity_);
    data_ = nullptr;
    capacity_ = 0;
  }

  S* data_ = nullptr;
  Index rows_ = 0;
  Index cols_ = 0;
  Index capacity_ = 0;
};

}  // namespace mtlm
