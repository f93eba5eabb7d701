// @brief Recurrent<Cell, In, H, Direction>: the time loop shared by the Elman RNN, LSTM and GRU
// layers (rnn.hpp, lstm.hpp, gru.hpp define the cells and the names Rnn, Lstm, Gru, BiLstm, ...).
// The loop, the handling of sequence lengths and the large matrix products live here once;
// a cell only supplies its fused element-wise step kernels.
//
// Contract: forward takes x (In x B*T, column b*T + t) and returns y (D*H x B*T, D = 2 when
// bidirectional: rows [0, H) the forward direction, rows [H, 2H) the reverse one); y is 0 at
// padded positions, the initial state is 0, and the reverse direction starts at each sequence's
// last real token. forward copies what backward needs (the packed input, gate activations,
// hidden and cell states), so x may change after forward. backward takes dy (D*H x B*T; its
// padded columns are ignored), adds the parameter gradients (+=) and returns dx (In x B*T,
// exactly 0 at padded columns).
//
// How: each direction packs the real tokens time-major with the sequences sorted longest first,
// as PyTorch's pack_padded_sequence does, so the sequences still running at step t are the
// first B_t columns of step t's block. Padding is then never computed (no masks), the reverse
// direction is the forward recurrence over a packing that reads each sequence backwards, and
// W_ih x for all steps, dW_ih, dW_hh and dx are each one GEMM over all real tokens; per step
// there remain one recurrent GEMM (all gates stacked) and one fused element-wise kernel.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/backend/packed_gemv.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/param.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mtlm::backend {

// CPU kernels

namespace recurrent_detail {
/// Rows [first, first + rows) of column `col` as an Eigen array (vectorised element-wise math).
template <class S>
auto segment(MatrixView<S> v, Index col, Index first, Index rows) {
  using A = Eigen::Array<std::remove_const_t<S>, Eigen::Dynamic, 1>;
  using M = std::conditional_t<std::is_const_v<S>, const A, A>;
  return Eigen::Map<M>(v.col_ptr(col) + first, rows);
}
}  // namespace recurrent_detail

/// dst.col(j) = src.col(columns[j]): packs real tokens (see SequencePacking).
template <class S>
void gather_packed_columns(Cpu, In<S> src, std::span<const Index> columns, MatrixView<S> dst) {
  for (std::size_t j = 0; j < columns.size(); ++j)
    Cpu::eigen(dst.col(static_cast<Index>(j))) = Cpu::eigen(src.col(columns[j]));
}

/// dst.col(columns[j]) = (or +=) src.col(j): unpacks; other columns of dst are left alone.
template <class S>
void scatter_packed_columns(Cpu, In<S> src, std::span<const Index> columns, MatrixView<S> dst,
                            bool accumulate) {
  for (std::size_t j = 0; j < columns.size(); ++j) {
    auto out = Cpu::eigen(dst.col(columns[j]));
    const auto in = Cpu::eigen(src.col(static_cast<Index>(j)));
    if (accumulate)
      out += in;
    else
      out = in;
  }
}

}  // namespace mtlm::backend

namespace mtlm {

/// Whether a recurrent layer reads each sequence forwards only, or forwards and backwards.
enum class Direction { unidirectional, bidirectional };

/// Where the real tokens of a batch go when packed time-major, longest sequence first.
/// Packed column offset[t] + r is step t of the r-th longest sequence (r < step_size[t]); it reads
/// batch column forward_columns[...] in the forward direction and reverse_columns[...] (the
/// sequence read from its last real token) in the reverse one.
struct SequencePacking {
  std::vector<Index> order;      ///< sequence indices, longest first (ties: lower index first)
  std::vector<Index> step_size;  ///< B_t, non-increasing in t
  std::vector<Index> offset;     ///< first packed column of step t
  std::vector<Index> forward_columns;
  std::vector<Index> reverse_columns;
  Index steps = 0;          ///< longest real length
  Index total = 0;          ///< real tokens in the batch
  Index batch_columns = 0;  ///< B*T of the batch this packing was built for

