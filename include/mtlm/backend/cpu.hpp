// @brief The CPU backend: host memory and Eigen kernels. Matrix products go to register-tiled
// kernels: A read in place for few columns or a shallow depth (narrow_gemm.hpp), A packed in
// panels for the rest (panel_gemm.hpp), in row bands per thread when built with OpenMP; Eigen's
// GEMM takes what remains (single columns; a transposed A times few columns, where neither the
// transposed kernel in narrow_gemm.hpp nor packing pays). Element-wise kernels use Eigen's
// vectorised array functions so that tanh, logistic and erf run in SIMD registers.
#pragma once

#include "mtlm/backend/backend.hpp"
#include "mtlm/backend/narrow_gemm.hpp"
#include "mtlm/backend/panel_gemm.hpp"
#include "mtlm/backend/thread_buffer.hpp"

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#if defined(_OPENMP)
#include <omp.h>
#endif

// MTLM_USE_CBLAS: large float and double products go to a CBLAS (OpenBLAS, BLIS, MKL), whose
// GEMM is faster than mtlm's own on some machines. Define it and link the library (CMake:
// -DMTLM_BLAS=ON builds mtlm's own programs so). Small products stay with mtlm's kernels, and
// those the unpacked kernel takes (few columns, shallow depth) with it.
#if defined(MTLM_USE_CBLAS)
#include <cblas.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <numbers>

namespace mtlm::backend {

struct Cpu {
  static constexpr std::string_view name = "cpu";
  static constexpr bool is_host = true;

  template <class S>
  using EigenMatrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;

  /// Eigen view of a (possibly strided) matrix view.
  template <class S>
  static auto eigen(MatrixView<S> v) {
    using M = std::conditional_t<std::is_const_v<S>, const EigenMatrix<std::remove_const_t<S>>,
                                 EigenMatrix<S>>;
    return Eigen::Map<M, Eigen::Unaligned, Eigen::OuterStride<>>(v.data, v.rows, v.cols,
                                                                 Eigen::OuterStride<>(v.stride));
  }

  // ---- storage -------------------------------------------------------------------------------
  static constexpr std::size_t alignment = 64;

  template <class S>
  static S* allocate(Index n) {
    if (n <= 0) return nullptr;
    const std::size_t bytes = (static_cast<std::size_t>(n) * sizeof(S) + alignment - 1) /
                              alignment * alignment;
    void* p = std::aligned_alloc(alignment, bytes);
    if (!p) throw std::bad_alloc();
    return static_cast<S*>(p);
  }
  template <class S>
  static void deallocate(S* p, Index) {
    std::free(p);
  }
  template <class S>
  static void upload(const S* host, MatrixView<S> dst) {
    eigen(dst) = eigen(ConstView<S>(host, dst.rows, dst.cols));
  }
  template <class S>
  static void download(In<S> src, S* host) {
    eigen(MatrixView<S>(host, src.rows, src.cols)) = eigen(src);
  }

