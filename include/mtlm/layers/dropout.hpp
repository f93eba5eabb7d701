// @brief Dropout: during training, zeroes each activation with probability p and scales the
// survivors by 1 / (1 - p) ("inverted" dropout), so evaluation is the identity and needs no
// rescaling. Masks come from an Rng owned by the layer, so a seed replays the same masks.
//
// Contract: forward(x (D x N), batch, mode) returns y (D x N); in Mode::train with p > 0,
// y = x .* m with m(i, j) in {0, 1 / (1 - p)} drawn afresh on every forward, and m is cached for
// backward (dx = dy .* m); in Mode::eval (or p == 0), y = x and dx = dy. Elements are
// independent, so padded columns never reach real ones (and get zero gradient when dy is zero
// there, as heads produce).
//
// Seeding: a seed given to the constructor or to reseed() pins the stream. Without one,
// initialize(rng) reseeds the layer from the model's rng, so every dropout layer of a model
// seeded once gets its own reproducible stream instead of all sharing the default one.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/core/random.hpp"

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace mtlm {
namespace backend {

// CPU kernels

/// mask(i, j) = 0 with probability p, else 1 / (1 - p): one draw per element, in column-major
/// order, so the masks depend only on the seed and the shape, whatever the strides.
template <class S>
void dropout_mask(Cpu, Rng& rng, double p, MatrixView<S> mask) {
  const S keep_scale = static_cast<S>(1.0 / (1.0 - p));
  // Drops where rng.uniform() < p, without the conversion to double: uniform() is k * 2^-53
  // with k = next() >> 11, and k * 2^-53 < p exactly when k < ceil(p * 2^53).
  const auto threshold = static_cast<std::uint64_t>(std::ceil(std::ldexp(p, 53)));
  Rng local = rng;  // a local copy keeps the generator's state in registers
  for (Index j = 0; j < mask.cols; ++j) {
    S* column = mask.col_ptr(j);
    for (Index i = 0; i < mask.rows; ++i)
      column[i] = (local.next() >> 11) < threshold ? S(0) : keep_scale;
  }
  rng = local;
}

}  // namespace backend

template <class S = float, class B = Cpu>
  requires Backend<B>
class Dropout {
 public:
  using Scalar = S;
  using BackendType = B;
  static constexpr Index input_dim = Dynamic;
  static constexpr Index output_dim = Dynamic;
  /// Output width equals input width, whatever it is.
  static constexpr bool preserves_features = true;

  static constexpr std::uint64_t default_seed = 0x64726f70ULL;

  /// `p` is the probability of dropping an element, in [0, 1).
  explicit Dropout(double p = 0.1, std::optional<std::uint64_t> seed = std::nullopt)
      : p_(p), rng_(seed.value_or(default_seed)), pinned_(seed.has_value()) {
    if (!(p >= 0.0 && p < 1.0))
      throw Error("mtlm: Dropout probability must be in [0, 1), got " + std::to_string(p));
  }

  /// Derives this layer's stream from the model's rng, unless a seed was pinned.
  void initialize(Rng& rng) {
    if (!pinned_) rng_.reseed(rng.next());
  }

  /// Restarts the mask stream from `seed` (and pins it against initialize()).
  void reseed(std::uint64_t seed) {
    rng_.reseed(seed);
    pinned_ = true;
  }

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& = {}, Mode mode = Mode::train) {
    active_ = mode == Mode::train && p_ > 0.0;
    y_.resize(x.rows, x.cols);
    if (!active_) {
      B::copy(x, y_.view());
      return y_;
    }
    mask_.resize(x.rows, x.cols);
    dropout_mask(B{}, rng_, p_, mask_.view());
    B::multiply(x, mask_.view(), y_.view());
    return y_;
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& = {}) {
    if (dy.rows != y_.rows() || dy.cols != y_.cols())
      throw ShapeError("mtlm: Dropout output gradient is " + std::to_string(dy.rows) + " x " +
                       std::to_string(dy.cols) + ", expected " + std::to_string(y_.rows()) +
                       " x " + std::to_string(y_.cols()) + " (the shape of the last forward)");
    dx_.resize(dy.rows, dy.cols);
    if (active_)
      B::multiply(dy, mask_.view(), dx_.view());
    else
      B::copy(dy, dx_.view());
    return dx_;
  }

  /// The layer's generator, for checkpoints that must resume the same random stream.
  template <class F>
  void for_each_rng(F&& f) {
    f("rng", rng_);
  }

  template <class F>
  void for_each_param(F&&) {}

  double probability() const { return p_; }
  /// The mask of the last training forward: 0 for dropped elements, 1 / (1 - p) for kept ones.
  const Matrix<S, B>& mask() const { return mask_; }

 private:
  double p_;
  Rng rng_;
  bool pinned_;
  bool active_ = false;
  Matrix<S, B> mask_, y_, dx_;
};

}  // namespace mtlm
