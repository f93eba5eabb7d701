// @brief Matrix products C = alpha A op(B) + beta C that read A where it lies instead of packing
// it: those with a few dozen columns (one short sentence, one recurrent step of a small batch),
// and wider ones over a shallow depth. Eigen's GEMM copies all of A into cache-friendly panels on
// every call; that pays off over many columns of a deep product, but at 16 columns it costs as
// much as the arithmetic (perf of a 16-token forward of a small Transformer: 33% of the time
// packing weights, 35% multiplying). A transposed A times a few dozen columns, C = alpha A^T op(B)
// + beta C, runs as its transpose with the same tiles (gemm_transposed), A read in place too.
#pragma once

#include "mtlm/backend/thread_buffer.hpp"
#include "mtlm/backend/unroll.hpp"
#include "mtlm/core/config.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cstdint>

namespace mtlm::backend::narrow {

/// Columns up to which A is never copied: over so few, a copy would cost as much as the product.
inline constexpr Index few_columns = 32;

/// Whether a product of this shape runs faster with A read in place than with A packed (per
/// thread). Up to 32 columns always (AVX-512, float: 115-150 GFLOP/s at 16 and 32 columns where
/// Eigen's GEMM gives 75-100). Wider, while the panel of A that a tile keeps (2 packets x depth)
/// fits the first-level cache: to depth 128; past it every block of columns reads the panel
/// again from further out (depth 1024, 512 columns: 61 against 108), and panel_gemm.hpp packs it.
inline bool suits(Index cols, Index depth) { return cols >= 2 && (cols <= few_columns || depth <= 128); }

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
  Operand from_column(Index j) const { return {data + j * col_step, depth_step, col_step}; }
};

/// One tile of C: `Rows` packets of rows by `Cols` columns, kept in registers over the whole
/// depth. Each step loads the tile's part of one column of A and broadcasts `Cols` entries of B.
/// `bias` (the tile's rows; may be null) is added to every column as the tile is written, so a
/// biased projection writes C once. `b(l, j)` gives op(B)'s entries (an Operand, or any accessor
/// whose layout the compiler can see).
template <class S, int Rows, int Cols, class B = Operand<S>>
inline void tile(Index depth, const S* a, Index lda, B b, S alpha, S beta, const S* bias, S* c, Index ldc) {
  using P = Packet<S>;
  constexpr int w = packet_size<S>;
  P acc[Cols][Rows];
  MTLM_UNROLL for (int j = 0; j < Cols; ++j)
    MTLM_UNROLL for (int r = 0; r < Rows; ++r) acc[j][r] = Eigen::internal::pset1<P>(S(0));
  const auto step = [&](Index l) {
    const S* column = a + l * lda;
    // A's columns are far apart (a weight matrix has hundreds of rows): ask for the ones a few
    // steps ahead, as a strided stream may go unnoticed by the hardware prefetcher. (Near the
    // end this names addresses past A; a prefetch never faults.)
    const S* ahead = column + prefetch_distance * lda;
    MTLM_UNROLL for (int r = 0; r < Rows; ++r) Eigen::internal::prefetch(ahead + r * w);
    P av[Rows];
    MTLM_UNROLL for (int r = 0; r < Rows; ++r) av[r] = Eigen::internal::ploadu<P>(column + r * w);
    MTLM_UNROLL for (int j = 0; j < Cols; ++j) {
      const P bv = Eigen::internal::pset1<P>(b(l, j));
      MTLM_UNROLL for (int r = 0; r < Rows; ++r) acc[j][r] = Eigen::internal::pmadd(av[r], bv, acc[j][r]);
    }
  };
  // The first steps also ask for the tile's part of C, one column each, with intent to write: a
  // layer's output is megabytes (a 1000-word LM head's logits over 1024 tokens are 4 MiB), a
  // tile's columns lie pages apart, and a store that misses every cache stalls the tile. Asked
  // for while the depth runs, the lines are there when it ends (one core, C not cached:
  // 512 x 1024 x 128 from 1069 to 925 us; A transposed, 1000 x 1024 x 128, from 2356 to 2057).
  // The last address covers a column not aligned to cache lines.
  Index l = 0;
  for (; l < std::min<Index>(depth, Cols); ++l) {
    MTLM_UNROLL for (int r = 0; r < Rows; ++r) __builtin_prefetch(c + l * ldc + r * w, 1);
    __builtin_prefetch(c + l * ldc + Rows * w - 1, 1);
    step(l);
  }
  for (; l < depth; ++l) step(l);
  const P pa = Eigen::internal::pset1<P>(alpha), pb = Eigen::internal::pset1<P>(beta);
  P shift[Rows];
  MTLM_UNROLL for (int r = 0; r < Rows; ++r)
    shift[r] = bias ? Eigen::internal::ploadu<P>(bias + r * w) : Eigen::internal::pset1<P>(S(0));
  MTLM_UNROLL for (int j = 0; j < Cols; ++j)
    MTLM_UNROLL for (int r = 0; r < Rows; ++r) {
      S* out = c + j * ldc + r * w;
      // As merge(), a packet at a time.
      const P scaled = Eigen::internal::pmadd(pa, acc[j][r], shift[r]);
      const P v = beta == S(0) ? scaled : Eigen::internal::pmadd(pb, Eigen::internal::ploadu<P>(out), scaled);
      Eigen::internal::pstoreu(out, v);
    }
}

