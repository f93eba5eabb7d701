// @brief Per-parameter optimizer state (momentum buffers, moment estimates) stored in the order
// a model visits its parameters. Optimizers never learn a model's layers: they see Params in a
// fixed order, and checkpoints save the state under names built from that order ("exp_avg.3").
//
// Contract: prepare(model) allocates zeroed tensors of each parameter's shape on its first call
// and, on every later call, throws ShapeError if the model's parameter count or a shape changed.
// Each parameter also has its own step count, which advances only when the parameter is updated
// (not frozen), as PyTorch counts state["step"] only for parameters that had a gradient.
#pragma once

#include "mtlm/core/error.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/core/param.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace mtlm {

template <class S, class B>
class OptimizerState {
 public:
  /// `kinds` names the tensors every parameter gets, e.g. {"exp_avg", "exp_avg_sq"}; none for
  /// an optimizer without state (SGD without momentum), which still checks shapes.
  explicit OptimizerState(std::vector<std::string> kinds = {}) : kinds_(std::move(kinds)) {}

  /// Allocates the state for `model` (new step counts start at `steps`) or checks that it
  /// still fits the model.
  template <HasParams M>
  void prepare(M& model, std::int64_t steps) {
    std::size_t i = 0;
    if (!allocated_) {
      model.for_each_param([&](std::string_view, auto& p) {
        check_param_type(p);
        shapes_.push_back({p.rows(), p.cols()});
        for (std::size_t k = 0; k < kinds_.size(); ++k)
          tensors_.emplace_back(p.rows(), p.cols(), S(0));
        steps_.push_back(steps);
      });
      allocated_ = true;
      return;
    }
    model.for_each_param([&](std::string_view name, auto& p) {
      check_param_type(p);
      if (i >= shapes_.size())
        throw ShapeError("mtlm: optimizer state holds " + std::to_string(shapes_.size()) +
                         " parameters, but the model has more (first extra: '" +
                         std::string(name) + "')");
      const Shape& s = shapes_[i];
      if (s.rows != p.rows() || s.cols != p.cols())
        throw ShapeError("mtlm: optimizer state of parameter " + std::to_string(i) + " is " +
                         std::to_string(s.rows) + " x " + std::to_string(s.cols) +
                         ", but the model's '" + std::string(name) + "' is " +
                         std::to_string(p.rows()) + " x " + std::to_string(p.cols()));
      ++i;
    });
    if (i != shapes_.size())
      throw ShapeError("mtlm: optimizer state holds " + std::to_string(shapes_.size()) +
                       " parameters, but the model has " + std::to_string(i));
  }

  bool allocated() const { return allocated_; }
  /// Number of parameters the state was made for.
  std::size_t size() const { return shapes_.size(); }
  Matrix<S, B>& tensor(std::size_t param, std::size_t kind) {
    return tensors_[param * kinds_.size() + kind];
  }
  std::int64_t& steps(std::size_t param) { return steps_[param]; }

  /// Updates per parameter, in visit order (empty before the state is allocated).
  std::span<const std::int64_t> param_steps() const { return steps_; }
  void set_param_steps(std::span<const std::int64_t> steps) {
    if (steps.size() != steps_.size())
      throw ShapeError("mtlm: " + std::to_string(steps.size()) + " step counts for " +
                       std::to_string(steps_.size()) + " parameters");
    steps_.assign(steps.begin(), steps.end());
  }
  void set_all_steps(std::int64_t steps) { steps_.assign(steps_.size(), steps); }

  /// f(name, tensor) for every tensor, parameter by parameter: "exp_avg.0", "exp_avg_sq.0",
  /// "exp_avg.1", ...
  template <class F>
  void for_each(F&& f) {
    std::string name;
    for (std::size_t i = 0; i < shapes_.size(); ++i)
      for (std::size_t k = 0; k < kinds_.size(); ++k) {
        name.assign(kinds_[k]).append(".").append(std::to_string(i));
        f(std::string_view(name), tensor(i, k));
      }
  }

 private:
  struct Shape {
    Index rows, cols;
  };

  template <class P>
  static void check_param_type(const P&) {
    static_assert(std::is_same_v<P, Param<S, B>>,
                  "mtlm: an optimizer's scalar type and backend must be those of the model's "
                  "parameters");
  }

  std::vector<std::string> kinds_;
  std::vector<Shape> shapes_;
  std::vector<Matrix<S, B>> tensors_;  ///< parameter-major: tensors_[param * kinds + kind]
  std::vector<std::int64_t> steps_;
  bool allocated_ = false;
};

}  // namespace mtlm
