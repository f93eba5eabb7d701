// @brief MultiTask<Trunk, Task<"name", Head, w>...>: one shared trunk and several task heads,
// composed at compile time. A step runs the trunk once, every head that has targets on the
// trunk's output, sums the heads' weighted feature gradients and runs the trunk's backward once.
//
// Contract of a head (TaskHead): input_dim (must agree with the trunk's output_dim, checked at
// compile time), a Target type, forward(features, batch, mode) -> its outputs, loss(target,
// batch) -> mean loss of the last forward, backward(scale, batch) -> d loss * scale / d features
// (features x B*T), for_each_param. A task without a target in a batch adds no loss and no
// gradient (multi-dataset batches, examples lacking a label). A head may also offer
// forward_backward(features, target, batch, scale) -> loss, with feature_gradient(): the three
// steps of training in one, which a step then uses (a language-model head never holds all of
// its logits that way). The weighting's gradient scale is known before any loss for that reason.
#pragma once

#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/model/loss_weighting.hpp"
#include "mtlm/model/task.hpp"

#include <array>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace mtlm {

template <class H>
concept TaskHead =
    requires {
      { H::input_dim } -> std::convertible_to<Index>;
      typename H::Target;
      typename H::Scalar;
      typename H::BackendType;
    } &&
    requires(H& h, ConstView<typename H::Scalar> x, const Batch& b, Mode m,
             const typename H::Target& t, typename H::Scalar s, detail::AnyParamVisitor visitor) {
      h.forward(x, b, m);
      { h.loss(t, b) } -> std::convertible_to<double>;
      h.backward(s, b);
      h.for_each_param(visitor);
    };

/// Instantiated for every head; a mismatch names the trunk's output and the head's input.
template <Index TrunkOutput, Index HeadInput>
struct HeadFitsTrunk {
  static_assert(dims_agree(TrunkOutput, HeadInput),
                "mtlm: a task head's input dimension (second template argument of "
                "HeadFitsTrunk) must equal the trunk's output dimension (first argument)");
  static constexpr bool value = true;
};

namespace detail {

template <FixedString Name, class... Tasks>
constexpr std::size_t task_index() {
  constexpr std::array<std::string_view, sizeof...(Tasks)> names{Tasks::name.view()...};
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == Name.view()) return i;
  return names.size();
}

template <class... Tasks>
constexpr bool unique_task_names() {
  constexpr std::array<std::string_view, sizeof...(Tasks)> names{Tasks::name.view()...};
  for (std::size_t i = 0; i < names.size(); ++i)
    for (std::size_t j = i + 1; j < names.size(); ++j)
      if (names[i] == names[j]) return false;
  return true;
}

}  // namespace detail

/// The targets of one batch, one optional slot per task, set by task name.
template <class... Tasks>
class TaskTargets {
 public:
  template <FixedString Name>
  static constexpr std::size_t index = detail::task_index<Name, Tasks...>();

  template <FixedString Name>
  void set(typename std::tuple_element_t<index<Name>, std::tuple<Tasks...>>::HeadType::Target value) {
    static_assert(index<Name> < sizeof...(Tasks), "mtlm: no task with this name");
    std::get<index<Name>>(values_) = std::move(value);
  }
  template <FixedString Name>
  auto& get() {
    static_assert(index<Name> < sizeof...(Tasks), "mtlm: no task with this name");
    return std::get<index<Name>>(values_);
  }
  template <std::size_t I>
  const auto& at() const {
    return std::get<I>(values_);
  }
  void clear() {
    std::apply([](auto&... v) { (v.reset(), ...); }, values_);
  }

 private:
  std::tuple<std::optional<typename Tasks::HeadType::Target>...> values_;
};

template <class Weighting, class Trunk, class... Tasks>
class BasicMultiTask {
 public:
  using Scalar = typename Trunk::Scalar;
  using BackendType = typename Trunk::BackendType;
  using Targets = TaskTargets<Tasks...>;
  static constexpr std::size_t task_count = sizeof...(Tasks);
  static constexpr std::array<std::string_view, task_count> task_names{Tasks::name.view()...};
  static constexpr std::array<double, task_count> task_weights{Tasks::alpha...};

  static_assert(task_count >= 1, "mtlm: a multi-task model needs at least one task");
  static_assert(detail::unique_task_names<Tasks...>(), "mtlm: task names must be unique");
  static_assert((TaskHead<typename Tasks::HeadType> && ...),
                "mtlm: every task head must model TaskHead (see model/multitask.hpp)");
  static_assert((HeadFitsTrunk<Trunk::output_dim, Tasks::HeadType::input_dim>::value && ...));
  static_assert((std::is_same_v<typename Tasks::HeadType::Scalar, Scalar> && ...),
                "mtlm: heads must use the trunk's scalar type");
  static_assert((std::is_same_v<typename Tasks::HeadType::BackendType, BackendType> && ...),
                "mtlm: heads must use the trunk's backend");

  /// Per-task mean losses of one step (unweighted) and the combined, weighted total.
  struct Losses {
    std::array<double, task_count> task{};
    std::array<bool, task_count> present{};
    double total = 0.0;
  };

