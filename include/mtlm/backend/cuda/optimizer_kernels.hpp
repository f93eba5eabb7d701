// @brief Device versions of the optimizer updates: Adam/AdamW over every parameter of a step in
// one launch, SGD one fused pass per parameter; the same arithmetic as the CPU kernels.
#pragma once

#include "mtlm/backend/cuda/policy.hpp"
#include "mtlm/optim/adam.hpp"
#include "mtlm/optim/sgd.hpp"

#include <algorithm>
#include <span>
#include <vector>

namespace mtlm::backend {

namespace cuda_detail {
/// A slice of one tensor for one thread block of the fused update.
struct AdamChunk {
  Index tensor, begin, end;
};

template <class S>
__global__ void adam_update_all_kernel(const AdamTensor<S>* tensors, const AdamChunk* chunks) {
  const AdamChunk chunk = chunks[blockIdx.x];
  const AdamTensor<S> t = tensors[chunk.tensor];
  const AdamCoefficients<S>& c = t.coefficients;
  for (Index i = chunk.begin + threadIdx.x; i < chunk.end; i += blockDim.x) {
    const S gi = c.l2 != S(0) ? t.grad[i] + c.l2 * t.value[i] : t.grad[i];
    const S mi = c.beta1 * t.exp_avg[i] + (S(1) - c.beta1) * gi;
    const S vi = c.beta2 * t.exp_avg_sq[i] + (S(1) - c.beta2) * gi * gi;
    t.exp_avg[i] = mi;
    t.exp_avg_sq[i] = vi;
    const S step = c.step_size * (mi / (sqrt(vi) / c.bias_correction2_sqrt + c.eps));
    t.value[i] = (c.decay != S(1) ? c.decay * t.value[i] : t.value[i]) - step;
  }
}
}  // namespace cuda_detail

/// Every parameter in one launch: a block per chunk of up to 8192 elements of one tensor.
template <class S>
void adam_update_all(Cuda, std::span<const AdamTensor<S>> tensors) {
  constexpr Index chunk_size = 8192;
  thread_local std::vector<cuda_detail::AdamChunk> chunks;
  chunks.clear();
  for (std::size_t k = 0; k < tensors.size(); ++k)
    for (Index begin = 0; begin < tensors[k].size; begin += chunk_size)
      chunks.push_back({static_cast<Index>(k), begin, std::min(begin + chunk_size, tensors[k].size)});
  if (chunks.empty()) return;
  const auto device_tensors = cuda::to_device(tensors);
  const auto device_chunks = cuda::to_device(std::span<const cuda_detail::AdamChunk>(chunks));
  cuda_detail::adam_update_all_kernel<<<static_cast<unsigned>(chunks.size()), cuda::threads_per_block,
                                        0, cuda::stream()>>>(device_tensors.data(), device_chunks.data());
  MTLM_CUDA_CHECK_LAUNCH();
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
