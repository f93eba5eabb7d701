// @brief The CUDA backend policy: device memory from the caching pool, matrix products through
// cuBLAS, and the element-wise vocabulary of the Backend concept as device kernels. Layers are
// unchanged: a model instantiated with `Cuda` instead of `Cpu` runs every step on the GPU, and
// data crosses the bus only at the edges (token ids in, losses and predictions out).
#pragma once

#include "mtlm/backend/backend.hpp"
#include "mtlm/backend/cuda/launch.hpp"
#include "mtlm/backend/cuda/memory_pool.hpp"
#include "mtlm/backend/cuda/pinned_staging.hpp"
#include "mtlm/backend/cuda/runtime.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <mutex>
#include <numbers>
#include <type_traits>
#include <vector>

namespace mtlm::backend {

struct Cuda {
  static constexpr std::string_view name = "cuda";
  static constexpr bool is_host = false;

  // ---- storage -------------------------------------------------------------------------------
  template <class S>
  static S* allocate(Index n) {
    if (n <= 0) return nullptr;
    return static_cast<S*>(cuda::MemoryPool::get().allocate(static_cast<std::size_t>(n) * sizeof(S)));
  }
  template <class S>
  static void deallocate(S* p, Index) {
    cuda::MemoryPool::get().deallocate(p);
  }
  /// dst (possibly strided) = a contiguous host rows x cols array; queued, and `host` may be
  /// reused as soon as this returns.
  template <class S>
  static void upload(const S* host, MatrixView<S> dst) {
    if (dst.size() == 0) return;
    cuda::PinnedStaging::get().copy_to_device_2d(dst.data, pitch(dst), host, row_bytes(dst),
                                                 static_cast<std::size_t>(dst.cols));
  }
  /// A contiguous host array = src; waits for the copy (and so for all work queued before it).
  template <class S>
  static void download(ConstView<S> src, S* host) {
    if (src.size() == 0) return;
    MTLM_CUDA_CHECK(cudaMemcpy2DAsync(host, row_bytes(src), src.data, pitch(src), row_bytes(src),
                                      static_cast<std::size_t>(src.cols), cudaMemcpyDeviceToHost,
                                      cuda::stream()));
    cuda::synchronize();
  }
  template <class S>
  static void download(MatrixView<S> src, S* host) {
    download(ConstView<S>(src), host);
  }

  // ---- level 1 -------------------------------------------------------------------------------
  template <class S>
  static void fill(MatrixView<S> y, S value) {
    cuda::for_each_element(y.rows, y.cols,
                           [=] __device__(Index r, Index c) { cuda::at(y, r, c) = value; });
  }
  template <class S>
  static void copy(In<S> x, MatrixView<S> y) {
    if (y.size() == 0) return;
    MTLM_CUDA_CHECK(cudaMemcpy2DAsync(y.data, pitch(y), x.data, pitch(x), row_bytes(y),
                                      static_cast<std::size_t>(y.cols), cudaMemcpyDeviceToDevice,
                                      cuda::stream()));
  }
  template <class S>
  static void scale(MatrixView<S> y, S s) {
    cuda::for_each_element(y.rows, y.cols, [=] __device__(Index r, Index c) { cuda::at(y, r, c) *= s; });
  }
  template <class S>
  static void axpy(S a, In<S> x, MatrixView<S> y) {
    cuda::for_each_element(y.rows, y.cols, [=] __device__(Index r, Index c) {
      cuda::at(y, r, c) += a * cuda::at(x, r, c);
    });
  }
  template <class S>
  static void multiply(In<S> a, In<S> b, MatrixView<S> y) {
    cuda::for_each_element(y.rows, y.cols, [=] __device__(Index r, Index c) {
      cuda::at(y, r, c) = cuda::at(a, r, c) * cuda::at(b, r, c);
    });
  }
  /// Sum of a .* b, reduced on the device in a fixed order (one block), returned to the host.
  template <class T, class U>
  static std::remove_const_t<T> dot(MatrixView<T> a, MatrixView<U> b) {
    using S = std::remove_const_t<T>;
    static_assert(std::is_same_v<S, std::remove_const_t<U>>);
    const ConstView<S> x = a, y = b;
    cuda::DeviceBuffer<S> result(1);
    S* out = result.data();
    const Index rows = x.rows, n = x.size();
    // One warp walks the whole matrix: dot is for tests and scalars, not a hot path.
    cuda::for_each_column_warp(1, [=] __device__(Index, int lane) {
      S sum = S(0);
      for (Index i = lane; i < n; i += 32) sum += cuda::at(x, i % rows, i / rows) * cuda::at(y, i % rows, i / rows);
      sum = cuda::warp_sum(sum);
      if (lane == 0) *out = sum;
    });
    S host{};
    cuda::to_host(static_cast<const S*>(out), std::span<S>(&host, 1));
    return host;
  }

