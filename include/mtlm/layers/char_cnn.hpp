// @brief CharCnn: a word vector computed from the word's spelling (Kim et al. 2016, Ma & Hovy
// 2016), so that words the word vocabulary has never seen ("lufthansa", rare names in CoNLL)
// still carry information: embed each character, convolve windows of `Width` characters with
// `Filters` filters, and keep each filter's best response over the word (tanh(max + bias)).
//
// Contract: forward(batch) reads batch.chars, a column-major (char_width x B*T) block of character
// ids (0 = <pad>, see data/char_features.hpp), and returns y (Filters x B*T). For a real word
// (t < lengths[b]) whose last non-pad character is at index L-1:
//   windows p = 0 .. max(1, L - Width + 1) - 1, window p = [e(c_p); e(c_p+1); ...; e(c_p+Width-1)]
//   (a character at index >= L, or id 0, embeds to zeros: a word shorter than Width has one
//   window, zero-filled at its end), z_p = W window_p, y = tanh(max_p z_p + b) per filter.
// Windows that would start inside the trailing padding are excluded, so a word's vector does
// not depend on the batch's char_width (a word gives the same output in every batch). Words
// whose characters are all <pad>, and padded positions (t >= length), output zeros and pass no
// gradient. Ids at padded positions are ignored; an id outside [0, CharVocab) in a real word is
// a ShapeError, as is a batch without character ids.
// The max is taken before the activation: tanh is increasing, so tanh(max z + b) = max tanh(z + b)
// and the non-linearity runs on (Filters x B*T) instead of every window. tanh (rather than ReLU)
// keeps the character features bounded next to the word embedding they are concatenated with
// and gives every filter a gradient, also when its best window is negative.
// Cached for backward: the windows (CharDim*Width x windows, the im2col matrix), each filter's
// winning window per word (first one on exact ties, e.g. a trigram repeated in "banana"), the
// pooled pre-activations and y. backward(dy) adds to the gradients of the character table, the
// filters and the bias, and returns nothing (ids have no gradient).
//
// Layout, for importing weights: "embedding.weight" is CharDim x CharVocab (column c is the
// vector of character c, PyTorch nn.Embedding's (CharVocab, CharDim) memory; column 0 stays
// zero). "conv.weight" is Filters x (Width*CharDim) with column w*CharDim + d reading dimension
// d of the w-th character of the window: conv.weight(f, w*CharDim + d) = torch_conv1d.weight[f,
// d, w]. "conv.bias" is Filters x 1.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/layers/embedding.hpp"

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace mtlm {
namespace backend {

// CPU kernels

/// pooled(f, j) = max over the windows offsets[j] <= k < offsets[j + 1] of scores(f, k), and
/// argmax(f, j) = the first k reaching it; a column without windows gets 0 and -1.
template <class S>
void char_cnn_max_pool(Cpu, In<S> scores, std::span<const Index> offsets, MatrixView<S> pooled,
                       MatrixView<Index> argmax) {
  const Index filters = pooled.rows;
  for (Index j = 0; j < pooled.cols; ++j) {
    const Index first = offsets[static_cast<std::size_t>(j)];
    const Index last = offsets[static_cast<std::size_t>(j) + 1];
    S* best = pooled.col_ptr(j);
    Index* arg = argmax.col_ptr(j);
    if (first == last) {
      std::fill_n(best, filters, S(0));
      std::fill_n(arg, filters, Index{-1});
      continue;
    }
    std::copy_n(scores.col_ptr(first), filters, best);
    std::fill_n(arg, filters, first);
    for (Index k = first + 1; k < last; ++k) {
      const S* z = scores.col_ptr(k);
      for (Index f = 0; f < filters; ++f)
        if (z[f] > best[f]) {
          best[f] = z[f];
          arg[f] = k;
        }
    }
  }
}

/// dscores = 0 except dscores(f, argmax(f, j)) = dpooled(f, j): each filter's gradient goes
/// to the window that won the max. A window belongs to one word, so nothing adds up.
template <class S>
void char_cnn_max_pool_backward(Cpu, In<S> dpooled, ConstView<Index> argmax,
                                MatrixView<S> dscores) {
  Cpu::eigen(dscores).setZero();
  const Index filters = dpooled.rows;
  for (Index j = 0; j < dpooled.cols; ++j) {
    const S* g = dpooled.col_ptr(j);
    const Index* arg = argmax.col_ptr(j);
    for (Index f = 0; f < filters; ++f)
      if (arg[f] >= 0) dscores.col_ptr(arg[f])[f] = g[f];
  }
}

}  // namespace backend

template <Index CharVocab, Index CharDim, Index Filters, Index Width, class S = float,
          class B = Cpu>
  requires Dimension<CharVocab> && Dimension<CharDim> && Dimension<Filters> &&
           Dimension<Width> && Backend<B>
class CharCnn {
 public:
  using Scalar = S;
  using BackendType = B;
  /// The layer reads ids, not a matrix: input_dim is the width of the one-hot input it stands for.
  static constexpr Index input_dim = CharVocab;
  static constexpr Index output_dim = Filters;

  explicit CharCnn(Index char_vocab = CharVocab, Index char_dim = CharDim,
                   Index filters = Filters, Index width = Width)
      : vocab_(resolve_dim(CharVocab, char_vocab, "CharCnn character vocabulary size")),
        dim_(resolve_dim(CharDim, char_dim, "CharCnn character dimension")),
        filters_(resolve_dim(Filters, filters, "CharCnn filter count")),
        width_(resolve_dim(Width, width, "CharCnn window width")),
        embedding_(dim_, vocab_),
        weight_(filters_, dim_ * width_),
        bias_(filters_, 1) {}

  /// Character vectors N(0, 1) as PyTorch's nn.Embedding (the <pad> column zero); filters and
  /// bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as PyTorch's Conv1d, fan_in = CharDim * Width.
  void initialize(Rng& rng) {
    embedding_.initialize(init::Normal{0.0, 1.0}, dim_, vocab_, rng);
    B::fill(embedding_.value.view().col(0), S(0));
    const double bound = 1.0 / std::sqrt(static_cast<double>(dim_ * width_));
    weight_.initialize(init::Uniform{-bound, bound}, dim_ * width_, filters_, rng);
    bias_.initialize(init::Uniform{-bound, bound}, dim_ * width_, filters_, rng);
  }

  const Matrix<S, B>& forward(const Batch& batch, Mode = Mode::train) {
    plan_windows(batch);
    const Index n = batch.columns();
    const Index windows = offsets_.back();
    // im2col: the windows are laid out so that (CharDim*Width x windows) is the same memory as
    // (CharDim x Width*windows), one character vector per column, i.e. an embedding lookup.
    windows_.resize(dim_ * width_, windows);
    embedding_gather(B{}, embedding_.value.view(), std::span<const Index>(window_chars_),
                     MatrixView<S>(windows_.data(), dim_, width_ * windows));
    scores_.resize(filters_, windows);
    B::gemm(Transpose::no, Transpose::no, S(1), weight_.value.view(), windows_.view(), S(0),
            scores_.view());
    pooled_.resize(filters_, n);
    argmax_.resize(filters_, n);
    char_cnn_max_pool(B{}, scores_.view(), std::span<const Index>(offsets_), pooled_.view(),
                      argmax_.view());
    B::add_bias(bias_.value.view(), pooled_.view());
    y_.resize(filters_, n);
    B::template activate<Activation::tanh>(pooled_.view(), y_.view());
    zero_empty_columns(y_.view());
    return y_;
  }

  /// Adds the gradients of the last forward's parameters; dy is (Filters x B*T).
  void backward(ConstView<S> dy, const Batch& = {}) {
    if (dy.rows != filters_ || dy.cols != y_.cols())
      throw ShapeError("mtlm: CharCnn output gradient is " + std::to_string(dy.rows) + " x " +
                       std::to_string(dy.cols) + ", expected " + std::to_string(filters_) + " x " +
                       std::to_string(y_.cols()) + " (the shape of the last forward)");
    dpooled_.resize(filters_, dy.cols);
    B::template activate_backward<Activation::tanh>(pooled_.view(), y_.view(), dy,
                                                    dpooled_.view());
    zero_empty_columns(dpooled_.view());
    B::sum_columns(dpooled_.view(), S(1), bias_.grad.view());
    const Index windows = windows_.cols();
    dscores_.resize(filters_, windows);
    char_cnn_max_pool_backward(B{}, dpooled_.view(), argmax_.view(), dscores_.view());
    B::gemm(Transpose::no, Transpose::yes, S(1), dscores_.view(), windows_.view(), S(1),
            weight_.grad.view());
    dwindows_.resize(dim_ * width_, windows);
    B::gemm(Transpose::yes, Transpose::no, S(1), weight_.value.view(), dscores_.view(), S(0),
            dwindows_.view());
    embedding_scatter_add(B{}, ConstView<S>(dwindows_.data(), dim_, width_ * windows),
                          std::span<const Index>(window_chars_), embedding_.grad.view());
  }

  /// "embedding.weight" (CharDim x CharVocab), "conv.weight" (Filters x Width*CharDim),
  /// "conv.bias" (Filters x 1).
  template <class F>
  void for_each_param(F&& f) {
    f("embedding.weight", embedding_);
    f("conv.weight", weight_);
    f("conv.bias", bias_);
  }

  Index char_vocab_size() const { return vocab_; }
  Index char_dim() const { return dim_; }
  Index filters() const { return filters_; }
  Index width() const { return width_; }
  /// Windows convolved by the last forward (columns of the im2col matrix).
  Index window_count() const { return offsets_.empty() ? 0 : offsets_.back(); }

  Param<S, B>& char_embedding() { return embedding_; }
  Param<S, B>& weight() { return weight_; }
  Param<S, B>& bias() { return bias_; }

 private:
  /// Fills offsets_ (windows of column j: offsets_[j] .. offsets_[j+1]), window_chars_ (the
  /// table column of each window slot, -1 for zeros) and empty_runs_ (columns without windows).
  void plan_windows(const Batch& batch) {
    batch.validate();
    const Index n = batch.columns();
    const Index cw = batch.char_width;
    if (batch.chars.empty() || cw <= 0)
      throw ShapeError("mtlm: CharCnn needs character ids: the batch has " +
                       std::to_string(batch.chars.size()) + " (char_width " + std::to_string(cw) +
                       ") for " + std::to_string(n) + " positions");
    offsets_.resize(static_cast<std::size_t>(n) + 1);
    offsets_[0] = 0;
    lengths_.resize(static_cast<std::size_t>(n));
    for (Index b = 0; b < batch.batch_size; ++b) {
      const Index length = batch.lengths[static_cast<std::size_t>(b)];
      for (Index t = 0; t < batch.max_length; ++t) {
        const Index c = batch.column(b, t);
        Index chars = 0;
        if (t < length) {
          const TokenId* ids = batch.chars.data() + c * cw;
          for (Index k = 0; k < cw; ++k) {
            if (ids[k] < 0 || ids[k] >= vocab_)
              throw ShapeError("mtlm: CharCnn: character id " + std::to_string(ids[k]) +
                               " (sequence " + std::to_string(b) + ", position " +
                               std::to_string(t) + ", character " + std::to_string(k) +
                               ") is outside the character vocabulary of size " +
                               std::to_string(vocab_));
            if (ids[k] != 0) chars = k + 1;
          }
        }
        lengths_[static_cast<std::size_t>(c)] = chars;
        const Index windows = chars == 0 ? 0 : std::max<Index>(1, chars - width_ + 1);
        offsets_[static_cast<std::size_t>(c) + 1] = windows;
      }
    }
    empty_runs_.clear();
    for (Index c = 0; c < n; ++c) {
      auto& count = offsets_[static_cast<std::size_t>(c) + 1];
      if (count == 0) {
        if (!empty_runs_.empty() && empty_runs_.back().first + empty_runs_.back().second == c)
          ++empty_runs_.back().second;
        else
          empty_runs_.emplace_back(c, 1);
      }
      count += offsets_[static_cast<std::size_t>(c)];
    }
    window_chars_.resize(static_cast<std::size_t>(offsets_.back() * width_));
    Index* slot = window_chars_.data();
    for (Index c = 0; c < n; ++c) {
      const auto j = static_cast<std::size_t>(c);
      const Index windows = offsets_[j + 1] - offsets_[j];
      const Index chars = lengths_[j];
      const TokenId* ids = batch.chars.data() + c * cw;
      for (Index p = 0; p < windows; ++p)
        for (Index w = 0; w < width_; ++w) {
          const Index k = p + w;
          *slot++ = (k < chars && ids[k] != 0) ? Index{ids[k]} : Index{-1};
        }
    }
  }

  void zero_empty_columns(MatrixView<S> m) const {
    for (const auto& [first, count] : empty_runs_) B::fill(m.middle_cols(first, count), S(0));
  }

  Index vocab_, dim_, filters_, width_;
  Param<S, B> embedding_, weight_, bias_;
  // per forward: window plan (host), argmax routing, activations
  std::vector<Index> offsets_, lengths_, window_chars_;
  Matrix<Index, B> argmax_;
  std::vector<std::pair<Index, Index>> empty_runs_;
  Matrix<S, B> windows_, scores_, pooled_, y_;
  // backward workspaces
  Matrix<S, B> dpooled_, dscores_, dwindows_;
};

}  // namespace mtlm
