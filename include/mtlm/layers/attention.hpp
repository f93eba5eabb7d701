// @brief Multi-head scaled dot-product self-attention, as PyTorch's nn.MultiheadAttention with
// query = key = value: every token mixes the value vectors of the tokens of its own sequence,
// weighted by softmax(q . k / sqrt(D / Heads)), in Heads independent subspaces.
//
// Contract: forward takes x (D x B*T, one column per token) and returns y (D x B*T).
//   [q; k; v] = in_proj_weight x + in_proj_bias           one GEMM over all tokens (3D x B*T)
//   per sequence b and head h (rows h*dh.. of q, k, v; columns b*T..b*T+len-1, dh = D / Heads):
//     P = softmax over keys of (k^T q) / sqrt(dh)          len x len, column i = query i
//     context = v P
//   y = out_proj_weight context + out_proj_bias, 0 at padding columns.
// Keys at padding positions are excluded (PyTorch's key_padding_mask); with Causal, query t
// also ignores keys after t (PyTorch's attn_mask = triu(-inf, 1)). Cached for backward: a view
// of x, [q; k; v], every P and the context. backward adds the gradients of the four parameters
// and returns dx; the output gradient at padding columns is ignored and dx there is 0.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/layers/detail/padding.hpp"

#include <algorithm>
#include <cmath>
#include <span>
#include <string>

namespace mtlm {

// CPU kernels
namespace backend {

/// Column-wise softmax in place: column j holds the scores of query j over the keys (rows).
/// With `causal`, key i is visible to query j only when i <= j; hidden entries become exactly 0.
template <class S>
void attention_softmax_forward(Cpu, MatrixView<S> scores, bool causal) {
  auto P = Cpu::eigen(scores);
  const Index keys = scores.rows;
  for (Index j = 0; j < scores.cols; ++j) {
    const Index visible = causal ? std::min(j + 1, keys) : keys;
    auto col = P.col(j).head(visible);
    const S top = col.maxCoeff();
    col.array() = (col.array() - top).exp();
    col *= S(1) / col.sum();
    if (visible < keys) P.col(j).tail(keys - visible).setZero();
  }
}

/// In place: grad holds dL/dP on entry and dL/dscores on exit, per column
/// dS = P .* (dP - <P, dP>). Hidden entries have P = 0 and so get exactly 0.
template <class S>
void attention_softmax_backward(Cpu, In<S> probs, MatrixView<S> grad) {
  const auto P = Cpu::eigen(probs);
  auto G = Cpu::eigen(grad);
  for (Index j = 0; j < grad.cols; ++j) {
    const S inner = P.col(j).dot(G.col(j));
    G.col(j).array() = P.col(j).array() * (G.col(j).array() - inner);
  }
}

/// Where the heads live: qkv is (3 dim x B*T), rows [part * dim + h * head_dim, + head_dim) are
/// part (0 q, 1 k, 2 v) of head h; the probabilities of sequence b and head h are the (T x T)
/// block of probs at column (b * heads + h) * T, column j holding query j's weights over keys.
struct AttentionShape {
  Index dim, heads, head_dim, max_length;
  bool causal;
};

namespace attention_detail {
template <class S>
MatrixView<S> head(MatrixView<S> m, const AttentionShape& s, Index part, Index h, Index b,
                   Index len) {
  return m.middle_rows(part * s.dim + h * s.head_dim, s.head_dim).middle_cols(b * s.max_length, len);
}
template <class S>
MatrixView<S> block(MatrixView<S> probs, const AttentionShape& s, Index b, Index h, Index len) {
  return probs.middle_cols((b * s.heads + h) * s.max_length, len).middle_rows(0, len);
}
/// Multiply-adds of the two forward products over every sequence and head.
inline double work(std::span<const Index> lengths, const AttentionShape& s) {
  double total = 0;
  for (Index len : lengths) total += 2.0 * static_cast<double>(len * len * s.head_dim);
  return total * static_cast<double>(s.heads);
}
}  // namespace attention_detail

/// Per sequence b and head h: P = softmax(scale k^T q) over b's real tokens into its block of
/// probs, and context = v P into the head's rows of context (padding columns left alone).
/// On the CPU every product covers the real tokens only.
template <class S>
void attention_forward(Cpu, In<S> qkv, std::span<const Index> lengths, const AttentionShape& s,
                       S scale, MatrixView<S> probs, MatrixView<S> context) {
  using attention_detail::block;
  using attention_detail::head;
  // Every (sequence, head) block is independent: blocks run side by side on the product threads.
  parallel_for(Cpu{}, static_cast<Index>(lengths.size()) * s.heads, attention_detail::work(lengths, s),
               [&](Index pair) {
                 const Index b = pair / s.heads, h = pair % s.heads;
                 const Index len = lengths[static_cast<std::size_t>(b)];
                 const auto p = block(probs, s, b, h, len);
                 Cpu::gemm(Transpose::yes, Transpose::no, scale, head(qkv, s, 1, h, b, len),
                           head(qkv, s, 0, h, b, len), S(0), p);
                 attention_softmax_forward(Cpu{}, p, s.causal);
                 Cpu::gemm(Transpose::no, Transpose::no, S(1), head(qkv, s, 2, h, b, len), In<S>(p),
                           S(0), head(context, s, 0, h, b, len));
               });
}

/// Backward of attention_forward: from d_context (dim x B*T) writes d_qkv at every real column
/// (padding columns are the caller's). d_probs is scratch shaped like probs.
template <class S>
void attention_backward(Cpu, In<S> qkv, In<S> probs, In<S> d_context,
                        std::span<const Index> lengths, const AttentionShape& s, S scale,
                        MatrixView<S> d_probs, MatrixView<S> d_qkv) {
  using attention_detail::block;
  using attention_detail::head;
  parallel_for(Cpu{}, static_cast<Index>(lengths.size()) * s.heads, 2 * attention_detail::work(lengths, s),
               [&](Index pair) {
                 const Index b = pair / s.heads, h = pair % s.heads;
                 const Index len = lengths[static_cast<std::size_t>(b)];
                 const auto q = head(qkv, s, 0, h, b, len), k = head(qkv, s, 1, h, b, len),
                            v = head(qkv, s, 2, h, b, len);
                 const auto p = block(probs, s, b, h, len);
                 const auto d_out = head(d_context, s, 0, h, b, len);
                 const auto dp = block(d_probs, s, b, h, len);
                 // context = v P:  dv = d_out P^T,  dP = v^T d_out
                 Cpu::gemm(Transpose::no, Transpose::yes, S(1), d_out, p, S(0),
                           head(d_qkv, s, 2, h, b, len));
                 Cpu::gemm(Transpose::yes, Transpose::no, S(1), v, d_out, S(0), dp);
                 attention_softmax_backward(Cpu{}, p, dp);
                 // scores = scale k^T q:  dq = scale k dS,  dk = scale q dS^T
                 Cpu::gemm(Transpose::no, Transpose::no, scale, k, In<S>(dp), S(0),
                           head(d_qkv, s, 0, h, b, len));
                 Cpu::gemm(Transpose::no, Transpose::yes, scale, q, In<S>(dp), S(0),
                           head(d_qkv, s, 1, h, b, len));
               });
}

}  // namespace backend

/// Causal picks the mask at compile time (a language-model trunk is causal by construction, and
/// Sequential default-constructs its layers); use the aliases below.
template <Index D, Index Heads, bool Causal, class S = float, class B = Cpu>
  requires Dimension<D> && (Heads > 0) && Backend<B>
class BasicMultiHeadSelfAttention {
  static_assert(D == Dynamic || D % Heads == 0,
                "mtlm: MultiHeadSelfAttention: the model dimension D must be a multiple of the "
                "number of heads (each head works on D / Heads features)");

