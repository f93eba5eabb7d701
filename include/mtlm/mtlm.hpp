// @brief Umbrella header: everything in mtlm except the optional CUDA backend
// (include <mtlm/backend/cuda.hpp> for that).
#pragma once

#include "mtlm/core/batch.hpp"
#include "mtlm/core/config.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/init.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/core/matrix_view.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/core/random.hpp"

#include "mtlm/backend/backend.hpp"
#include "mtlm/backend/cpu.hpp"

#include "mtlm/layers/activation.hpp"
#include "mtlm/layers/dropout.hpp"
#include "mtlm/layers/embedding.hpp"
#include "mtlm/layers/linear.hpp"
#include "mtlm/layers/pooling.hpp"

#include "mtlm/losses/bce.hpp"
#include "mtlm/losses/cross_entropy.hpp"
#include "mtlm/losses/mse.hpp"
#include "mtlm/losses/reduction.hpp"

#include "mtlm/model/sequential.hpp"

#include "mtlm/optim/adam.hpp"
#include "mtlm/optim/clipping.hpp"
#include "mtlm/optim/schedule.hpp"
#include "mtlm/optim/sgd.hpp"
#include "mtlm/optim/state.hpp"
