// @brief Device versions of the loss kernels (softmax cross-entropy, argmax, binary
// cross-entropy, squared error). Gradients stay on the device; each column's loss goes to a
// small device array that is copied back and summed on the host in column order, so the
// reported loss does not depend on thread scheduling.
#pragma once

#include "mtlm/backend/cuda/policy.hpp"
#include "mtlm/losses/bce.hpp"
#include "mtlm/losses/cross_entropy.hpp"
#include "mtlm/losses/mse.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace mtlm::backend {

namespace cuda_detail {
/// Per-column partial results of a loss kernel, summed on the host.
struct ColumnLoss {
  double loss;
  double weight;
  Index counted;
};

inline std::vector<ColumnLoss> download_partials(const cuda::DeviceBuffer<ColumnLoss>& device) {
  std::vector<ColumnLoss> host(device.size());
  cuda::to_host(static_cast<const ColumnLoss*>(device.data()), std::span<ColumnLoss>(host));
  return host;
}
}  // namespace cuda_detail

template <class S>
CrossEntropyTotals softmax_cross_entropy_forward(Cuda, In<S> logits,
                                                 std::span<const std::int32_t> targets,
                                                 std::int32_t ignore_index, S smoothing,
                                                 In<S> class_weights, MatrixView<S> gradient) {
  using cuda_detail::ColumnLoss;
  const Index classes = logits.rows;
  const bool weighted = class_weights.rows > 0;
  const S uniform_share = smoothing / static_cast<S>(classes);
  const auto device_targets = cuda::to_device(targets);
  const std::int32_t* y_of = device_targets.data();
  cuda::DeviceBuffer<ColumnLoss> partials(static_cast<std::size_t>(logits.cols));
  ColumnLoss* out = partials.data();
  const S* w = class_weights.data;
  cuda::for_each_column_warp(logits.cols, [=] __device__(Index j, int lane) {
    const S* z = logits.data + j * logits.stride;
    S* g = gradient.data + j * gradient.stride;
    const std::int32_t y = y_of[j];
    if (y == ignore_index) {
      for (Index c = lane; c < classes; c += 32) g[c] = S(0);
      if (lane == 0) out[j] = ColumnLoss{0.0, 0.0, 0};
      return;
    }
    S top = -INFINITY;
    for (Index c = lane; c < classes; c += 32) top = max(top, z[c]);
    top = cuda::warp_max(top);
    S sum = S(0);
    for (Index c = lane; c < classes; c += 32) sum += exp(z[c] - top);
    sum = cuda::warp_sum(sum);
    const S log_sum_exp = top + log(sum);
    S weight_sum = static_cast<S>(classes);
    if (weighted) {
      weight_sum = S(0);
      for (Index c = lane; c < classes; c += 32) weight_sum += w[c];
      weight_sum = cuda::warp_sum(weight_sum);
    }
    const S target_weight = weighted ? w[y] : S(1);
    const S target_share = (S(1) - smoothing) * target_weight;
    const S scale = smoothing > S(0) ? target_share + uniform_share * weight_sum : target_share;
    S smooth_loss = S(0);
    for (Index c = lane; c < classes; c += 32) {
      const S wc = weighted ? w[c] : S(1);
      S grad = exp(z[c] - top) / sum * scale;
      if (smoothing > S(0)) {
        grad -= uniform_share * wc;
        smooth_loss += wc * (log_sum_exp - z[c]);
      }
      if (c == y) grad -= target_share;
      g[c] = grad;
    }
    smooth_loss = cuda::warp_sum(smooth_loss);
    if (lane == 0)
      out[j] = ColumnLoss{static_cast<double>(target_share) * static_cast<double>(log_sum_exp - z[y]) +
                              static_cast<double>(uniform_share) * static_cast<double>(smooth_loss),
                          static_cast<double>(target_weight), 1};
  });
  CrossEntropyTotals totals;
  for (const auto& p : cuda_detail::download_partials(partials)) {
    totals.loss += p.loss;
    totals.weight += p.weight;
    totals.counted += p.counted;
  }
  return totals;
}

