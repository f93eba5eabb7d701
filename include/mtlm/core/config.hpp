// @brief The basic vocabulary shared by every mtlm header: index type, Dynamic, version.
// Sizes are signed (like Eigen's Index) so that differences and Dynamic (-1) need no casts.
#pragma once

#include <cstddef>

#define MTLM_VERSION_MAJOR 0
#define MTLM_VERSION_MINOR 1
#define MTLM_VERSION_PATCH 0

namespace mtlm {

using Index = std::ptrdiff_t;

/// A dimension known only at run time (vocabulary size, label count), as Eigen's Dynamic.
inline constexpr Index Dynamic = -1;

/// Whether a layer runs for training (dropout active, caches kept for backward) or inference.
enum class Mode { train, eval };

}  // namespace mtlm