 public:
  using Scalar = S;
  using BackendType = B;
  static constexpr Index input_dim = D;
  static constexpr Index output_dim = D;
  static constexpr Index heads = Heads;
  static constexpr bool causal = Causal;

  explicit BasicMultiHeadSelfAttention(Index dim = D)
      : dim_(resolve_dim(D, dim, "MultiHeadSelfAttention dimension")),
        head_dim_(dim_ / Heads),
        in_proj_weight_(3 * dim_, dim_),
        in_proj_bias_(3 * dim_, 1),
        out_proj_weight_(dim_, dim_),
        out_proj_bias_(dim_, 1) {
    if (dim_ % Heads != 0)
      throw ShapeError("mtlm: MultiHeadSelfAttention: dimension " + std::to_string(dim_) +
                       " is not a multiple of the " + std::to_string(Heads) + " heads");
  }

  /// As PyTorch: Xavier-uniform over the packed (3D x D) projection, U(-1/sqrt(D), 1/sqrt(D))
  /// for the output projection, zero biases.
  void initialize(Rng& rng) {
    in_proj_weight_.initialize(init::XavierUniform{}, dim_, 3 * dim_, rng);
    in_proj_bias_.initialize(init::Constant{0.0}, dim_, 3 * dim_, rng);
    const double bound = 1.0 / std::sqrt(static_cast<double>(dim_));
    out_proj_weight_.initialize(init::Uniform{-bound, bound}, dim_, dim_, rng);
    out_proj_bias_.initialize(init::Constant{0.0}, dim_, dim_, rng);
  }

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& batch, Mode = Mode::train) {
    check(x.rows, x.cols, batch, "input");
    input_ = x;
    const Index n = x.cols, T = batch.max_length;
    qkv_.resize(3 * dim_, n);
    affine(B{}, Transpose::no, in_proj_weight_.value.view(), x, in_proj_bias_.value.view(),
           qkv_.view());

    probs_.resize(T, T * batch.batch_size * Heads);
    context_.resize(dim_, n);
    const S scale = S(1) / std::sqrt(static_cast<S>(head_dim_));
    attention_forward(B{}, qkv_.view(), std::span<const Index>(batch.lengths), shape(T),
                               scale, probs_.view(), context_.view());
    detail::zero_padding<B>(context_.view(), batch);

    y_.resize(dim_, n);
    affine(B{}, Transpose::no, out_proj_weight_.value.view(), context_.view(),
           out_proj_bias_.value.view(), y_.view());
    detail::zero_padding<B>(y_.view(), batch);
    return y_;
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& batch) {
    check(dy.rows, dy.cols, batch, "output gradient");
    if (dy.cols != context_.cols())
      throw ShapeError("mtlm: MultiHeadSelfAttention output gradient has " +
                       std::to_string(dy.cols) + " columns, forward saw " +
                       std::to_string(context_.cols()));
    const Index n = dy.cols, T = batch.max_length;
    // The context is 0 at padding columns, so dy there drops out of the weight gradient; the
    // bias gradient and d context must skip those columns explicitly.
    B::gemm(Transpose::no, Transpose::yes, S(1), dy, context_.view(), S(1),
            out_proj_weight_.grad.view());
    detail::for_each_real_run(batch, n, [&](Index first, Index count) {
      B::sum_columns(dy.middle_cols(first, count), S(1), out_proj_bias_.grad.view());
    });
    d_context_.resize(dim_, n);
    B::gemm(Transpose::yes, Transpose::no, S(1), out_proj_weight_.value.view(), dy, S(0),
            d_context_.view());

    d_qkv_.resize(3 * dim_, n);
    // One (T x T) block per sequence and head, as probs: blocks are worked on side by side.
    d_probs_.resize(T, T * batch.batch_size * Heads);
    const S scale = S(1) / std::sqrt(static_cast<S>(head_dim_));
    attention_backward(B{}, qkv_.view(), probs_.view(), d_context_.view(),
                                std::span<const Index>(batch.lengths), shape(T), scale,
                                d_probs_.view(), d_qkv_.view());
    detail::zero_padding<B>(d_qkv_.view(), batch);

    B::gemm(Transpose::no, Transpose::yes, S(1), d_qkv_.view(), input_, S(1),
            in_proj_weight_.grad.view());
    B::sum_columns(d_qkv_.view(), S(1), in_proj_bias_.grad.view());
    dx_.resize(dim_, n);
    B::gemm(Transpose::yes, Transpose::no, S(1), in_proj_weight_.value.view(), d_qkv_.view(),
            S(0), dx_.view());
    return dx_;
  }