  /// Rebuilds for `batch`; the vectors keep their capacity, so steady state does not allocate.
  void build(const Batch& batch) {
    batch.validate();
    const Index batch_size = batch.batch_size;
    order.resize(static_cast<std::size_t>(batch_size));
    for (Index b = 0; b < batch_size; ++b) order[static_cast<std::size_t>(b)] = b;
    // std::sort (unlike std::stable_sort) never allocates; the index breaks ties.
    std::sort(order.begin(), order.end(), [&](Index a, Index b) {
      const Index la = length(batch, a), lb = length(batch, b);
      return la != lb ? la > lb : a < b;
    });
    steps = batch_size > 0 ? length(batch, order.front()) : 0;
    step_size.assign(static_cast<std::size_t>(steps), 0);
    offset.assign(static_cast<std::size_t>(steps), 0);
    total = 0;
    for (Index t = 0; t < steps; ++t) {
      Index n = 0;
      while (n < batch_size && length(batch, order[static_cast<std::size_t>(n)]) > t) ++n;
      step_size[static_cast<std::size_t>(t)] = n;
      offset[static_cast<std::size_t>(t)] = total;
      total += n;
    }
    forward_columns.resize(static_cast<std::size_t>(total));
    reverse_columns.resize(static_cast<std::size_t>(total));
    for (Index t = 0; t < steps; ++t)
      for (Index r = 0; r < size(t); ++r) {
        const Index b = order[static_cast<std::size_t>(r)];
        const auto j = static_cast<std::size_t>(first(t) + r);
        forward_columns[j] = batch.column(b, t);
        reverse_columns[j] = batch.column(b, length(batch, b) - 1 - t);
      }
    batch_columns = batch.columns();
  }

  Index size(Index t) const { return step_size[static_cast<std::size_t>(t)]; }
  Index first(Index t) const { return offset[static_cast<std::size_t>(t)]; }
  std::span<const Index> columns(bool reverse) const {
    return reverse ? std::span<const Index>(reverse_columns)
                   : std::span<const Index>(forward_columns);
  }

 private:
  static Index length(const Batch& batch, Index b) {
    return batch.lengths[static_cast<std::size_t>(b)];
  }
};

/// A cell (LstmCell, GruCell, RnnCell) tells Recurrent<> its shape and calls its kernels:
///   name, gate_count (G: W_ih is G*H x In),
///   has_state: forward fills CellStep::state (H rows per token),
///   carries_state: the gradient flows through the state to the previous step (LSTM's c),
///   separate_recurrent_gradient: the gradients w.r.t. W_ih x and W_hh h differ (GRU); without
///     it, W_hh h is added into the gates before the cell runs and CellStep::recurrent is zero,
///   forward(B, const CellStep<S>&) and backward(B, const CellStepGradient<S>&).
/// Views of one time step handed to a cell's forward kernel; n = sequences still running.
template <class S>
struct CellStep {
  MatrixView<S> gates;      ///< G*H x n: W_ih x + b_ih (+ W_hh h_{t-1}, see above) on entry,
                            ///< the cell's cached gates after
  ConstView<S> recurrent;   ///< G*H x n: W_hh h_{t-1} (no bias), or zeros (see above)
  ConstView<S> bias_hh;     ///< G*H x 1
  ConstView<S> h_prev;      ///< H x n (zeros at t = 0)
  ConstView<S> state_prev;  ///< S_rows x n (zeros at t = 0)
  MatrixView<S> h;          ///< H x n out
  MatrixView<S> state;      ///< S_rows x n out: LSTM cell state, GRU's W_hn h + b_hn, none for RNN
};

/// Views of one time step handed to a cell's backward kernel.
template <class S>
struct CellStepGradient {
  ConstView<S> gates, h, h_prev, state, state_prev;  ///< as cached by forward
  ConstView<S> dh;            ///< H x n: total gradient of the loss w.r.t. h_t
  ConstView<S> dstate;        ///< S_rows x n: gradient carried into this step's state (LSTM: dc)
  MatrixView<S> dstate_prev;  ///< S_rows x n out: gradient carried to the previous state
  MatrixView<S> dh_prev;      ///< H x n: += gradient reaching h_{t-1} other than through W_hh
  MatrixView<S> dgates;       ///< G*H x n out: gradient w.r.t. W_ih x + b_ih
  MatrixView<S> drecurrent;   ///< G*H x n out: gradient w.r.t. W_hh h_{t-1} + b_hh (only if the
                              ///< cell has separate_recurrent_gradient, else it aliases dgates)
};

/// One direction of a recurrent layer: its four parameters and the packed workspaces.
template <class Cell, class S, class B>
class RecurrentSweep {
 public:
  static constexpr Index gate_count = Cell::gate_count;

