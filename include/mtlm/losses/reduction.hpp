// @brief What the losses share: how per-entry losses are reduced to one number, and the shape
// checks between logits, targets and masks. Kept apart so that cross_entropy, bce and mse agree
// on both without including each other.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/matrix_view.hpp"

#include <cmath>
#include <string>

namespace mtlm {

/// mean: the sum divided by the number (or, with class weights, the total weight) of the entries
/// that count, as PyTorch's reduction="mean"; sum: the plain sum.
enum class Reduction { mean, sum };

namespace detail {

/// Throws ShapeError unless `b` has the shape of `a`; `what` names the loss and the argument.
inline void check_same_shape(Index a_rows, Index a_cols, Index b_rows, Index b_cols,
                             const char* what) {
  if (a_rows != b_rows || a_cols != b_cols)
    throw ShapeError(std::string("mtlm: ") + what + " is " + std::to_string(b_rows) + " x " +
                     std::to_string(b_cols) + ", expected " + std::to_string(a_rows) + " x " +
                     std::to_string(a_cols));
}

/// The factor that turns a summed loss (or its gradient) into the reduced one. Zero when nothing
/// counted, so an all-padding batch gives loss 0 and a zero gradient instead of 0/0.
inline double reduction_factor(Reduction reduction, double denominator) {
  if (reduction == Reduction::sum) return 1.0;
  return denominator > 0 ? 1.0 / denominator : 0.0;
}

/// Throws mtlm::Error unless every value is finite and non-negative (class weights, pos_weight).
template <class Range>
void check_non_negative(const Range& values, const char* what) {
  for (double v : values)
    if (!(v >= 0) || !std::isfinite(v))
      throw Error(std::string("mtlm: ") + what + " must be finite and non-negative, got " +
                  std::to_string(v));
}

}  // namespace detail

namespace backend {

/// What the element-wise loss kernels return.
struct LossTotals {
  double loss = 0;    ///< summed loss of the entries that count
  Index counted = 0;  ///< entries that count (mask != 0, or all)
};

}  // namespace backend
}  // namespace mtlm
