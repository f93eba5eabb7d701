// @brief A trainable parameter: value and gradient of the same shape, plus a frozen flag for
// fine-tuning. Layers expose their parameters through for_each_param(visitor), with a local
// name; containers prefix the names ("trunk.1.weight"), so optimizers, zeroing, counting and
// checkpoints all walk a model the same way without knowing its layers.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/gradient_columns.hpp"
#include "mtlm/core/init.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/core/random.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace mtlm {

template <class S, class Backend>
struct Param {
  using Scalar = S;

  Matrix<S, Backend> value;
  Matrix<S, Backend> grad;
  /// A frozen parameter still receives gradients (they flow through it) but optimizers skip it.
  bool frozen = false;
  /// Where `grad` can be non-zero; untracked (dense) unless a layer opts in (Embedding).
  GradientColumns grad_columns;

  Param() = default;
  Param(Index rows, Index cols) : value(rows, cols, S(0)), grad(rows, cols, S(0)) {}

  void resize(Index rows, Index cols) {
    value.set_zero(rows, cols);
    grad.set_zero(rows, cols);
    grad_columns.track(cols, grad_columns.tracking());
  }
  Index rows() const { return value.rows(); }
  Index cols() const { return value.cols(); }
  Index size() const { return value.size(); }
  /// Whether gradient passes should visit only grad_columns: on the host, for a tracked
  /// gradient (a device would pay a launch or synchronisation per column, more than one pass).
  bool column_wise_grad() const { return Backend::is_host && !grad_columns.dense(); }

  void zero_grad() {
    if (!column_wise_grad())
      grad.set_zero();
    else
      for (const Index c : grad_columns.columns()) Backend::fill(grad.view().col(c), S(0));
    grad_columns.clear();
  }

  void initialize(const init::Initializer& how, Index fan_in, Index fan_out, Rng& rng) {
    std::vector<S> host(static_cast<std::size_t>(size()));
    init::fill(std::span<S>(host), how, fan_in, fan_out, rng);
    Backend::upload(host.data(), value.view());
  }
};

/// Anything whose parameters can be visited: `x.for_each_param(f)` calls
/// `f(std::string_view name, Param&)` once per parameter, in a fixed order.
namespace detail {
/// Accepts any parameter; a named type rather than a lambda, because nvcc's front end rejects
/// lambdas inside a concept's requires-expression.
struct AnyParamVisitor {
  template <class P>
  void operator()(std::string_view, P&) const {}
};
}  // namespace detail

template <class T>
concept HasParams = requires(T& t, detail::AnyParamVisitor visitor) { t.for_each_param(visitor); };

/// Wraps a visitor so that every name it sees starts with `prefix` and a dot.
template <class Visitor>
auto prefixed(std::string_view prefix, Visitor& visitor) {
  return [prefix, &visitor](std::string_view name, auto& param) {
    std::string full;
    full.reserve(prefix.size() + 1 + name.size());
    full.append(prefix).append(".").append(name);
    visitor(std::string_view(full), param);
  };
}

/// Visits every random generator owned by `x` (dropout masks, word dropout) as
/// f(std::string_view name, Rng&), with the same naming as for_each_param; a no-op for things
/// without generators. Checkpoints save them so a resumed run draws the same numbers.
template <class T, class F>
void visit_rngs(T& x, F&& f) {
  if constexpr (requires { x.for_each_rng(f); }) x.for_each_rng(f);
}

template <HasParams T>
Index count_parameters(T& t) {
  Index n = 0;
  t.for_each_param([&](std::string_view, auto& p) { n += p.size(); });
  return n;
}

template <HasParams T>
void zero_gradients(T& t) {
  t.for_each_param([](std::string_view, auto& p) { p.zero_grad(); });
}

/// Freezes (or unfreezes) every parameter of `t`, e.g. a trunk before fine-tuning one head.
template <HasParams T>
void set_frozen(T& t, bool frozen) {
  t.for_each_param([frozen](std::string_view, auto& p) { p.frozen = frozen; });
}

}  // namespace mtlm
