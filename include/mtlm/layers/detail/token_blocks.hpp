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

}  // namespace mtlm::detail