/// One entry of C from its product (bias included): beta = 0 never reads C (BLAS semantics: it
/// may hold anything, NaN included).
template <class S>
inline void merge(S& out, S product, S beta) {
  out = beta == S(0) ? product : beta * out + product;
}

/// bias[i], or 0 without a bias.
template <class S>
inline S bias_at(const S* bias, Index i) {
  return bias ? bias[i] : S(0);
}

/// The bias from row i on, or null without a bias.
template <class S>
inline const S* bias_from(const S* bias, Index i) {
  return bias ? bias + i : nullptr;
}

/// Rows [first, rows) of C, fewer than a packet, one dot product each.
template <class S>
inline void remainder_rows(Index first, Index rows, Index cols, Index depth, const S* a, Index lda,
                           Operand<S> b, S alpha, S beta, const S* bias, S* c, Index ldc) {
  for (Index j = 0; j < cols; ++j)
    for (Index i = first; i < rows; ++i) {
      S sum(0);
      for (Index l = 0; l < depth; ++l) sum += a[i + l * lda] * b(l, j);
      merge(c[i + j * ldc], alpha * sum + bias_at(bias, i), beta);
    }
}

/// Columns of the widest tile. Its accumulators (two packets of rows per column), the two packets
/// of A and the broadcast entry of B must all fit the vector registers, or the accumulators spill
/// to the stack and every multiply-add waits on a load and a store: 8 columns with AVX-512's 32
/// registers, 6 with AVX2's 16 (8 there, 2 x 8 + 3 > 16 registers, made one core of a Zen 3
/// machine run a small Transformer's training step 20% slower and its matrix products 13%).
inline constexpr int widest_tile_cols =
    std::min(8, (static_cast<int>(EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS) - 3) / 2);

/// f.template operator()<Cols>(j) with Cols = `width`, for a width from 4 to the widest tile's.
template <int Cols = widest_tile_cols, class F>
inline void with_tile_width(int width, Index j, F& f) {
  if constexpr (Cols > 4)
    if (width < Cols) return with_tile_width<Cols - 1>(width, j, f);
  f.template operator()<Cols>(j);
}

/// f.template operator()<Cols>(j) over C's columns in tiles: the widest, except that the last of
/// those and the columns past it make two tiles as even as possible when both have 4 or more.
/// With 6-column tiles, 16 columns as 6 + 5 + 5 ran 17% faster than as 6 + 6 + 4 (a 4-column
/// tile's 8 accumulators barely cover the multiply-add latency). Fewer columns left: 4, then
/// single ones.
template <class F>
inline void for_column_blocks(Index cols, F&& f) {
  constexpr int widest = widest_tile_cols;
  Index j = 0;
  for (; cols - j >= 2 * widest; j += widest) f.template operator()<widest>(j);
  const Index tail = cols - j;
  if (tail > widest && tail >= 8) {
    const int first = static_cast<int>(tail + 1) / 2;
    with_tile_width(first, j, f);
    with_tile_width(static_cast<int>(tail) - first, j + first, f);
    return;
  }
  if (tail >= widest) {
    f.template operator()<widest>(j);
    j += widest;
  }
  if constexpr (widest > 4)
    if (cols - j >= 4) {
      f.template operator()<4>(j);
      j += 4;
    }
  for (; j < cols; ++j) f.template operator()<1>(j);
}

/// `Rows` packets of rows of C, every column: the rows' panel of A stays in the first-level
/// cache while the blocks of columns stream past it.
template <class S, int Rows>
inline void row_block(Index cols, Index depth, const S* a, Index lda, Operand<S> b, S alpha, S beta,
                      const S* bias, S* c, Index ldc) {
  for_column_blocks(cols, [&]<int Cols>(Index j) {
    tile<S, Rows, Cols>(depth, a, lda, b.from_column(j), alpha, beta, bias, c + j * ldc, ldc);
  });
}

