// @brief The optional CUDA backend. Include this header (in a translation unit compiled by
// nvcc, e.g. a .cu file linked to the mtlm::cuda CMake target) and instantiate any model with
// `Cuda` in place of `Cpu`:
//
//   using Encoder = mtlm::BiLstm<128, 256, float, mtlm::Cuda>;
//
// Nothing else changes. Code that never includes this header needs no CUDA toolkit.
//
// This is the one backend header that reaches up the floors: it brings the device versions of
// the kernels each layer, loss and optimizer declares next to itself for Cpu. The linear-chain
// CRF has no device kernels yet and stays on host backends.
#pragma once

#if !defined(__CUDACC__)
#error "mtlm/backend/cuda.hpp must be compiled by nvcc: use a .cu file (or LANGUAGE CUDA) and link mtlm::cuda"
#endif
#if !defined(__CUDACC_EXTENDED_LAMBDA__)
#error "mtlm/backend/cuda.hpp needs nvcc's --extended-lambda (the mtlm::cuda target adds it)"
#endif

#include "mtlm/backend/cuda/layer_kernels.hpp"
#include "mtlm/backend/cuda/loss_kernels.hpp"
#include "mtlm/backend/cuda/memory_pool.hpp"
#include "mtlm/backend/cuda/optimizer_kernels.hpp"
#include "mtlm/backend/cuda/pinned_staging.hpp"
#include "mtlm/backend/cuda/policy.hpp"
#include "mtlm/backend/cuda/runtime.hpp"