  template <class F>
  void for_each_param(F&& f) {
    f("in_proj_weight", in_proj_weight_);
    f("in_proj_bias", in_proj_bias_);
    f("out_proj_weight", out_proj_weight_);
    f("out_proj_bias", out_proj_bias_);
  }

  Index dim() const { return dim_; }
  Index head_dim() const { return head_dim_; }
  Param<S, B>& in_proj_weight() { return in_proj_weight_; }
  Param<S, B>& in_proj_bias() { return in_proj_bias_; }
  Param<S, B>& out_proj_weight() { return out_proj_weight_; }
  Param<S, B>& out_proj_bias() { return out_proj_bias_; }

 private:
  void check(Index rows, Index cols, const Batch& batch, const char* what) const {
    if (rows != dim_)
      throw ShapeError("mtlm: MultiHeadSelfAttention " + std::string(what) + " has " +
                       std::to_string(rows) + " rows, expected " + std::to_string(dim_));
    if (cols != batch.columns() || batch.max_length <= 0)
      throw ShapeError("mtlm: MultiHeadSelfAttention needs one column per token: " +
                       std::string(what) + " has " + std::to_string(cols) +
                       " columns, the batch has " + std::to_string(batch.columns()));
  }

  backend::AttentionShape shape(Index T) const { return {dim_, Heads, head_dim_, T, Causal}; }

  Index dim_, head_dim_;
  Param<S, B> in_proj_weight_, in_proj_bias_, out_proj_weight_, out_proj_bias_;
  ConstView<S> input_;
  Matrix<S, B> qkv_, probs_, context_, y_;
  Matrix<S, B> d_context_, d_qkv_, d_probs_, dx_;
};

/// Bidirectional self-attention: every token sees every real token of its sequence.
template <Index D, Index Heads, class S = float, class B = Cpu>
using MultiHeadSelfAttention = BasicMultiHeadSelfAttention<D, Heads, false, S, B>;

/// Causal self-attention: token t sees tokens 0..t only (language modelling).
template <Index D, Index Heads, class S = float, class B = Cpu>
using CausalSelfAttention = BasicMultiHeadSelfAttention<D, Heads, true, S, B>;

}  // namespace mtlm
