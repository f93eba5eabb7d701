// @brief How a multi-task model combines its task losses. StaticWeighting is the plain
// L = sum_i alpha_i L_i with the compile-time alphas and costs nothing; UncertaintyWeighting
// learns one log-variance s_i per task (Kendall, Gal & Cipolla 2018):
// L = sum_i alpha_i (exp(-s_i) L_i + s_i / 2).
#pragma once

#include "mtlm/core/init.hpp"
#include "mtlm/core/param.hpp"

#include <array>
#include <cmath>
#include <cstddef>
#include <vector>

namespace mtlm {

struct StaticWeighting {
  template <class S, class B, std::size_t N>
  class State {
   public:
    void initialize(Rng&) {}
    /// Called once at the start of every training step.
    void begin_step() {}
    /// Factor by which task i's loss gradient is scaled. It must not depend on the task's loss:
    /// a head may compute its gradient in the same pass as the loss.
    double gradient_scale(std::size_t, double alpha) const { return alpha; }
    /// Task i's contribution to the total loss.
    double contribution(std::size_t, double alpha, double loss) const { return alpha * loss; }
    /// Gradients of the weighting's own parameters, given the tasks' losses.
    void backward(const std::array<double, N>&, const std::array<double, N>&,
                  const std::array<bool, N>&) {}
    template <class F>
    void for_each_param(F&&) {}
  };
};

struct UncertaintyWeighting {
  template <class S, class B, std::size_t N>
  class State {
   public:
    State() : log_variance_(static_cast<Index>(N), 1), host_(N), grad_(N) {}

    void initialize(Rng& rng) { log_variance_.initialize(init::Constant{0.0}, 1, 1, rng); }

    /// Reads the current log-variances once per step (they live in backend memory).
    void begin_step() { B::download(log_variance_.value.view(), host_.data()); }

    double gradient_scale(std::size_t i, double alpha) const {
      return alpha * std::exp(-s(i));
    }
    double contribution(std::size_t i, double alpha, double loss) const {
      return alpha * (std::exp(-s(i)) * loss + 0.5 * s(i));
    }
    void backward(const std::array<double, N>& alpha, const std::array<double, N>& loss,
                  const std::array<bool, N>& present) {
      B::download(log_variance_.grad.view(), grad_.data());
      for (std::size_t i = 0; i < N; ++i)
        if (present[i]) grad_[i] += static_cast<S>(alpha[i] * (0.5 - std::exp(-s(i)) * loss[i]));
      B::upload(grad_.data(), log_variance_.grad.view());
    }
    template <class F>
    void for_each_param(F&& f) {
      f("log_variance", log_variance_);
    }

   private:
    double s(std::size_t i) const { return static_cast<double>(host_[i]); }

    Param<S, B> log_variance_;
    std::vector<S> host_, grad_;
  };
};

}  // namespace mtlm
