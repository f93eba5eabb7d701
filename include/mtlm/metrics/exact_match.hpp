// @brief Sentence-level exact match for joint intent detection and slot filling: a sentence
// counts only when its intent and every one of its slot tags are right. It is the ATIS / SNIPS
// "overall accuracy" that joint models report next to intent accuracy and slot F1.
//
// Contract: the four ranges have the same number of sentences and each predicted tag sequence
// has the length of its gold one (else ShapeError). Labels and tags may be ids or strings (any
// equality-comparable type). Empty input gives 0.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/metrics/scores.hpp"

#include <ranges>
#include <string>

namespace mtlm::metrics {

namespace detail {
template <class Gold, class Predicted>
bool same_sequence(const Gold& gold, const Predicted& predicted, std::size_t sentence) {
  const auto n = std::ranges::size(gold);
  if (n != std::ranges::size(predicted))
    throw ShapeError("mtlm: exact_match: sentence " + std::to_string(sentence) + " has " +
                     std::to_string(n) + " gold tags but " +
                     std::to_string(std::ranges::size(predicted)) + " predicted tags");
  auto p = std::ranges::begin(predicted);
  for (const auto& g : gold)
    if (!(g == *p++)) return false;
  return true;
}
inline void check_count(std::size_t expected, std::size_t got, const char* what) {
  if (expected != got)
    throw ShapeError(std::string("mtlm: exact_match: ") + what + " has " + std::to_string(got) +
                     " sentences, expected " + std::to_string(expected));
}
}  // namespace detail

/// Fraction of sentences whose tag sequence is entirely right.
template <std::ranges::random_access_range TagSequences>
double sequence_exact_match(const TagSequences& gold_tags, const TagSequences& predicted_tags) {
  const auto n = std::ranges::size(gold_tags);
  detail::check_count(n, std::ranges::size(predicted_tags), "predicted_tags");
  Index correct = 0;
  for (std::size_t i = 0; i < n; ++i)
    correct += detail::same_sequence(gold_tags[i], predicted_tags[i], i);
  return safe_ratio(static_cast<double>(correct), static_cast<double>(n));
}

/// Fraction of sentences whose label and every tag are right.
template <std::ranges::random_access_range Labels, std::ranges::random_access_range TagSequences>
double exact_match(const Labels& gold_labels, const Labels& predicted_labels,
                   const TagSequences& gold_tags, const TagSequences& predicted_tags) {
  const auto n = std::ranges::size(gold_labels);
  detail::check_count(n, std::ranges::size(predicted_labels), "predicted_labels");
  detail::check_count(n, std::ranges::size(gold_tags), "gold_tags");
  detail::check_count(n, std::ranges::size(predicted_tags), "predicted_tags");
  Index correct = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const bool tags_right = detail::same_sequence(gold_tags[i], predicted_tags[i], i);
    correct += tags_right && gold_labels[i] == predicted_labels[i];
  }
  return safe_ratio(static_cast<double>(correct), static_cast<double>(n));
}

}  // namespace mtlm::metrics
