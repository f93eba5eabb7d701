// @brief Elman RNN layers (Rnn, BiRnn) with tanh: the simplest recurrent encoder, a baseline
// for the gated cells. PyTorch's nn.RNN formulation with two biases, so its weights import one
// to one.
//
// Contract (see recurrent.hpp for shapes and padding): h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1}
// + b_hh). Cached for backward: h_t of every real token.
#pragma once

#include "mtlm/layers/recurrent.hpp"

namespace mtlm::backend {

// CPU kernels

/// One RNN step over n columns: h = tanh(pre + recurrent + bias_hh), pre = W_ih x + b_ih.
template <class S>
void rnn_cell_forward(Cpu, In<S> pre, In<S> recurrent, In<S> bias_hh, MatrixView<S> h) {
  using recurrent_detail::segment;
  const Index hs = h.rows;
  const auto b = segment(bias_hh, 0, 0, hs);
  for (Index j = 0; j < h.cols; ++j)
    segment(h, j, 0, hs) = (segment(pre, j, 0, hs) + segment(recurrent, j, 0, hs) + b).tanh();
}

/// Backward of one RNN step: dpre = dh * (1 - h^2), the gradient w.r.t. both W_ih x + b_ih and
/// W_hh h_{t-1} + b_hh.
template <class S>
void rnn_cell_backward(Cpu, In<S> h, In<S> dh, MatrixView<S> dpre) {
  using recurrent_detail::segment;
  const Index hs = h.rows;
  for (Index j = 0; j < h.cols; ++j)
    segment(dpre, j, 0, hs) = segment(dh, j, 0, hs) * (S(1) - segment(h, j, 0, hs).square());
}

}  // namespace mtlm::backend

namespace mtlm {

/// The Elman step for Recurrent<>: one tanh "gate" that is the hidden state itself.
struct RnnCell {
  static constexpr std::string_view name = "RNN";
  static constexpr Index gate_count = 1;
  static constexpr bool has_state = false;
  static constexpr bool carries_state = false;
  static constexpr bool separate_recurrent_gradient = false;

  template <class B, class S>
  static void forward(B, const CellStep<S>& s) {
    rnn_cell_forward(B{}, s.gates, s.recurrent, s.bias_hh, s.h);
  }
  template <class B, class S>
  static void backward(B, const CellStepGradient<S>& s) {
    rnn_cell_backward(B{}, s.h, s.dh, s.dgates);
  }
};

/// Elman RNN reading each sequence forwards; output H per token.
template <Index In, Index H, class S = float, class B = Cpu>
using Rnn = Recurrent<RnnCell, In, H, Direction::unidirectional, S, B>;

/// Elman RNN in both directions; output [forward; reverse], 2H per token.
template <Index In, Index H, class S = float, class B = Cpu>
using BiRnn = Recurrent<RnnCell, In, H, Direction::bidirectional, S, B>;

}  // namespace mtlm
