// @brief Matrix products with a handful of columns (C = alpha A op(B) + beta C, op(B) of at most
// `narrow::max_cols` columns: one short sentence, one recurrent step of a small batch) that
// read A where it lies. Eigen's GEMM copies all of A into cache-friendly panels on every call;
// that pays off over many columns, but at 16 it costs as much as the arithmetic (perf of a
// 16-token forward of a small Transformer: 33% of the time packing weights, 35% multiplying).
#pragma once

#include "mtlm/core/config.hpp"

#include <Eigen/Core>

// The tile loops must unroll fully for the accumulators to live in registers.
// (nvcc's front end knows neither spelling in host code; there the host compiler's -O3 decides.)
#if defined(__CUDACC__)
#define MTLM_UNROLL
#elif defined(__clang__)
#define MTLM_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define MTLM_UNROLL _Pragma("GCC unroll 16")
#else
#define MTLM_UNROLL
#endif

namespace mtlm::backend::narrow {

/// The widest op(B) taken here; wider products go to a packing GEMM. Measured on AVX-512 (one
/// thread, float): 115-150 GFLOP/s at 16 and 32 columns where Eigen's GEMM gives 75-100.
inline constexpr Index max_cols = 32;

/// How many columns of A ahead a tile asks the cache for.
inline constexpr Index prefetch_distance = 8;

template <class S>
using Packet = typename Eigen::internal::packet_traits<S>::type;
template <class S>
inline constexpr int packet_size = Eigen::internal::unpacket_traits<Packet<S>>::size;

/// Where op(B)(l, j) lies: b[l * depth_step + j * col_step] (no transpose: depth_step 1).
template <class S>
struct Operand {
  const S* data;
  Index depth_step;
  Index col_step;
  const S& operator()(Index l, Index j) const { return data[l * depth_step + j * col_step]; }
};

/// One tile of C: `Rows` packets of rows by `Cols` columns, kept in registers over the whole
/// depth. Each step loads the tile's part of one column of A and broadcasts `Cols` entries of B.
template <class S, int Rows, int Cols>
inline void tile(Index depth, const S* a, Index lda, Operand<S> b, S alpha, S beta, S* c, Index ldc) {
  using P = Packet<S>;
  constexpr int w = packet_size<S>;
  P acc[Cols][Rows];
  MTLM_UNROLL for (int j = 0; j < Cols; ++j)
    MTLM_UNROLL for (int r = 0; r < Rows; ++r) acc[j][r] = Eigen::internal::pset1<P>(S(0));
  for (Index l = 0; l < depth; ++l) {
    const S* column = a + l * lda;
    // A's columns are far apart (a weight matrix has hundreds of rows): ask for the ones a few
    // steps ahead, as a strided stream may go unnoticed by the hardware prefetcher.
    MTLM_UNROLL for (int r = 0; r < Rows; ++r) Eigen::internal::prefetch(column + prefetch_distance * lda + r * w);
    P av[Rows];
    MTLM_UNROLL for (int r = 0; r < Rows; ++r) av[r] = Eigen::internal::ploadu<P>(column + r * w);
    MTLM_UNROLL for (int j = 0; j < Cols; ++j) {
      const P bv = Eigen::internal::pset1<P>(b(l, j));
      MTLM_UNROLL for (int r = 0; r < Rows; ++r) acc[j][r] = Eigen::internal::pmadd(av[r], bv, acc[j][r]);
    }
  }
  const P pa = Eigen::internal::pset1<P>(alpha), pb = Eigen::internal::pset1<P>(beta);
  MTLM_UNROLL for (int j = 0; j < Cols; ++j)
    MTLM_UNROLL for (int r = 0; r < Rows; ++r) {
      S* out = c + j * ldc + r * w;
      // beta = 0 never reads C (BLAS semantics: it may hold anything, NaN included).
      const P v = beta == S(0) ? Eigen::internal::pmul(pa, acc[j][r])
                               : Eigen::internal::pmadd(pb, Eigen::internal::ploadu<P>(out),
                                                        Eigen::internal::pmul(pa, acc[j][r]));
      Eigen::internal::pstoreu(out, v);
    }
}

/// Rows [first, rows) of C, fewer than a packet, one dot product each.
template <class S>
inline void remainder_rows(Index first, Index rows, Index cols, Index depth, const S* a, Index lda,
                           Operand<S> b, S alpha, S beta, S* c, Index ldc) {
  for (Index j = 0; j < cols; ++j)
    for (Index i = first; i < rows; ++i) {
      S sum(0);
      for (Index l = 0; l < depth; ++l) sum += a[i + l * lda] * b(l, j);
      S& out = c[i + j * ldc];
      out = beta == S(0) ? alpha * sum : beta * out + alpha * sum;
    }
}

/// Rows of C that do not fill a packet, when C has at least one: the packet that ends at the
/// last row is computed into scratch, and only its rows past `first` are merged into C (writing
/// the packet in place would apply beta twice to the rows it shares with the tile before).
template <class S, int Cols>
inline void last_partial_packet(Index first, Index rows, Index depth, const S* a, Index lda, Operand<S> b,
                                S alpha, S beta, S* c, Index ldc) {
  constexpr int w = packet_size<S>;
  alignas(64) S scratch[w * Cols];
  const Index start = rows - w;
  tile<S, 1, Cols>(depth, a + start, lda, b, alpha, S(0), scratch, w);
  for (int j = 0; j < Cols; ++j)
    for (Index i = first; i < rows; ++i) {
      S& out = c[i + j * ldc];
      out = beta == S(0) ? scratch[i - start + j * w] : beta * out + scratch[i - start + j * w];
    }
}

/// Rows [first, first + count) of C, count <= 2 packets, every column: the rows' panel of A
/// stays in the first-level cache while each block of columns streams past it.
template <class S, int Rows>
inline void row_block(Index first, Index cols, Index depth, const S* a, Index lda, Operand<S> b, S alpha,
                      S beta, S* c, Index ldc) {
  a += first;
  c += first;
  Index j = 0;
  for (; j + 8 <= cols; j += 8)
    tile<S, Rows, 8>(depth, a, lda, {b.data + j * b.col_step, b.depth_step, b.col_step}, alpha, beta,
                     c + j * ldc, ldc);
  if (j + 4 <= cols) {
    tile<S, Rows, 4>(depth, a, lda, {b.data + j * b.col_step, b.depth_step, b.col_step}, alpha, beta,
                     c + j * ldc, ldc);
    j += 4;
  }
  for (; j < cols; ++j)
    tile<S, Rows, 1>(depth, a, lda, {b.data + j * b.col_step, b.depth_step, b.col_step}, alpha, beta,
                     c + j * ldc, ldc);
}

/// C (rows x cols, leading dimension ldc) = alpha A op(B) + beta C, A column-major (rows x
/// depth, leading dimension lda), cols <= max_cols.
template <class S>
void gemm(Index rows, Index cols, Index depth, S alpha, const S* a, Index lda, Operand<S> b, S beta, S* c,
          Index ldc) {
  constexpr int w = packet_size<S>;
  Index i = 0;
  for (; i + 2 * w <= rows; i += 2 * w) row_block<S, 2>(i, cols, depth, a, lda, b, alpha, beta, c, ldc);
  for (; i + w <= rows; i += w) row_block<S, 1>(i, cols, depth, a, lda, b, alpha, beta, c, ldc);
  if (i == rows) return;
  if (rows < w) {
    remainder_rows(i, rows, cols, depth, a, lda, b, alpha, beta, c, ldc);
    return;
  }
  for (Index j = 0; j < cols; ++j)
    last_partial_packet<S, 1>(i, rows, depth, a, lda, {b.data + j * b.col_step, b.depth_step, b.col_step},
                              alpha, beta, c + j * ldc, ldc);
}

}  // namespace mtlm::backend::narrow

#undef MTLM_UNROLL