  // ---- level 1 -------------------------------------------------------------------------------
  // Passes over a whole activation matrix (a Transformer's 512 x 1024 feed-forward layer) are
  // split by columns over the threads, like the products: otherwise a second core idles through
  // a quarter of a training step. Each entry is computed as on one thread.
  template <class S>
  static void fill(MatrixView<S> y, S value) {
    in_column_bands(y, [&](Index first, Index count) {
      eigen(y.middle_cols(first, count)).setConstant(value);
    });
  }
  template <class S>
  static void copy(In<S> x, MatrixView<S> y) {
    in_column_bands(y, [&](Index first, Index count) {
      eigen(y.middle_cols(first, count)) = eigen(x.middle_cols(first, count));
    });
  }
  template <class S>
  static void scale(MatrixView<S> y, S s) {
    in_column_bands(y, [&](Index first, Index count) { eigen(y.middle_cols(first, count)) *= s; });
  }
  template <class S>
  static void axpy(S a, In<S> x, MatrixView<S> y) {
    in_column_bands(y, [&](Index first, Index count) {
      eigen(y.middle_cols(first, count)) += a * eigen(x.middle_cols(first, count));
    });
  }
  template <class S>
  static void multiply(In<S> a, In<S> b, MatrixView<S> y) {
    in_column_bands(y, [&](Index first, Index count) {
      eigen(y.middle_cols(first, count)).array() =
          eigen(a.middle_cols(first, count)).array() * eigen(b.middle_cols(first, count)).array();
    });
  }
  /// y = s x in one pass (copy and scale would make two).
  template <class S>
  static void copy_scaled(S s, In<S> x, MatrixView<S> y) {
    in_column_bands(y, [&](Index first, Index count) {
      eigen(y.middle_cols(first, count)) = s * eigen(x.middle_cols(first, count));
    });
  }
  /// y = a + b in one pass (copy and axpy would make two).
  template <class S>
  static void add(In<S> a, In<S> b, MatrixView<S> y) {
    in_column_bands(y, [&](Index first, Index count) {
      eigen(y.middle_cols(first, count)) =
          eigen(a.middle_cols(first, count)) + eigen(b.middle_cols(first, count));
    });
  }

  /// Entries from which an element-wise pass is split over the threads: 64Ki floats take 10-20 us
  /// on one core, against about 1 us to wake a second thread.
  static constexpr Index parallel_pass_min_size = Index{1} << 16;

  /// part(first, count) over y's columns, in one band per thread when y is large (OpenMP builds).
  /// `part` must not throw.
  template <class S, class Part>
  static void in_column_bands(MatrixView<S> y, Part&& part) {
#if defined(_OPENMP)
    const int parts = threads();
    if (parts >= 2 && y.cols >= parts && y.rows * y.cols >= parallel_pass_min_size && !omp_in_parallel()) {
#pragma omp parallel for num_threads(parts)
      for (int p = 0; p < parts; ++p) {
        const Index first = y.cols * p / parts, last = y.cols * (p + 1) / parts;
        part(first, last - first);
      }
      return;
    }
#endif
    part(Index{0}, y.cols);
  }
  template <class T, class U>
  static auto dot(MatrixView<T> a, MatrixView<U> b) {
    static_assert(std::is_same_v<std::remove_const_t<T>, std::remove_const_t<U>>);
    return (eigen(a).array() * eigen(b).array()).sum();
  }

  // ---- level 3 -------------------------------------------------------------------------------
  /// Products of fewer multiply-adds than this run on one thread: waking a second thread (about
  /// 1 us) costs more than it saves below it (measured on two cores: 128 x 16 x 128 takes 3.0 us
  /// on one thread, 3.4-3.6 on two; 256 x 16 x 128 takes 6.0-6.4 us on one, 4.6-5.8 on two). Set
  /// as low as that allows, so that a short sentence's products (512 x 16 x 128 in a small
  /// Transformer) use both cores. On a machine busier than its cores, a descheduled partner can
  /// stall any threaded product for a scheduler time slice; run one thread there.
  static constexpr double parallel_gemm_min_work = 0.5e6;

  template <class S>
  static void gemm(Transpose ta, Transpose tb, S alpha, In<S> a, In<S> b, S beta,
                   MatrixView<S> c) {
    gemm(ta, tb, alpha, a, b, beta, c, static_cast<const S*>(nullptr));
  }

