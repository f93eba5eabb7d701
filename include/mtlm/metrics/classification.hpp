// @brief Classification metrics over label ids (intents, sentiment, or per-token tags counted
// token by token): accuracy, and per-class, macro- and micro-averaged precision / recall / F1.
//
// Contract: gold and predicted have the same length (else ShapeError) and hold ids in
// [0, num_classes) (else Error). Classes listed in `excluded` (say "O" for token-level tag
// scores) are left out of the per-class averages and of micro; their per_class entry is still
// filled. Macro averages P, R and F1 (the mean of per-class F1, as scikit-learn) over the
// classes that occur in gold or predicted and are not excluded. Micro pools the counts of those
// classes; with nothing excluded, micro P = R = F1 = accuracy. Empty input gives all zeros.
#pragma once

#include "mtlm/core/batch.hpp"
#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/metrics/scores.hpp"

#include <algorithm>
#include <span>
#include <string>
#include <vector>

namespace mtlm::metrics {

namespace detail {
inline void check_same_size(std::size_t gold, std::size_t predicted, const char* what) {
  if (gold != predicted)
    throw ShapeError(std::string("mtlm: ") + what + ": " + std::to_string(gold) + " gold vs " +
                     std::to_string(predicted) + " predicted");
}
}  // namespace detail

/// Fraction of positions where predicted == gold (0 for empty input).
inline double accuracy(std::span<const TokenId> gold, std::span<const TokenId> predicted) {
  detail::check_same_size(gold.size(), predicted.size(), "accuracy");
  Index correct = 0;
  for (std::size_t i = 0; i < gold.size(); ++i) correct += gold[i] == predicted[i];
  return safe_ratio(static_cast<double>(correct), static_cast<double>(gold.size()));
}

struct ClassificationReport {
  Index total = 0;
  double accuracy = 0.0;
  std::vector<Scores> per_class;  ///< indexed by class id
  Scores micro;
  Scores macro;  ///< P, R, F1 are means; the counts are the sums over the averaged classes
  Index averaged_classes = 0;  ///< how many classes entered the macro average
};

inline ClassificationReport classification_report(std::span<const TokenId> gold,
                                                  std::span<const TokenId> predicted,
                                                  Index num_classes,
                                                  std::span<const TokenId> excluded = {}) {
  detail::check_same_size(gold.size(), predicted.size(), "classification_report");
  if (num_classes < 1) throw Error("mtlm: classification_report: num_classes must be >= 1");
  const auto k = static_cast<std::size_t>(num_classes);
  std::vector<Index> tp(k, 0), pred(k, 0), support(k, 0);
  auto check = [&](TokenId id, const char* which) {
    if (id < 0 || id >= num_classes)
      throw Error(std::string("mtlm: classification_report: ") + which + " label " +
                  std::to_string(id) + " outside [0, " + std::to_string(num_classes) + ")");
    return static_cast<std::size_t>(id);
  };
  Index correct = 0;
  for (std::size_t i = 0; i < gold.size(); ++i) {
    const std::size_t g = check(gold[i], "gold"), p = check(predicted[i], "predicted");
    ++support[g];
    ++pred[p];
    if (g == p) {
      ++tp[g];
      ++correct;
    }
  }
  ClassificationReport r;
  r.total = static_cast<Index>(gold.size());
  r.accuracy = safe_ratio(static_cast<double>(correct), static_cast<double>(gold.size()));
  Index micro_tp = 0, micro_pred = 0, micro_support = 0;
  double sum_p = 0, sum_r = 0, sum_f = 0;
  for (std::size_t c = 0; c < k; ++c) {
    r.per_class.push_back(scores_from_counts(tp[c], pred[c], support[c]));
    if (std::find(excluded.begin(), excluded.end(), static_cast<TokenId>(c)) != excluded.end())
      continue;
    micro_tp += tp[c];
    micro_pred += pred[c];
    micro_support += support[c];
    if (support[c] == 0 && pred[c] == 0) continue;
    ++r.averaged_classes;
    sum_p += r.per_class[c].precision;
    sum_r += r.per_class[c].recall;
    sum_f += r.per_class[c].f1;
  }
  r.micro = scores_from_counts(micro_tp, micro_pred, micro_support);
  const auto n = static_cast<double>(r.averaged_classes);
  r.macro = Scores{safe_ratio(sum_p, n), safe_ratio(sum_r, n), safe_ratio(sum_f, n),
                   micro_tp, micro_pred, micro_support};
  return r;
}

}  // namespace mtlm::metrics
