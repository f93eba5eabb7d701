// @brief Deeper matrix products C = alpha op(A) op(B) + beta C (past the depth, or with the
// transposed A, that the unpacked kernel takes): the unpacked kernel's register tiles
// (narrow_gemm.hpp) over A copied a panel of rows at a time into a contiguous block that stays in
// the first-level cache. Read in place, a panel of a weight matrix is one short run per column,
// hundreds of floats apart, and past a depth of about 128 it no longer stays cached between the
// tiles that reuse it. B is read where it lies when its columns are contiguous (a tile broadcasts
// its entries); a transposed B is copied into strips of a tile's width. Against Eigen's GEMM,
// whose 3-packet x 4-column tile leaves most AVX-512 registers idle, the products of a small
// Transformer's training step run 5-20% faster (at 110-165 GFLOP/s on one core).
#pragma once

#include "mtlm/backend/narrow_gemm.hpp"
#include "mtlm/backend/thread_buffer.hpp"
#include "mtlm/core/config.hpp"

#include <algorithm>

namespace mtlm::backend::panel {

using narrow::Operand;
using narrow::packet_size;

/// Rows of C per panel: the unpacked kernel's widest tile (two packets).
template <class S>
inline constexpr Index panel_rows = 2 * packet_size<S>;

/// Depth per pass: a float panel of 32 x 256 is 32 KiB, leaving room in a 48 KiB first-level
/// cache for the columns of B that a tile streams past it.
inline constexpr Index depth_block = 256;

/// Columns of C per sweep of all panels: a float block of B of 256 x 256 is 256 KiB, kept in the
/// second-level cache while every panel passes over it.
inline constexpr Index col_block = 256;

/// op(A)(i, l) of a column-major A with leading dimension ld.
template <class S>
struct Source {
  const S* data;
  Index ld;
  bool transposed;
};

// Two reports that do not apply to the transpose below: a PacketBlock of AVX or AVX-512 packets
// drops their alignment attribute as a template argument (the block lives in registers), and
// GCC 12 takes the unspecified lanes that the unpack intrinsics start from for uninitialized
// values.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

/// Rows [row, row + rows) of op(A) over depth [depth0, depth0 + depth) into `out` as a
/// panel_rows x depth column-major block; rows past `rows` are zero.
template <class S>
void pack_panel(Source<S> a, Index row, Index rows, Index depth0, Index depth, S* out) {
  constexpr Index mr = panel_rows<S>;
  if (!a.transposed) {
    if (rows == mr) {
      // A panel's columns lie A's leading dimension apart (a gate gradient's 256 rows, 1 KiB).
      // Copied a packet at a time, asking for the columns a few steps ahead (GCC had left the
      // loop one entry at a time). One core, alternating runs, medians of 8: Model J training
      // +4.7%, Model T +4.8%.
      narrow::copy_rows<S, 2>(depth, a.data + row + depth0 * a.ld, a.ld, out);
      return;
    }
    for (Index l = 0; l < depth; ++l) {
      const S* src = a.data + row + (depth0 + l) * a.ld;
      S* dst = out + l * mr;
      std::copy(src, src + rows, dst);
      std::fill(dst + rows, dst + mr, S(0));
    }
    return;
  }
  // op(A)'s rows are A's columns. A whole panel goes a square of packets at a time: a packet
  // from each of w columns of A, transposed in registers, gives w of the panel's columns. One
  // entry at a time, every store lands in another cache line (the panel's columns are mr
  // entries apart): 2.3x as long (one core, A cached: 1000 rows x 256 in 101-113 against
  // 43-47 us), and 5% of a small Transformer's training step.
  constexpr Index w = packet_size<S>;
  Index l0 = 0;
  if (rows == mr) {
    using P = narrow::Packet<S>;
    for (; l0 + w <= depth; l0 += w)
      for (Index i0 = 0; i0 < mr; i0 += w) {
        Eigen::internal::PacketBlock<P, w> square;
        for (Index r = 0; r < w; ++r)
          square.packet[r] = Eigen::internal::ploadu<P>(a.data + depth0 + l0 + (row + i0 + r) * a.ld);
        Eigen::internal::ptranspose(square);
        for (Index c = 0; c < w; ++c) Eigen::internal::pstoreu(out + i0 + (l0 + c) * mr, square.packet[c]);
      }
  }
  for (Index i = 0; i < mr; ++i) {
    const S* src = a.data + depth0 + (row + i) * a.ld;
    for (Index l = l0; l < depth; ++l) out[i + l * mr] = i < rows ? src[l] : S(0);
  }
}

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/// Columns of op(B) per packed strip: the widest tile's.
inline constexpr int strip_cols = narrow::widest_tile_cols;

/// A packed strip of op(B): `Width` columns, one step of the depth after another. Its layout is
/// known at compile time, so a tile addresses it from one pointer.
template <class S, int Width>
struct Strip {
  const S* data;
  S operator()(Index l, Index j) const { return data[l * Width + j]; }
};

/// op(B)(l, j) = b[l ld + j] (B transposed) over depth [0, depth) and columns [0, cols), as strips
/// of strip_cols columns (the last one as wide as the columns left). Read in place, a tile's
/// columns would be a few dozen bytes of a different page at every step.
template <class S>
void pack_strips(const S* b, Index ld, Index depth, Index cols, S* out) {
  Index j = 0;
  for (; j + strip_cols <= cols; j += strip_cols) {
    S* strip = out + j * depth;
    for (Index l = 0; l < depth; ++l)
      for (int jj = 0; jj < strip_cols; ++jj) strip[l * strip_cols + jj] = b[l * ld + j + jj];
  }
  if (j == cols) return;
  const Index width = cols - j;
  S* strip = out + j * depth;
  for (Index l = 0; l < depth; ++l)
    for (Index jj = 0; jj < width; ++jj) strip[l * width + jj] = b[l * ld + j + jj];
}

/// One packed panel (`rows` of its rows are C's) times the `Cols` columns of op(B) that `b`
/// gives, into C from `c`: a whole panel in place, a partial one into scratch with only C's rows
/// merged.
template <class S, int Cols, class B>
void panel_tile(Index rows, Index depth, const S* panel, S alpha, B b, S beta, const S* bias, S* c, Index ldc) {
  constexpr Index mr = panel_rows<S>;
  if (rows == mr) {
    narrow::tile<S, 2, Cols>(depth, panel, mr, b, alpha, beta, bias, c, ldc);
    return;
  }
  alignas(64) S scratch[mr * Cols];
  narrow::tile<S, 2, Cols>(depth, panel, mr, b, alpha, S(0), static_cast<const S*>(nullptr), scratch, mr);
  for (int jj = 0; jj < Cols; ++jj)
    for (Index r = 0; r < rows; ++r)
      narrow::merge(c[r + jj * ldc], scratch[r + jj * mr] + narrow::bias_at(bias, r), beta);
}

/// One packed panel times `cols` columns of op(B), B either where it lies (`b`) or packed in
/// strips (`strips`, when not null).
template <class S>
void panel_times_b(Index rows, Index cols, Index depth, const S* panel, S alpha, Operand<S> b, const S* strips,
                   S beta, const S* bias, S* c, Index ldc) {
  if (!strips) {
    if (rows == panel_rows<S>) {
      narrow::row_block<S, 2>(cols, depth, panel, panel_rows<S>, b, alpha, beta, bias, c, ldc);
      return;
    }
    narrow::for_column_blocks(cols, [&]<int Cols>(Index j) {
      panel_tile<S, Cols>(rows, depth, panel, alpha, b.from_column(j), beta, bias, c + j * ldc, ldc);
    });
    return;
  }
  Index j0 = 0;
  for (; j0 + strip_cols <= cols; j0 += strip_cols)
    panel_tile<S, strip_cols>(rows, depth, panel, alpha, Strip<S, strip_cols>{strips + j0 * depth}, beta, bias,
                              c + j0 * ldc, ldc);
  if (j0 == cols) return;
  const Index width = cols - j0;
  const Operand<S> last{strips + j0 * depth, width, 1};
  narrow::for_column_blocks(width, [&]<int Cols>(Index j) {
    panel_tile<S, Cols>(rows, depth, panel, alpha, last.from_column(j), beta, bias, c + (j0 + j) * ldc, ldc);
  });
}

/// C's rows [first, last) (leading dimension ldc) = alpha op(A) op(B) + beta C, plus `bias`
/// (indexed by C's row; may be null) in every column; `depth` is op(A)'s column count.
template <class S>
void gemm(Index first, Index last, Index cols, Index depth, S alpha, Source<S> a, Operand<S> b, S beta, S* c,
          Index ldc, const S* bias = nullptr) {
  constexpr Index mr = panel_rows<S>;
  const Index panels = (last - first + mr - 1) / mr;
  const Index kc_max = std::min(depth, depth_block);
  S* const packed = thread_buffer<S, Scratch::a_panels>(panels * mr * kc_max);
  const bool b_transposed = b.depth_step != 1;
  S* const strips = b_transposed ? thread_buffer<S, Scratch::b_strips>(kc_max * std::min(cols, col_block)) : nullptr;
  for (Index d = 0; d < depth; d += depth_block) {
    const Index kc = std::min(depth_block, depth - d);
    // The first pass applies beta and the bias; later ones accumulate onto it.
    const S beta_here = d == 0 ? beta : S(1);
    const S* bias_here = d == 0 ? bias : nullptr;
    // Every panel over one block of B's columns before the next: the block stays in the
    // second-level cache instead of coming from memory once per panel. A panel is packed just
    // before its first use, while it is still in the first-level cache.
    for (Index j = 0; j < cols; j += col_block) {
      const Index nc = std::min(col_block, cols - j);
      const Operand<S> b_here{b.data + d * b.depth_step + j * b.col_step, b.depth_step, b.col_step};
      if (b_transposed) pack_strips(b_here.data, b.depth_step, kc, nc, strips);
      for (Index p = 0; p < panels; ++p) {
        const Index i = first + p * mr, rows = std::min(mr, last - i);
        S* const panel = packed + p * mr * kc;
        if (j == 0) pack_panel(a, i, rows, d, kc, panel);
        panel_times_b(rows, nc, kc, panel, alpha, b_here, strips, beta_here, narrow::bias_from(bias_here, i),
                      c + i + j * ldc, ldc);
      }
    }
  }
}

}  // namespace mtlm::backend::panel
