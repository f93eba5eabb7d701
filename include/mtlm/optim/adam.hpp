// @brief Adam (L2 weight decay added to the gradient) and AdamW (weight decay applied to the
// weights, decoupled from the adaptive step), with the update rules of PyTorch's
// torch.optim.Adam / AdamW: bias-corrected moments and eps added outside the square root.
//
// Contract: step(model) updates every non-frozen parameter from its gradient (left as it is).
// With t the parameter's own update count,
//   Adam:  g = grad + weight_decay * p;     AdamW: g = grad;  p *= 1 - lr * weight_decay;
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
// Frozen parameters, their moments and their counts stay untouched. With `lazy`, a parameter
// whose gradient tracks its columns (an embedding table) updates only those columns; t still
// counts every step. State: "exp_avg.<i>" (m) and "exp_avg_sq.<i>" (v) per parameter.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/optim/state.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mtlm {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  ///< L2: added to the gradient
  /// Update only the columns a tracked gradient marks (Embedding::set_sparse_gradient); others
  /// keep their value and moments, as PyTorch's SparseAdam and TensorFlow's LazyAdam.
  bool lazy = false;
};

/// As AdamOptions, with PyTorch's AdamW default for the (decoupled) weight decay.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  ///< decoupled: p *= 1 - lr * weight_decay before the step
  /// As AdamOptions::lazy (weight decay, too, reaches only the updated columns).
  bool lazy = false;
};

// CPU kernels --------------------------------------------------------------------------------
namespace backend {

template <class S>
struct AdamCoefficients {
  S beta1, beta2;
  S step_size;              ///< lr / (1 - beta1^t)
  S bias_correction2_sqrt;  ///< sqrt(1 - beta2^t)
  S eps;
  S l2;     ///< Adam's weight decay (0 for AdamW)
  S decay;  ///< AdamW's factor 1 - lr * weight_decay (1 for Adam)
};

/// Entries per block of the fused update.
inline constexpr Index adam_block = 1024;

/// The fused update: one pass over value, grad, m and v, in blocks that stay in L1 while Eigen
/// vectorises each statement (whole-array statements would stream every array from memory
/// once per statement). Every view is contiguous (Params and optimizer state).
template <class S>
void adam_update(Cpu, MatrixView<S> value, In<S> grad, MatrixView<S> exp_avg,
                 MatrixView<S> exp_avg_sq, const AdamCoefficients<S>& c) {
  assert(value.contiguous() && grad.contiguous() && exp_avg.contiguous() &&
         exp_avg_sq.contiguous());
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  constexpr Index block = adam_block;
  using Block = Eigen::Array<S, Eigen::Dynamic, 1, 0, block, 1>;  // on the stack
  const Index n = value.size();
  for (Index start = 0; start < n; start += block) {
    const Index len = std::min(block, n - start);
    Eigen::Map<Array> p(value.data + start, len);
    Eigen::Map<Array> m(exp_avg.data + start, len);
    Eigen::Map<Array> v(exp_avg_sq.data + start, len);
    auto update = [&](const auto& g) {
      m = c.beta1 * m + (S(1) - c.beta1) * g;
      v = c.beta2 * v + (S(1) - c.beta2) * g.square();
    };
    const Eigen::Map<const Array> g(grad.data + start, len);
    if (c.l2 != S(0)) {
      const Block with_decay = g + c.l2 * p;
      update(with_decay);
    } else {
      update(g);
    }
    const auto step = c.step_size * (m / (v.sqrt() / c.bias_correction2_sqrt + c.eps));
    if (c.decay != S(1))
      p = c.decay * p - step;
    else
      p -= step;
  }
}

/// One parameter's share of a step: its storage (contiguous) and its own coefficients (bias
/// corrections differ for parameters that were frozen during some steps).
template <class S>
struct AdamTensor {
  S* value;
  const S* grad;
  S* exp_avg;
  S* exp_avg_sq;
  Index size;
  AdamCoefficients<S> coefficients;
};

/// Every parameter of one step. The CPU shares the parameters' entries, taken one tensor after
/// another, among its product threads in about equal runs; a device backend can update all of
/// them in one launch. A run starts at one of its tensor's blocks: Eigen treats the entries
/// before a block's first aligned packet, and those after its last, one at a time, and the
/// compiler may fuse a multiply and an add there and not in the packets, so only the blocks of
/// one thread give one thread's numbers.
template <class S>
void adam_update_all(Cpu, std::span<const AdamTensor<S>> tensors) {
  Index total = 0;
  for (const AdamTensor<S>& t : tensors) total += t.size;
  const Index parts = std::max(1, Cpu::threads());
  // Where the run that should start at entry i of the concatenation starts: the start of the
  // block that holds it.
  auto run_start = [&](Index i) {
    Index offset = 0;
    for (const AdamTensor<S>& t : tensors) {
      if (i < offset + t.size) return offset + (i - offset) / adam_block * adam_block;
      offset += t.size;
    }
    return total;
  };
  // A square root and two divisions per entry: about as much work as ten multiply-adds.
  parallel_for(Cpu{}, parts, 10.0 * static_cast<double>(total), [&](Index part) {
    const Index first = run_start(total * part / parts), last = run_start(total * (part + 1) / parts);
    Index offset = 0;  // of the tensor below in the concatenation
    for (const AdamTensor<S>& t : tensors) {
      const Index from = std::clamp(first - offset, Index{0}, t.size);
      const Index to = std::clamp(last - offset, Index{0}, t.size);
      if (from < to)
        adam_update(Cpu{}, MatrixView<S>(t.value + from, to - from, 1), ConstView<S>(t.grad + from, to - from, 1),
                    MatrixView<S>(t.exp_avg + from, to - from, 1),
                    MatrixView<S>(t.exp_avg_sq + from, to - from, 1), t.coefficients);
      offset += t.size;
    }
  });
}

}  // namespace backend