  void resize(Index in, Index hidden) {
    in_ = in;
    hidden_ = hidden;
    weight_ih_.resize(gate_count * hidden, in);
    weight_hh_.resize(gate_count * hidden, hidden);
    bias_ih_.resize(gate_count * hidden, 1);
    bias_hh_.resize(gate_count * hidden, 1);
  }

  /// PyTorch's default: every weight and bias from U(-1/sqrt(H), 1/sqrt(H)).
  void initialize(Rng& rng) {
    const double k = 1.0 / std::sqrt(static_cast<double>(hidden_));
    for (Param<S, B>* p : {&weight_ih_, &weight_hh_, &bias_ih_, &bias_hh_})
      p->initialize(init::Uniform{-k, k}, p->cols(), p->rows(), rng);
  }

  template <class F>
  void for_each_param(F& f, bool reverse) {
    f(reverse ? "weight_ih_reverse" : "weight_ih", weight_ih_);
    f(reverse ? "weight_hh_reverse" : "weight_hh", weight_hh_);
    f(reverse ? "bias_ih_reverse" : "bias_ih", bias_ih_);
    f(reverse ? "bias_hh_reverse" : "bias_hh", bias_hh_);
  }

  /// Runs the recurrence over the tokens `columns` selects from x; writes h into `y` (H x B*T)
  /// at the same columns.
  void forward(ConstView<S> x, const SequencePacking& p, std::span<const Index> columns,
               MatrixView<S> y) {
    const Index gh = gate_count * hidden_, n_total = p.total;
    const Index first_size = p.steps > 0 ? p.size(0) : 0;
    xs_.resize(in_, n_total);
    gather_packed_columns(B{}, x, columns, xs_.view());
    gates_.resize(gh, n_total);
    affine(B{}, Transpose::no, weight_ih_.value.view(), xs_.view(), bias_ih_.value.view(),
           gates_.view());
    h_.resize(hidden_, n_total);
    state_.resize(state_rows(), n_total);
    if constexpr (Cell::separate_recurrent_gradient) recurrent_.resize(gh, first_size);
    zeros_.set_zero(std::max(gh, hidden_), first_size);

    const bool packed_steps = packs_single_steps(p);
    Index single_steps = 0;
    for (Index t = 0; t < p.steps; ++t) {
      const Index n = p.size(t), at = p.first(t);
      ConstView<S> recurrent = zeros_.view().middle_rows(0, gh).middle_cols(0, n);
      ConstView<S> h_prev = zeros_.view().middle_rows(0, hidden_).middle_cols(0, n);
      ConstView<S> state_prev = zeros_.view().middle_rows(0, state_rows()).middle_cols(0, n);
      if (t > 0) {
        const Index prev = p.first(t - 1);
        h_prev = h_.view().middle_cols(prev, n);
        state_prev = state_.view().middle_cols(prev, n);
        // Without a separate gradient the cell only adds W_hh h to W_ih x: accumulating into
        // the step's gates saves zeroing and re-reading a separate product on every step.
        constexpr bool separate = Cell::separate_recurrent_gradient;
        const MatrixView<S> product =
            separate ? recurrent_.view().middle_cols(0, n) : gates_.view().middle_cols(at, n);
        const S beta = separate ? S(0) : S(1);
        if (packed_steps && n == 1) {
          multiply_single_step(h_prev, beta, product, single_steps++);
        } else {
          B::gemm(Transpose::no, Transpose::no, S(1), weight_hh_.value.view(), h_prev, beta, product);
        }
        if constexpr (separate) recurrent = product;
      }
      Cell::forward(
          B{},
          CellStep<S>{gates_.view().middle_cols(at, n), recurrent, bias_hh_.value.view(), h_prev,
                      state_prev, h_.view().middle_cols(at, n), state_.view().middle_cols(at, n)});
    }
    scatter_packed_columns(B{}, h_.view(), columns, y, false);
  }

