// @brief Precision, recall and F1 from counts, shared by the classification and the span
// metrics, so every metric in mtlm divides by zero the same way: a ratio with a zero denominator
// is 0 (as scikit-learn's and seqeval's zero_division default), and F1 is 0 when P + R = 0.
#pragma once

#include "mtlm/core/config.hpp"

namespace mtlm::metrics {

struct Scores {
  double precision = 0.0;
  double recall = 0.0;
  double f1 = 0.0;
  Index true_positives = 0;
  Index predicted = 0;  ///< number of predictions of this class / spans predicted
  Index support = 0;    ///< number of gold items of this class / gold spans
};

inline double safe_ratio(double numerator, double denominator) {
  return denominator == 0.0 ? 0.0 : numerator / denominator;
}

inline double f1_of(double precision, double recall) {
  const double sum = precision + recall;
  return sum == 0.0 ? 0.0 : 2.0 * precision * recall / sum;
}

inline Scores scores_from_counts(Index true_positives, Index predicted, Index support) {
  Scores s;
  s.true_positives = true_positives;
  s.predicted = predicted;
  s.support = support;
  s.precision = safe_ratio(static_cast<double>(true_positives), static_cast<double>(predicted));
  s.recall = safe_ratio(static_cast<double>(true_positives), static_cast<double>(support));
  s.f1 = f1_of(s.precision, s.recall);
  return s;
}

}  // namespace mtlm::metrics
