// @brief Device versions of the optimizer updates: one fused pass over value, gradient and
// state per parameter, the same arithmetic as the CPU kernels.
#pragma once

#include "mtlm/backend/cuda/policy.hpp"
#include "mtlm/optim/adam.hpp"
#include "mtlm/optim/sgd.hpp"

namespace mtlm::backend {

template <class S>
void adam_update(Cuda, MatrixView<S> value, In<S> grad, MatrixView<S> exp_avg,
                 MatrixView<S> exp_avg_sq, const AdamCoefficients<S>& coefficients) {
  const AdamCoefficients<S> c = coefficients;
  S* p = value.data;
  const S* g = grad.data;
  S* m = exp_avg.data;
  S* v = exp_avg_sq.data;
  cuda::for_each_index(value.size(), [=] __device__(Index i) {
    const S gi = c.l2 != S(0) ? g[i] + c.l2 * p[i] : g[i];
    const S mi = c.beta1 * m[i] + (S(1) - c.beta1) * gi;
    const S vi = c.beta2 * v[i] + (S(1) - c.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const S step = c.step_size * (mi / (sqrt(vi) / c.bias_correction2_sqrt + c.eps));
    p[i] = (c.decay != S(1) ? c.decay * p[i] : p[i]) - step;
  });
}

template <class S>
void sgd_update(Cuda, MatrixView<S> value, In<S> grad, MatrixView<S> buffer,
                const SgdCoefficients<S>& coefficients) {
  const SgdCoefficients<S> c = coefficients;
  S* p = value.data;
  const S* g = grad.data;
  S* b = buffer.data;
  cuda::for_each_index(value.size(), [=] __device__(Index i) {
    const S d = c.weight_decay != S(0) ? g[i] + c.weight_decay * p[i] : g[i];
    if (c.momentum == S(0)) {
      p[i] -= c.lr * d;
      return;
    }
    const S momentum = c.first ? d : c.momentum * b[i] + (S(1) - c.dampening) * d;
    b[i] = momentum;
    p[i] -= c.lr * (c.nesterov ? d + c.momentum * momentum : momentum);
  });
}

}  // namespace mtlm::backend
