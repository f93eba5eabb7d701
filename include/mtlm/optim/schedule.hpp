// @brief Learning-rate schedules as small value types: `lr(step)` is a pure function of the
// step, so a schedule needs no state of its own in a checkpoint (the optimizer's step count is
// enough) and any type with that member can stand in.
//
// Contract: lr(t) is the learning rate for the update numbered t = 0, 1, ... (the optimizer's
// steps() before that update), as PyTorch's LambdaLR / Hugging Face schedules count: with a
// warm-up of W steps, lr(0) = 0 and lr(W) = base_lr. Negative steps read as 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <numbers>

namespace mtlm {

/// Anything that gives a learning rate for a step.
template <class T>
concept LearningRateSchedule = requires(const T& s, std::int64_t step) {
  { s.lr(step) } -> std::convertible_to<double>;
};

namespace schedule {

namespace detail {
/// t / warmup_steps during the warm-up, 1 afterwards.
inline double warmup_factor(std::int64_t step, std::int64_t warmup_steps) {
  if (step >= warmup_steps) return 1.0;
  return static_cast<double>(step) / static_cast<double>(warmup_steps);
}
}  // namespace detail

/// base_lr at every step.
struct Constant {
  double base_lr = 1e-3;
  double lr(std::int64_t) const { return base_lr; }
};

/// Linear warm-up from 0 to base_lr over warmup_steps, then linear decay to 0 at total_steps
/// (Hugging Face's get_linear_schedule_with_warmup); 0 from total_steps on.
struct LinearWarmupDecay {
  double base_lr = 1e-3;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;

  double lr(std::int64_t step) const {
    step = std::max<std::int64_t>(step, 0);
    if (step < warmup_steps) return base_lr * detail::warmup_factor(step, warmup_steps);
    if (step >= total_steps) return 0.0;
    return base_lr * static_cast<double>(total_steps - step) /
           static_cast<double>(total_steps - warmup_steps);
  }
};

/// Optional linear warm-up from 0 to base_lr, then half a cosine from base_lr down to min_lr at
/// total_steps (PyTorch's CosineAnnealingLR with T_max = total_steps - warmup_steps and
/// eta_min = min_lr); min_lr from total_steps on.
struct Cosine {
  double base_lr = 1e-3;
  std::int64_t total_steps = 1;
  std::int64_t warmup_steps = 0;
  double min_lr = 0.0;

  double lr(std::int64_t step) const {
    step = std::max<std::int64_t>(step, 0);
    if (step < warmup_steps) return base_lr * detail::warmup_factor(step, warmup_steps);
    if (step >= total_steps) return min_lr;
    const double progress = static_cast<double>(step - warmup_steps) /
                            static_cast<double>(total_steps - warmup_steps);
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  }
};

static_assert(LearningRateSchedule<Constant> && LearningRateSchedule<LinearWarmupDecay> &&
              LearningRateSchedule<Cosine>);

}  // namespace schedule
}  // namespace mtlm