  /// Back-propagates dy (H x B*T) through the last forward; adds parameter gradients and adds
  /// the input gradient into dx (In x B*T) at the same columns.
  void backward(ConstView<S> dy, const SequencePacking& p, std::span<const Index> columns,
                MatrixView<S> dx) {
    const Index gh = gate_count * hidden_, n_total = p.total;
    const Index first_size = p.steps > 0 ? p.size(0) : 0;
    dh_.resize(hidden_, n_total);
    gather_packed_columns(B{}, dy, columns, dh_.view());
    dstate_.set_zero(Cell::carries_state ? state_rows() : 0, n_total);
    dgates_.resize(gh, n_total);
    if constexpr (Cell::separate_recurrent_gradient) drecurrent_.resize(gh, n_total);
    scratch_.set_zero(hidden_, first_size);
    MatrixView<S> drecurrent_all =
        Cell::separate_recurrent_gradient ? drecurrent_.view() : dgates_.view();

    for (Index t = p.steps - 1; t >= 0; --t) {
      const Index n = p.size(t), at = p.first(t);
      const Index prev = t > 0 ? p.first(t - 1) : 0;
      ConstView<S> h_prev = zeros_.view().middle_rows(0, hidden_).middle_cols(0, n);
      ConstView<S> state_prev = zeros_.view().middle_rows(0, state_rows()).middle_cols(0, n);
      MatrixView<S> dh_prev = scratch_.view().middle_cols(0, n);
      MatrixView<S> dstate_prev = scratch_.view().middle_rows(0, dstate_.rows()).middle_cols(0, n);
      if (t > 0) {
        h_prev = h_.view().middle_cols(prev, n);
        state_prev = state_.view().middle_cols(prev, n);
        dh_prev = dh_.view().middle_cols(prev, n);
        dstate_prev = dstate_.view().middle_cols(prev, n);
      }
      const MatrixView<S> drecurrent = drecurrent_all.middle_cols(at, n);
      Cell::backward(B{}, CellStepGradient<S>{
                              gates_.view().middle_cols(at, n), h_.view().middle_cols(at, n),
                              h_prev, state_.view().middle_cols(at, n), state_prev,
                              dh_.view().middle_cols(at, n), dstate_.view().middle_cols(at, n),
                              dstate_prev, dh_prev, dgates_.view().middle_cols(at, n), drecurrent});
      if (t > 0)
        B::gemm(Transpose::yes, Transpose::no, S(1), weight_hh_.value.view(), drecurrent, S(1),
                dh_prev);
    }

    B::gemm(Transpose::no, Transpose::yes, S(1), dgates_.view(), xs_.view(), S(1),
            weight_ih_.grad.view());
    B::sum_columns(dgates_.view(), S(1), bias_ih_.grad.view());
    B::sum_columns(drecurrent_all, S(1), bias_hh_.grad.view());
    // dW_hh pairs step t's recurrent gradient with h_{t-1}: copy the previous states next to
    // the steps that read them (t >= 1; h_{-1} = 0 adds nothing), then one GEMM.
    if (p.steps > 1) {
      h_prev_.resize(hidden_, n_total - first_size);
      for (Index t = 1; t < p.steps; ++t)
        B::copy(h_.view().middle_cols(p.first(t - 1), p.size(t)),
                h_prev_.view().middle_cols(p.first(t) - first_size, p.size(t)));
      B::gemm(Transpose::no, Transpose::yes, S(1),
              drecurrent_all.middle_cols(first_size, n_total - first_size), h_prev_.view(), S(1),
              weight_hh_.grad.view());
    }
    dxs_.resize(in_, n_total);
    B::gemm(Transpose::yes, Transpose::no, S(1), weight_ih_.value.view(), dgates_.view(), S(0),
            dxs_.view());
    scatter_packed_columns(B{}, dxs_.view(), columns, dx, true);
  }

