// @brief Launch helpers for the element-wise and per-column kernels of the CUDA policy, so each
// kernel is written as one device lambda over an index (needs nvcc's --extended-lambda, which
// the mtlm::cuda CMake target adds).
#pragma once

#include "mtlm/backend/cuda/runtime.hpp"
#include "mtlm/core/config.hpp"
#include "mtlm/core/matrix_view.hpp"

#include <algorithm>

namespace mtlm::cuda {

inline constexpr int threads_per_block = 256;

namespace detail {
template <class F>
__global__ void each_index_kernel(Index n, F f) {
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<Index>(gridDim.x) * blockDim.x)
    f(i);
}

template <class F>
__global__ void each_column_warp_kernel(Index columns, F f) {
  const Index warp = (static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (warp < columns) f(warp, static_cast<int>(threadIdx.x % 32));
}
}  // namespace detail

/// f(i) for every i in [0, n), in parallel (grid-stride loop).
template <class F>
void for_each_index(Index n, F f) {
  if (n <= 0) return;
  const Index blocks = std::min<Index>((n + threads_per_block - 1) / threads_per_block, 65536);
  detail::each_index_kernel<<<static_cast<unsigned>(blocks), threads_per_block, 0, stream()>>>(
      n, f);
  MTLM_CUDA_CHECK_LAUNCH();
}

/// f(row, col) for every element of a rows x cols matrix.
template <class F>
void for_each_element(Index rows, Index cols, F f) {
  if (rows <= 0 || cols <= 0) return;
  for_each_index(rows * cols, [=] __device__(Index i) { f(i % rows, i / rows); });
}

/// f(column, lane) with one warp of 32 lanes per column: for column reductions (softmax,
/// argmax, layer norm) whose columns hold tens to a few thousand entries.
template <class F>
void for_each_column_warp(Index columns, F f) {
  if (columns <= 0) return;
  constexpr Index warps_per_block = threads_per_block / 32;
  const Index blocks = (columns + warps_per_block - 1) / warps_per_block;
  detail::each_column_warp_kernel<<<static_cast<unsigned>(blocks), threads_per_block, 0,
                                    stream()>>>(columns, f);
  MTLM_CUDA_CHECK_LAUNCH();
}

template <class S>
__device__ __forceinline__ S warp_sum(S v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
template <class S>
__device__ __forceinline__ S warp_max(S v) {
  for (int offset = 16; offset > 0; offset /= 2) v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

/// Element (r, c) of a column-major view, in device code.
template <class S>
__device__ __forceinline__ S& at(MatrixView<S> v, Index r, Index c) {
  return v.data[c * v.stride + r];
}

template <class S>
__device__ __forceinline__ S sigmoid(S x) {
  return S(1) / (S(1) + exp(-x));
}

}  // namespace mtlm::cuda
