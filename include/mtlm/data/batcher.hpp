// @brief Length-bucketed batching. A batch is padded to its longest sequence, so batching
// sequences of similar length wastes few columns; sorting only within a shuffled pool (instead
// of the whole data set) keeps batches different from epoch to epoch. Deterministic for a seed:
// every random choice comes from mtlm::Rng.
//
// Contract: bucket_batches returns lists of example indices; every index 0..n-1 appears in
// exactly one batch. Per epoch: shuffle the indices (when options.shuffle), cut them into pools
// of pool_size, stable-sort each pool by length, cut each pool greedily into batches of at most
// max_sequences sequences and (when max_tokens > 0) at most max_tokens padded tokens
// (sequences x longest length; a single sequence longer than the budget gets a batch of its
// own), then shuffle the order of the batches (when options.shuffle). Without shuffling the
// result depends only on the lengths (evaluation). make_batch and make_token_targets turn a
// batch of indices into an mtlm::Batch and padded per-token targets.
#pragma once

#include "mtlm/core/batch.hpp"
#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/random.hpp"

#include <algorithm>
#include <numeric>
#include <span>
#include <string>
#include <vector>

namespace mtlm {

struct BatchingOptions {
  Index max_sequences = 32;  ///< sequences per batch
  Index max_tokens = 0;      ///< padded tokens per batch (sequences x max length); 0: no budget
  Index pool_size = 0;       ///< sequences sorted together; 0: 50 x max_sequences
  bool shuffle = true;       ///< shuffle examples before pooling, and the batch order
};

/// One epoch of batches over sequences of the given lengths (see the contract above).
inline std::vector<std::vector<Index>> bucket_batches(std::span<const Index> lengths,
                                                      const BatchingOptions& options, Rng& rng) {
  if (options.max_sequences < 1) throw Error("mtlm: bucket_batches: max_sequences must be >= 1");
  if (options.max_tokens < 0 || options.pool_size < 0)
    throw Error("mtlm: bucket_batches: max_tokens and pool_size must be >= 0");
  const auto n = static_cast<Index>(lengths.size());
  std::vector<Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Index{0});
  if (options.shuffle) rng.shuffle(order);
  const Index pool = options.pool_size > 0 ? options.pool_size : 50 * options.max_sequences;
  auto length = [&](Index i) { return lengths[static_cast<std::size_t>(i)]; };

  std::vector<std::vector<Index>> batches;
  for (Index start = 0; start < n; start += pool) {
    const auto first = order.begin() + start;
    const auto last = order.begin() + std::min(n, start + pool);
    std::stable_sort(first, last, [&](Index a, Index b) { return length(a) < length(b); });
    std::vector<Index> batch;
    Index longest = 0;
    for (auto it = first; it != last; ++it) {
      const Index len = std::max(longest, length(*it));  // sorted: the new longest
      const auto size = static_cast<Index>(batch.size());
      const bool full = size >= options.max_sequences ||
                        (options.max_tokens > 0 && (size + 1) * len > options.max_tokens);
      if (!batch.empty() && full) {
        batches.push_back(std::move(batch));
        batch.clear();
        longest = 0;
      }
      batch.push_back(*it);
      longest = std::max(longest, length(*it));
    }
    if (!batch.empty()) batches.push_back(std::move(batch));
  }
  if (options.shuffle) rng.shuffle(batches);
  return batches;
}

/// Lengths of a range of sequences (anything with size()), for bucket_batches.
template <class Sequences>
std::vector<Index> sequence_lengths(const Sequences& sequences) {
  std::vector<Index> out;
  for (const auto& s : sequences) out.push_back(static_cast<Index>(std::size(s)));
  return out;
}

/// The padded Batch of the sequences picked by `indices` (in that order).
inline Batch make_batch(std::span<const std::vector<TokenId>> sequences,
                        std::span<const Index> indices, TokenId pad = 0) {
  std::vector<std::vector<TokenId>> picked;
  picked.reserve(indices.size());
  for (Index i : indices) {
    if (i < 0 || i >= static_cast<Index>(sequences.size()))
      throw ShapeError("mtlm: make_batch: index " + std::to_string(i) + " outside " +
                       std::to_string(sequences.size()) + " sequences");
    picked.push_back(sequences[static_cast<std::size_t>(i)]);
  }
  return Batch::from_sequences(picked, pad);
}

/// Per-token targets (e.g. tag ids) laid out like the batch's columns (b * T + t); padding
/// columns hold `ignore` so the loss can skip them. Each target sequence must have the length
/// of its sequence in `batch`.
inline std::vector<TokenId> make_token_targets(std::span<const std::vector<TokenId>> targets,
                                               std::span<const Index> indices, const Batch& batch,
                                               TokenId ignore = -1) {
  if (static_cast<Index>(indices.size()) != batch.batch_size)
    throw ShapeError("mtlm: make_token_targets: " + std::to_string(indices.size()) +
                     " indices for a batch of " + std::to_string(batch.batch_size));
  std::vector<TokenId> out(static_cast<std::size_t>(batch.columns()), ignore);
  for (Index b = 0; b < batch.batch_size; ++b) {
    const Index i = indices[static_cast<std::size_t>(b)];
    if (i < 0 || i >= static_cast<Index>(targets.size()))
      throw ShapeError("mtlm: make_token_targets: index " + std::to_string(i) + " outside " +
                       std::to_string(targets.size()) + " target sequences");
    const auto& t = targets[static_cast<std::size_t>(i)];
    if (static_cast<Index>(t.size()) != batch.lengths[static_cast<std::size_t>(b)])
      throw ShapeError("mtlm: make_token_targets: " + std::to_string(t.size()) +
                       " targets for a sequence of length " +
                       std::to_string(batch.lengths[static_cast<std::size_t>(b)]));
    std::copy(t.begin(), t.end(), out.begin() + batch.column(b, 0));
  }
  return out;
}

/// The values picked by `indices` (sentence labels of a batch, say).
template <class T>
std::vector<T> gather(const std::vector<T>& values, std::span<const Index> indices) {
  std::vector<T> out;
  out.reserve(indices.size());
  for (Index i : indices) {
    if (i < 0 || i >= static_cast<Index>(values.size()))
      throw ShapeError("mtlm: gather: index " + std::to_string(i) + " outside " +
                       std::to_string(values.size()) + " values");
    out.push_back(values[static_cast<std::size_t>(i)]);
  }
  return out;
}

}  // namespace mtlm
