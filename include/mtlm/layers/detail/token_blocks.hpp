// @brief Blocks of tokens for a layer that runs a batch one slice at a time, so that a slice's
// intermediate results (a language-model head's logits, a feed-forward network's hidden
// activations) stay in the second-level cache between the products that make and read them,
// where a whole batch's would go out to memory and come back.
//
// Contract: the blocks cover [0, tokens) in order. Products over a block sum every entry as one
// product over all tokens would on the CPU: a block is a whole number of the packed GEMM's depth
// chunks from the start, so a weight gradient summed block by block adds its tokens in the same
// chunks, and no block but a lone one is narrow enough for the few-column kernel, which sums in
// another order.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/backend/narrow_gemm.hpp"
#include "mtlm/backend/panel_gemm.hpp"
#include "mtlm/core/dims.hpp"

#include <algorithm>

namespace mtlm::detail {

/// Tokens per block: the packed GEMM's depth chunk.
inline constexpr Index token_block = backend::panel::depth_block;
/// The widest block there can be: a short last block joins the one before it.
inline constexpr Index widest_token_block = token_block + backend::narrow::few_columns;

/// f(first, count) for each block of [0, tokens).
template <class F>
void for_each_token_block(Index tokens, F&& f) {
  for (Index first = 0; first < tokens;) {
    Index count = std::min(token_block, tokens - first);
    if (tokens - first - count <= backend::narrow::few_columns) count = tokens - first;
    f(first, count);
    first += count;
  }
}

/// How many blocks for_each_token_block makes of [0, tokens).
inline Index token_block_count(Index tokens) {
  const Index whole = tokens / token_block;
  return whole == 0 ? Index{tokens > 0} : whole + Index{tokens % token_block > backend::narrow::few_columns};
}

/// Threads that for_each_token_block_on_threads gives the blocks of [0, tokens): the calling
/// thread's product threads, at most one per block.
inline int token_block_threads(Index tokens) {
#if defined(_OPENMP)
  if (omp_in_parallel()) return 1;
#endif
  return static_cast<int>(std::clamp<Index>(token_block_count(tokens), 1, backend::Cpu::threads()));
}

/// f(first, count, thread) for each block of [0, tokens), the blocks dealt in turn to
/// token_block_threads(tokens) threads (`thread`: which, for scratch of its own). Split by rows,
/// each product of a block would end in a barrier, and the next would read rows that the other
/// thread wrote, from its cache; a block on one thread keeps its intermediates in that thread's
/// cache and meets the others once. Each block's products run on its thread alone and sum every
/// entry as they would on any number of threads. Blocks must write disjoint outputs and must not
/// throw.
template <class F>
void for_each_token_block_on_threads(Index tokens, F&& f) {
  const Index blocks = token_block_count(tokens);
  const int threads = token_block_threads(tokens);
  auto block = [&](Index i, int thread) {
    const Index first = i * token_block;
    f(first, i + 1 == blocks ? tokens - first : token_block, thread);
  };
#if defined(_OPENMP)
  if (threads >= 2) {
#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (Index i = 0; i < blocks; ++i) block(i, omp_get_thread_num());
    return;
  }
#endif
  (void)threads;
  for (Index i = 0; i < blocks; ++i) block(i, 0);
}

}  // namespace mtlm::detail