  Param<S, B>& weight_ih() { return weight_ih_; }
  Param<S, B>& weight_hh() { return weight_hh_; }
  Param<S, B>& bias_ih() { return bias_ih_; }
  Param<S, B>& bias_hh() { return bias_hh_; }

 private:
  Index state_rows() const { return Cell::has_state ? hidden_ : 0; }

  /// Whether the steps at batch 1 (one sentence, or the tail of a batch's longest) multiply W_hh
  /// by their single column from a copy packed for it (packed_gemv.hpp, CPU only): where there
  /// are enough of them to repay the copy's stores.
  bool packs_single_steps(const SequencePacking& p) const {
    constexpr Index min_single_steps = 4;
    if constexpr (std::is_same_v<B, Cpu>) {
      Index single_steps = 0;
      for (Index t = 1; t < p.steps; ++t) single_steps += p.size(t) == 1 ? 1 : 0;
      return single_steps >= min_single_steps &&
             backend::packed_gemv::suits<S>(gate_count * hidden_, hidden_);
    } else {
      return false;
    }
  }

  /// product = W_hh h + beta product for one column h, the forward's `nth` such step: the first
  /// packs W_hh as it goes, the later ones read the copy, each in the order opposite to the last.
  void multiply_single_step(ConstView<S> h, S beta, MatrixView<S> product, Index nth) {
    if constexpr (std::is_same_v<B, Cpu>) {
      namespace kernel = backend::packed_gemv;
      const Index gh = gate_count * hidden_;
      if (nth == 0) {
        weight_hh_packed_.resize(gh, hidden_);
        const ConstView<S> w = weight_hh_.value.view();
        kernel::multiply_and_pack(gh, hidden_, S(1), w.data, w.stride, h.data, beta, product.data,
                                  weight_hh_packed_.data());
      } else {
        kernel::multiply(gh, hidden_, S(1), weight_hh_packed_.data(), h.data, beta, product.data,
                         /*last_block_first=*/nth % 2 == 1);
      }
    }
  }

  Index in_ = 0, hidden_ = 0;
  Param<S, B> weight_ih_, weight_hh_, bias_ih_, bias_hh_;
  // forward caches, packed (one column per real token)
  Matrix<S, B> xs_, gates_, h_, state_;
  // per-step scratch and zero initial state, B_0 columns
  Matrix<S, B> recurrent_, zeros_, scratch_;
  // W_hh laid out for steps at batch 1 (CPU only, see multiply_single_step)
  Matrix<S, B> weight_hh_packed_;
  // backward workspaces, packed
  Matrix<S, B> dh_, dstate_, dgates_, drecurrent_, h_prev_, dxs_;
};

/// A recurrent layer: one RecurrentSweep per direction over the same input.
template <class Cell, Index In, Index H, Direction Dir, class S = float, class B = Cpu>
  requires Dimension<In> && Dimension<H> && Backend<B>
class Recurrent {
 public:
  using Scalar = S;
  using BackendType = B;
  using CellType = Cell;
  static constexpr bool bidirectional = Dir == Direction::bidirectional;
  static constexpr Index directions = bidirectional ? 2 : 1;
  static constexpr Index input_dim = In;
  static constexpr Index hidden_dim = H;
  static constexpr Index output_dim = H == Dynamic ? Dynamic : directions * H;

