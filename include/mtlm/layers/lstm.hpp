// @brief LSTM layers (Lstm, BiLstm): the recurrent encoder of choice for tagging and intent
// models on small data. Same formulation, gate order (i, f, g, o) and two biases as PyTorch's
// nn.LSTM, so its weights import one to one.
//
// Contract (see recurrent.hpp for shapes and padding): per step, with a = W_ih x + b_ih +
// W_hh h_{t-1} + b_hh split into (i, f, g, o): c_t = s(f) c_{t-1} + s(i) tanh(g),
// h_t = s(o) tanh(c_t). Cached for backward: the activated gates and c_t of every real token.
#pragma once

#include "mtlm/layers/recurrent.hpp"

namespace mtlm::backend {

// CPU kernels

/// One LSTM step over n columns. gates (4H x n) holds W_ih x + b_ih on entry and the activated
/// gates (i, f, g, o) on return; recurrent = W_hh h_{t-1}.
template <class S>
void lstm_cell_forward(Cpu, MatrixView<S> gates, In<S> recurrent, In<S> bias_hh, In<S> c_prev,
                       MatrixView<S> c, MatrixView<S> h) {
  using recurrent_detail::segment;
  const Index hs = h.rows;
  const auto b = segment(bias_hh, 0, 0, 4 * hs);
  for (Index j = 0; j < h.cols; ++j) {
    auto a = segment(gates, j, 0, 4 * hs);
    a += segment(recurrent, j, 0, 4 * hs) + b;
    a.head(2 * hs) = a.head(2 * hs).logistic();
    a.segment(2 * hs, hs) = a.segment(2 * hs, hs).tanh();
    a.tail(hs) = a.tail(hs).logistic();
    auto cj = segment(c, j, 0, hs);
    cj = a.segment(hs, hs) * segment(c_prev, j, 0, hs) + a.head(hs) * a.segment(2 * hs, hs);
    segment(h, j, 0, hs) = a.tail(hs) * cj.tanh();
  }
}

/// Backward of one LSTM step. dh: total gradient w.r.t. h_t; dc: gradient carried into c_t
/// from step t + 1. Writes the gradient w.r.t. the gate pre-activations (4H x n) and the carry
/// dc_{t-1} = dc_t * f.
template <class S>
void lstm_cell_backward(Cpu, In<S> gates, In<S> c, In<S> c_prev, In<S> dh, In<S> dc,
                        MatrixView<S> dgates, MatrixView<S> dc_prev) {
  using recurrent_detail::segment;
  const Index hs = c.rows;
  for (Index j = 0; j < c.cols; ++j) {
    const auto a = segment(gates, j, 0, 4 * hs);
    const auto i = a.head(hs), f = a.segment(hs, hs), g = a.segment(2 * hs, hs), o = a.tail(hs);
    const auto dhj = segment(dh, j, 0, hs);
    auto da = segment(dgates, j, 0, 4 * hs);
    // Scratch without allocation: tanh(c_t) lives in the o-gate slot until its gradient is
    // written, and the total dc_t in dc_prev's column until it becomes the carry dc_t * f.
    auto tc = da.tail(hs);
    tc = segment(c, j, 0, hs).tanh();
    auto dct = segment(dc_prev, j, 0, hs);
    dct = segment(dc, j, 0, hs) + dhj * o * (S(1) - tc.square());
    da.head(hs) = dct * g * i * (S(1) - i);
    da.segment(hs, hs) = dct * segment(c_prev, j, 0, hs) * f * (S(1) - f);
    da.segment(2 * hs, hs) = dct * i * (S(1) - g.square());
    tc = dhj * tc * o * (S(1) - o);
    dct *= f;
  }
}

}  // namespace mtlm::backend

namespace mtlm {

/// The LSTM step for Recurrent<>: gates i, f, g, o; state = cell state c.
struct LstmCell {
  static constexpr std::string_view name = "LSTM";
  static constexpr Index gate_count = 4;
  static constexpr bool has_state = true;
  static constexpr bool carries_state = true;
  static constexpr bool separate_recurrent_gradient = false;

  template <class B, class S>
  static void forward(B, const CellStep<S>& s) {
    lstm_cell_forward(B{}, s.gates, s.recurrent, s.bias_hh, s.state_prev, s.state, s.h);
  }
  template <class B, class S>
  static void backward(B, const CellStepGradient<S>& s) {
    lstm_cell_backward(B{}, s.gates, s.state, s.state_prev, s.dh, s.dstate, s.dgates,
                       s.dstate_prev);
  }
};

/// LSTM reading each sequence forwards; output H per token.
template <Index In, Index H, class S = float, class B = Cpu>
using Lstm = Recurrent<LstmCell, In, H, Direction::unidirectional, S, B>;

/// LSTM in both directions; output [forward; reverse], 2H per token.
template <Index In, Index H, class S = float, class B = Cpu>
using BiLstm = Recurrent<LstmCell, In, H, Direction::bidirectional, S, B>;

}  // namespace mtlm
