// @brief The CUDA runtime as mtlm uses it: errors that say which call failed and where, the one
// stream every kernel, copy and cuBLAS call is ordered on, and the cuBLAS handle.
//
// One stream for the whole process keeps the ordering argument trivial: a buffer handed back to
// the memory pool can be reused by the next request without synchronising, because every later
// use is queued behind every earlier one.
#pragma once

#include "mtlm/core/error.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <mutex>
#include <string>

namespace mtlm::cuda {

/// A CUDA or cuBLAS call failed; what() names the call, the source location and the reason.
class CudaError : public Error {
 public:
  using Error::Error;
};

namespace detail {
inline void throw_cuda(cudaError_t status, const char* call, const char* file, int line) {
  throw CudaError("mtlm: CUDA call " + std::string(call) + " failed at " + file + ":" +
                  std::to_string(line) + ": " + cudaGetErrorName(status) + " (" +
                  cudaGetErrorString(status) + ")");
}
inline void throw_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  throw CudaError("mtlm: cuBLAS call " + std::string(call) + " failed at " + file + ":" +
                  std::to_string(line) + ": " + cublasGetStatusName(status) + " (" +
                  cublasGetStatusString(status) + ")");
}
}  // namespace detail

#define MTLM_CUDA_CHECK(call)                                                              \
  do {                                                                                      \
    if (const cudaError_t mtlm_status_ = (call); mtlm_status_ != cudaSuccess)               \
      ::mtlm::cuda::detail::throw_cuda(mtlm_status_, #call, __FILE__, __LINE__);            \
  } while (0)

#define MTLM_CUBLAS_CHECK(call)                                                            \
  do {                                                                                      \
    if (const cublasStatus_t mtlm_status_ = (call); mtlm_status_ != CUBLAS_STATUS_SUCCESS)  \
      ::mtlm::cuda::detail::throw_cublas(mtlm_status_, #call, __FILE__, __LINE__);          \
  } while (0)

/// Reports a failed kernel launch (bad configuration, no device) where it happened.
#define MTLM_CUDA_CHECK_LAUNCH() MTLM_CUDA_CHECK(cudaPeekAtLastError())

/// Number of CUDA devices; 0 when there is no device or no driver (never throws).
inline int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

/// How cuBLAS may round float products. Full fp32 is the default; TF32 tensor cores are an
/// explicit opt-in because they keep only 10 mantissa bits of each input.
enum class MathMode { fp32, tf32 };

/// Process-wide stream and cuBLAS handle, created on first use on the current device.
class Context {
 public:
  static Context& get() {
    static Context context;
    return context;
  }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  /// cuBLAS handles are not safe for concurrent calls; products take this lock.
  std::mutex& blas_mutex() { return blas_mutex_; }

  void set_math_mode(MathMode mode) {
    std::lock_guard lock(blas_mutex_);
    MTLM_CUBLAS_CHECK(cublasSetMathMode(
        blas_, mode == MathMode::tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  }
  void synchronize() const { MTLM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

 private:
  Context() {
    MTLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MTLM_CUBLAS_CHECK(cublasCreate(&blas_));
    MTLM_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    MTLM_CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
  }
  // Deliberately never destroyed: static destructors may run after the driver has shut down.
  ~Context() = default;

  cudaStream_t stream_{};
  cublasHandle_t blas_{};
  std::mutex blas_mutex_;
};

inline cudaStream_t stream() { return Context::get().stream(); }

/// Waits until every queued kernel and copy has finished (for timing and at program edges).
inline void synchronize() { Context::get().synchronize(); }

/// Opts float matrix products in or out of TF32 tensor cores (see MathMode).
inline void set_math_mode(MathMode mode) { Context::get().set_math_mode(mode); }

}  // namespace mtlm::cuda
