// @brief A Transformer encoder block (Vaswani et al. 2017): self-attention and a position-wise
// feed-forward network (Linear D->FF, ReLU or GELU, Linear FF->D), each wrapped in a residual
// connection and a layer norm. It is PyTorch's nn.TransformerEncoderLayer with dropout 0.
//
//   NormPlacement::post (PyTorch's default, norm_first=False):
//     h = norm1(x + attn(x));          y = norm2(h + ff(h))
//   NormPlacement::pre (norm_first=True; trains deep stacks without warm-up):
//     h = x + attn(norm1(x));          y = h + ff(norm2(h))
//
// Contract: forward takes x (D x B*T, one column per token) and returns y (D x B*T), 0 at
// padding columns; the sub-layers cache what they need, and the block keeps the residual sums.
// backward adds every parameter gradient and returns dx; the output gradient at padding
// columns is ignored and dx there is 0. Dropout is not part of the block (put a Dropout layer
// between blocks if needed); with dropout 0 the block equals PyTorch's layer in training mode.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/layers/activation.hpp"
#include "mtlm/layers/attention.hpp"
#include "mtlm/layers/detail/padding.hpp"
#include "mtlm/layers/detail/token_blocks.hpp"
#include "mtlm/layers/layer_norm.hpp"
#include "mtlm/layers/linear.hpp"

#include <algorithm>
#include <concepts>
#include <string>

namespace mtlm {

/// Where the layer norms sit relative to the residual connections.
enum class NormPlacement {
  post,  ///< after each residual sum (original Transformer, PyTorch's default)
  pre,   ///< on the input of each sub-layer; the residual path stays un-normalised
};

template <Index D, Index Heads, Index FF, NormPlacement Norm, Activation Act, bool Causal,
          class S = float, class B = Cpu>
  requires Dimension<D> && (Heads > 0) && Dimension<FF> && Backend<B>
class BasicTransformerBlock {
 public:
  using Scalar = S;
  using BackendType = B;
  static constexpr Index input_dim = D;
  static constexpr Index output_dim = D;
  static constexpr NormPlacement norm_placement = Norm;
  static constexpr Activation activation = Act;
  static constexpr bool causal = Causal;

  explicit BasicTransformerBlock(Index dim = D, Index feed_forward = FF, double eps = 1e-5)
      : dim_(resolve_dim(D, dim, "TransformerEncoderBlock dimension")),
        self_attn_(dim_),
        linear1_(dim_, resolve_dim(FF, feed_forward, "TransformerEncoderBlock feed-forward size")),
        linear2_(linear1_.out_features(), dim_),
        norm1_(dim_, eps),
        norm2_(dim_, eps) {}

  void initialize(Rng& rng) {
    self_attn_.initialize(rng);
    linear1_.initialize(rng);
    linear2_.initialize(rng);
    norm1_.initialize(rng);
    norm2_.initialize(rng);
  }

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& batch, Mode mode = Mode::train) {
    if (x.rows != dim_)
      throw ShapeError("mtlm: TransformerEncoderBlock input has " + std::to_string(x.rows) +
                       " rows, expected " + std::to_string(dim_));
    if constexpr (Norm == NormPlacement::post) {
      const auto& a = self_attn_.forward(x, batch, mode);
      sum_into(x, a.view(), residual1_);
      const auto& h = norm1_.forward(residual1_.view(), batch, mode);
      sum_into(h.view(), feed_forward(h.view(), mode), residual2_);
      return norm2_.forward(residual2_.view(), batch, mode);
    } else {
      const auto& a = self_attn_.forward(norm1_.forward(x, batch, mode).view(), batch, mode);
      sum_into(x, a.view(), residual1_);
      const auto& h2 = norm2_.forward(residual1_.view(), batch, mode);
      sum_into(residual1_.view(), feed_forward(h2.view(), mode), residual2_);
      // x + attn + ff is not 0 at padding columns (x and the feed-forward biases are not).
      detail::zero_padding<B>(residual2_.view(), batch);
      return residual2_;
    }
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& batch) {
    if constexpr (Norm == NormPlacement::post) {
      const auto& d_r2 = norm2_.backward(dy, batch);  // 0 at padding columns
      sum_into(d_r2.view(), feed_forward_backward(d_r2.view()), d_residual_);
      const auto& d_r1 = norm1_.backward(d_residual_.view(), batch);
      sum_into(d_r1.view(), self_attn_.backward(d_r1.view(), batch).view(), dx_);
    } else {
      // The output is constant 0 at padding columns: drop dy there before it reaches the
      // feed-forward biases through the residual path.
      d_out_.resize(dy.rows, dy.cols);
      B::copy(dy, d_out_.view());
      detail::zero_padding<B>(d_out_.view(), batch);
      const auto d_h2 = feed_forward_backward(d_out_.view());
      sum_into(d_out_.view(), norm2_.backward(d_h2, batch).view(), d_residual_);
      const auto& d_n1 = self_attn_.backward(d_residual_.view(), batch);
      sum_into(d_residual_.view(), norm1_.backward(d_n1.view(), batch).view(), dx_);
    }
    return dx_;
  }

