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
#include "mtlm/layers/layer_norm.hpp"
#include "mtlm/layers/linear.hpp"

#include <algorithm>
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
      sum_into(h.view(), feed_forward(h.view(), batch, mode), residual2_);
      return norm2_.forward(residual2_.view(), batch, mode);
    } else {
      const auto& a = self_attn_.forward(norm1_.forward(x, batch, mode).view(), batch, mode);
      sum_into(x, a.view(), residual1_);
      const auto& h2 = norm2_.forward(residual1_.view(), batch, mode);
      sum_into(residual1_.view(), feed_forward(h2.view(), batch, mode), residual2_);
      // x + attn + ff is not 0 at padding columns (x and the feed-forward biases are not).
      detail::zero_padding<B>(residual2_.view(), batch);
      return residual2_;
    }
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& batch) {
    if constexpr (Norm == NormPlacement::post) {
      const auto& d_r2 = norm2_.backward(dy, batch);  // 0 at padding columns
      sum_into(d_r2.view(), feed_forward_backward(d_r2.view(), batch), d_residual_);
      const auto& d_r1 = norm1_.backward(d_residual_.view(), batch);
      sum_into(d_r1.view(), self_attn_.backward(d_r1.view(), batch).view(), dx_);
    } else {
      // The output is constant 0 at padding columns: drop dy there before it reaches the
      // feed-forward biases through the residual path.
      d_out_.resize(dy.rows, dy.cols);
      B::copy(dy, d_out_.view());
      detail::zero_padding<B>(d_out_.view(), batch);
      const auto& d_h2 = feed_forward_backward(d_out_.view(), batch);
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

  /// Tokens per block of the feed-forward network in inference. A block's hidden activations
  /// (FF x 128: 256 KiB at FF 512) stay in the second-level cache between the two products; a
  /// whole batch's (2 MiB for 1024 tokens) go out to memory and come back, three times over.
  static constexpr Index feed_forward_block = 128;

  ConstView<S> feed_forward(ConstView<S> x, const Batch& batch, Mode mode) {
    // Inference runs a block of tokens at a time, keeping nothing for a backward pass. Every
    // column is computed as in training, bit for bit: products sum each entry in the same order
    // whatever the number of columns.
    ff_in_blocks_ = mode == Mode::eval && x.cols > feed_forward_block;
    if (ff_in_blocks_) {
      ff_input_ = x;
      return feed_forward_in_blocks(x);
    }
    return feed_forward_layers(x, batch, mode);
  }

  ConstView<S> feed_forward_layers(ConstView<S> x, const Batch& batch, Mode mode) {
    const auto& u = linear1_.forward(x, batch, mode);
    const auto& v = activation_.forward(u.view(), batch, mode);
    return linear2_.forward(v.view(), batch, mode).view();
  }

  ConstView<S> feed_forward_in_blocks(ConstView<S> x) {
    ff_hidden_.resize(linear1_.out_features(), feed_forward_block);
    ff_out_.resize(dim_, x.cols);
    for (Index first = 0; first < x.cols; first += feed_forward_block) {
      const Index count = std::min(feed_forward_block, x.cols - first);
      const MatrixView<S> u = ff_hidden_.view().middle_cols(0, count);
      affine(B{}, Transpose::no, linear1_.weight().value.view(), x.middle_cols(first, count),
             linear1_.bias().value.view(), u);
      B::template activate<Act>(u, u);
      affine(B{}, Transpose::no, linear2_.weight().value.view(), u, linear2_.bias().value.view(),
             ff_out_.view().middle_cols(first, count));
    }
    return ff_out_.view();
  }

  ConstView<S> feed_forward_backward(ConstView<S> dy, const Batch& batch) {
    // A backward pass after an inference forward (allowed, as for every layer) first runs the
    // network as training does, which leaves the layers what their backward passes read.
    if (ff_in_blocks_) {
      feed_forward_layers(ff_input_, batch, Mode::eval);
      ff_in_blocks_ = false;
    }
    const auto& dv = linear2_.backward(dy, batch);
    const auto& du = activation_.backward(dv.view(), batch);
    return linear1_.backward(du.view(), batch).view();
  }

  Index dim_;
  BasicMultiHeadSelfAttention<D, Heads, Causal, S, B> self_attn_;
  Linear<D, FF, S, B> linear1_;
  ActivationLayer<Act, FF, S, B> activation_;
  Linear<FF, D, S, B> linear2_;
  LayerNorm<D, S, B> norm1_, norm2_;
  Matrix<S, B> residual1_, residual2_, d_out_, d_residual_, dx_;
  Matrix<S, B> ff_hidden_, ff_out_;  ///< inference's feed-forward blocks
  ConstView<S> ff_input_;
  bool ff_in_blocks_ = false;  ///< the last forward ran the feed-forward network in blocks
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
