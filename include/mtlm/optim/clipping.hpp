// @brief Gradient norm clipping over a whole model, as torch.nn.utils.clip_grad_norm_: one
// global L2 norm over every trainable gradient, so clipping rescales the update without
// changing its direction.
//
// Contract: clip_grad_norm(model, max_norm) computes the L2 norm of the gradients of the
// non-frozen parameters, multiplies those gradients by max_norm / (norm + 1e-6) when that is
// below 1, and returns the norm before clipping. Frozen gradients are neither counted nor
// changed. A non-finite norm is returned as is (and, as in PyTorch, propagates into the
// gradients), so a caller can skip the step.
#pragma once

#include "mtlm/core/error.hpp"
#include "mtlm/core/param.hpp"

#include <cmath>
#include <string>
#include <string_view>

namespace mtlm {

namespace detail {

// A gradient with tracked columns (an embedding table) is zero outside them: only they count.
template <class S, class B>
double squared_norm(const Param<S, B>& p) {
  if (!p.column_wise_grad()) return static_cast<double>(B::dot(p.grad.view(), p.grad.view()));
  double sum = 0.0;
  for (const Index c : p.grad_columns.columns()) {
    const auto column = p.grad.view().col(c);
    sum += static_cast<double>(B::dot(column, column));
  }
  return sum;
}

template <class S, class B>
void scale_gradient(Param<S, B>& p, double factor) {
  if (!p.column_wise_grad()) {
    B::scale(p.grad.view(), static_cast<S>(factor));
    return;
  }
  for (const Index c : p.grad_columns.columns()) B::scale(p.grad.view().col(c), static_cast<S>(factor));
}

}  // namespace detail

/// L2 norm of the gradients of the non-frozen parameters of `model`.
template <HasParams M>
double gradient_norm(M& model) {
  double sum = 0.0;
  model.for_each_param([&](std::string_view, auto& p) {
    if (!p.frozen) sum += detail::squared_norm(p);
  });
  return std::sqrt(sum);
}

/// Rescales the gradients of the non-frozen parameters so that their global L2 norm is at most
/// `max_norm` (> 0); returns the norm before clipping.
template <HasParams M>
double clip_grad_norm(M& model, double max_norm) {
  if (!(max_norm > 0.0))
    throw Error("mtlm: clip_grad_norm: max_norm must be > 0, got " + std::to_string(max_norm));
  const double norm = gradient_norm(model);
  const double factor = max_norm / (norm + 1e-6);
  // !(factor >= 1) also takes a NaN norm through, as PyTorch's clamp does.
  if (!(factor >= 1.0))
    model.for_each_param([&](std::string_view, auto& p) {
      if (!p.frozen) detail::scale_gradient(p, factor);
    });
  return norm;
}

}  // namespace mtlm
