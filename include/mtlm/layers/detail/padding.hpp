// @brief Helpers for layers that must treat padding columns specially (layer norm, positional
// encodings, attention): walk the real columns of a (features x B*T) activation in as few
// contiguous runs as possible, and zero the padding columns of an output or gradient.
//
// Contract: a matrix whose column count is not batch.columns() (a pooled (features x B)
// activation, or a call without a Batch) has no padding; all its columns form one run.
#pragma once

#include "mtlm/backend/backend.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/matrix_view.hpp"

namespace mtlm::detail {

/// Whether a matrix with `cols` columns is laid out per token of `batch` (and so has padding).
inline bool per_token(const Batch& batch, Index cols) {
  return batch.max_length > 0 && cols == batch.columns();
}

/// Calls f(first, count) for each maximal run of real columns. Full sequences next to each other
/// merge into one run, so a batch without padding is a single call.
template <class F>
void for_each_real_run(const Batch& batch, Index cols, F&& f) {
  if (!per_token(batch, cols)) {
    if (cols > 0) f(Index{0}, cols);
    return;
  }
  const Index T = batch.max_length;
  Index first = 0, count = 0;
  for (Index b = 0; b < batch.batch_size; ++b) {
    const Index len = batch.lengths[static_cast<std::size_t>(b)];
    if (count > 0 && first + count == b * T) {
      count += len;
    } else {
      if (count > 0) f(first, count);
      first = b * T;
      count = len;
    }
  }
  if (count > 0) f(first, count);
}

/// Sets the padding columns of y (features x B*T) to zero; a no-op without padding.
template <class B, class S>
void zero_padding(MatrixView<S> y, const Batch& batch) {
  if (!per_token(batch, y.cols)) return;
  const Index T = batch.max_length;
  for (Index b = 0; b < batch.batch_size; ++b) {
    const Index len = batch.lengths[static_cast<std::size_t>(b)];
    if (len < T) B::fill(y.middle_cols(b * T + len, T - len), S(0));
  }
}

}  // namespace mtlm::detail