  /// C = alpha op(A) op(B) + beta C + bias in every column (bias: C's rows; null for none). The
  /// unpacked kernel adds the bias as it writes C, so a biased projection passes over C once.
  template <class S>
  static void gemm(Transpose ta, Transpose tb, S alpha, In<S> a, In<S> b, S beta, MatrixView<S> c,
                   const S* bias) {
    const Index depth = ta == Transpose::no ? a.cols : a.rows;
    const bool single_threaded = static_cast<double>(c.rows) * static_cast<double>(c.cols) *
                                     static_cast<double>(depth) < parallel_gemm_min_work;
    const narrow::Operand<S> op_b = tb == Transpose::no ? narrow::Operand<S>{b.data, 1, b.stride}
                                                        : narrow::Operand<S>{b.data, b.stride, 1};
    // A (not transposed) times few columns or over a shallow depth: read A in place rather than
    // pack it. A transposed A would make each entry a dot product, which loses to packing
    // (measured).
    if (ta == Transpose::no && narrow::suits(c.cols, depth)) {
      // At least twice as wide as tall (a Transformer's projections over a batch: 128-384 x 1024
      // x 128): the threads take bands of C's columns, so each reads its part of B and all of A
      // (the smaller) rather than all of B, half of which the other thread has just written.
      // Every entry is summed as on one thread. In Model T's batch-32 inference on two threads,
      // measured against a product of the same runs that did not change: 128 and 130 x 1024 x
      // 128 25-30% faster, 384 x 1024 x 128 7%.
      if (c.cols >= 2 * c.rows) {
        in_bands(c.cols, Index{panel::strip_cols}, single_threaded, [&](Index first, Index last) {
          narrow::gemm(c.rows, last - first, depth, alpha, a.data, a.stride, op_b.from_column(first), beta,
                       c.data + first * c.stride, c.stride, bias);
        });
        return;
      }
      in_row_bands<S>(c.rows, single_threaded, [&](Index first, Index last) {
        narrow::gemm(last - first, c.cols, depth, alpha, a.data + first, a.stride, op_b, beta, c.data + first,
                     c.stride, narrow::bias_from(bias, first));
      });
      return;
    }
    // A transposed times few columns: as its transpose, with A read in place. op(B)^T is copied
    // once, on the calling thread, and shared by the row bands.
    if (ta == Transpose::yes && narrow::suits_transposed<S>(c.rows, c.cols, depth)) {
      S* const bt = thread_buffer<S, Scratch::b_transposed>(narrow::transposed_ld<S>(c.cols) * depth);
      narrow::pack_transposed(op_b, depth, c.cols, bt);
      in_row_bands<S>(c.rows, single_threaded, [&](Index first, Index last) {
        narrow::gemm_transposed(first, last, c.cols, depth, alpha, a.data, a.stride, bt, beta, c.data, c.stride,
                                bias);
      });
      return;
    }
    // Deeper (or A transposed) and wider: the same tiles over panels of A packed for the
    // first-level cache.
#if defined(MTLM_USE_CBLAS)
    const bool to_cblas = !single_threaded && (std::is_same_v<S, float> || std::is_same_v<S, double>);
#else
    const bool to_cblas = false;
#endif
    // A transposed times few columns, over whole panels of rows and a depth of a packet pair or
    // more (attention's blocks of k^T q and v^T dC): packed too (one core, 32 x 32 x 32: 0.6
    // against Eigen's 1.0 us; 256 x 32 x 64: 8.9 against 12.7). With a partial panel, Eigen's
    // is as fast or faster.
    const bool transposed_panels = ta == Transpose::yes && c.cols >= 2 && c.rows % panel::panel_rows<S> == 0 &&
                                   depth >= panel::panel_rows<S>;
    if ((c.cols > narrow::few_columns || transposed_panels) && depth > 0 && !to_cblas) {
      const panel::Source<S> source{a.data, a.stride, ta == Transpose::yes};
      // Each thread packs all of what its band of C needs from the other operand: A's panels
      // for a band of columns, a transposed B's strips for a band of rows. Splitting the longer
      // side of C packs the larger of the two once instead of on every thread (a tied LM head's
      // embedding gradient, 128 x 1000 over 1024 tokens, packs 4 MiB of strips).
      if (tb == Transpose::yes && c.cols > c.rows) {
        in_bands(c.cols, Index{panel::strip_cols}, single_threaded, [&](Index first, Index last) {
          panel::gemm(Index{0}, c.rows, last - first, depth, alpha, source, op_b.from_column(first), beta,
                      c.data + first * c.stride, c.stride, bias);
        });
        return;
      }
      in_row_bands<S>(c.rows, single_threaded, [&](Index first, Index last) {
        panel::gemm(first, last, c.cols, depth, alpha, source, op_b, beta, c.data, c.stride, bias);
      });
      return;
    }
    if (bias) {
      // Eigen's GEMM and a CBLAS accumulate onto C: start it from beta C + bias.
      auto C = eigen(c);
      const auto shift = Eigen::Map<const Eigen::Matrix<S, Eigen::Dynamic, 1>>(bias, c.rows);
      if (beta == S(0))
        C.colwise() = shift;
      else
        C = beta * C + shift.replicate(1, c.cols);
      beta = S(1);
    }
    if (single_threaded) {
      [[maybe_unused]] const SingleThreaded scope;
      gemm_eigen(ta, tb, alpha, a, b, beta, c);
      return;
    }
#if defined(MTLM_USE_CBLAS)
    if constexpr (std::is_same_v<S, float> || std::is_same_v<S, double>)
      if (gemm_cblas(ta, tb, alpha, a, b, beta, c)) return;
#endif
    gemm_eigen(ta, tb, alpha, a, b, beta, c);
  }

