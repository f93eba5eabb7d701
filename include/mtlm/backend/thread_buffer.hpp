// @brief Scratch memory for the matrix products' copies of their operands: one buffer per
// calling thread and use, grown when a product needs more and kept between calls, so a model's
// products allocate nothing after its first step.
#pragma once

#include "mtlm/core/config.hpp"

#include <cstddef>
#include <memory>
#include <new>

namespace mtlm::backend {

/// What a buffer holds: uses that can be live at once on one thread need different ones.
enum class Scratch {
  a_panels,     // panel_gemm.hpp: A's panels for a block of the depth
  b_strips,     // panel_gemm.hpp: a transposed B's strips
  b_transposed, // narrow_gemm.hpp: op(B)^T for gemm_transposed
  a_slice,      // narrow_gemm.hpp: one row block's slice of A
  logits,       // cross_entropy.hpp: a column of logits kept while its gradient overwrites it
};

/// At least `size` elements of the calling thread's buffer for `Use`, aligned for the widest
/// packet.
template <class S, Scratch Use>
S* thread_buffer(Index size) {
  struct Free {
    void operator()(S* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  thread_local std::unique_ptr<S, Free> data;
  thread_local Index capacity = 0;
  if (size > capacity) {
    const auto bytes = static_cast<std::size_t>(size) * sizeof(S);
    data.reset(static_cast<S*>(::operator new[](bytes, std::align_val_t{64})));
    capacity = size;
  }
  return data.get();
}

}  // namespace mtlm::backend
