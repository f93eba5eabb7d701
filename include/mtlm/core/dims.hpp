// @brief Compile-time dimension checks. Layers carry their sizes as template parameters
// (or Dynamic); connecting two layers whose sizes disagree must fail to compile with a message
// that names both sizes, instead of a wall of nested types at run time.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"

#include <string>

namespace mtlm {

constexpr bool is_dynamic(Index d) { return d == Dynamic; }

/// Two dimensions agree when they are equal or when either is only known at run time.
constexpr bool dims_agree(Index a, Index b) { return a == Dynamic || b == Dynamic || a == b; }

/// A valid compile-time dimension is positive or Dynamic.
template <Index D>
concept Dimension = D > 0 || D == Dynamic;

/// Instantiated wherever one layer feeds another. On a mismatch the compiler's note
/// "required from DimensionsAgree<Produced, Expected>" shows both numbers next to the sentence.
template <Index Produced, Index Expected>
struct DimensionsAgree {
  static_assert(dims_agree(Produced, Expected),
                "mtlm: dimension mismatch: the output dimension of one layer (first template "
                "argument of DimensionsAgree) must equal the input dimension of the next "
                "(second template argument)");
  static constexpr bool value = dims_agree(Produced, Expected);
};

/// Resolves a dimension that may be Dynamic: the compile-time value wins, and a run-time value
/// that contradicts it is a ShapeError.
inline Index resolve_dim(Index compile_time, Index run_time, const char* what) {
  if (compile_time == Dynamic) {
    if (run_time <= 0)
      throw ShapeError(std::string("mtlm: ") + what + " is Dynamic and needs a positive size at "
                       "construction, got " + std::to_string(run_time));
    return run_time;
  }
  if (run_time != Dynamic && run_time != compile_time)
    throw ShapeError(std::string("mtlm: ") + what + " is fixed at " +
                     std::to_string(compile_time) + " but " + std::to_string(run_time) +
                     " was given");
  return compile_time;
}

}  // namespace mtlm