 private:
  /// rows(first, last) over C's rows, split into one band of whole two-packet tiles per thread
  /// (the last band the rest) when the product is large: each thread keeps its own panels of A
  /// in its own cache.
  template <class S, class Rows>
  static void in_row_bands(Index rows_total, bool single_threaded, Rows&& rows) {
    in_bands(rows_total, 2 * narrow::packet_size<S>, single_threaded, rows);
  }

  /// part(first, last) over [0, total), split into one band per thread, each a whole number of
  /// `granule`s (the last band the rest), unless `single_threaded`.
  template <class Part>
  static void in_bands(Index total, [[maybe_unused]] Index granule, [[maybe_unused]] bool single_threaded,
                       Part&& part) {
#if defined(_OPENMP)
    const int parts = threads();
    const Index band = (total / granule + parts - 1) / parts * granule;
    if (!single_threaded && parts >= 2 && band > 0 && !omp_in_parallel()) {
#pragma omp parallel for num_threads(parts)
      for (int p = 0; p < parts; ++p) {
        const Index first = std::min(total, p * band);
        const Index last = p == parts - 1 ? total : std::min(total, first + band);
        if (first < last) part(first, last);
      }
      return;
    }
#endif
    part(Index{0}, total);
  }

  /// Runs the enclosing scope's matrix products on the calling thread only.
  struct SingleThreaded {
#if defined(_OPENMP)
    int saved = omp_get_max_threads();
    SingleThreaded() {
      if (saved > 1) omp_set_num_threads(1);
    }
    ~SingleThreaded() {
      if (saved > 1) omp_set_num_threads(saved);
    }
#endif
  };

#if defined(MTLM_USE_CBLAS)
  /// The product through the linked CBLAS (column-major, as the views); false, and nothing done,
  /// for shapes a 32-bit CBLAS cannot take.
  template <class S>
  static bool gemm_cblas(Transpose ta, Transpose tb, S alpha, In<S> a, In<S> b, S beta,
                         MatrixView<S> c) {
    // A one-column view's stride may be anything; CBLAS wants a leading dimension >= rows.
    auto leading = [](const auto& v) { return v.cols > 1 ? v.stride : std::max(v.stride, v.rows); };
    const Index depth = ta == Transpose::no ? a.cols : a.rows;
    const Index lda = leading(a), ldb = leading(b), ldc = leading(c);
    constexpr Index int_max = std::numeric_limits<int>::max();
    if (std::min({lda, ldb, ldc}) < 1 || std::max({c.rows, c.cols, depth, lda, ldb, ldc}) > int_max)
      return false;
    const auto op = [](Transpose t) { return t == Transpose::no ? CblasNoTrans : CblasTrans; };
    const auto i = [](Index n) { return static_cast<int>(n); };
    if constexpr (std::is_same_v<S, float>)
      cblas_sgemm(CblasColMajor, op(ta), op(tb), i(c.rows), i(c.cols), i(depth), alpha, a.data,
                  i(lda), b.data, i(ldb), beta, c.data, i(ldc));
    else
      cblas_dgemm(CblasColMajor, op(ta), op(tb), i(c.rows), i(c.cols), i(depth), alpha, a.data,
                  i(lda), b.data, i(ldb), beta, c.data, i(ldc));
    return true;
  }
#endif