  BasicMultiTask() { tie_heads(); }
  explicit BasicMultiTask(Trunk trunk, typename Tasks::HeadType... heads)
      : trunk_(std::move(trunk)), heads_(std::move(heads)...) {
    tie_heads();
  }
  // A model is a value: a copy ties its heads to its own trunk, never to the original's.
  BasicMultiTask(const BasicMultiTask& other)
      : trunk_(other.trunk_), heads_(other.heads_), weighting_(other.weighting_) {
    tie_heads();
  }
  BasicMultiTask& operator=(const BasicMultiTask& other) {
    trunk_ = other.trunk_;
    heads_ = other.heads_;
    weighting_ = other.weighting_;
    tie_heads();
    return *this;
  }
  BasicMultiTask(BasicMultiTask&& other) noexcept
      : trunk_(std::move(other.trunk_)),
        heads_(std::move(other.heads_)),
        weighting_(std::move(other.weighting_)) {
    tie_heads();
  }
  BasicMultiTask& operator=(BasicMultiTask&& other) noexcept {
    trunk_ = std::move(other.trunk_);
    heads_ = std::move(other.heads_);
    weighting_ = std::move(other.weighting_);
    tie_heads();
    return *this;
  }

  void initialize(Rng& rng) {
    trunk_.initialize(rng);
    std::apply([&](auto&... h) { (h.initialize(rng), ...); }, heads_);
    weighting_.initialize(rng);
    tie_heads();
  }

  /// Runs the trunk, then every head (inference: read the heads' outputs afterwards).
  void forward(const Batch& batch, Mode mode = Mode::eval) {
    const auto& features = trunk_.forward(batch, mode);
    std::apply([&](auto&... h) { (h.forward(features.view(), batch, mode), ...); }, heads_);
  }

  /// One training pass without the optimizer step: forward in training mode through the trunk
  /// and the heads that have targets, losses, and backward into every parameter's gradient.
  Losses forward_backward(const Batch& batch, const Targets& targets) {
    Losses losses;
    weighting_.begin_step();
    const auto& features = trunk_.forward(batch, Mode::train);
    have_feature_gradient_ = false;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (task_step<I>(features.view(), batch, targets, losses), ...);
    }(std::make_index_sequence<task_count>{});
    weighting_.backward(task_weights, losses.task, losses.present);
    if (have_feature_gradient_) trunk_.backward(feature_gradient_.view(), batch);
    return losses;
  }

  template <FixedString Name>
  auto& head() {
    static_assert(detail::task_index<Name, Tasks...>() < task_count,
                  "mtlm: this model has no task with that name");
    return std::get<detail::task_index<Name, Tasks...>()>(heads_);
  }
  template <std::size_t I>
  auto& head_at() {
    return std::get<I>(heads_);
  }
  Trunk& trunk() { return trunk_; }
  const Trunk& trunk() const { return trunk_; }

  /// Parameters named "trunk.*", "<task>.*" and, for learned weighting, "loss_weighting.*".
  template <class F>
  void for_each_param(F&& f) {
    trunk_.for_each_param(prefixed("trunk", f));
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (std::get<I>(heads_).for_each_param(prefixed(task_names[I], f)), ...);
    }(std::make_index_sequence<task_count>{});
    weighting_.for_each_param(prefixed("loss_weighting", f));
  }

  /// Random generators of the trunk and heads (see visit_rngs), named like their parameters.
  template <class F>
  void for_each_rng(F&& f) {
    visit_rngs(trunk_, prefixed("trunk", f));
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (visit_rngs(std::get<I>(heads_), prefixed(task_names[I], f)), ...);
    }(std::make_index_sequence<task_count>{});
  }

 private:
  template <std::size_t I>
  void task_step(ConstView<Scalar> features, const Batch& batch, const Targets& targets,
                 Losses& losses) {
    const auto& target = targets.template at<I>();
    if (!target) return;
    auto& h = std::get<I>(heads_);
    const auto scale = static_cast<Scalar>(weighting_.gradient_scale(I, task_weights[I]));
    double loss = 0;
    const Matrix<Scalar, BackendType>* dfeatures = nullptr;
    if constexpr (requires { h.forward_backward(features, *target, batch, scale); }) {
      loss = h.forward_backward(features, *target, batch, scale);
      dfeatures = &h.feature_gradient();
    } else {
      h.forward(features, batch, Mode::train);
      loss = h.loss(*target, batch);
      dfeatures = &h.backward(scale, batch);
    }
    losses.task[I] = loss;
    losses.present[I] = true;
    losses.total += weighting_.contribution(I, task_weights[I], loss);
    if (!have_feature_gradient_) {
      feature_gradient_.resize(dfeatures->rows(), dfeatures->cols());
      BackendType::copy(dfeatures->view(), feature_gradient_.view());
      have_feature_gradient_ = true;
    } else {
      BackendType::axpy(Scalar(1), dfeatures->view(), feature_gradient_.view());
    }
  }

  /// Heads that share weights with the trunk (a language-model head tied to the embedding)
  /// offer tie(trunk); it runs after initialisation and after loading.
  void tie_heads() {
    std::apply(
        [&](auto&... h) {
          (
              [&](auto& one) {
                if constexpr (requires { one.tie(trunk_); }) one.tie(trunk_);
              }(h),
              ...);
        },
        heads_);
  }

  Trunk trunk_;
  std::tuple<typename Tasks::HeadType...> heads_;
  typename Weighting::template State<Scalar, BackendType, task_count> weighting_;
  Matrix<Scalar, BackendType> feature_gradient_;
  bool have_feature_gradient_ = false;
};

/// L = sum_i alpha_i L_i with the tasks' compile-time weights.
template <class Trunk, class... Tasks>
using MultiTask = BasicMultiTask<StaticWeighting, Trunk, Tasks...>;

/// Learned per-task uncertainty weights on top of the static ones (Kendall et al. 2018).
template <class Trunk, class... Tasks>
using UncertaintyWeightedMultiTask = BasicMultiTask<UncertaintyWeighting, Trunk, Tasks...>;

}  // namespace mtlm
