// @brief LinearChainCrf: a linear-chain conditional random field over the tags of each sequence.
// A per-token softmax scores every token on its own; the CRF adds a learned score for every pair
// of adjacent tags and for the first and the last tag, so training and decoding see whole tag
// sequences (an I-LOC right after O costs what the data says, or is excluded outright).
//
// Scores: a sequence of length L with emissions E (one column per token) and tags y scores
//   s(y) = start(y_0) + sum_t E(y_t, t) + sum_{t < L-1} transitions(y_t, y_{t+1}) + end(y_{L-1}),
// so transitions(i, j) is the score of tag i immediately followed by tag j (row: from, column:
// to; pytorch-crf's orientation). The loss of a sequence is its negative log-likelihood
// -log p(y | E) = log Z - s(y), log Z = log sum_{y'} exp s(y') over every tag sequence of length L.
//
// Contract: forward(emissions (Tags x B*T, column b*T + t), batch, gold tags) returns the reduced
// loss (CrfOptions::reduction; by default the mean over the sequences that have tags, as
// pytorch-crf's reduction="mean"). Gold tags are one vector per sequence: one id per real token,
// or empty / all ignore_index for a sequence without tags (no loss, zero gradient). forward packs
// the emissions of real tokens (padding is never read, NaN there is harmless), so the emissions
// may change afterwards. backward(scale, batch) adds scale * dL/d{transitions, start, end} to the
// gradients (+=, once per forward) and returns scale * dL/d emissions (Tags x B*T: marginal minus
// gold indicator per real token; exactly 0 at padding and for sequences without tags).
// decode(emissions, batch) is Viterbi over each sequence's real tokens; marginals(emissions,
// batch) gives p(y_t = i | E) per token and replaces the state a later backward would use.
//
// Constraints (set_bio_constraints, set_transition_allowed, set_start_allowed, set_end_allowed)
// give excluded transitions, first and last tags the score -inf: no path through them has
// probability or is decoded, and their parameter entries get exactly zero gradient (their stored
// values are kept but unused). Constraints are configuration, not parameters: set them again after
// loading a model. A gold path through an excluded transition would have zero probability, so
// forward throws mtlm::Error naming the sequence and the position.
//
// How: forward-backward in log space, batched over the sequences still running at each step (the
// real tokens packed time-major, longest sequence first, as in recurrent.hpp). The log-sum-exp over
// Tags x Tags for n sequences,  log sum_i exp(a(i, b) + A(i, j)) = m_b + c_j + log (K^T P)(j, b)
// with m_b = max_i a(i, b), c_j = max_i A(i, j), P = exp(a - m), K = exp(A - c), is one small GEMM
// per step instead of Tags^2 n exponentials. Every factor is <= 1, so nothing overflows; an entry
// whose sum falls below sqrt(smallest normal) (a spread of more than ~43 (float) or ~354 (double)
// within one step) is recomputed by a direct log-sum-exp, so results are accurate to rounding at
// any scale. Pair marginals reuse the backward pass's sums: with r_i = max_j A(i, j),
// K' = exp(A - r), Q = exp(v - m') for v = E_{t+1} + beta_{t+1}, the marginal of (y_t = i,
// y_{t+1} = j) is U(i) K'(i, j) Q(j) with U = exp(alpha_t + m' + r - log Z), so the transition
// gradient over all tokens is K' .* (U Q^T), one GEMM (steps whose backward sum was recomputed
// directly take the direct route).
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/layers/recurrent.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mtlm {

/// How the per-sequence losses are reduced (pytorch-crf's names).
enum class CrfReduction {
  mean,        ///< sum over sequences with tags / their number
  token_mean,  ///< sum over sequences with tags / their real tokens
  sum,
};

struct CrfOptions {
  /// A sequence whose tags are all ignore_index (or that has no tags at all) adds nothing.
  std::int32_t ignore_index = -100;
  CrfReduction reduction = CrfReduction::mean;
};

/// Where the real tokens of the sequences a CRF works on go when packed time-major, longest
/// first: step t of the r-th longest sequence is packed column first(t) + r, for r < size(t).
struct CrfPacking {
  std::vector<Index> order;      ///< sequence ids by rank, longest first (ties: lower id first)
  std::vector<Index> lengths;    ///< real length of each rank
  std::vector<Index> last;       ///< packed column of each rank's last token
  std::vector<Index> step_size;  ///< sequences running at step t (non-increasing)
  std::vector<Index> offset;     ///< first packed column of step t
  std::vector<Index> columns;    ///< batch column of each packed column
  Index steps = 0;               ///< longest selected length
  Index total = 0;               ///< packed columns (real tokens of the selected sequences)

  /// Packs the sequences b with selected[b] != 0 (every sequence when `selected` is empty). The
  /// vectors keep their capacity, so the steady state does not allocate.
  void build(const Batch& batch, std::span<const unsigned char> selected) {
    batch.validate();
    order.clear();
    for (Index b = 0; b < batch.batch_size; ++b)
      if (selected.empty() || selected[static_cast<std::size_t>(b)]) order.push_back(b);
    // std::sort (unlike std::stable_sort) never allocates; the index breaks ties.
    std::sort(order.begin(), order.end(), [&](Index a, Index b) {
      const Index la = batch.lengths[static_cast<std::size_t>(a)];
      const Index lb = batch.lengths[static_cast<std::size_t>(b)];
      return la != lb ? la > lb : a < b;
    });
    const std::size_t ranks = order.size();
    lengths.resize(ranks);
    for (std::size_t r = 0; r < ranks; ++r)
      lengths[r] = batch.lengths[static_cast<std::size_t>(order[r])];
    steps = ranks > 0 ? lengths.front() : 0;
    step_size.assign(static_cast<std::size_t>(steps), 0);
    offset.assign(static_cast<std::size_t>(steps), 0);
    total = 0;
    std::size_t running = ranks;
    for (Index t = 0; t < steps; ++t) {
      while (running > 0 && lengths[running - 1] <= t) --running;
      step_size[static_cast<std::size_t>(t)] = static_cast<Index>(running);
      offset[static_cast<std::size_t>(t)] = total;
      total += static_cast<Index>(running);
    }
    columns.resize(static_cast<std::size_t>(total));
    for (Index t = 0; t < steps; ++t)
      for (Index r = 0; r < size(t); ++r)
        columns[static_cast<std::size_t>(first(t) + r)] =
            batch.column(order[static_cast<std::size_t>(r)], t);
    last.resize(ranks);
    for (std::size_t r = 0; r < ranks; ++r) last[r] = first(lengths[r] - 1) + static_cast<Index>(r);
  }

  Index ranks() const { return static_cast<Index>(order.size()); }
  Index size(Index t) const { return step_size[static_cast<std::size_t>(t)]; }
  Index first(Index t) const { return offset[static_cast<std::size_t>(t)]; }
};

// CPU kernels --------------------------------------------------------------------------------
namespace backend {

namespace crf_detail {

template <class S>
inline constexpr S minus_infinity = -std::numeric_limits<S>::infinity();

/// Sums below this are recomputed directly: the terms dropped by underflow are then at most
/// Tags * denorm_min, negligible next to the sum.
template <class S>
inline const S underflow_limit = std::sqrt(std::numeric_limits<S>::min());

/// exp that maps -inf (an excluded tag or transition) to exactly 0, so excluded entries get
/// exactly zero probability and gradient. In float, Eigen's vectorised exp; squaring exp(x / 2)
/// turns the tiny positive number a clamping exp may return for -inf into 0 (Eigen 3.4
/// vectorises neither comparisons nor select) and stays within ~3 ulp elsewhere. In double
/// (gradient checks, reference runs) std::exp per entry, exact at -inf, and clear of GCC 12's
/// false -Wuninitialized inside Eigen's AVX-512 double exp (GCC bug 105593).
template <class Derived>
auto exp_or_zero(const Eigen::ArrayBase<Derived>& x) {
  using S = typename Derived::Scalar;
  if constexpr (std::is_same_v<S, float>)
    return (x * S(0.5)).exp().square();
  else
    return x.unaryExpr([](S v) { return std::exp(v); });
}

/// log sum_k exp(x_k), -inf when every term is -inf.
template <class Derived>
typename Derived::Scalar log_sum_exp(const Eigen::ArrayBase<Derived>& x) {
  using S = typename Derived::Scalar;
  const S max = x.maxCoeff();
  if (!(max > minus_infinity<S>)) return max;
  return max + std::log(exp_or_zero(x - max).sum());
}

/// The entries of a contiguous view (the packed workspaces) as one Eigen array: element-wise exp
/// and log then run over a whole step's block with one scalar tail, not one per column (which
/// at 17 tags costs as much as the vectorised part).
template <class S>
auto flat(MatrixView<S> v) {
  assert(v.contiguous());
  using A = Eigen::Array<std::remove_const_t<S>, Eigen::Dynamic, 1>;
  using M = std::conditional_t<std::is_const_v<S>, const A, A>;
  return Eigen::Map<M>(v.data, v.rows * v.cols);
}

/// Largest entry of every column into shift (1 x n); -inf (an all-excluded column) becomes 0.
template <class X, class M>
void column_maxima(const X& x, M& shift) {
  using S = typename X::Scalar;
  shift.row(0) = x.colwise().maxCoeff();
  for (Index k = 0; k < shift.cols(); ++k)
    if (!(shift(0, k) > minus_infinity<S>)) shift(0, k) = S(0);
}

}  // namespace crf_detail

/// by_column = exp(A - c) with c_j = max_i A(i, j) (column_max, Tags x 1); by_row = exp(A - r)
/// with r_i = max_j A(i, j) (row_max, Tags x 1). A maximum of -inf (a tag nothing may precede or
/// follow) is stored as 0, so its exponentials are 0 and never NaN.
template <class S>
void crf_transition_exponentials(Cpu, In<S> transitions, MatrixView<S> by_column,
                                 MatrixView<S> column_max, MatrixView<S> by_row,
                                 MatrixView<S> row_max) {
  using crf_detail::minus_infinity;
  const auto A = Cpu::eigen(transitions);
  auto K = Cpu::eigen(by_column);
  auto C = Cpu::eigen(column_max);
  auto Kr = Cpu::eigen(by_row);
  auto R = Cpu::eigen(row_max);
  C.col(0) = A.colwise().maxCoeff().transpose();
  R.col(0) = A.rowwise().maxCoeff();
  C.array() = (C.array() == minus_infinity<S>).select(S(0), C.array());
  R.array() = (R.array() == minus_infinity<S>).select(S(0), R.array());
  for (Index j = 0; j < transitions.cols; ++j) {
    K.col(j) = crf_detail::exp_or_zero(A.col(j).array() - C(j, 0)).matrix();
    Kr.col(j) = crf_detail::exp_or_zero(A.col(j).array() - R.col(0).array()).matrix();
  }
}

/// Per column k: shift(0, k) = max_i x(i, k) (0 when all are -inf), out = exp(x - shift).
/// out (contiguous) may be x.
template <class S>
void crf_shifted_exp(Cpu, In<S> x, MatrixView<S> shift, MatrixView<S> out) {
  const auto X = Cpu::eigen(x);
  auto M = Cpu::eigen(shift);
  auto O = Cpu::eigen(out);
  crf_detail::column_maxima(X, M);
  O = X.rowwise() - M.row(0);
  auto flat = crf_detail::flat(out);
  flat = crf_detail::exp_or_zero(flat);
}

/// One forward step for n sequences: alpha(j, k) = emissions(j, k) + log sum_i exp(prev(i, k) +
/// A(i, j)), given sums = K^T exp(prev - shift). Returns how many entries were recomputed directly
/// because their sum underflowed. alpha and sums are contiguous.
template <class S>
Index crf_alpha_step(Cpu, In<S> sums, In<S> shift, In<S> column_max, In<S> prev, In<S> transitions,
                     In<S> emissions, MatrixView<S> alpha) {
  const S limit = crf_detail::underflow_limit<S>;
  const auto Sm = Cpu::eigen(sums);
  const auto M = Cpu::eigen(shift);
  const auto C = Cpu::eigen(column_max);
  const auto P = Cpu::eigen(prev);
  const auto A = Cpu::eigen(transitions);
  const auto E = Cpu::eigen(emissions);
  auto Al = Cpu::eigen(alpha);
  auto flat = crf_detail::flat(alpha);
  flat = crf_detail::flat(sums).log();
  Al += E;
  Al.colwise() += C.col(0);
  Al.rowwise() += M.row(0);
  if (!(crf_detail::flat(sums).minCoeff() < limit)) return 0;
  Index direct = 0;
  for (Index k = 0; k < alpha.cols; ++k)
    for (Index j = 0; j < alpha.rows; ++j)
      if (Sm(j, k) < limit) {
        Al(j, k) = E(j, k) + crf_detail::log_sum_exp(P.col(k).array() + A.col(j).array());
        ++direct;
      }
  return direct;
}

/// One backward step for n sequences: beta(i, k) = log sum_j exp(A(i, j) + next_emissions(j, k) +
/// next_beta(j, k)), given sums = K' exp(v - shift) for v = next_emissions + next_beta. Marks in
/// `direct` the columns where an entry with a finite result had to be recomputed directly (their
/// pair marginals then take the direct route too); returns the number of such entries. beta and
/// sums are contiguous.
template <class S>
Index crf_beta_step(Cpu, In<S> sums, In<S> shift, In<S> row_max, In<S> next_emissions,
                    In<S> next_beta, In<S> transitions, MatrixView<S> beta,
                    std::span<unsigned char> direct) {
  const S limit = crf_detail::underflow_limit<S>;
  const auto Sm = Cpu::eigen(sums);
  const auto M = Cpu::eigen(shift);
  const auto R = Cpu::eigen(row_max);
  const auto E = Cpu::eigen(next_emissions);
  const auto Bn = Cpu::eigen(next_beta);
  const auto A = Cpu::eigen(transitions);
  auto Be = Cpu::eigen(beta);
  auto flat = crf_detail::flat(beta);
  flat = crf_detail::flat(sums).log();
  Be.colwise() += R.col(0);
  Be.rowwise() += M.row(0);
  std::fill(direct.begin(), direct.end(), static_cast<unsigned char>(0));
  if (!(crf_detail::flat(sums).minCoeff() < limit)) return 0;
  Index count = 0;
  for (Index k = 0; k < beta.cols; ++k)
    for (Index i = 0; i < beta.rows; ++i)
      if (Sm(i, k) < limit) {
        Be(i, k) = crf_detail::log_sum_exp(A.row(i).transpose().array() + E.col(k).array() +
                                           Bn.col(k).array());
        if (Be(i, k) > crf_detail::minus_infinity<S>) {
          direct[static_cast<std::size_t>(k)] = 1;
          ++count;
        }
      }
  return count;
}

/// log_z(0, r) = log sum_i exp(alpha(i, last[r]) + end(i)).
template <class S>
void crf_log_partition(Cpu, In<S> alpha, In<S> end, std::span<const Index> last,
                       MatrixView<S> log_z) {
  const auto Al = Cpu::eigen(alpha);
  const auto En = Cpu::eigen(end);
  auto Z = Cpu::eigen(log_z);
  for (std::size_t r = 0; r < last.size(); ++r)
    Z(0, static_cast<Index>(r)) =
        crf_detail::log_sum_exp(Al.col(last[r]).array() + En.col(0).array());
}

/// out = factor * exp(alpha + beta - log_z(0, k)) per column k: the token marginals, scaled.
/// out is contiguous.
template <class S>
void crf_token_marginals(Cpu, In<S> alpha, In<S> beta, In<S> log_z, S factor, MatrixView<S> out) {
  auto O = Cpu::eigen(out);
  O = Cpu::eigen(alpha) + Cpu::eigen(beta);
  O.rowwise() -= Cpu::eigen(log_z).row(0);
  auto flat = crf_detail::flat(out);
  flat = factor * crf_detail::exp_or_zero(flat);
}

/// U = exp(alpha + row_max + shift(0, k) - log_z(0, k)): with Q = exp(v - shift) stored by the
/// backward step, U(i) K'(i, j) Q(j) is the pair marginal of (i at t, j at t + 1). Zero in columns
/// marked `direct`. Where the backward step summed fast, U = gamma / sum <= 1 / underflow_limit;
/// the exponent is capped just above that, which only affects rows whose beta is -inf: there
/// every K'(i, j) Q(j) is exactly 0, and a finite U keeps their product 0 rather than NaN.
/// weights is contiguous.
template <class S>
void crf_transition_weights(Cpu, In<S> alpha, In<S> shift, In<S> row_max, In<S> log_z,
                            std::span<const unsigned char> direct, MatrixView<S> weights) {
  const S cap = S(1) - std::log(crf_detail::underflow_limit<S>);
  auto W = Cpu::eigen(weights);
  W = Cpu::eigen(alpha).colwise() + Cpu::eigen(row_max).col(0);
  W.rowwise() += Cpu::eigen(shift).row(0) - Cpu::eigen(log_z).row(0);
  auto flat = crf_detail::flat(weights);
  flat = crf_detail::exp_or_zero(flat.min(cap));
  for (Index k = 0; k < weights.cols; ++k)
    if (direct[static_cast<std::size_t>(k)]) W.col(k).setZero();
}

/// out(i, j) += factor * exp(alpha(i) + A(i, j) + next_emissions(j) + next_beta(j) - log_z): the
/// pair marginals of one step of one sequence, directly.
template <class S>
void crf_add_pair_marginals(Cpu, In<S> alpha, In<S> next_emissions, In<S> next_beta,
                            In<S> transitions, S log_z, S factor, MatrixView<S> out) {
  const auto Al = Cpu::eigen(alpha);
  const auto E = Cpu::eigen(next_emissions);
  const auto Bn = Cpu::eigen(next_beta);
  const auto A = Cpu::eigen(transitions);
  auto O = Cpu::eigen(out);
  for (Index j = 0; j < out.cols; ++j)
    O.col(j) += (factor * crf_detail::exp_or_zero(Al.col(0).array() + A.col(j).array() +
                                                  (E(j, 0) + Bn(j, 0) - log_z)))
                    .matrix();
}

/// scores[r] = s(gold) of sequence sequences[r] (in double); gold is batch-major (B*T entries).
template <class S>
void crf_gold_scores(Cpu, In<S> emissions, In<S> transitions, In<S> start, In<S> end,
                     std::span<const std::int32_t> gold, const Batch& batch,
                     std::span<const Index> sequences, std::span<double> scores) {
  for (std::size_t r = 0; r < sequences.size(); ++r) {
    const Index b = sequences[r];
    const Index length = batch.lengths[static_cast<std::size_t>(b)];
    auto tag = [&](Index t) {
      return static_cast<Index>(gold[static_cast<std::size_t>(batch.column(b, t))]);
    };
    double s = static_cast<double>(start(tag(0), 0)) + static_cast<double>(end(tag(length - 1), 0));
    for (Index t = 0; t < length; ++t) {
      s += static_cast<double>(emissions(tag(t), batch.column(b, t)));
      if (t > 0) s += static_cast<double>(transitions(tag(t - 1), tag(t)));
    }
    scores[r] = s;
  }
}

/// demissions(gold, column) -= factor and dtransitions(gold_t, gold_t+1) -= factor for every real
/// token and adjacent pair of the listed sequences.
template <class S>
void crf_subtract_gold(Cpu, std::span<const std::int32_t> gold, const Batch& batch,
                       std::span<const Index> sequences, S factor, MatrixView<S> demissions,
                       MatrixView<S> dtransitions) {
  for (const Index b : sequences) {
    const Index length = batch.lengths[static_cast<std::size_t>(b)];
    Index previous = -1;
    for (Index t = 0; t < length; ++t) {
      const Index column = batch.column(b, t);
      const Index tag = gold[static_cast<std::size_t>(column)];
      demissions(tag, column) -= factor;
      if (previous >= 0) dtransitions(previous, tag) -= factor;
      previous = tag;
    }
  }
}

/// out = x^T.
template <class S>
void crf_transpose(Cpu, In<S> x, MatrixView<S> out) {
  Cpu::eigen(out) = Cpu::eigen(x).transpose();
}

/// One Viterbi step for n sequences: delta(j, k) = emissions(j, k) + max_i (prev(i, k) + A(i, j))
/// with the maximising i (the lowest on ties) in backpointers[k * Tags + j]. transposed is A^T,
/// so that the candidates from one predecessor are a contiguous column. Plain loops: GCC and Clang
/// vectorise the compare-and-blend (Eigen 3.4 vectorises neither comparisons nor select).
template <class S>
void crf_viterbi_step(Cpu, In<S> prev, In<S> transposed, In<S> emissions, MatrixView<S> delta,
                      std::span<std::int32_t> backpointers) {
  const Index tags = prev.rows;
  for (Index k = 0; k < delta.cols; ++k) {
    S* const best = delta.col_ptr(k);
    std::int32_t* const arg = backpointers.data() + k * tags;
    const S* const from_scores = prev.col_ptr(k);
    const S* const first = transposed.col_ptr(0);
    for (Index j = 0; j < tags; ++j) {
      best[j] = first[j] + from_scores[0];
      arg[j] = 0;
    }
    // Four predecessors per sweep: best and arg are loaded and stored a quarter as often.
    Index i = 1;
    for (; i + 4 <= tags; i += 4) {
      const S f0 = from_scores[i], f1 = from_scores[i + 1], f2 = from_scores[i + 2],
              f3 = from_scores[i + 3];
      const S *c0 = transposed.col_ptr(i), *c1 = transposed.col_ptr(i + 1),
              *c2 = transposed.col_ptr(i + 2), *c3 = transposed.col_ptr(i + 3);
      const auto i0 = static_cast<std::int32_t>(i);
      for (Index j = 0; j < tags; ++j) {
        S top = best[j];
        std::int32_t at = arg[j];
        const S v0 = c0[j] + f0, v1 = c1[j] + f1, v2 = c2[j] + f2, v3 = c3[j] + f3;
        at = v0 > top ? i0 : at;
        top = v0 > top ? v0 : top;
        at = v1 > top ? i0 + 1 : at;
        top = v1 > top ? v1 : top;
        at = v2 > top ? i0 + 2 : at;
        top = v2 > top ? v2 : top;
        at = v3 > top ? i0 + 3 : at;
        top = v3 > top ? v3 : top;
        best[j] = top;
        arg[j] = at;
      }
    }
    for (; i < tags; ++i) {
      const S from = from_scores[i];
      const S* const candidates = transposed.col_ptr(i);
      const auto index = static_cast<std::int32_t>(i);
      for (Index j = 0; j < tags; ++j) {
        const S candidate = candidates[j] + from;
        const bool better = candidate > best[j];
        best[j] = better ? candidate : best[j];
        arg[j] = better ? index : arg[j];
      }
    }
    const S* const emission = emissions.col_ptr(k);
    for (Index j = 0; j < tags; ++j) best[j] += emission[j];
  }
}

/// Follows the backpointers from each sequence's best last tag (argmax of delta + end, lowest on
/// ties) and writes the tags of rank r to out[packing.order[r]].
template <class S>
void crf_viterbi_backtrack(Cpu, In<S> delta, In<S> end, std::span<const std::int32_t> backpointers,
                           const CrfPacking& packing, std::vector<std::vector<std::int32_t>>& out) {
  const Index tags = delta.rows;
  const auto D = Cpu::eigen(delta);
  const auto En = Cpu::eigen(end);
  for (Index r = 0; r < packing.ranks(); ++r) {
    const Index length = packing.lengths[static_cast<std::size_t>(r)];
    auto& path = out[static_cast<std::size_t>(packing.order[static_cast<std::size_t>(r)])];
    path.resize(static_cast<std::size_t>(length));
    Index tag = 0;
    (D.col(packing.last[static_cast<std::size_t>(r)]) + En.col(0)).maxCoeff(&tag);
    for (Index t = length - 1; t >= 0; --t) {
      path[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(tag);
      if (t > 0) tag = backpointers[static_cast<std::size_t>((packing.first(t) + r) * tags + tag)];
    }
  }
}

}  // namespace backend

template <Index Tags = Dynamic, class S = float, class B = Cpu>
  requires Dimension<Tags> && Backend<B>
class LinearChainCrf {
  static_assert(B::is_host,
                "mtlm: LinearChainCrf has no device kernels yet: keep the CRF on a host backend "
                "(Cpu), or tag with a TokenTagger on the GPU");

 public:
  using Scalar = S;
  using BackendType = B;
  using TagSequences = std::vector<std::vector<std::int32_t>>;
  static constexpr Index tag_dim = Tags;

  explicit LinearChainCrf(Index tags = Tags, CrfOptions options = {})
      : tags_(resolve_dim(Tags, tags, "LinearChainCrf tag count")),
        options_(options),
        transitions_(tags_, tags_),
        start_(tags_, 1),
        end_(tags_, 1) {
    clear_constraints();
  }

  /// U(-0.1, 0.1) for every score, as pytorch-crf.
  void initialize(Rng& rng) {
    for (Param<S, B>* p : {&transitions_, &start_, &end_})
      p->initialize(init::Uniform{-0.1, 0.1}, tags_, tags_, rng);
  }

  /// The reduced negative log-likelihood of `tags` (one vector per sequence of the batch).
  double forward(ConstView<S> emissions, const Batch& batch, const TagSequences& tags) {
    check_emissions(emissions, batch, "forward");
    have_forward_ = false;  // a forward that throws leaves no state for backward
    read_gold(tags, batch);
    packing_.build(batch, selected_);
    run_forward(emissions, batch);
    const Index ranks = packing_.ranks();
    gold_scores_.resize(static_cast<std::size_t>(ranks));
    backend::crf_gold_scores<S>(B{}, emissions, trans_eff_.view(), start_eff_.view(),
                                end_eff_.view(), gold_, batch, packing_.order, gold_scores_);
    double total = 0;
    for (Index r = 0; r < ranks; ++r)
      total += static_cast<double>(log_z_host_[static_cast<std::size_t>(r)]) -
               gold_scores_[static_cast<std::size_t>(r)];
    switch (options_.reduction) {
      case CrfReduction::mean:
        factor_ = ranks > 0 ? 1.0 / static_cast<double>(ranks) : 0.0;
        break;
      case CrfReduction::token_mean:
        factor_ = counted_tokens_ > 0 ? 1.0 / static_cast<double>(counted_tokens_) : 0.0;
        break;
      case CrfReduction::sum:
        factor_ = 1.0;
        break;
    }
    batch_columns_ = batch.columns();
    have_forward_ = true;
    return total * factor_;
  }

  /// scale * dL/d emissions of the last forward (Tags x B*T); adds the parameters' gradients.
  const Matrix<S, B>& backward(S scale, const Batch& batch) {
    if (!have_forward_ || batch.columns() != batch_columns_)
      throw Error(
          "mtlm: LinearChainCrf::backward needs a forward with gold tags on the same batch "
          "first (marginals() replaces that state)");
    have_forward_ = false;
    demissions_.set_zero(tags_, batch.columns());
    if (packing_.ranks() == 0) return demissions_;
    const S factor = static_cast<S>(factor_ * static_cast<double>(scale));
    run_backward();
    pack_marginals(factor);
    backend::scatter_packed_columns(B{}, dpacked_.view(), packing_.columns, demissions_.view(),
                                    false);
    add_transition_marginals(factor);
    backend::crf_subtract_gold(B{}, gold_, batch, packing_.order, factor, demissions_.view(),
                               transitions_.grad.view());
    // Start and end enter the score exactly as the first and last emissions do.
    B::sum_columns(demissions_.view().strided_cols(0, batch.max_length, batch.batch_size), S(1),
                   start_.grad.view());
    for (Index r = 0; r < packing_.ranks(); ++r) {
      const Index b = packing_.order[static_cast<std::size_t>(r)];
      const Index t = packing_.lengths[static_cast<std::size_t>(r)] - 1;
      B::axpy(S(1), demissions_.view().col(batch.column(b, t)), end_.grad.view());
    }
    return demissions_;
  }

  /// p(y_t = i | emissions) for every real token of every sequence (Tags x B*T, 0 at padding).
  const Matrix<S, B>& marginals(ConstView<S> emissions, const Batch& batch) {
    check_emissions(emissions, batch, "marginals");
    have_forward_ = false;
    packing_.build(batch, {});
    run_forward(emissions, batch);
    marginals_.set_zero(tags_, batch.columns());
    if (packing_.ranks() == 0) return marginals_;
    run_backward();
    pack_marginals(S(1));
    backend::scatter_packed_columns(B{}, dpacked_.view(), packing_.columns, marginals_.view(),
                                    false);
    return marginals_;
  }

  /// The most likely tag sequence of every sequence (Viterbi over its real tokens).
  TagSequences decode(ConstView<S> emissions, const Batch& batch) {
    TagSequences out;
    decode(emissions, batch, out);
    return out;
  }
  /// The same into `out`, reusing its vectors' capacity.
  void decode(ConstView<S> emissions, const Batch& batch, TagSequences& out) {
    check_emissions(emissions, batch, "decode");
    out.resize(static_cast<std::size_t>(batch.batch_size));
    decode_packing_.build(batch, {});
    effective_scores();
    const Index n0 = decode_packing_.ranks();
    if (n0 == 0) return;
    const Index total = decode_packing_.total;
    transposed_.resize(tags_, tags_);
    backend::crf_transpose(B{}, trans_eff_.view(), transposed_.view());
    decode_emissions_.resize(tags_, total);
    delta_.resize(tags_, total);
    backpointers_.resize(static_cast<std::size_t>(tags_ * total));
    backend::gather_packed_columns(B{}, emissions, decode_packing_.columns,
                                   decode_emissions_.view());
    auto delta = delta_.view();
    B::copy(decode_emissions_.view().middle_cols(0, n0), delta.middle_cols(0, n0));
    B::add_bias(start_eff_.view(), delta.middle_cols(0, n0));
    for (Index t = 1; t < decode_packing_.steps; ++t) {
      const Index n = decode_packing_.size(t), first = decode_packing_.first(t);
      backend::crf_viterbi_step(B{}, delta.middle_cols(decode_packing_.first(t - 1), n),
                                transposed_.view(), decode_emissions_.view().middle_cols(first, n),
                                delta.middle_cols(first, n),
                                std::span<std::int32_t>(backpointers_)
                                    .subspan(static_cast<std::size_t>(first * tags_),
                                             static_cast<std::size_t>(n * tags_)));
    }
    backend::crf_viterbi_backtrack<S>(B{}, delta_.view(), end_eff_.view(), backpointers_,
                                      decode_packing_, out);
  }

  // ---- constraints ---------------------------------------------------------------------------

  /// Span-scheme constraints from the tag names (`labels[i]` names tag i). BIO (IOB2): I-X may
  /// only follow B-X or I-X and may not start a sequence. BIOES, chosen when any name starts with
  /// E- or S-: I-X and E-X may only follow B-X or I-X, B-X and I-X must be followed by I-X or E-X
  /// (so they may not end a sequence), and I-X and E-X may not start one. Other names (O, or tags
  /// without a prefix) are unconstrained except by those rules. Replaces earlier constraints.
  void set_bio_constraints(const std::vector<std::string>& labels) {
    if (static_cast<Index>(labels.size()) != tags_)
      throw ShapeError(
          "mtlm: LinearChainCrf::set_bio_constraints: " + std::to_string(labels.size()) +
          " tag names for " + std::to_string(tags_) + " tags");
    clear_constraints();
    auto type_of = [](std::string_view label, std::string_view prefix) {
      return label.starts_with(prefix) ? label.substr(prefix.size()) : std::string_view{};
    };
    const bool bioes = std::any_of(labels.begin(), labels.end(), [](const std::string& l) {
      return l.starts_with("E-") || l.starts_with("S-");
    });
    // The entity a tag leaves open for the next one ("" when none), and the one it continues.
    auto opens = [&](std::string_view l) {
      const std::string_view b = type_of(l, "B-");
      return b.empty() ? type_of(l, "I-") : b;
    };
    auto continues = [&](std::string_view l) {
      const std::string_view i = type_of(l, "I-");
      return i.empty() && bioes ? type_of(l, "E-") : i;
    };
    for (Index j = 0; j < tags_; ++j) {
      const std::string_view to = labels[static_cast<std::size_t>(j)];
      const std::string_view inside = continues(to);
      if (!inside.empty()) set_start_allowed(j, false);
      if (bioes && !opens(to).empty()) set_end_allowed(j, false);
      for (Index i = 0; i < tags_; ++i) {
        const std::string_view open = opens(labels[static_cast<std::size_t>(i)]);
        // BIO lets an open entity end anywhere; BIOES closes it only with E-.
        const bool allowed = inside.empty() ? !bioes || open.empty() : open == inside;
        set_transition_allowed(i, j, allowed);
      }
    }
  }
  void set_transition_allowed(Index from, Index to, bool allowed) {
    check_tag(from, "set_transition_allowed");
    check_tag(to, "set_transition_allowed");
    allowed_transitions_[static_cast<std::size_t>(to * tags_ + from)] = allowed;
    masks_stale_ = true;
  }
  void set_start_allowed(Index tag, bool allowed) {
    check_tag(tag, "set_start_allowed");
    allowed_start_[static_cast<std::size_t>(tag)] = allowed;
    masks_stale_ = true;
  }
  void set_end_allowed(Index tag, bool allowed) {
    check_tag(tag, "set_end_allowed");
    allowed_end_[static_cast<std::size_t>(tag)] = allowed;
    masks_stale_ = true;
  }
  void clear_constraints() {
    allowed_transitions_.assign(static_cast<std::size_t>(tags_ * tags_), 1);
    allowed_start_.assign(static_cast<std::size_t>(tags_), 1);
    allowed_end_.assign(static_cast<std::size_t>(tags_), 1);
    masks_stale_ = true;
  }
  bool transition_allowed(Index from, Index to) const {
    return allowed_transitions_[static_cast<std::size_t>(to * tags_ + from)] != 0;
  }
  bool start_allowed(Index tag) const { return allowed_start_[static_cast<std::size_t>(tag)] != 0; }
  bool end_allowed(Index tag) const { return allowed_end_[static_cast<std::size_t>(tag)] != 0; }

  // ---- accessors -----------------------------------------------------------------------------

  /// log Z of each sequence of the batch of the last forward or marginals (NaN for sequences
  /// without tags in a forward).
  std::span<const double> log_partition() const { return log_partition_; }
  /// Sequences the last forward counted (those with tags).
  Index counted_sequences() const { return packing_.ranks(); }
  /// Log-sum-exp entries of the last forward (and backward) that were recomputed directly because
  /// their fast sum underflowed (diagnostics; 0 at ordinary scales).
  Index direct_entries() const { return direct_entries_; }
  Index tags() const { return tags_; }
  const CrfOptions& options() const { return options_; }
  Param<S, B>& transitions() { return transitions_; }
  Param<S, B>& start() { return start_; }
  Param<S, B>& end() { return end_; }

  template <class F>
  void for_each_param(F&& f) {
    f("transitions", transitions_);
    f("start", start_);
    f("end", end_);
  }

 private:
  void check_tag(Index tag, const char* what) const {
    if (tag < 0 || tag >= tags_)
      throw ShapeError("mtlm: LinearChainCrf::" + std::string(what) + ": tag " +
                       std::to_string(tag) + " is outside [0, " + std::to_string(tags_) + ")");
  }

  void check_emissions(ConstView<S> emissions, const Batch& batch, const char* what) const {
    if (emissions.rows != tags_)
      throw ShapeError("mtlm: LinearChainCrf::" + std::string(what) + ": emissions have " +
                       std::to_string(emissions.rows) + " rows, expected " + std::to_string(tags_) +
                       " tags");
    if (emissions.cols != batch.columns())
      throw ShapeError("mtlm: LinearChainCrf::" + std::string(what) + ": emissions have " +
                       std::to_string(emissions.cols) + " columns, the batch has " +
                       std::to_string(batch.columns()));
  }

  /// Flattens the gold tags (batch-major), marks the sequences that have tags and checks them.
  void read_gold(const TagSequences& tags, const Batch& batch) {
    if (static_cast<Index>(tags.size()) != batch.batch_size)
      throw ShapeError("mtlm: LinearChainCrf: tags for " + std::to_string(tags.size()) +
                       " sequences, the batch has " + std::to_string(batch.batch_size));
    selected_.assign(static_cast<std::size_t>(batch.batch_size), 0);
    gold_.assign(static_cast<std::size_t>(batch.columns()), -1);
    counted_tokens_ = 0;
    const std::int32_t ignore = options_.ignore_index;
    for (Index b = 0; b < batch.batch_size; ++b) {
      const auto& seq = tags[static_cast<std::size_t>(b)];
      if (seq.empty()) continue;
      const Index length = batch.lengths[static_cast<std::size_t>(b)];
      // Only built for a message: the steady state does not allocate.
      auto where = [b] { return "mtlm: LinearChainCrf: sequence " + std::to_string(b); };
      if (static_cast<Index>(seq.size()) != length)
        throw ShapeError(where() + " has " + std::to_string(length) + " tokens but " +
                         std::to_string(seq.size()) + " tags");
      const auto ignored = std::count(seq.begin(), seq.end(), ignore);
      if (ignored == static_cast<std::ptrdiff_t>(seq.size())) continue;
      if (ignored > 0)
        throw Error(where() + " has " + std::to_string(ignored) + " of " +
                    std::to_string(seq.size()) + " tags equal to ignore_index " +
                    std::to_string(ignore) +
                    "; a CRF scores whole sequences: give every tag, or none (all ignore_index "
                    "or an empty vector)");
      for (Index t = 0; t < length; ++t) {
        const std::int32_t y = seq[static_cast<std::size_t>(t)];
        if (y < 0 || y >= tags_)
          throw ShapeError(where() + ": tag " + std::to_string(y) + " at position " +
                           std::to_string(t) + " is outside [0, " + std::to_string(tags_) + ")");
        const bool allowed =
            t == 0 ? start_allowed(y) : transition_allowed(seq[static_cast<std::size_t>(t - 1)], y);
        if (!allowed)
          throw Error(where() + ": tag " + std::to_string(y) + " at position " + std::to_string(t) +
                      (t == 0 ? std::string(" may not start a sequence")
                              : " may not follow tag " +
                                    std::to_string(seq[static_cast<std::size_t>(t - 1)])) +
                      " under the CRF's constraints, so the gold path has zero probability");
        gold_[static_cast<std::size_t>(batch.column(b, t))] = y;
      }
      if (!end_allowed(seq.back()))
        throw Error(where() + ": tag " + std::to_string(seq.back()) +
                    " may not end a sequence under the CRF's constraints");
      selected_[static_cast<std::size_t>(b)] = 1;
      counted_tokens_ += length;
    }
  }

  /// trans_eff_, start_eff_, end_eff_: the parameters with excluded entries at -inf.
  void effective_scores() {
    if (masks_stale_) upload_masks();
    trans_eff_.resize(tags_, tags_);
    start_eff_.resize(tags_, 1);
    end_eff_.resize(tags_, 1);
    B::copy(transitions_.value.view(), trans_eff_.view());
    B::copy(start_.value.view(), start_eff_.view());
    B::copy(end_.value.view(), end_eff_.view());
    if (has_constraints_) {
      B::axpy(S(1), transition_mask_.view(), trans_eff_.view());
      B::axpy(S(1), start_mask_.view(), start_eff_.view());
      B::axpy(S(1), end_mask_.view(), end_eff_.view());
    }
  }

  void upload_masks() {
    const S excluded = backend::crf_detail::minus_infinity<S>;
    auto upload = [&](const std::vector<unsigned char>& allowed, Matrix<S, B>& mask, Index cols) {
      std::vector<S> host(allowed.size());
      for (std::size_t k = 0; k < allowed.size(); ++k) host[k] = allowed[k] ? S(0) : excluded;
      mask.resize(tags_, cols);
      B::upload(host.data(), mask.view());
      return std::find(allowed.begin(), allowed.end(), 0) != allowed.end();
    };
    const bool t = upload(allowed_transitions_, transition_mask_, tags_);
    const bool s = upload(allowed_start_, start_mask_, 1);
    const bool e = upload(allowed_end_, end_mask_, 1);
    has_constraints_ = t || s || e;
    masks_stale_ = false;
  }

  /// Effective scores, their exponentials, the packed emissions, alpha and log Z per rank.
  void run_forward(ConstView<S> emissions, const Batch& batch) {
    effective_scores();
    exp_by_column_.resize(tags_, tags_);
    exp_by_row_.resize(tags_, tags_);
    column_max_.resize(tags_, 1);
    row_max_.resize(tags_, 1);
    backend::crf_transition_exponentials(B{}, trans_eff_.view(), exp_by_column_.view(),
                                         column_max_.view(), exp_by_row_.view(), row_max_.view());
    const Index total = packing_.total, ranks = packing_.ranks();
    emissions_.resize(tags_, total);
    alpha_.resize(tags_, total);
    shifted_.resize(tags_, total);
    shift_.resize(1, total);
    sums_.resize(tags_, ranks);
    log_z_.resize(1, ranks);
    log_z_host_.resize(static_cast<std::size_t>(ranks));
    log_partition_.assign(static_cast<std::size_t>(batch.batch_size),
                          std::numeric_limits<double>::quiet_NaN());
    direct_entries_ = 0;
    if (ranks == 0) return;
    backend::gather_packed_columns(B{}, emissions, packing_.columns, emissions_.view());
    auto alpha = alpha_.view();
    B::copy(emissions_.view().middle_cols(0, ranks), alpha.middle_cols(0, ranks));
    B::add_bias(start_eff_.view(), alpha.middle_cols(0, ranks));
    for (Index t = 1; t < packing_.steps; ++t) {
      const Index n = packing_.size(t), first = packing_.first(t);
      const auto prev = alpha.middle_cols(packing_.first(t - 1), n);
      const auto p = shifted_.view().middle_cols(first, n);
      const auto shift = shift_.view().middle_cols(first, n);
      const auto sums = sums_.view().middle_cols(0, n);
      backend::crf_shifted_exp(B{}, prev, shift, p);
      B::gemm(Transpose::yes, Transpose::no, S(1), exp_by_column_.view(), p, S(0), sums);
      direct_entries_ += backend::crf_alpha_step(
          B{}, sums, shift, column_max_.view(), prev, trans_eff_.view(),
          emissions_.view().middle_cols(first, n), alpha.middle_cols(first, n));
    }
    backend::crf_log_partition(B{}, alpha_.view(), end_eff_.view(), packing_.last, log_z_.view());
    B::download(log_z_.view(), log_z_host_.data());
    for (Index r = 0; r < ranks; ++r)
      log_partition_[static_cast<std::size_t>(packing_.order[static_cast<std::size_t>(r)])] =
          static_cast<double>(log_z_host_[static_cast<std::size_t>(r)]);
  }

  /// beta, and for each transition t -> t+1 the shifted exponentials Q (in shifted_, at step t's
  /// columns) with their shift (shift_) and whether it was computed directly (direct_).
  void run_backward() {
    const Index total = packing_.total;
    beta_.resize(tags_, total);
    direct_.assign(static_cast<std::size_t>(total), 0);
    auto beta = beta_.view();
    for (const Index column : packing_.last) B::copy(end_eff_.view(), beta.col(column));
    for (Index t = packing_.steps - 2; t >= 0; --t) {
      const Index n = packing_.size(t + 1), first = packing_.first(t), next = packing_.first(t + 1);
      const auto q = shifted_.view().middle_cols(first, n);
      const auto shift = shift_.view().middle_cols(first, n);
      const auto sums = sums_.view().middle_cols(0, n);
      B::copy(emissions_.view().middle_cols(next, n), q);
      B::axpy(S(1), beta.middle_cols(next, n), q);
      backend::crf_shifted_exp(B{}, q, shift, q);
      // Sequences ending at t have no transition; their columns must hold finite values for the
      // pair GEMM (their weights are 0).
      if (packing_.size(t) > n)
        B::fill(shifted_.view().middle_cols(first + n, packing_.size(t) - n), S(0));
      B::gemm(Transpose::no, Transpose::no, S(1), exp_by_row_.view(), q, S(0), sums);
      direct_entries_ += backend::crf_beta_step(
          B{}, sums, shift, row_max_.view(), emissions_.view().middle_cols(next, n),
          beta.middle_cols(next, n), trans_eff_.view(), beta.middle_cols(first, n),
          std::span<unsigned char>(direct_).subspan(static_cast<std::size_t>(first),
                                                    static_cast<std::size_t>(n)));
    }
  }

  /// dpacked_ = factor * token marginals (packed).
  void pack_marginals(S factor) {
    dpacked_.resize(tags_, packing_.total);
    for (Index t = 0; t < packing_.steps; ++t) {
      const Index n = packing_.size(t), first = packing_.first(t);
      backend::crf_token_marginals(
          B{}, alpha_.view().middle_cols(first, n), beta_.view().middle_cols(first, n),
          log_z_.view().middle_cols(0, n), factor, dpacked_.view().middle_cols(first, n));
    }
  }

  /// transitions' gradient += factor * sum over tokens of the pair marginals.
  void add_transition_marginals(S factor) {
    if (packing_.steps < 2) return;
    const Index columns = packing_.first(packing_.steps - 1);  // every step with a successor
    weights_.resize(tags_, columns);
    for (Index t = 0; t + 1 < packing_.steps; ++t) {
      const Index n = packing_.size(t + 1), first = packing_.first(t);
      backend::crf_transition_weights(
          B{}, alpha_.view().middle_cols(first, n), shift_.view().middle_cols(first, n),
          row_max_.view(), log_z_.view().middle_cols(0, n),
          std::span<const unsigned char>(direct_).subspan(static_cast<std::size_t>(first),
                                                          static_cast<std::size_t>(n)),
          weights_.view().middle_cols(first, n));
      if (packing_.size(t) > n)
        B::fill(weights_.view().middle_cols(first + n, packing_.size(t) - n), S(0));
    }
    pair_.resize(tags_, tags_);
    B::gemm(Transpose::no, Transpose::yes, S(1), weights_.view(),
            shifted_.view().middle_cols(0, columns), S(0), pair_.view());
    B::multiply(exp_by_row_.view(), pair_.view(), pair_.view());
    B::axpy(factor, pair_.view(), transitions_.grad.view());
    for (Index t = 0; t + 1 < packing_.steps; ++t)
      for (Index r = 0; r < packing_.size(t + 1); ++r) {
        const Index column = packing_.first(t) + r;
        if (!direct_[static_cast<std::size_t>(column)]) continue;
        const Index next = packing_.first(t + 1) + r;
        backend::crf_add_pair_marginals(B{}, alpha_.view().col(column), emissions_.view().col(next),
                                        beta_.view().col(next), trans_eff_.view(),
                                        log_z_host_[static_cast<std::size_t>(r)], factor,
                                        transitions_.grad.view());
      }
  }

  Index tags_;
  CrfOptions options_;
  Param<S, B> transitions_, start_, end_;

  // Constraints: host flags (1 = allowed; transitions column-major, (from, to) at to * Tags +
  // from) and the additive 0 / -inf masks built from them.
  std::vector<unsigned char> allowed_transitions_, allowed_start_, allowed_end_;
  Matrix<S, B> transition_mask_, start_mask_, end_mask_;
  bool has_constraints_ = false;
  bool masks_stale_ = true;

  // State of the last forward (and workspaces of forward-backward), packed columns.
  CrfPacking packing_;
  std::vector<unsigned char> selected_;
  std::vector<std::int32_t> gold_;
  std::vector<double> gold_scores_, log_partition_;
  std::vector<S> log_z_host_;
  std::vector<unsigned char> direct_;
  Index counted_tokens_ = 0;
  Index batch_columns_ = 0;
  Index direct_entries_ = 0;
  double factor_ = 0;
  bool have_forward_ = false;
  Matrix<S, B> trans_eff_, start_eff_, end_eff_;
  Matrix<S, B> exp_by_column_, exp_by_row_, column_max_, row_max_;
  Matrix<S, B> emissions_, alpha_, beta_, shifted_, shift_, sums_, log_z_;
  Matrix<S, B> dpacked_, weights_, pair_, demissions_, marginals_;

  // Viterbi workspaces, apart from the forward state so decoding between forward and backward
  // is harmless.
  CrfPacking decode_packing_;
  Matrix<S, B> transposed_, decode_emissions_, delta_;
  std::vector<std::int32_t> backpointers_;
};

}  // namespace mtlm