  template <class S>
  static void gemm_eigen(Transpose ta, Transpose tb, S alpha, In<S> a, In<S> b, S beta,
                         MatrixView<S> c) {
    auto C = eigen(c);
    if (beta == S(0))
      C.setZero();
    else if (beta != S(1))
      C *= beta;
    const auto A = eigen(a);
    const auto B = eigen(b);
    if (ta == Transpose::no && tb == Transpose::no)
      C.noalias() += alpha * A * B;
    else if (ta == Transpose::no)
      C.noalias() += alpha * A * B.transpose();
    else if (tb == Transpose::no)
      C.noalias() += alpha * A.transpose() * B;
    else
      C.noalias() += alpha * A.transpose() * B.transpose();
  }


 public:
  // ---- bias ----------------------------------------------------------------------------------
  template <class S>
  static void add_bias(In<S> bias, MatrixView<S> y) {
    eigen(y).colwise() += eigen(bias).col(0);
  }
  /// Split by rows over the threads when x is large (bias gradients over a whole batch): each
  /// row's sum runs over the columns in order, as on one thread.
  template <class S>
  static void sum_columns(In<S> x, S beta, MatrixView<S> y) {
    in_row_bands<S>(x.rows, x.rows * x.cols < parallel_pass_min_size, [&](Index first, Index last) {
      const auto X = eigen(x.middle_rows(first, last - first));
      auto Y = eigen(y.middle_rows(first, last - first)).col(0);
      if (beta == S(0))
        Y = X.rowwise().sum();
      else
        Y = beta * Y + X.rowwise().sum();
    });
  }

  // ---- activations ---------------------------------------------------------------------------
  template <Activation A, class S>
  static void activate(In<S> x, MatrixView<S> y) {
    in_column_bands(y, [&](Index first, Index count) {
      activate_columns<A, S>(x.middle_cols(first, count), y.middle_cols(first, count));
    });
  }

  /// dx = dy .* f'(x), using whichever of x and y = f(x) is cheaper.
  template <Activation A, class S>
  static void activate_backward(In<S> x, In<S> y, In<S> dy, MatrixView<S> dx) {
    in_column_bands(dx, [&](Index first, Index count) {
      activate_backward_columns<A, S>(x.middle_cols(first, count), y.middle_cols(first, count),
                                      dy.middle_cols(first, count), dx.middle_cols(first, count));
    });
  }

 private:
  template <Activation A, class S>
  static void activate_columns(In<S> x, MatrixView<S> y) {
    const auto X = eigen(x).array();
    auto Y = eigen(y).array();
    if constexpr (A == Activation::identity)
      Y = X;
    else if constexpr (A == Activation::relu)
      Y = X.max(S(0));
    else if constexpr (A == Activation::tanh)
      Y = X.tanh();
    else if constexpr (A == Activation::sigmoid)
      Y = X.logistic();
    else
      Y = S(0.5) * X * (S(1) + (X * S(std::numbers::sqrt2 / 2)).erf());
  }

