// @brief GRU layers (Gru, BiGru): a gated recurrent encoder with three gates instead of the
// LSTM's four and no separate cell state. PyTorch's formulation, gate order (r, z, n) and two
// biases, so nn.GRU weights import one to one.
//
// Contract (see recurrent.hpp for shapes and padding): per step, r = s(W_ir x + b_ir + W_hr h +
// b_hr), z likewise, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h_t = (1 - z) n + z h_{t-1}.
// Cached for backward: r, z, n and W_hn h_{t-1} + b_hn of every real token.
#pragma once

#include "mtlm/layers/recurrent.hpp"

namespace mtlm::backend {

// CPU kernels

/// One GRU step over n columns. gates (3H x n) holds W_ih x + b_ih on entry and (r, z, n) on
/// return; recurrent = W_hh h_{t-1}; hn receives W_hn h_{t-1} + b_hn (needed by backward).
template <class S>
void gru_cell_forward(Cpu, MatrixView<S> gates, In<S> recurrent, In<S> bias_hh, In<S> h_prev,
                      MatrixView<S> hn, MatrixView<S> h) {
  using recurrent_detail::segment;
  const Index hs = h.rows;
  const auto b = segment(bias_hh, 0, 0, 3 * hs);
  for (Index j = 0; j < h.cols; ++j) {
    auto a = segment(gates, j, 0, 3 * hs);
    const auto q = segment(recurrent, j, 0, 3 * hs);
    a.head(2 * hs) = (a.head(2 * hs) + q.head(2 * hs) + b.head(2 * hs)).logistic();
    auto hnj = segment(hn, j, 0, hs);
    hnj = q.tail(hs) + b.tail(hs);
    auto n = a.tail(hs);
    n = (n + a.head(hs) * hnj).tanh();
    const auto z = a.segment(hs, hs);
    segment(h, j, 0, hs) = (S(1) - z) * n + z * segment(h_prev, j, 0, hs);
  }
}

/// Backward of one GRU step. dh: total gradient w.r.t. h_t. Writes the gradients w.r.t.
/// W_ih x + b_ih (dgates) and W_hh h_{t-1} + b_hh (drecurrent; they differ in the n block by
/// the factor r) and adds the direct path dh * z into dh_prev.
template <class S>
void gru_cell_backward(Cpu, In<S> gates, In<S> hn, In<S> h_prev, In<S> dh, MatrixView<S> dgates,
                       MatrixView<S> drecurrent, MatrixView<S> dh_prev) {
  using recurrent_detail::segment;
  const Index hs = dh.rows;
  for (Index j = 0; j < dh.cols; ++j) {
    const auto a = segment(gates, j, 0, 3 * hs);
    const auto r = a.head(hs), z = a.segment(hs, hs), n = a.tail(hs);
    const auto dhj = segment(dh, j, 0, hs);
    auto dp = segment(dgates, j, 0, 3 * hs);
    auto dq = segment(drecurrent, j, 0, 3 * hs);
    auto dn = dp.tail(hs);
    dn = dhj * (S(1) - z) * (S(1) - n.square());
    dp.head(hs) = dn * segment(hn, j, 0, hs) * r * (S(1) - r);
    dp.segment(hs, hs) = dhj * (segment(h_prev, j, 0, hs) - n) * z * (S(1) - z);
    dq.head(2 * hs) = dp.head(2 * hs);
    dq.tail(hs) = dn * r;
    segment(dh_prev, j, 0, hs) += dhj * z;
  }
}

}  // namespace mtlm::backend

namespace mtlm {

/// The GRU step for Recurrent<>: gates r, z, n; state = W_hn h_{t-1} + b_hn (a cache, nothing
/// is carried through it).
struct GruCell {
  static constexpr std::string_view name = "GRU";
  static constexpr Index gate_count = 3;
  static constexpr bool has_state = true;
  static constexpr bool carries_state = false;
  static constexpr bool separate_recurrent_gradient = true;

  template <class B, class S>
  static void forward(B, const CellStep<S>& s) {
    gru_cell_forward(B{}, s.gates, s.recurrent, s.bias_hh, s.h_prev, s.state, s.h);
  }
  template <class B, class S>
  static void backward(B, const CellStepGradient<S>& s) {
    gru_cell_backward(B{}, s.gates, s.state, s.h_prev, s.dh, s.dgates, s.drecurrent, s.dh_prev);
  }
};

/// GRU reading each sequence forwards; output H per token.
template <Index In, Index H, class S = float, class B = Cpu>
using Gru = Recurrent<GruCell, In, H, Direction::unidirectional, S, B>;

/// GRU in both directions; output [forward; reverse], 2H per token.
template <Index In, Index H, class S = float, class B = Cpu>
using BiGru = Recurrent<GruCell, In, H, Direction::bidirectional, S, B>;

}  // namespace mtlm
