// @brief ParameterAverage: an exponential moving average of a model's parameters (Polyak
// averaging, as TensorFlow's ExponentialMovingAverage with num_updates). Evaluating the averaged
// weights instead of the last ones smooths out the noise of the final optimizer steps, which
// with a constant learning rate is what separates neighbouring epochs on a small dev set.
//
// Contract: the average is a full copy of the model (so it can be evaluated, saved or copied as
// any model); update(model) blends every parameter value, frozen ones included, as
//   average = d * average + (1 - d) * value,   d = min(decay, (1 + n) / (10 + n)),
// with n the number of updates before this one, so the first updates follow the weights closely
// instead of dragging the random initialisation along. decay 0 makes the average the last
// weights. Only parameter values are averaged: gradients, generators and workspaces of the
// copy are those of the model when the average was made.
#pragma once

#include "mtlm/core/error.hpp"
#include "mtlm/core/param.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mtlm {

template <HasParams Model>
class ParameterAverage {
 public:
  /// Starts the average at `model`'s current parameters; decay in [0, 1).
  ParameterAverage(const Model& model, double decay) : average_(model), decay_(decay) {
    if (!(decay >= 0.0 && decay < 1.0))
      throw Error("mtlm: ParameterAverage: decay must be in [0, 1), got " + std::to_string(decay));
  }

  /// Blends `model`'s parameters into the average: call after every optimizer step.
  void update(Model& model) {
    const double d = current_decay();
    average_targets_.clear();
    average_.for_each_param([&](std::string_view, auto& p) { average_targets_.push_back(&p); });
    std::size_t i = 0;
    model.for_each_param([&](std::string_view, auto& p) {
      // Same model type, so the visits pair up one to one and in the same order.
      auto& a = *static_cast<std::remove_reference_t<decltype(p)>*>(average_targets_[i++]);
      blend(a, p, d);
    });
    ++updates_;
  }

  /// The model with the averaged parameters.
  Model& model() { return average_; }
  const Model& model() const { return average_; }

  double decay() const { return decay_; }
  std::int64_t updates() const { return updates_; }
  /// Restores the update count (checkpoints), which sets the next update's decay.
  void set_updates(std::int64_t n) { updates_ = n; }

  /// The decay the next update uses.
  double current_decay() const {
    const auto n = static_cast<double>(updates_);
    return std::min(decay_, (1.0 + n) / (10.0 + n));
  }

 private:
  template <class S, class B>
  static void blend(Param<S, B>& average, const Param<S, B>& value, double d) {
    B::scale(average.value.view(), static_cast<S>(d));
    B::axpy(static_cast<S>(1.0 - d), value.value.view(), average.value.view());
  }

  Model average_;
  double decay_;
  std::int64_t updates_ = 0;
  std::vector<void*> average_targets_;  // kept so that steady-state updates do not allocate
};

}  // namespace mtlm
