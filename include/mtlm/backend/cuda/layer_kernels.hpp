// @brief Device versions of the kernels that layers declare next to themselves for Cpu
// (recurrent packing, LSTM/GRU/RNN steps, embedding lookup, layer norm, pooling, attention
// softmax, character CNN, dropout). Same names and contracts as the CPU ones, overloaded on the
// Cuda tag, so a layer finds them by argument-dependent lookup.
//
// Host index lists (packed columns, token ids, lengths) are copied to pooled device buffers as
// they arrive: they are part of the batch, the one thing that has to cross the bus.
#pragma once

#include "mtlm/backend/cuda/policy.hpp"
#include "mtlm/core/random.hpp"
#include "mtlm/layers/attention.hpp"
#include "mtlm/layers/dropout.hpp"

#include <span>
#include <vector>

namespace mtlm::backend {

// ---- recurrent layers ------------------------------------------------------------------------

template <class S>
void gather_packed_columns(Cuda, In<S> src, std::span<const Index> columns, MatrixView<S> dst) {
  const auto cols = cuda::to_device(columns);
  const Index* c = cols.data();
  cuda::for_each_element(dst.rows, static_cast<Index>(columns.size()),
                         [=] __device__(Index r, Index j) { cuda::at(dst, r, j) = cuda::at(src, r, c[j]); });
}

template <class S>
void scatter_packed_columns(Cuda, In<S> src, std::span<const Index> columns, MatrixView<S> dst,
                            bool accumulate) {
  const auto cols = cuda::to_device(columns);
  const Index* c = cols.data();
  // Packed columns map to distinct batch columns, so no two threads write one element.
  cuda::for_each_element(src.rows, static_cast<Index>(columns.size()),
                         [=] __device__(Index r, Index j) {
                           S& out = cuda::at(dst, r, c[j]);
                           out = accumulate ? out + cuda::at(src, r, j) : cuda::at(src, r, j);
                         });
}

template <class S>
void lstm_cell_forward(Cuda, MatrixView<S> gates, In<S> recurrent, In<S> bias_hh, In<S> c_prev,
                       MatrixView<S> c, MatrixView<S> h) {
  const Index hs = h.rows;
  cuda::for_each_element(hs, h.cols, [=] __device__(Index r, Index j) {
    S* a = gates.data + j * gates.stride;
    const S* q = recurrent.data + j * recurrent.stride;
    const S i = cuda::sigmoid(a[r] + q[r] + bias_hh.data[r]);
    const S f = cuda::sigmoid(a[hs + r] + q[hs + r] + bias_hh.data[hs + r]);
    const S g = tanh(a[2 * hs + r] + q[2 * hs + r] + bias_hh.data[2 * hs + r]);
    const S o = cuda::sigmoid(a[3 * hs + r] + q[3 * hs + r] + bias_hh.data[3 * hs + r]);
    a[r] = i;
    a[hs + r] = f;
    a[2 * hs + r] = g;
    a[3 * hs + r] = o;
    const S cell = f * cuda::at(c_prev, r, j) + i * g;
    cuda::at(c, r, j) = cell;
    cuda::at(h, r, j) = o * tanh(cell);
  });
}

template <class S>
void lstm_cell_backward(Cuda, In<S> gates, In<S> c, In<S> c_prev, In<S> dh, In<S> dc,
                        MatrixView<S> dgates, MatrixView<S> dc_prev) {
  const Index hs = c.rows;
  cuda::for_each_element(hs, c.cols, [=] __device__(Index r, Index j) {
    const S* a = gates.data + j * gates.stride;
    const S i = a[r], f = a[hs + r], g = a[2 * hs + r], o = a[3 * hs + r];
    const S tc = tanh(cuda::at(c, r, j));
    const S d = cuda::at(dh, r, j);
    const S dct = cuda::at(dc, r, j) + d * o * (S(1) - tc * tc);
    S* da = dgates.data + j * dgates.stride;
    da[r] = dct * g * i * (S(1) - i);
    da[hs + r] = dct * cuda::at(c_prev, r, j) * f * (S(1) - f);
    da[2 * hs + r] = dct * i * (S(1) - g * g);
    da[3 * hs + r] = d * tc * o * (S(1) - o);
    cuda::at(dc_prev, r, j) = dct * f;
  });
}

template <class S>
void gru_cell_forward(Cuda, MatrixView<S> gates, In<S> recurrent, In<S> bias_hh, In<S> h_prev,
                      MatrixView<S> hn, MatrixView<S> h) {
  const Index hs = h.rows;
  cuda::for_each_element(hs, h.cols, [=] __device__(Index r, Index j) {
    S* a = gates.data + j * gates.stride;
    const S* q = recurrent.data + j * recurrent.stride;
    const S reset = cuda::sigmoid(a[r] + q[r] + bias_hh.data[r]);
    const S update = cuda::sigmoid(a[hs + r] + q[hs + r] + bias_hh.data[hs + r]);
    const S hidden = q[2 * hs + r] + bias_hh.data[2 * hs + r];
    const S n = tanh(a[2 * hs + r] + reset * hidden);
    a[r] = reset;
    a[hs + r] = update;
    a[2 * hs + r] = n;
    cuda::at(hn, r, j) = hidden;
    cuda::at(h, r, j) = (S(1) - update) * n + update * cuda::at(h_prev, r, j);
  });
}

template <class S>
void gru_cell_backward(Cuda, In<S> gates, In<S> hn, In<S> h_prev, In<S> dh, MatrixView<S> dgates,
                       MatrixView<S> drecurrent, MatrixView<S> dh_prev) {
  const Index hs = dh.rows;
  cuda::for_each_element(hs, dh.cols, [=] __device__(Index r, Index j) {
    const S* a = gates.data + j * gates.stride;
    const S reset = a[r], update = a[hs + r], n = a[2 * hs + r];
    const S d = cuda::at(dh, r, j);
    const S dn = d * (S(1) - update) * (S(1) - n * n);
    const S dr = dn * cuda::at(hn, r, j) * reset * (S(1) - reset);
    const S dz = d * (cuda::at(h_prev, r, j) - n) * update * (S(1) - update);
    S* dp = dgates.data + j * dgates.stride;
    S* dq = drecurrent.data + j * drecurrent.stride;
    dp[r] = dr;
    dp[hs + r] = dz;
    dp[2 * hs + r] = dn;
    dq[r] = dr;
    dq[hs + r] = dz;
    dq[2 * hs + r] = dn * reset;
    cuda::at(dh_prev, r, j) += d * update;
  });
}

template <class S>
void rnn_cell_forward(Cuda, In<S> pre, In<S> recurrent, In<S> bias_hh, MatrixView<S> h) {
  cuda::for_each_element(h.rows, h.cols, [=] __device__(Index r, Index j) {
    cuda::at(h, r, j) = tanh(cuda::at(pre, r, j) + cuda::at(recurrent, r, j) + bias_hh.data[r]);
  });
}

template <class S>
void rnn_cell_backward(Cuda, In<S> h, In<S> dh, MatrixView<S> dpre) {
  cuda::for_each_element(h.rows, h.cols, [=] __device__(Index r, Index j) {
    const S y = cuda::at(h, r, j);
    cuda::at(dpre, r, j) = cuda::at(dh, r, j) * (S(1) - y * y);
  });
}

// ---- embeddings ------------------------------------------------------------------------------

template <class S>
void embedding_gather(Cuda, In<S> table, std::span<const Index> rows, MatrixView<S> out) {
  const auto ids = cuda::to_device(rows);
  const Index* id = ids.data();
  cuda::for_each_element(out.rows, out.cols, [=] __device__(Index r, Index j) {
    const Index row = id[j];
    cuda::at(out, r, j) = row >= 0 ? cuda::at(table, r, row) : S(0);
  });
}

/// Atomic adds: a token repeated in the batch adds into one column from several threads, so
/// unlike the CPU kernel the order of additions (and the last bits of the sum) may vary.
template <class S>
void embedding_scatter_add(Cuda, In<S> dy, std::span<const Index> rows, MatrixView<S> table_grad) {
  const auto ids = cuda::to_device(rows);
  const Index* id = ids.data();
  cuda::for_each_element(dy.rows, dy.cols, [=] __device__(Index r, Index j) {
    const Index row = id[j];
    if (row >= 0) atomicAdd(&cuda::at(table_grad, r, row), cuda::at(dy, r, j));
  });
}

// ---- layer norm ------------------------------------------------------------------------------

/// One warp per column; two passes (mean, then centred variance) as on the CPU.
template <class S>
void layer_norm_forward(Cuda, In<S> x, In<S> gain, In<S> bias, S eps, MatrixView<S> x_hat,
                        MatrixView<S> inv_std, MatrixView<S> y) {
  const Index d = x.rows;
  cuda::for_each_column_warp(x.cols, [=] __device__(Index j, int lane) {
    const S* xc = x.data + j * x.stride;
    S sum = S(0);
    for (Index i = lane; i < d; i += 32) sum += xc[i];
    const S mean = cuda::warp_sum(sum) / static_cast<S>(d);
    S squares = S(0);
    for (Index i = lane; i < d; i += 32) squares += (xc[i] - mean) * (xc[i] - mean);
    const S r = S(1) / sqrt(cuda::warp_sum(squares) / static_cast<S>(d) + eps);
    for (Index i = lane; i < d; i += 32) {
      const S xh = (xc[i] - mean) * r;
      cuda::at(x_hat, i, j) = xh;
      cuda::at(y, i, j) = xh * gain.data[i] + bias.data[i];
    }
    if (lane == 0) cuda::at(inv_std, Index{0}, j) = r;
  });
}

/// dx per column in one warp; the gain and bias gradients are row sums over columns, taken with
/// one matrix-vector product each (a fixed order, unlike atomics).
template <class S>
void layer_norm_backward(Cuda, In<S> dy, In<S> x_hat, In<S> inv_std, In<S> gain, MatrixView<S> dx,
                         MatrixView<S> gain_grad, MatrixView<S> bias_grad) {
  const Index d = dy.rows;
  cuda::for_each_column_warp(dy.cols, [=] __device__(Index j, int lane) {
    S sum_g = S(0), sum_gx = S(0);
    for (Index i = lane; i < d; i += 32) {
      const S g = cuda::at(dy, i, j) * gain.data[i];
      sum_g += g;
      sum_gx += g * cuda::at(x_hat, i, j);
    }
    const S mean_g = cuda::warp_sum(sum_g) / static_cast<S>(d);
    const S mean_gx = cuda::warp_sum(sum_gx) / static_cast<S>(d);
    const S r = cuda::at(inv_std, Index{0}, j);
    for (Index i = lane; i < d; i += 32) {
      const S g = cuda::at(dy, i, j) * gain.data[i];
      cuda::at(dx, i, j) = r * (g - mean_g - cuda::at(x_hat, i, j) * mean_gx);
    }
  });
  cuda::DeviceBuffer<S> product(static_cast<std::size_t>(dy.size()));
  const MatrixView<S> p(product.data(), dy.rows, dy.cols);
  Cuda::multiply(dy, x_hat, p);
  Cuda::sum_columns(ConstView<S>(p), S(1), gain_grad);
  Cuda::sum_columns(dy, S(1), bias_grad);
}

// ---- pooling ---------------------------------------------------------------------------------

template <class S>
void mean_pool_forward(Cuda, In<S> x, std::span<const Index> lengths, Index T, MatrixView<S> y) {
  const auto lens = cuda::to_device(lengths);
  const Index* len = lens.data();
  cuda::for_each_element(y.rows, y.cols, [=] __device__(Index r, Index b) {
    S sum = S(0);
    for (Index t = 0; t < len[b]; ++t) sum += cuda::at(x, r, b * T + t);
    cuda::at(y, r, b) = sum * (S(1) / static_cast<S>(len[b]));
  });
}

template <class S>
void mean_pool_backward(Cuda, In<S> dy, std::span<const Index> lengths, Index T,
                        MatrixView<S> dx) {
  const auto lens = cuda::to_device(lengths);
  const Index* len = lens.data();
  cuda::for_each_element(dx.rows, dx.cols, [=] __device__(Index r, Index c) {
    const Index b = c / T, t = c % T;
    cuda::at(dx, r, c) = t < len[b] ? cuda::at(dy, r, b) / static_cast<S>(len[b]) : S(0);
  });
}

template <class S>
void max_pool_forward(Cuda, In<S> x, std::span<const Index> lengths, Index T, MatrixView<S> y,
                      MatrixView<Index> argmax) {
  const auto lens = cuda::to_device(lengths);
  const Index* len = lens.data();
  cuda::for_each_element(y.rows, y.cols, [=] __device__(Index r, Index b) {
    S best = cuda::at(x, r, b * T);
    Index winner = b * T;
    for (Index t = 1; t < len[b]; ++t) {
      const S v = cuda::at(x, r, b * T + t);
      if (v > best) {
        best = v;
        winner = b * T + t;
      }
    }
    cuda::at(y, r, b) = best;
    cuda::at(argmax, r, b) = winner;
  });
}

template <class S>
void max_pool_backward(Cuda, In<S> dy, ConstView<Index> argmax, MatrixView<S> dx) {
  Cuda::fill(dx, S(0));
  cuda::for_each_element(dy.rows, dy.cols, [=] __device__(Index r, Index b) {
    cuda::at(dx, r, cuda::at(argmax, r, b)) = cuda::at(dy, r, b);
  });
}

template <class S>
void token_pool_forward(Cuda, In<S> x, std::span<const Index> columns, MatrixView<S> y) {
  const auto cols = cuda::to_device(columns);
  const Index* c = cols.data();
  cuda::for_each_element(y.rows, y.cols,
                         [=] __device__(Index r, Index b) { cuda::at(y, r, b) = cuda::at(x, r, c[b]); });
}

template <class S>
void token_pool_backward(Cuda, In<S> dy, std::span<const Index> columns, MatrixView<S> dx) {
  Cuda::fill(dx, S(0));
  const auto cols = cuda::to_device(columns);
  const Index* c = cols.data();
  cuda::for_each_element(dy.rows, dy.cols,
                         [=] __device__(Index r, Index b) { cuda::at(dx, r, c[b]) = cuda::at(dy, r, b); });
}

// ---- attention -------------------------------------------------------------------------------

template <class S>
void attention_softmax_forward(Cuda, MatrixView<S> scores, bool causal) {
  const Index keys = scores.rows;
  cuda::for_each_column_warp(scores.cols, [=] __device__(Index j, int lane) {
    S* col = scores.data + j * scores.stride;
    const Index visible = causal && j + 1 < keys ? j + 1 : keys;
    S top = -INFINITY;
    for (Index i = lane; i < visible; i += 32) top = max(top, col[i]);
    top = cuda::warp_max(top);
    S sum = S(0);
    for (Index i = lane; i < visible; i += 32) {
      col[i] = exp(col[i] - top);
      sum += col[i];
    }
    const S inverse = S(1) / cuda::warp_sum(sum);
    for (Index i = lane; i < keys; i += 32) col[i] = i < visible ? col[i] * inverse : S(0);
  });
}

template <class S>
void attention_softmax_backward(Cuda, In<S> probs, MatrixView<S> grad) {
  const Index keys = grad.rows;
  cuda::for_each_column_warp(grad.cols, [=] __device__(Index j, int lane) {
    S inner = S(0);
    for (Index i = lane; i < keys; i += 32) inner += cuda::at(probs, i, j) * cuda::at(grad, i, j);
    inner = cuda::warp_sum(inner);
    for (Index i = lane; i < keys; i += 32)
      cuda::at(grad, i, j) = cuda::at(probs, i, j) * (cuda::at(grad, i, j) - inner);
  });
}

namespace cuda_detail {

/// Where one operand of a batched product over (sequence b, head h) starts: base +
/// b * per_sequence + h * per_head.
template <class S>
struct HeadOperand {
  S* base;
  Index per_sequence, per_head;
};

/// C_bh = alpha op(A_bh) op(B_bh) + beta C_bh for every sequence and head in one cuBLAS call;
/// the pointer arrays are written on the device, so nothing crosses the bus.
template <class S>
void gemm_heads(Transpose ta, Transpose tb, Index m, Index n, Index k, S alpha,
                HeadOperand<const S> a, Index lda, HeadOperand<const S> b, Index ldb, S beta,
                HeadOperand<S> c, Index ldc, Index sequences, Index heads) {
  const Index count = sequences * heads;
  if (count == 0) return;
  cuda::DeviceBuffer<const S*> a_ptr(static_cast<std::size_t>(count)), b_ptr(static_cast<std::size_t>(count));
  cuda::DeviceBuffer<S*> c_ptr(static_cast<std::size_t>(count));
  const S** ap = a_ptr.data();
  const S** bp = b_ptr.data();
  S** cp = c_ptr.data();
  cuda::for_each_index(count, [=] __device__(Index i) {
    const Index seq = i / heads, h = i % heads;
    ap[i] = a.base + seq * a.per_sequence + h * a.per_head;
    bp[i] = b.base + seq * b.per_sequence + h * b.per_head;
    cp[i] = c.base + seq * c.per_sequence + h * c.per_head;
  });
  const auto op = [](Transpose t) { return t == Transpose::no ? CUBLAS_OP_N : CUBLAS_OP_T; };
  auto& context = cuda::Context::get();
  std::lock_guard lock(context.blas_mutex());
  if constexpr (std::is_same_v<S, float>)
    MTLM_CUBLAS_CHECK(cublasSgemmBatched(context.blas(), op(ta), op(tb), static_cast<int>(m),
                                         static_cast<int>(n), static_cast<int>(k), &alpha, ap,
                                         static_cast<int>(lda), bp, static_cast<int>(ldb), &beta, cp,
                                         static_cast<int>(ldc), static_cast<int>(count)));
  else
    MTLM_CUBLAS_CHECK(cublasDgemmBatched(context.blas(), op(ta), op(tb), static_cast<int>(m),
                                         static_cast<int>(n), static_cast<int>(k), &alpha, ap,
                                         static_cast<int>(lda), bp, static_cast<int>(ldb), &beta, cp,
                                         static_cast<int>(ldc), static_cast<int>(count)));
}

}  // namespace cuda_detail

/// Every sequence and head at once over full (T x T) blocks: keys beyond a sequence's length
/// get probability 0 and so do whole columns of padding queries, which makes the products over
/// padding contribute exact zeros. The result on real tokens is the CPU kernel's.
template <class S>
void attention_forward(Cuda, In<S> qkv, std::span<const Index> lengths, const AttentionShape& s,
                       S scale, MatrixView<S> probs, MatrixView<S> context) {
  using cuda_detail::HeadOperand;
  const Index sequences = static_cast<Index>(lengths.size()), T = s.max_length, ld = qkv.stride;
  const HeadOperand<const S> q{qkv.data, T * ld, s.head_dim}, k{qkv.data + s.dim, T * ld, s.head_dim},
      v{qkv.data + 2 * s.dim, T * ld, s.head_dim};
  const HeadOperand<S> p{probs.data, s.heads * T * probs.stride, T * probs.stride};
  cuda_detail::gemm_heads(Transpose::yes, Transpose::no, T, T, s.head_dim, scale, k, ld, q, ld,
                          S(0), p, probs.stride, sequences, s.heads);
  const auto lens = cuda::to_device(lengths);
  const Index* len_of = lens.data();
  const Index heads = s.heads;
  const bool causal = s.causal;
  cuda::for_each_column_warp(sequences * heads * T, [=] __device__(Index j, int lane) {
    S* col = probs.data + j * probs.stride;
    const Index query = j % T, len = len_of[j / (heads * T)];
    const Index visible = query >= len ? 0 : causal && query + 1 < len ? query + 1 : len;
    S top = -INFINITY;
    for (Index i = lane; i < visible; i += 32) top = max(top, col[i]);
    top = cuda::warp_max(top);
    S sum = S(0);
    for (Index i = lane; i < visible; i += 32) {
      col[i] = exp(col[i] - top);
      sum += col[i];
    }
    sum = cuda::warp_sum(sum);
    for (Index i = lane; i < T; i += 32) col[i] = i < visible ? col[i] / sum : S(0);
  });
  const HeadOperand<const S> p_in{probs.data, s.heads * T * probs.stride, T * probs.stride};
  const HeadOperand<S> out{context.data, T * context.stride, s.head_dim};
  cuda_detail::gemm_heads(Transpose::no, Transpose::no, s.head_dim, T, T, S(1), v, ld, p_in,
                          probs.stride, S(0), out, context.stride, sequences, s.heads);
}

/// Backward of the full-block forward; d_probs is (T x T * sequences * heads) scratch.
template <class S>
void attention_backward(Cuda, In<S> qkv, In<S> probs, In<S> d_context,
                        std::span<const Index> lengths, const AttentionShape& s, S scale,
                        MatrixView<S> d_probs, MatrixView<S> d_qkv) {
  using cuda_detail::HeadOperand;
  const Index sequences = static_cast<Index>(lengths.size()), T = s.max_length, ld = qkv.stride,
              hd = s.head_dim, heads = s.heads;
  const HeadOperand<const S> q{qkv.data, T * ld, hd}, k{qkv.data + s.dim, T * ld, hd},
      v{qkv.data + 2 * s.dim, T * ld, hd};
  const HeadOperand<const S> p{probs.data, heads * T * probs.stride, T * probs.stride};
  const HeadOperand<const S> d_out{d_context.data, T * d_context.stride, hd};
  const HeadOperand<S> dp{d_probs.data, heads * T * d_probs.stride, T * d_probs.stride};
  const HeadOperand<const S> ds{d_probs.data, heads * T * d_probs.stride, T * d_probs.stride};
  const Index ldg = d_qkv.stride;
  const HeadOperand<S> dq{d_qkv.data, T * ldg, hd}, dk{d_qkv.data + s.dim, T * ldg, hd},
      dv{d_qkv.data + 2 * s.dim, T * ldg, hd};
  // context = v P:  dv = d_out P^T,  dP = v^T d_out
  cuda_detail::gemm_heads(Transpose::no, Transpose::yes, hd, T, T, S(1), d_out, d_context.stride,
                          p, probs.stride, S(0), dv, ldg, sequences, heads);
  cuda_detail::gemm_heads(Transpose::yes, Transpose::no, T, T, hd, S(1), v, ld, d_out,
                          d_context.stride, S(0), dp, d_probs.stride, sequences, heads);
  attention_softmax_backward(Cuda{}, probs.middle_cols(0, sequences * heads * T),
                             d_probs.middle_cols(0, sequences * heads * T));
  // scores = scale k^T q:  dq = scale k dS,  dk = scale q dS^T
  cuda_detail::gemm_heads(Transpose::no, Transpose::no, hd, T, T, scale, k, ld, ds,
                          d_probs.stride, S(0), dq, ldg, sequences, heads);
  cuda_detail::gemm_heads(Transpose::no, Transpose::yes, hd, T, T, scale, q, ld, ds,
                          d_probs.stride, S(0), dk, ldg, sequences, heads);
}

// ---- character CNN ---------------------------------------------------------------------------

template <class S>
void char_cnn_max_pool(Cuda, In<S> scores, std::span<const Index> offsets, MatrixView<S> pooled,
                       MatrixView<Index> argmax) {
  const auto offs = cuda::to_device(offsets);
  const Index* o = offs.data();
  cuda::for_each_element(pooled.rows, pooled.cols, [=] __device__(Index f, Index j) {
    const Index first = o[j], last = o[j + 1];
    if (first == last) {
      cuda::at(pooled, f, j) = S(0);
      cuda::at(argmax, f, j) = -1;
      return;
    }
    S best = cuda::at(scores, f, first);
    Index winner = first;
    for (Index k = first + 1; k < last; ++k)
      if (cuda::at(scores, f, k) > best) {
        best = cuda::at(scores, f, k);
        winner = k;
      }
    cuda::at(pooled, f, j) = best;
    cuda::at(argmax, f, j) = winner;
  });
}

template <class S>
void char_cnn_max_pool_backward(Cuda, In<S> dpooled, ConstView<Index> argmax,
                                MatrixView<S> dscores) {
  Cuda::fill(dscores, S(0));
  cuda::for_each_element(dpooled.rows, dpooled.cols, [=] __device__(Index f, Index j) {
    const Index k = cuda::at(argmax, f, j);
    if (k >= 0) cuda::at(dscores, f, k) = cuda::at(dpooled, f, j);
  });
}

// ---- dropout ---------------------------------------------------------------------------------

/// The mask is drawn on the host with the CPU kernel and uploaded: the same seed then gives the
/// same mask on both backends, so a model trains identically on either (up to rounding).
template <class S>
void dropout_mask(Cuda, Rng& rng, double p, MatrixView<S> mask) {
  thread_local std::vector<S> host;
  host.resize(static_cast<std::size_t>(mask.size()));
  dropout_mask(Cpu{}, rng, p, MatrixView<S>(host.data(), mask.rows, mask.cols));
  Cuda::upload(static_cast<const S*>(host.data()), mask);
}

}  // namespace mtlm::backend