template <class S>
void argmax_columns(Cuda, ConstView<S> x, std::span<std::int32_t> out) {
  cuda::DeviceBuffer<std::int32_t> best(out.size());
  std::int32_t* result = best.data();
  const Index rows = x.rows;
  cuda::for_each_column_warp(x.cols, [=] __device__(Index j, int lane) {
    S top = -INFINITY;
    Index arg = rows;
    for (Index i = lane; i < rows; i += 32) {
      const S v = cuda::at(x, i, j);
      if (v > top || arg == rows) {
        top = v;
        arg = i;
      }
    }
    // First index of the maximum, as Eigen's maxCoeff: larger value wins, ties go to the lower.
    for (int offset = 16; offset > 0; offset /= 2) {
      const S other = __shfl_xor_sync(0xffffffffu, top, offset);
      const Index other_arg = __shfl_xor_sync(0xffffffffu, arg, offset);
      if (other > top || (other == top && other_arg < arg)) {
        top = other;
        arg = other_arg;
      }
    }
    if (lane == 0) result[j] = static_cast<std::int32_t>(arg);
  });
  cuda::to_host(static_cast<const std::int32_t*>(result), out);
}

namespace cuda_detail {
/// For losses that sum over matrix entries: one warp per column applies `entry(i, j, g)` (the
/// entry's loss; it writes the entry's gradient into g) to every entry the mask keeps (all when
/// the mask is empty) and zeroes the gradient elsewhere; column sums are added on the host.
template <class S, class Entry>
LossTotals masked_entry_loss(Index rows, Index cols, In<S> mask, MatrixView<S> gradient, Entry entry) {
  const bool masked = mask.rows > 0;
  cuda::DeviceBuffer<ColumnLoss> partials(static_cast<std::size_t>(cols));
  ColumnLoss* out = partials.data();
  cuda::for_each_column_warp(cols, [=] __device__(Index j, int lane) {
    S loss = S(0);
    Index counted = 0;
    for (Index i = lane; i < rows; i += 32) {
      S& g = cuda::at(gradient, i, j);
      if (masked && cuda::at(mask, i, j) == S(0)) {
        g = S(0);
        continue;
      }
      loss += entry(i, j, g);
      ++counted;
    }
    loss = cuda::warp_sum(loss);
    counted = cuda::warp_sum(counted);
    if (lane == 0) out[j] = ColumnLoss{static_cast<double>(loss), 0.0, counted};
  });
  LossTotals totals;
  for (const auto& p : download_partials(partials)) {
    totals.loss += p.loss;
    totals.counted += p.counted;
  }
  return totals;
}
}  // namespace cuda_detail

template <class S>
LossTotals binary_cross_entropy_forward(Cuda, In<S> logits, In<S> targets, In<S> mask,
                                        In<S> pos_weight, MatrixView<S> gradient) {
  const bool weighted = pos_weight.rows > 0;
  return cuda_detail::masked_entry_loss<S>(
      logits.rows, logits.cols, mask, gradient, [=] __device__(Index i, Index j, S& g) -> S {
        const S x = cuda::at(logits, i, j), y = cuda::at(targets, i, j);
        const S p = weighted ? pos_weight.data[i] : S(1);
        const S e = exp(-fabs(x));
        const S softplus_neg = log1p(e) + (x < S(0) ? -x : S(0));
        const S sig = x >= S(0) ? S(1) / (S(1) + e) : e / (S(1) + e);
        const S log_weight = S(1) + (p - S(1)) * y;
        g = log_weight * sig - p * y;
        return (S(1) - y) * x + log_weight * softplus_neg;
      });
}

template <class S>
LossTotals squared_error_forward(Cuda, In<S> predictions, In<S> targets, In<S> mask,
                                 MatrixView<S> gradient) {
  return cuda_detail::masked_entry_loss<S>(
      predictions.rows, predictions.cols, mask, gradient, [=] __device__(Index i, Index j, S& g) -> S {
        const S diff = cuda::at(predictions, i, j) - cuda::at(targets, i, j);
        g = S(2) * diff;
        return diff * diff;
      });
}

}  // namespace mtlm::backend
