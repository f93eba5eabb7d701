// @brief Pooling over time: one vector per sequence from its token vectors (mean, max, first
// token, last real token), the bridge from a per-token trunk to sentence-level heads. Every kind
// reads only real positions (t < lengths[b]), so padding never changes a sentence's vector.
//
// Contract: forward(x (D x B*T), batch) returns y (D x B), column b for sequence b:
//   mean:  y(:, b) = sum_{t < len_b} x(:, b*T + t) / len_b
//   max:   y(i, b) = max_{t < len_b} x(i, b*T + t); the winning column per (i, b) is cached (the
//          first one on a tie), so its whole gradient goes to that position
//   first: y(:, b) = x(:, b*T)
//   last:  y(:, b) = x(:, b*T + len_b - 1)   (the last real token, not the last column)
// backward(dy (D x B)) returns dx (D x B*T), exactly zero at padded positions. The lengths (and
// for first/last the selected columns) of the last forward are cached for backward.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/core/random.hpp"

#include <span>
#include <string>
#include <vector>

namespace mtlm {

enum class PoolingKind { mean, max, first, last };

namespace backend {

// CPU kernels. `lengths` holds one real length per sequence; x has lengths.size() * T columns.

template <class S>
void mean_pool_forward(Cpu, In<S> x, std::span<const Index> lengths, Index T, MatrixView<S> y) {
  const auto X = Cpu::eigen(x);
  auto Y = Cpu::eigen(y);
  for (Index b = 0; b < y.cols; ++b) {
    const Index len = lengths[static_cast<std::size_t>(b)];
    Y.col(b) = X.middleCols(b * T, len).rowwise().sum() * (S(1) / static_cast<S>(len));
  }
}

template <class S>
void mean_pool_backward(Cpu, In<S> dy, std::span<const Index> lengths, Index T,
                        MatrixView<S> dx) {
  const auto DY = Cpu::eigen(dy);
  auto DX = Cpu::eigen(dx);
  for (Index b = 0; b < dy.cols; ++b) {
    const Index len = lengths[static_cast<std::size_t>(b)];
    const S share = S(1) / static_cast<S>(len);
    for (Index t = 0; t < len; ++t) DX.col(b * T + t) = DY.col(b) * share;
    DX.middleCols(b * T + len, T - len).setZero();
  }
}

/// y(i, b) = max over the real columns of sequence b; argmax(i, b) = the column of x that won.
template <class S>
void max_pool_forward(Cpu, In<S> x, std::span<const Index> lengths, Index T, MatrixView<S> y,
                      MatrixView<Index> argmax) {
  for (Index b = 0; b < y.cols; ++b) {
    const Index len = lengths[static_cast<std::size_t>(b)];
    S* best = y.col_ptr(b);
    Index* winner = argmax.col_ptr(b);
    const S* first = x.col_ptr(b * T);
    for (Index i = 0; i < y.rows; ++i) {
      best[i] = first[i];
      winner[i] = b * T;
    }
    for (Index t = 1; t < len; ++t) {
      const S* column = x.col_ptr(b * T + t);
      const Index at = b * T + t;
      // Selects instead of a branch: the compiler vectorises it, and data-dependent branches
      // mispredict about half the time on the first positions.
      for (Index i = 0; i < y.rows; ++i) {
        const bool wins = column[i] > best[i];
        best[i] = wins ? column[i] : best[i];
        winner[i] = wins ? at : winner[i];
      }
    }
  }
}

/// dx = 0 except dx(i, argmax(i, b)) = dy(i, b).
template <class S>
void max_pool_backward(Cpu, In<S> dy, ConstView<Index> argmax, MatrixView<S> dx) {
  Cpu::eigen(dx).setZero();
  for (Index b = 0; b < dy.cols; ++b)
    for (Index i = 0; i < dy.rows; ++i) dx(i, argmax(i, b)) = dy(i, b);
}

/// y(:, b) = x(:, columns[b]).
template <class S>
void token_pool_forward(Cpu, In<S> x, std::span<const Index> columns, MatrixView<S> y) {
  const auto X = Cpu::eigen(x);
  auto Y = Cpu::eigen(y);
  for (Index b = 0; b < y.cols; ++b) Y.col(b) = X.col(columns[static_cast<std::size_t>(b)]);
}

/// dx = 0 except dx(:, columns[b]) = dy(:, b).
template <class S>
void token_pool_backward(Cpu, In<S> dy, std::span<const Index> columns, MatrixView<S> dx) {
  const auto DY = Cpu::eigen(dy);
  auto DX = Cpu::eigen(dx);
  DX.setZero();
  for (Index b = 0; b < dy.cols; ++b) DX.col(columns[static_cast<std::size_t>(b)]) = DY.col(b);
}

}  // namespace backend

template <PoolingKind Kind, Index D = Dynamic, class S = float, class B = Cpu>
  requires Dimension<D> && Backend<B>
class Pooling {
 public:
  using Scalar = S;
  using BackendType = B;
  static constexpr PoolingKind kind = Kind;
  static constexpr Index input_dim = D;
  static constexpr Index output_dim = D;
  /// Output width equals input width, whatever it is (only the column count changes).
  static constexpr bool preserves_features = true;

