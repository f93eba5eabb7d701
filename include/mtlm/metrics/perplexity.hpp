// @brief Perplexity of a language model: exp of the mean negative log-likelihood per token.
// Losses are summed over batches and divided once by the total token count, so batches of
// different sizes weigh by their tokens, not equally.
//
// Contract: NLL in nats (natural log, as cross-entropy losses compute it), summed over real
// tokens only (no padding). A token count < 1 is an Error (the perplexity of nothing is
// undefined); a huge mean NLL gives +inf, not an exception.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"

#include <cmath>
#include <string>

namespace mtlm::metrics {

inline double perplexity(double total_nll, Index token_count) {
  if (token_count < 1)
    throw Error("mtlm: perplexity of " + std::to_string(token_count) + " tokens is undefined");
  return std::exp(total_nll / static_cast<double>(token_count));
}

/// Running sum over evaluation batches.
class PerplexityMeter {
 public:
  /// `nll_sum`: summed NLL of the batch's `tokens` real tokens.
  void add(double nll_sum, Index tokens) {
    if (tokens < 0) throw Error("mtlm: PerplexityMeter: negative token count");
    nll_ += nll_sum;
    tokens_ += tokens;
  }
  double mean_nll() const {
    if (tokens_ < 1) throw Error("mtlm: PerplexityMeter: no tokens added");
    return nll_ / static_cast<double>(tokens_);
  }
  double perplexity() const { return metrics::perplexity(nll_, tokens_); }
  double total_nll() const { return nll_; }
  Index tokens() const { return tokens_; }
  void reset() { *this = PerplexityMeter{}; }

 private:
  double nll_ = 0.0;
  Index tokens_ = 0;
};

}  // namespace mtlm::metrics