  explicit Recurrent(Index in = In, Index hidden = H)
      : in_(resolve_dim(In, in, dim_name(" input dimension").c_str())),
        hidden_(resolve_dim(H, hidden, dim_name(" hidden dimension").c_str())) {
    for (auto& sweep : sweeps_) sweep.resize(in_, hidden_);
  }

  void initialize(Rng& rng) {
    for (auto& sweep : sweeps_) sweep.initialize(rng);
  }

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& batch, Mode = Mode::train) {
    check(x.rows, in_, "input rows");
    check(x.cols, batch.columns(), "input columns (batch_size * max_length)");
    packing_.build(batch);
    y_.set_zero(output_size(), x.cols);
    auto sweep_forward = [&](Index d) {
      sweeps_[static_cast<std::size_t>(d)].forward(x, packing_, packing_.columns(d == 1),
                                                   y_.view().middle_rows(d * hidden_, hidden_));
    };
    if constexpr (bidirectional) {
      // The directions share only their input; each writes its own rows of y.
      run_side_by_side(B{}, [&] { sweep_forward(0); }, [&] { sweep_forward(1); });
    } else {
      sweep_forward(0);
    }
    return y_;
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& batch) {
    check(dy.rows, output_size(), "output gradient rows");
    check(dy.cols, batch.columns(), "output gradient columns (batch_size * max_length)");
    check(batch.columns(), packing_.batch_columns,
          "batch columns in backward (expected: those of the last forward)");
    dx_.set_zero(in_, dy.cols);
    auto sweep_backward = [&](Index d, MatrixView<S> dx) {
      sweeps_[static_cast<std::size_t>(d)].backward(dy.middle_rows(d * hidden_, hidden_), packing_,
                                                    packing_.columns(d == 1), dx);
    };
    if constexpr (bidirectional) {
      // Both directions add into dx: the reverse one adds into its own buffer, summed after, so
      // they can run side by side and dx is the same sum (a + b) either way.
      dx_reverse_.set_zero(in_, dy.cols);
      run_side_by_side(B{}, [&] { sweep_backward(0, dx_.view()); },
                       [&] { sweep_backward(1, dx_reverse_.view()); });
      B::axpy(S(1), dx_reverse_.view(), dx_.view());
    } else {
      sweep_backward(0, dx_.view());
    }
    return dx_;
  }

  /// weight_ih (G*H x In), weight_hh (G*H x H), bias_ih, bias_hh (G*H x 1), then the same with
  /// "_reverse" for the reverse direction: PyTorch's names and shapes without the "_l0".
  template <class F>
  void for_each_param(F&& f) {
    for (Index d = 0; d < directions; ++d)
      sweeps_[static_cast<std::size_t>(d)].for_each_param(f, d == 1);
  }

  Index input_size() const { return in_; }
  Index hidden_size() const { return hidden_; }
  Index output_size() const { return directions * hidden_; }
  /// The parameters of one direction (0 forward, 1 reverse).
  RecurrentSweep<Cell, S, B>& sweep(Index direction) {
    return sweeps_.at(static_cast<std::size_t>(direction));
  }

 private:
  static std::string dim_name(const char* what) {
    return std::string(bidirectional ? "bidirectional " : "") + std::string(Cell::name) + what;
  }
  static void check(Index got, Index expected, const char* what) {
    if (got != expected)
      throw ShapeError("mtlm: " + dim_name(" ") + what + ": got " + std::to_string(got) +
                       ", expected " + std::to_string(expected));
  }

  Index in_, hidden_;
  std::array<RecurrentSweep<Cell, S, B>, static_cast<std::size_t>(directions)> sweeps_;
  SequencePacking packing_;
  Matrix<S, B> y_, dx_, dx_reverse_;
};

}  // namespace mtlm
