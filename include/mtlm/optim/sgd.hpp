// @brief Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight
// decay, with the update rules of PyTorch's torch.optim.SGD, so that hyper-parameters carry
// over from PyTorch recipes unchanged.
//
// Contract: step(model) updates every non-frozen parameter from its gradient (which it leaves
// as it is):  d = g + weight_decay * p;  with momentum, b = d on a parameter's first update and
// b = momentum * b + (1 - dampening) * d afterwards, then d = d + momentum * b (Nesterov) or
// d = b;  p -= lr * d.  Frozen parameters and their buffers stay untouched. State: one
// "momentum.<i>" buffer per parameter, only when momentum != 0.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/optim/state.hpp"

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mtlm {

struct SgdOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

// CPU kernels --------------------------------------------------------------------------------
namespace backend {

template <class S>
struct SgdCoefficients {
  S lr, momentum, dampening, weight_decay;
  bool nesterov;
  bool first;  ///< the parameter's first update: the buffer starts as the gradient
};

/// One pass over value, grad and (when momentum != 0) the momentum buffer, in blocks that stay
/// in L1 while Eigen vectorises each statement. Every view is contiguous (Params and optimizer
/// state).
template <class S>
void sgd_update(Cpu, MatrixView<S> value, In<S> grad, MatrixView<S> buffer,
                const SgdCoefficients<S>& c) {
  assert(value.contiguous() && grad.contiguous() && (c.momentum == S(0) || buffer.contiguous()));
  using Array = Eigen::Array<S, Eigen::Dynamic, 1>;
  constexpr Index block = 1024;
  const Index n = value.size();
  for (Index start = 0; start < n; start += block) {
    const Index len = std::min(block, n - start);
    Eigen::Map<Array> p(value.data + start, len);
    const Eigen::Map<const Array> g(grad.data + start, len);
    // d is an expression of the old p: every statement reads p before writing it.
    auto update = [&](const auto& d) {
      if (c.momentum == S(0)) {
        p -= c.lr * d;
        return;
      }
      Eigen::Map<Array> b(buffer.data + start, len);
      if (c.first)
        b = d;
      else
        b = c.momentum * b + (S(1) - c.dampening) * d;
      if (c.nesterov)
        p -= c.lr * (d + c.momentum * b);
      else
        p -= c.lr * b;
    };
    if (c.weight_decay != S(0))
      update(g + c.weight_decay * p);
    else
      update(g);
  }
}

}  // namespace backend

template <class S = float, class B = Cpu>
  requires Backend<B>
class Sgd {
 public:
  using Scalar = S;
  using BackendType = B;

  explicit Sgd(SgdOptions options = {})
      : options_(options),
        state_(options.momentum != 0.0 ? std::vector<std::string>{"momentum"}
                                       : std::vector<std::string>{}) {
    if (!(options_.lr >= 0.0)) throw Error("mtlm: Sgd: lr must be >= 0");
    if (!(options_.momentum >= 0.0)) throw Error("mtlm: Sgd: momentum must be >= 0");
    if (!(options_.weight_decay >= 0.0)) throw Error("mtlm: Sgd: weight_decay must be >= 0");
    if (options_.nesterov && (options_.momentum <= 0.0 || options_.dampening != 0.0))
      throw Error("mtlm: Sgd: Nesterov momentum needs momentum > 0 and dampening 0");
  }

  /// One update of every non-frozen parameter of `model` from its gradient.
  template <HasParams M>
  void step(M& model) {
    state_.prepare(model, steps_);
    std::size_t i = 0;
    model.for_each_param([&](std::string_view, auto& p) {
      const std::size_t k = i++;
      if (p.frozen) return;
      const bool first = state_.steps(k)++ == 0;
      const backend::SgdCoefficients<S> c{
          static_cast<S>(options_.lr), static_cast<S>(options_.momentum),
          static_cast<S>(options_.dampening), static_cast<S>(options_.weight_decay),
          options_.nesterov, first};
      MatrixView<S> buffer;
      if (options_.momentum != 0.0) buffer = state_.tensor(k, 0).view();
      sgd_update(B{}, p.value.view(), p.grad.view(), buffer, c);
    });
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
  const SgdOptions& options() const { return options_; }

  /// Number of step() calls.
  std::int64_t steps() const { return steps_; }
  /// Sets the step count and every parameter's own count (see param_steps()).
  void set_steps(std::int64_t steps) {
    steps_ = steps;
    state_.set_all_steps(steps);
  }
  /// Updates per parameter: they differ from steps() only for parameters that were frozen
  /// during some steps (a buffer starts as the gradient on a parameter's first update).
  std::span<const std::int64_t> param_steps() const { return state_.param_steps(); }
  void set_param_steps(std::span<const std::int64_t> steps) { state_.set_param_steps(steps); }

  /// f(std::string_view name, Matrix<S, B>&) for each buffer: "momentum.<i>".
  template <class F>
  void for_each_state(F&& f) {
    state_.for_each(f);
  }

 private:
  SgdOptions options_;
  OptimizerState<S, B> state_;
  std::int64_t steps_ = 0;
};

}  // namespace mtlm