/// Copies `Rows` packets of rows of A (column-major, leading dimension lda) over `depth` columns
/// into `out`, one column after another. A's columns lie lda apart, a stream the hardware
/// prefetcher may not follow: the copy asks for the columns a few steps ahead, as a tile does.
template <class S, int Rows>
inline void copy_rows(Index depth, const S* a, Index lda, S* out) {
  constexpr int w = packet_size<S>;
  constexpr Index line = 64 / Index{sizeof(S)};
  for (Index l = 0; l < depth; ++l) {
    const S* src = a + l * lda;
    const S* ahead = src + prefetch_distance * lda;
    for (Index i = 0; i < Rows * w; i += line) Eigen::internal::prefetch(ahead + i);
    Eigen::internal::prefetch(ahead + Rows * w - 1);
    MTLM_UNROLL for (int r = 0; r < Rows; ++r)
      Eigen::internal::pstoreu(out + l * Rows * w + r * w, Eigen::internal::ploadu<Packet<S>>(src + r * w));
  }
}

/// Whether the two-packet row blocks read their slice of A (2 packets x depth) from a contiguous
/// copy. A tile reads the slice column by column, and the next tile of the row reads it again
/// from the first-level cache, if it stayed there. A leading dimension of 2^k cache lines puts
/// the slice's columns into only 64 / 2^k of that cache's 64 sets, 8 lines each where it is
/// 8-way: 512 floats (2 KiB) leave 2 sets, 16 lines for 128 columns, and every tile reads A
/// from the second-level cache again. Copied, it occupies every set. One core (Zen 3), best of
/// many: 512 x 1024 x 128 from 52 to 77 GFLOP/s, 384 and 128 rows 3-7% faster, 512 x 32 x 128
/// from 47 to 68. The copy is repaid over many tiles (from 33 columns), or over few where the cache
/// keeps a quarter of the slice or less (512 x 16 x 128, an eighth: 55 to 63); 384 x 16 x 128
/// (half) lost 13% copied.
template <class S>
inline bool copies_a_slices(Index cols, Index depth, Index lda) {
  constexpr Index line_bytes = 64, l1_sets = 64, l1_ways = 8;
  constexpr Index slice_lines = (2 * packet_size<S> * Index{sizeof(S)} + line_bytes - 1) / line_bytes;
  const Index lda_bytes = lda * Index{sizeof(S)};
  if (lda_bytes % line_bytes != 0) return false;  // the columns drift across the sets
  const int crowding = std::min(std::countr_zero(static_cast<std::uint64_t>(lda_bytes / line_bytes)), 6);
  const Index sets = std::min(l1_sets, (l1_sets >> crowding) * slice_lines);
  const Index kept = sets * l1_ways, needed = depth * slice_lines;
  return cols > few_columns ? kept < needed : 4 * kept <= needed;
}

/// Rows [first, rows) of C, fewer than a packet but rows >= a packet: the packet that ends at
/// the last row is computed into scratch, and only its rows from `first` are merged into C
/// (writing the packet in place would apply beta twice to the rows it shares with the tile
/// before).
template <class S>
inline void last_partial_packet(Index first, Index rows, Index cols, Index depth, const S* a, Index lda,
                                Operand<S> b, S alpha, S beta, const S* bias, S* c, Index ldc) {
  constexpr int w = packet_size<S>;
  const Index start = rows - w;
  for_column_blocks(cols, [&]<int Cols>(Index j) {
    alignas(64) S scratch[w * Cols];
    tile<S, 1, Cols>(depth, a + start, lda, b.from_column(j), alpha, S(0), bias_from(bias, start), scratch, w);
    for (int jj = 0; jj < Cols; ++jj)
      for (Index i = first; i < rows; ++i) merge(c[i + (j + jj) * ldc], scratch[i - start + jj * w], beta);
  });
}

/// C (rows x cols, leading dimension ldc) = alpha A op(B) + beta C, plus `bias` (rows entries) in
/// every column when it is not null; A column-major (rows x depth, leading dimension lda); meant
/// for shapes where `suits` holds.
template <class S>
void gemm(Index rows, Index cols, Index depth, S alpha, const S* a, Index lda, Operand<S> b, S beta, S* c,
          Index ldc, const S* bias = nullptr) {
  constexpr int w = packet_size<S>;
  Index i = 0;
  S* const slice = rows >= 2 * w && copies_a_slices<S>(cols, depth, lda)
                       ? thread_buffer<S, Scratch::a_slice>(2 * w * depth)
                       : nullptr;
  for (; i + 2 * w <= rows; i += 2 * w) {
    if (slice) copy_rows<S, 2>(depth, a + i, lda, slice);
    row_block<S, 2>(cols, depth, slice ? slice : a + i, slice ? 2 * w : lda, b, alpha, beta, bias_from(bias, i),
                    c + i, ldc);
  }
  for (; i + w <= rows; i += w)
    row_block<S, 1>(cols, depth, a + i, lda, b, alpha, beta, bias_from(bias, i), c + i, ldc);
  if (i == rows) return;
  if (rows < w)
    remainder_rows(i, rows, cols, depth, a, lda, b, alpha, beta, bias, c, ldc);
  else
    last_partial_packet(i, rows, cols, depth, a, lda, b, alpha, beta, bias, c, ldc);
}