  template <Activation A, class S>
  static void activate_backward_columns(In<S> x, In<S> y, In<S> dy, MatrixView<S> dx) {
    const auto X = eigen(x).array();
    const auto Y = eigen(y).array();
    const auto DY = eigen(dy).array();
    auto DX = eigen(dx).array();
    if constexpr (A == Activation::identity)
      DX = DY;
    else if constexpr (A == Activation::relu)
      DX = (X > S(0)).select(DY, S(0));
    else if constexpr (A == Activation::tanh)
      DX = DY * (S(1) - Y.square());
    else if constexpr (A == Activation::sigmoid)
      DX = DY * Y * (S(1) - Y);
    else {
      const S inv_sqrt2 = S(std::numbers::sqrt2 / 2);
      const S inv_sqrt2pi = S(std::numbers::inv_sqrtpi * std::numbers::sqrt2 / 2);
      DX = DY * (S(0.5) * (S(1) + (X * inv_sqrt2).erf()) +
                 X * inv_sqrt2pi * (S(-0.5) * X.square()).exp());
    }
  }

 public:
  /// Threads used by the calling thread's large matrix products and element-wise passes (OpenMP
  /// builds; a setting of each calling thread, so threads that train models side by side can
  /// each ask for one).
  /// 0 keeps the current setting. Without OpenMP, products always run on the calling thread.
  static void set_threads([[maybe_unused]] int n) {
#if defined(_OPENMP)
    if (n > 0) omp_set_num_threads(n);
#endif
  }
  static int threads() {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
  }
};

static_assert(Backend<Cpu>, "the CPU policy must model the Backend concept");

template <class S>
void add(Cpu, In<S> a, In<S> b, MatrixView<S> y) {
  Cpu::add(a, b, y);
}

template <class S>
void copy_scaled(Cpu, S s, In<S> x, MatrixView<S> y) {
  Cpu::copy_scaled(s, x, y);
}

/// The bias goes in with the product (added as the unpacked kernel writes y, or written first
/// for a packing GEMM to accumulate onto), never as a second pass over y.
template <class S>
void affine(Cpu, Transpose tw, In<S> w, In<S> x, In<S> bias, MatrixView<S> y) {
  Cpu::gemm(tw, Transpose::no, S(1), w, x, S(0), y, bias.data);
}

/// `first` and `second` on two threads when the calling thread may use two for its products
/// (OpenMP builds): pieces such as a bidirectional RNN's directions are chains of products too
/// small for a parallel GEMM to help, but independent of each other. Inside, each piece's own
/// products run on its thread. An exception from either piece is rethrown here.
template <class F, class G>
void run_side_by_side(Cpu, F&& first, G&& second) {
#if defined(_OPENMP)
  if (Cpu::threads() >= 2 && !omp_in_parallel()) {
    std::exception_ptr failures[2];
    // An exception must not leave an OpenMP section: keep it and rethrow after the join.
    auto guarded = [](auto& piece, std::exception_ptr& failure) {
      try {
        piece();
      } catch (...) {
        failure = std::current_exception();
      }
    };
#pragma omp parallel sections num_threads(2)
    {
#pragma omp section
      guarded(first, failures[0]);
#pragma omp section
      guarded(second, failures[1]);
    }
    for (const auto& failure : failures)
      if (failure) std::rethrow_exception(failure);
    return;
  }
#endif
  first();
  second();
}

/// f(i) for every i in [0, count), spread over the calling thread's product threads when the
/// whole job is worth at least `parallel_gemm_min_work` multiply-adds (`work`): for many small
/// independent products (attention's sequence x head blocks), each of which alone is too small
/// for a parallel GEMM. Iterations must touch disjoint outputs and must not throw.
template <class F>
void parallel_for(Cpu, Index count, double work, F&& f) {
#if defined(_OPENMP)
  if (Cpu::threads() >= 2 && count >= 2 && work >= Cpu::parallel_gemm_min_work && !omp_in_parallel()) {
#pragma omp parallel for schedule(dynamic) num_threads(Cpu::threads())
    for (Index i = 0; i < count; ++i) f(i);
    return;
  }
#endif
  (void)work;
  for (Index i = 0; i < count; ++i) f(i);
}

}  // namespace mtlm::backend

namespace mtlm {
using backend::Cpu;
}  // namespace mtlm