  void initialize(Rng&) {}

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& batch, Mode = Mode::train) {
    if (D != Dynamic && x.rows != D)
      throw ShapeError("mtlm: Pooling input has " + std::to_string(x.rows) + " rows, expected " +
                       std::to_string(D));
    batch.validate();
    if (x.cols != batch.columns())
      throw ShapeError("mtlm: Pooling input has " + std::to_string(x.cols) +
                       " columns, the batch has " + std::to_string(batch.columns()) +
                       " positions (" + std::to_string(batch.batch_size) + " x " +
                       std::to_string(batch.max_length) + ")");
    lengths_.assign(batch.lengths.begin(), batch.lengths.end());
    max_length_ = batch.max_length;
    input_rows_ = x.rows;
    y_.resize(x.rows, batch.batch_size);
    const std::span<const Index> lengths(lengths_);
    if constexpr (Kind == PoolingKind::mean) {
      mean_pool_forward(B{}, x, lengths, max_length_, y_.view());
    } else if constexpr (Kind == PoolingKind::max) {
      argmax_.resize(x.rows, batch.batch_size);
      max_pool_forward(B{}, x, lengths, max_length_, y_.view(), argmax_.view());
    } else {
      columns_.resize(lengths_.size());
      for (std::size_t b = 0; b < lengths_.size(); ++b) {
        const Index t = Kind == PoolingKind::first ? 0 : lengths_[b] - 1;
        columns_[b] = batch.column(static_cast<Index>(b), t);
      }
      token_pool_forward(B{}, x, std::span<const Index>(columns_), y_.view());
    }
    return y_;
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& = {}) {
    if (dy.rows != y_.rows() || dy.cols != y_.cols())
      throw ShapeError("mtlm: Pooling output gradient is " + std::to_string(dy.rows) + " x " +
                       std::to_string(dy.cols) + ", expected " + std::to_string(y_.rows()) +
                       " x " + std::to_string(y_.cols()) + " (the shape of the last forward)");
    dx_.resize(input_rows_, y_.cols() * max_length_);
    if constexpr (Kind == PoolingKind::mean)
      mean_pool_backward(B{}, dy, std::span<const Index>(lengths_), max_length_, dx_.view());
    else if constexpr (Kind == PoolingKind::max)
      max_pool_backward(B{}, dy, argmax_.view(), dx_.view());
    else
      token_pool_backward(B{}, dy, std::span<const Index>(columns_), dx_.view());
    return dx_;
  }

  template <class F>
  void for_each_param(F&&) {}

 private:
  std::vector<Index> lengths_;
  std::vector<Index> columns_;  ///< first / last: the input column pooled for each sequence
  Index max_length_ = 0;
  Index input_rows_ = 0;
  Matrix<Index, B> argmax_;     ///< max: the input column that won, per feature and sequence
  Matrix<S, B> y_, dx_;
};

template <Index D = Dynamic, class S = float, class B = Cpu>
using MeanPool = Pooling<PoolingKind::mean, D, S, B>;
template <Index D = Dynamic, class S = float, class B = Cpu>
using MaxPool = Pooling<PoolingKind::max, D, S, B>;
template <Index D = Dynamic, class S = float, class B = Cpu>
using FirstTokenPool = Pooling<PoolingKind::first, D, S, B>;
template <Index D = Dynamic, class S = float, class B = Cpu>
using LastTokenPool = Pooling<PoolingKind::last, D, S, B>;

}  // namespace mtlm