  /// PyTorch's names: self_attn.*, linear1.*, linear2.*, norm1.*, norm2.* in that order.
  template <class F>
  void for_each_param(F&& f) {
    self_attn_.for_each_param(prefixed("self_attn", f));
    linear1_.for_each_param(prefixed("linear1", f));
    linear2_.for_each_param(prefixed("linear2", f));
    norm1_.for_each_param(prefixed("norm1", f));
    norm2_.for_each_param(prefixed("norm2", f));
  }

  auto& self_attn() { return self_attn_; }
  auto& linear1() { return linear1_; }
  auto& linear2() { return linear2_; }
  auto& norm1() { return norm1_; }
  auto& norm2() { return norm2_; }

 private:
  static void sum_into(ConstView<S> a, ConstView<S> b, Matrix<S, B>& out) {
    out.resize(a.rows, a.cols);
    backend::add(B{}, a, b, out.view());
  }

  /// GELU's derivative needs its input; the others' can be had from the output (ReLU's input is
  /// positive exactly where its output is), so only the output is kept for them.
  static constexpr bool keeps_hidden_input = Act == Activation::gelu;

  /// Linear, activation, linear, one block of tokens at a time: a block's hidden activations
  /// and, in backward, their gradient (FF x 256: 512 KiB each at FF 512) stay in the second-level
  /// cache between the products that read them; a whole batch's (2 MiB each for 1024 tokens)
  /// would go out to memory and come back several times. Training keeps the hidden activations
  /// for backward; inference keeps nothing. Every column is computed alike in both (products sum
  /// each entry in the same order whatever the number of columns), so inference gives training's
  /// outputs bit for bit.
  ConstView<S> feed_forward(ConstView<S> x, Mode mode) {
    const Index hidden = linear1_.out_features();
    ff_input_ = x;
    ff_kept_ = mode == Mode::train;
    // Inference keeps one block's hidden activations per thread.
    const Index block_width = std::min(x.cols, detail::widest_token_block);
    if (ff_kept_) {
      ff_hidden_.resize(hidden, x.cols);
      if constexpr (keeps_hidden_input) ff_hidden_input_.resize(hidden, x.cols);
    } else {
      ff_hidden_.resize(hidden, block_width * block_threads(x.cols));
    }
    ff_out_.resize(dim_, x.cols);
    auto block = [&](Index first, Index count, int thread) {
      const Index at = ff_kept_ ? first : thread * block_width;
      const MatrixView<S> v = ff_hidden_.view().middle_cols(at, count);
      const MatrixView<S> u =
          keeps_hidden_input && ff_kept_ ? ff_hidden_input_.view().middle_cols(at, count) : v;
      affine(B{}, Transpose::no, linear1_.weight().value.view(), x.middle_cols(first, count),
             linear1_.bias().value.view(), u);
      B::template activate<Act>(u, v);
      affine(B{}, Transpose::no, linear2_.weight().value.view(), v, linear2_.bias().value.view(),
             ff_out_.view().middle_cols(first, count));
    };
    if constexpr (std::same_as<B, Cpu>)
      detail::for_each_token_block_on_threads(x.cols, block);
    else
      detail::for_each_token_block(x.cols, [&](Index first, Index count) { block(first, count, 0); });
    return ff_out_.view();
  }