// ---- A transposed, few columns ----------------------------------------------------------------
// C = alpha A^T op(B) with a few dozen columns (a short sentence's tied LM head, a recurrent
// layer's input gradient at a small batch) runs as its transpose, C^T = op(B)^T A: op(B)^T, at
// most two packets tall, is copied once and A is the operand the tiles broadcast from where it
// lies. Packing A^T for a GEMM (Eigen's way) copies the whole of A, which for a 16-token LM head
// over a 1000-word table costs more than the product itself.

/// Whether C = A^T op(B) of this shape runs faster as its transpose: op(B)^T must fit a tile's two
/// packets of rows, and C's rows and the depth must both be long enough for the copy of op(B)^T
/// (cols x depth) and the transposed write of C (rows x cols) to cost little next to the product.
/// Below 64 of either, packing is faster: Eigen's GEMM, or the panel kernel over whole panels
/// of rows (cpu.hpp; measured at 32 x 32 x 32: 1.15 and 0.6 against 1.3-1.4 us here). At 1000 x
/// 16 x 128 this takes 36-52 us, Eigen's 50-57.
template <class S>
inline bool suits_transposed(Index rows, Index cols, Index depth) {
  return cols >= 2 && cols <= 2 * packet_size<S> && rows >= 64 && depth >= 64;
}

/// Leading dimension of the copy of op(B)^T: `cols` rounded up to whole packets.
template <class S>
inline Index transposed_ld(Index cols) {
  return (cols + packet_size<S> - 1) / packet_size<S> * packet_size<S>;
}

/// op(B)^T (cols x depth) into `out`, column-major with leading dimension transposed_ld(cols);
/// the rows past `cols` are zero.
template <class S>
void pack_transposed(Operand<S> b, Index depth, Index cols, S* out) {
  const Index ld = transposed_ld<S>(cols);
  for (Index l = 0; l < depth; ++l) {
    S* dst = out + l * ld;
    for (Index j = 0; j < cols; ++j) dst[j] = b(l, j);
    for (Index j = cols; j < ld; ++j) dst[j] = S(0);
  }
}

/// gemm_transposed with op(B)^T `Packets` packets tall.
template <class S, int Packets>
void gemm_transposed_packets(Index first, Index last, Index cols, Index depth, S alpha, const S* a, Index lda,
                             const S* bt, S beta, S* c, Index ldc, const S* bias) {
  constexpr Index ld = Packets * packet_size<S>;
  for_column_blocks(last - first, [&]<int Cols>(Index offset) {
    const Index i = first + offset;
    // A block of C^T: its columns are C's rows i.., i.e. A's columns, broadcast in place.
    alignas(64) S block[ld * Cols];
    tile<S, Packets, Cols>(depth, bt, ld, Operand<S>{a + i * lda, 1, lda}, S(1), S(0),
                           static_cast<const S*>(nullptr), block, ld);
    S shift[Cols];
    for (int r = 0; r < Cols; ++r) shift[r] = bias_at(bias, i + r);
    for (Index j = 0; j < cols; ++j) {
      S* out = c + i + j * ldc;
      if (beta == S(0))
        for (int r = 0; r < Cols; ++r) out[r] = alpha * block[j + r * ld] + shift[r];
      else
        for (int r = 0; r < Cols; ++r) out[r] = beta * out[r] + (alpha * block[j + r * ld] + shift[r]);
    }
  });
}

/// C's rows [first, last) (C: leading dimension ldc, `cols` columns) = alpha A^T op(B) + beta C,
/// plus `bias` (indexed by C's row; may be null) in every column. A is column-major (depth x C's
/// rows, leading dimension lda); `bt` is op(B)^T from pack_transposed; for shapes where
/// suits_transposed holds.
template <class S>
void gemm_transposed(Index first, Index last, Index cols, Index depth, S alpha, const S* a, Index lda,
                     const S* bt, S beta, S* c, Index ldc, const S* bias = nullptr) {
  if (transposed_ld<S>(cols) == packet_size<S>)
    gemm_transposed_packets<S, 1>(first, last, cols, depth, alpha, a, lda, bt, beta, c, ldc, bias);
  else
    gemm_transposed_packets<S, 2>(first, last, cols, depth, alpha, a, lda, bt, beta, c, ldc, bias);
}

}  // namespace mtlm::backend::narrow