  // ---- level 3 -------------------------------------------------------------------------------
  template <class S>
  static void gemm(Transpose ta, Transpose tb, S alpha, In<S> a, In<S> b, S beta,
                   MatrixView<S> c) {
    if (c.rows == 0 || c.cols == 0) return;
    const Index depth = ta == Transpose::no ? a.cols : a.rows;
    const auto op = [](Transpose t) { return t == Transpose::no ? CUBLAS_OP_N : CUBLAS_OP_T; };
    auto& context = cuda::Context::get();
    std::lock_guard lock(context.blas_mutex());
    const auto m = static_cast<int>(c.rows), n = static_cast<int>(c.cols),
               k = static_cast<int>(depth);
    const auto lda = static_cast<int>(std::max<Index>(a.stride, 1)),
               ldb = static_cast<int>(std::max<Index>(b.stride, 1)),
               ldc = static_cast<int>(c.stride);
    if constexpr (std::is_same_v<S, float>)
      MTLM_CUBLAS_CHECK(cublasSgemm(context.blas(), op(ta), op(tb), m, n, k, &alpha, a.data, lda,
                                    b.data, ldb, &beta, c.data, ldc));
    else
      MTLM_CUBLAS_CHECK(cublasDgemm(context.blas(), op(ta), op(tb), m, n, k, &alpha, a.data, lda,
                                    b.data, ldb, &beta, c.data, ldc));
  }

  // ---- bias ----------------------------------------------------------------------------------
  template <class S>
  static void add_bias(In<S> bias, MatrixView<S> y) {
    cuda::for_each_element(y.rows, y.cols, [=] __device__(Index r, Index c) {
      cuda::at(y, r, c) += bias.data[r];
    });
  }
  /// y = beta y + x 1 as one cuBLAS matrix-vector product with a cached vector of ones.
  template <class S>
  static void sum_columns(In<S> x, S beta, MatrixView<S> y) {
    if (x.rows == 0) return;
    if (x.cols == 0) {
      if (beta != S(1)) scale(y, beta);
      return;
    }
    const S* ones = ones_vector<S>(x.cols);
    auto& context = cuda::Context::get();
    std::lock_guard lock(context.blas_mutex());
    const S alpha = S(1);
    const auto m = static_cast<int>(x.rows), n = static_cast<int>(x.cols),
               lda = static_cast<int>(x.stride);
    if constexpr (std::is_same_v<S, float>)
      MTLM_CUBLAS_CHECK(cublasSgemv(context.blas(), CUBLAS_OP_N, m, n, &alpha, x.data, lda, ones, 1,
                                    &beta, y.data, 1));
    else
      MTLM_CUBLAS_CHECK(cublasDgemv(context.blas(), CUBLAS_OP_N, m, n, &alpha, x.data, lda, ones, 1,
                                    &beta, y.data, 1));
  }

  // ---- activations ---------------------------------------------------------------------------
  template <Activation A, class S>
  static void activate(In<S> x, MatrixView<S> y) {
    cuda::for_each_element(y.rows, y.cols, [=] __device__(Index r, Index c) {
      cuda::at(y, r, c) = apply<A>(cuda::at(x, r, c));
    });
  }
  template <Activation A, class S>
  static void activate_backward(In<S> x, In<S> y, In<S> dy, MatrixView<S> dx) {
    cuda::for_each_element(dx.rows, dx.cols, [=] __device__(Index r, Index c) {
      cuda::at(dx, r, c) = cuda::at(dy, r, c) * derivative<A>(cuda::at(x, r, c), cuda::at(y, r, c));
    });
  }

  /// Host threads are not the GPU's parallelism: these exist so code written for Cpu compiles.
  static void set_threads(int) {}
  static int threads() { return 1; }

  template <Activation A, class S>
  __device__ static S apply(S x) {
    if constexpr (A == Activation::identity)
      return x;
    else if constexpr (A == Activation::relu)
      return x > S(0) ? x : S(0);
    else if constexpr (A == Activation::tanh)
      return tanh(x);
    else if constexpr (A == Activation::sigmoid)
      return cuda::sigmoid(x);
    else
      return S(0.5) * x * (S(1) + erf(x * S(std::numbers::sqrt2 / 2)));
  }
  /// f'(x) from whichever of x and y = f(x) is cheaper (as the CPU policy).
  template <Activation A, class S>
  __device__ static S derivative(S x, S y) {
    if constexpr (A == Activation::identity)
      return S(1);
    else if constexpr (A == Activation::relu)
      return x > S(0) ? S(1) : S(0);
    else if constexpr (A == Activation::tanh)
      return S(1) - y * y;
    else if constexpr (A == Activation::sigmoid)
      return y * (S(1) - y);
    else
      return S(0.5) * (S(1) + erf(x * S(std::numbers::sqrt2 / 2))) +
             x * S(std::numbers::inv_sqrtpi * std::numbers::sqrt2 / 2) * exp(S(-0.5) * x * x);
  }

 private:
  template <class S>
  static std::size_t pitch(MatrixView<S> v) {
    return static_cast<std::size_t>(std::max<Index>(v.stride, v.rows)) * sizeof(S);
  }
  template <class S>
  static std::size_t row_bytes(MatrixView<S> v) {
    return static_cast<std::size_t>(v.rows) * sizeof(S);
  }

  /// A device vector of at least n ones, grown on demand and kept for the process.
  template <class S>
  static const S* ones_vector(Index n) {
    static std::mutex mutex;
    static S* ones = nullptr;
    static Index size = 0;
    std::lock_guard lock(mutex);
    if (n > size) {
      const Index grown = std::max<Index>(n, 2 * size);
      S* fresh = allocate<S>(grown);
      fill(MatrixView<S>(fresh, grown, 1), S(1));
      if (ones) deallocate(ones, size);
      ones = fresh;
      size = grown;
    }
    return ones;
  }
};

static_assert(Backend<Cuda>, "the CUDA policy must model the Backend concept");

}  // namespace mtlm::backend

namespace mtlm {
using backend::Cuda;
}  // namespace mtlm