  /// Threads the forward pass runs its blocks on.
  static int block_threads(Index tokens) {
    if constexpr (std::same_as<B, Cpu>)
      return detail::token_block_threads(tokens);
    else
      return 1;
  }

  /// Per block: both weight gradients, the hidden gradient in place, and dx.
  ConstView<S> feed_forward_backward(ConstView<S> dy) {
    // A backward pass after an inference forward (allowed, as for every layer) first runs the
    // network as training does, to keep what this pass reads.
    if (!ff_kept_) feed_forward(ff_input_, Mode::train);
    const ConstView<S> x = ff_input_;
    ff_hidden_grad_.resize(linear1_.out_features(), std::min(x.cols, detail::widest_token_block));
    ff_dx_.resize(dim_, x.cols);
    auto& w1 = linear1_.weight();
    auto& w2 = linear2_.weight();
    detail::for_each_token_block(x.cols, [&](Index first, Index count) {
      const ConstView<S> dy_here = dy.middle_cols(first, count);
      const ConstView<S> x_here = x.middle_cols(first, count);
      const ConstView<S> v = ff_hidden_.view().middle_cols(first, count);
      const ConstView<S> u =
          keeps_hidden_input ? ff_hidden_input_.view().middle_cols(first, count) : v;
      const MatrixView<S> dv = ff_hidden_grad_.view().middle_cols(0, count);
      B::gemm(Transpose::no, Transpose::yes, S(1), dy_here, v, S(1), w2.grad.view());
      B::sum_columns(dy_here, S(1), linear2_.bias().grad.view());
      B::gemm(Transpose::yes, Transpose::no, S(1), w2.value.view(), dy_here, S(0), dv);
      B::template activate_backward<Act>(u, v, dv, dv);
      const ConstView<S> du = dv;  // the activation's input gradient, in place of dv
      B::gemm(Transpose::no, Transpose::yes, S(1), du, x_here, S(1), w1.grad.view());
      B::sum_columns(du, S(1), linear1_.bias().grad.view());
      B::gemm(Transpose::yes, Transpose::no, S(1), w1.value.view(), du, S(0),
              ff_dx_.view().middle_cols(first, count));
    });
    return ff_dx_.view();
  }

  Index dim_;
  BasicMultiHeadSelfAttention<D, Heads, Causal, S, B> self_attn_;
  // The feed-forward network's parameters live in its two Linear layers (PyTorch's names); the
  // block runs the network itself, in blocks of tokens.
  Linear<D, FF, S, B> linear1_;
  Linear<FF, D, S, B> linear2_;
  LayerNorm<D, S, B> norm1_, norm2_;
  Matrix<S, B> residual1_, residual2_, d_out_, d_residual_, dx_;
  Matrix<S, B> ff_hidden_;        ///< activation outputs: all tokens' in training, a block's in inference
  Matrix<S, B> ff_hidden_input_;  ///< activation inputs, kept in training when backward needs them
  Matrix<S, B> ff_hidden_grad_;   ///< one block's gradient of the hidden activations
  Matrix<S, B> ff_out_, ff_dx_;
  ConstView<S> ff_input_;
  bool ff_kept_ = false;  ///< the last forward kept the hidden activations
};

/// PyTorch's nn.TransformerEncoderLayer(D, Heads, FF, dropout=0, activation, norm_first): every
/// token attends to every real token of its sequence.
template <Index D, Index Heads, Index FF, NormPlacement Norm = NormPlacement::post,
          Activation Act = Activation::relu, class S = float, class B = Cpu>
using TransformerEncoderBlock = BasicTransformerBlock<D, Heads, FF, Norm, Act, false, S, B>;

/// The same block with causal self-attention (a GPT-style language-model trunk).
template <Index D, Index Heads, Index FF, NormPlacement Norm = NormPlacement::pre,
          Activation Act = Activation::gelu, class S = float, class B = Cpu>
using CausalTransformerBlock = BasicTransformerBlock<D, Heads, FF, Norm, Act, true, S, B>;

}  // namespace mtlm