template <bool Decoupled, class S = float, class B = Cpu>
  requires Backend<B>
class BasicAdam {
 public:
  using Scalar = S;
  using BackendType = B;
  using Options = std::conditional_t<Decoupled, AdamWOptions, AdamOptions>;
  static constexpr bool decoupled_weight_decay = Decoupled;

  explicit BasicAdam(Options options = {})
      : options_(options), state_(std::vector<std::string>{"exp_avg", "exp_avg_sq"}) {
    const char* name = Decoupled ? "mtlm: AdamW: " : "mtlm: Adam: ";
    if (!(options_.lr >= 0.0)) throw Error(std::string(name) + "lr must be >= 0");
    if (!(options_.beta1 >= 0.0 && options_.beta1 < 1.0) ||
        !(options_.beta2 >= 0.0 && options_.beta2 < 1.0))
      throw Error(std::string(name) + "betas must lie in [0, 1)");
    if (!(options_.eps >= 0.0)) throw Error(std::string(name) + "eps must be >= 0");
    if (!(options_.weight_decay >= 0.0))
      throw Error(std::string(name) + "weight_decay must be >= 0");
  }

  /// One update of every non-frozen parameter of `model` from its gradient.
  template <HasParams M>
  void step(M& model) {
    state_.prepare(model, steps_);
    tensors_.clear();  // keeps its capacity: no allocation per step
    std::size_t i = 0;
    model.for_each_param([&](std::string_view, auto& p) {
      const std::size_t k = i++;
      if (p.frozen) return;
      const auto t = static_cast<double>(++state_.steps(k));
      const double bias_correction1 = 1.0 - std::pow(options_.beta1, t);
      const double bias_correction2 = 1.0 - std::pow(options_.beta2, t);
      const backend::AdamCoefficients<S> c{
          static_cast<S>(options_.beta1),
          static_cast<S>(options_.beta2),
          static_cast<S>(options_.lr / bias_correction1),
          static_cast<S>(std::sqrt(bias_correction2)),
          static_cast<S>(options_.eps),
          static_cast<S>(Decoupled ? 0.0 : options_.weight_decay),
          static_cast<S>(Decoupled ? 1.0 - options_.lr * options_.weight_decay : 1.0)};
      S* const m = state_.tensor(k, 0).data();
      S* const v = state_.tensor(k, 1).data();
      if (!options_.lazy || p.grad_columns.dense()) {
        tensors_.push_back({p.value.data(), p.grad.data(), m, v, p.size(), c});
        return;
      }
      const Index rows = p.rows();  // Params are contiguous: a column is `rows` values
      for (const Index column : p.grad_columns.columns()) {
        const Index at = column * rows;
        tensors_.push_back({p.value.data() + at, p.grad.data() + at, m + at, v + at, rows, c});
      }
    });
    adam_update_all(B{}, std::span<const backend::AdamTensor<S>>(tensors_));
    ++steps_;
  }

  /// Allocates the (zero) state for `model` without updating it, e.g. before restoring a
  /// checkpoint into the tensors that for_each_state visits.
  template <HasParams M>
  void prepare(M& model) {
    state_.prepare(model, steps_);
  }

  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  const Options& options() const { return options_; }

  /// Number of step() calls.
  std::int64_t steps() const { return steps_; }
  /// Sets the step count and every parameter's own count (see param_steps()).
  void set_steps(std::int64_t steps) {
    steps_ = steps;
    state_.set_all_steps(steps);
  }
  /// Updates per parameter, which drive the bias correction: they differ from steps() only
  /// for parameters that were frozen during some steps. A checkpoint that restores only
  /// steps() is exact unless that happened.
  std::span<const std::int64_t> param_steps() const { return state_.param_steps(); }
  void set_param_steps(std::span<const std::int64_t> steps) { state_.set_param_steps(steps); }

  /// f(std::string_view name, Matrix<S, B>&) for "exp_avg.<i>" and "exp_avg_sq.<i>".
  template <class F>
  void for_each_state(F&& f) {
    state_.for_each(f);
  }

 private:
  Options options_;
  OptimizerState<S, B> state_;
  std::vector<backend::AdamTensor<S>> tensors_;
  std::int64_t steps_ = 0;
};

/// Adam with L2 weight decay (torch.optim.Adam).
template <class S = float, class B = Cpu>
using Adam = BasicAdam<false, S, B>;

/// Adam with decoupled weight decay (torch.optim.AdamW).
template <class S = float, class B = Cpu>
using AdamW = BasicAdam<true, S, B>;

}  // namespace mtlm
