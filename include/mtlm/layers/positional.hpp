// @brief Positional encodings: attention by itself is blind to word order, so a vector that
// depends on the time index t is added to every token column. SinusoidalPositions is the fixed
// encoding of Vaswani et al. (2017); LearnedPositions is a trained table of MaxLen vectors (BERT,
// GPT-2). Both come after the Embedding in a Sequential.
//
// Contract: forward takes x (D x B*T, one column per token of the batch) and returns
// y = x + P(:, t) at the real column of token t, 0 at padding columns; nothing is cached but
// the lengths come from the batch. backward returns dx = dy at real columns and 0 at padding
// columns; LearnedPositions adds dy at real columns to the gradient of column t of its table.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/layers/detail/padding.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace mtlm {

namespace detail {

inline void check_positional_input(const char* layer, const char* what, Index rows, Index dim,
                                   Index cols, const Batch& batch) {
  if (rows != dim)
    throw ShapeError(std::string("mtlm: ") + layer + " " + what + " has " +
                     std::to_string(rows) + " rows, expected " + std::to_string(dim));
  if (cols != batch.columns() || batch.max_length <= 0)
    throw ShapeError(std::string("mtlm: ") + layer + " needs one column per token: " + what +
                     " has " + std::to_string(cols) + " columns, the batch has " +
                     std::to_string(batch.columns()));
}

/// y = x + table(:, 0..len) for every sequence, padding columns 0.
template <class B, class S>
void add_positions(ConstView<S> x, ConstView<S> table, const Batch& batch, MatrixView<S> y) {
  B::copy(x, y);
  const Index T = batch.max_length;
  for (Index b = 0; b < batch.batch_size; ++b) {
    const Index len = batch.lengths[static_cast<std::size_t>(b)];
    B::axpy(S(1), table.middle_cols(0, len), y.middle_cols(b * T, len));
  }
  zero_padding<B>(y, batch);
}

}  // namespace detail

/// Fixed encoding: P(2i, t) = sin(t / 10000^(2i/D)), P(2i+1, t) = cos(t / 10000^(2i/D)).
/// The table is computed in double on the host when a longer batch than any before arrives.
template <Index D = Dynamic, class S = float, class B = Cpu>
  requires Dimension<D> && Backend<B>
class SinusoidalPositions {
 public:
  using Scalar = S;
  using BackendType = B;
  static constexpr Index input_dim = D;
  static constexpr Index output_dim = D;
  static constexpr bool preserves_features = true;

  explicit SinusoidalPositions(Index dim = D)
      : dim_(resolve_dim(D, dim, "SinusoidalPositions dimension")) {}

  void initialize(Rng&) {}

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& batch, Mode = Mode::train) {
    detail::check_positional_input("SinusoidalPositions", "input", x.rows, dim_, x.cols, batch);
    ensure_table(batch.max_length);
    y_.resize(dim_, x.cols);
    detail::add_positions<B>(x, ConstView<S>(table_.view()), batch, y_.view());
    return y_;
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& batch) {
    detail::check_positional_input("SinusoidalPositions", "output gradient", dy.rows, dim_,
                                   dy.cols, batch);
    dx_.resize(dim_, dy.cols);
    B::copy(dy, dx_.view());
    detail::zero_padding<B>(dx_.view(), batch);
    return dx_;
  }

  template <class F>
  void for_each_param(F&&) {}

  /// The encoding (D x at least `length` columns; column t is position t), e.g. for inspection.
  const Matrix<S, B>& table(Index length) {
    ensure_table(length);
    return table_;
  }

 private:
  void ensure_table(Index length) {
    if (length <= table_.cols()) return;
    host_.resize(static_cast<std::size_t>(dim_ * length));
    for (Index t = 0; t < length; ++t)
      for (Index i = 0; i < dim_; ++i) {
        const double frequency = std::exp(-static_cast<double>(i - i % 2) * std::log(10000.0) /
                                          static_cast<double>(dim_));
        const double angle = static_cast<double>(t) * frequency;
        host_[static_cast<std::size_t>(t * dim_ + i)] =
            static_cast<S>(i % 2 == 0 ? std::sin(angle) : std::cos(angle));
      }
    table_.resize(dim_, length);
    B::upload(host_.data(), table_.view());
  }

  Index dim_;
  std::vector<S> host_;
  Matrix<S, B> table_, y_, dx_;
};

/// Learned table: column t of `weight` (D x MaxLen) is added at position t. In memory this is
/// PyTorch's nn.Embedding(MaxLen, D).weight (MaxLen x D, row-major). A sequence longer than
/// MaxLen is a ShapeError; padding beyond MaxLen is fine, it is never looked up.
template <Index D, Index MaxLen, class S = float, class B = Cpu>
  requires Dimension<D> && Dimension<MaxLen> && Backend<B>
class LearnedPositions {
 public:
  using Scalar = S;
  using BackendType = B;
  static constexpr Index input_dim = D;
  static constexpr Index output_dim = D;
  static constexpr bool preserves_features = true;

  explicit LearnedPositions(Index dim = D, Index max_length = MaxLen)
      : dim_(resolve_dim(D, dim, "LearnedPositions dimension")),
        max_length_(resolve_dim(MaxLen, max_length, "LearnedPositions maximum length")),
        weight_(dim_, max_length_) {}

  /// N(0, 0.02^2), as BERT and GPT-2 initialise their position tables.
  void initialize(Rng& rng) { weight_.initialize(init::Normal{0.0, 0.02}, dim_, max_length_, rng); }

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& batch, Mode = Mode::train) {
    detail::check_positional_input("LearnedPositions", "input", x.rows, dim_, x.cols, batch);
    const Index longest = *std::max_element(batch.lengths.begin(), batch.lengths.end());
    if (longest > max_length_)
      throw ShapeError("mtlm: LearnedPositions: a sequence of length " + std::to_string(longest) +
                       " exceeds the maximum length " + std::to_string(max_length_));
    y_.resize(dim_, x.cols);
    detail::add_positions<B>(x, ConstView<S>(weight_.value.view()), batch, y_.view());
    return y_;
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& batch) {
    detail::check_positional_input("LearnedPositions", "output gradient", dy.rows, dim_, dy.cols,
                                   batch);
    const Index T = batch.max_length;
    for (Index b = 0; b < batch.batch_size; ++b) {
      const Index len = batch.lengths[static_cast<std::size_t>(b)];
      B::axpy(S(1), dy.middle_cols(b * T, len), weight_.grad.view().middle_cols(0, len));
    }
    dx_.resize(dim_, dy.cols);
    B::copy(dy, dx_.view());
    detail::zero_padding<B>(dx_.view(), batch);
    return dx_;
  }

  template <class F>
  void for_each_param(F&& f) {
    f("weight", weight_);
  }

  Index max_length() const { return max_length_; }
  Param<S, B>& weight() { return weight_; }

 private:
  Index dim_, max_length_;
  Param<S, B> weight_;
  Matrix<S, B> y_, dx_;
};

}  // namespace mtlm
