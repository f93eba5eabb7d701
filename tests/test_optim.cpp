// Optimizers, gradient clipping and learning-rate schedules: PyTorch reference trajectories,
// frozen parameters, state checks, checkpoint round trips and schedules at key steps.
#include <doctest/doctest.h>

#include <mtlm/layers/linear.hpp>
#include <mtlm/model/sequential.hpp>
#include <mtlm/optim/adam.hpp>
#include <mtlm/optim/clipping.hpp>
#include <mtlm/optim/schedule.hpp>
#include <mtlm/optim/sgd.hpp>

#include "support/npy_fixture.hpp"

#include <cmath>
#include <cstdint>
#include <map>
#include <type_traits>
#include <string>
#include <vector>

using namespace mtlm;

namespace {

using FloatMatrix = Matrix<float, Cpu>;

/// The fixture's model: w (3 x 4, the memory of PyTorch's (4, 3)) and b (3 x 1).
struct TwoParams {
  Param<float, Cpu> w{3, 4};
  Param<float, Cpu> b{3, 1};

  template <class F>
  void for_each_param(F&& f) {
    f("w", w);
    f("b", b);
  }
};
static_assert(HasParams<TwoParams>);

/// A model of one rows x cols parameter.
template <class S>
struct OneParam {
  Param<S, Cpu> x;
  OneParam(Index rows, Index cols) : x(rows, cols) {}

  template <class F>
  void for_each_param(F&& f) {
    f("x", x);
  }
};

void copy_flat(const test::NpyArray& from, std::size_t offset, FloatMatrix& to) {
  for (Index i = 0; i < to.size(); ++i)
    to.data()[i] = static_cast<float>(from.data[offset + static_cast<std::size_t>(i)]);
}

/// Largest |value - fixture slice| over a parameter.
double max_diff(const FloatMatrix& value, const test::NpyArray& expected, std::size_t offset) {
  double m = 0;
  for (Index i = 0; i < value.size(); ++i)
    m = std::max(m, std::abs(double(value.data()[i]) -
                             expected.data[offset + static_cast<std::size_t>(i)]));
  return m;
}

struct Fixture {
  test::NpyArray w0 = test::load_npy("optim", "w0");
  test::NpyArray b0 = test::load_npy("optim", "b0");
  test::NpyArray grad_w = test::load_npy("optim", "grad_w");
  test::NpyArray grad_b = test::load_npy("optim", "grad_b");

  TwoParams initial_model() const {
    TwoParams m;
    copy_flat(w0, 0, m.w.value);
    copy_flat(b0, 0, m.b.value);
    return m;
  }
  void set_gradients(TwoParams& m, int step) const {
    copy_flat(grad_w, static_cast<std::size_t>(step) * 12, m.w.grad);
    copy_flat(grad_b, static_cast<std::size_t>(step) * 3, m.b.grad);
  }
};

constexpr double trajectory_tolerance = 1e-6;
constexpr int fixture_steps = 5;

/// Runs the fixture's 5 steps with `optimizer` (b frozen in steps 0 and 1 when asked) and
/// returns the largest difference from PyTorch's parameters after any step.
template <class Optimizer>
double trajectory_error(Optimizer& optimizer, const std::string& name, bool freeze_b = false) {
  const Fixture fx;
  const auto expected_w = test::load_npy("optim", name + "_w");
  const auto expected_b = test::load_npy("optim", name + "_b");
  TwoParams model = fx.initial_model();
  double worst = 0;
  for (int k = 0; k < fixture_steps; ++k) {
    fx.set_gradients(model, k);
    model.b.frozen = freeze_b && k < 2;
    optimizer.step(model);
    worst = std::max(worst, max_diff(model.w.value, expected_w, std::size_t(k) * 12));
    worst = std::max(worst, max_diff(model.b.value, expected_b, std::size_t(k) * 3));
  }
  CHECK(optimizer.steps() == fixture_steps);
  return worst;
}

/// Copies every state tensor of `from` into the tensor of the same name in `to`.
template <class A, class B>
void copy_state(A& from, B& to) {
  std::map<std::string, FloatMatrix> saved;
  from.for_each_state([&](std::string_view name, FloatMatrix& m) { saved[std::string(name)] = m; });
  std::size_t restored = 0;
  to.for_each_state([&](std::string_view name, FloatMatrix& m) {
    const auto it = saved.find(std::string(name));
    REQUIRE(it != saved.end());
    m = it->second;
    ++restored;
  });
  CHECK(restored == saved.size());
}

/// An optimizer with momentum (or moments) and weight decay, so that every state tensor and
/// every term of its update takes part.
template <class Optimizer>
Optimizer make_optimizer() {
  if constexpr (std::is_same_v<Optimizer, Sgd<>>)
    return Optimizer({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
  else
    return Optimizer({.lr = 0.05, .weight_decay = 0.1});
}

template <class S>
bool bit_identical(const Matrix<S, Cpu>& a, const Matrix<S, Cpu>& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (Index i = 0; i < a.size(); ++i)
    if (a.data()[i] != b.data()[i]) return false;
  return true;
}

}  // namespace

TEST_CASE("Sgd follows torch.optim.SGD") {
  double worst = 0;
  {
    Sgd<> sgd({.lr = 0.1});
    worst = std::max(worst, trajectory_error(sgd, "sgd"));
  }
  {
    Sgd<> sgd({.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
    worst = std::max(worst, trajectory_error(sgd, "sgd_momentum"));
  }
  {
    Sgd<> sgd({.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true});
    worst = std::max(worst, trajectory_error(sgd, "sgd_nesterov"));
  }
  {
    Sgd<> sgd({.lr = 0.1, .momentum = 0.9});
    worst = std::max(worst, trajectory_error(sgd, "sgd_frozen", true));
    const auto counts = sgd.param_steps();
    CHECK(std::vector<std::int64_t>(counts.begin(), counts.end()) ==
          std::vector<std::int64_t>{5, 3});
  }
  CHECK(worst < trajectory_tolerance);
  MESSAGE("SGD trajectories: max |param diff| " << worst);
}

TEST_CASE("Adam and AdamW follow torch.optim.Adam / AdamW") {
  double worst = 0;
  {
    Adam<> adam({.lr = 0.01});
    worst = std::max(worst, trajectory_error(adam, "adam"));
  }
  {
    Adam<> adam({.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1});
    worst = std::max(worst, trajectory_error(adam, "adam_l2"));
  }
  {
    AdamW<> adamw({.lr = 0.01, .weight_decay = 0.1});
    worst = std::max(worst, trajectory_error(adamw, "adamw"));
  }
  {
    AdamW<> adamw({.lr = 0.01, .weight_decay = 0.1});
    worst = std::max(worst, trajectory_error(adamw, "adamw_frozen", true));
  }
  CHECK(worst < trajectory_tolerance);
  MESSAGE("Adam/AdamW trajectories: max |param diff| " << worst);
  CHECK(AdamW<>().options().weight_decay == 1e-2);
  CHECK(Adam<>().options().weight_decay == 0.0);
}

TEST_CASE_TEMPLATE("frozen parameters and their state stay untouched", Optimizer, Sgd<>, Adam<>,
                   AdamW<>) {
  const Fixture fx;
  TwoParams model = fx.initial_model();
  Optimizer optimizer = make_optimizer<Optimizer>();
  model.b.frozen = true;
  const FloatMatrix b_before = model.b.value;
  for (int k = 0; k < 3; ++k) {
    fx.set_gradients(model, k);
    optimizer.step(model);
  }
  CHECK(bit_identical(model.b.value, b_before));
  CHECK(!bit_identical(model.w.value, test::as_columns<float>(fx.w0)));
  int tensors = 0;
  optimizer.for_each_state([&](std::string_view name, FloatMatrix& m) {
    ++tensors;
    const bool of_b = name.ends_with(".1");
    const bool zero = bit_identical(m, FloatMatrix(m.rows(), m.cols(), 0.0f));
    CHECK(zero == of_b);
  });
  CHECK(tensors == (std::is_same_v<Optimizer, Sgd<>> ? 2 : 4));
  const auto counts = optimizer.param_steps();
  CHECK(counts[0] == 3);
  CHECK(counts[1] == 0);
}

TEST_CASE("parameters spanning several kernel blocks match an element-wise reference") {
  // 47 x 53 = 2491 values: two full blocks and a tail in the fused kernels.
  const Index rows = 47, cols = 53;
  Rng rng(5);
  OneParam<double> sgd_model(rows, cols), adam_model(rows, cols);
  std::vector<double> p_sgd(std::size_t(rows * cols)), p_adam(p_sgd.size()),
      buffer(p_sgd.size()), m(p_sgd.size()), v(p_sgd.size());
  for (std::size_t i = 0; i < p_sgd.size(); ++i) {
    p_sgd[i] = p_adam[i] = rng.normal();
    sgd_model.x.value.data()[i] = adam_model.x.value.data()[i] = p_sgd[i];
  }
  Sgd<double> sgd({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
  AdamW<double> adamw({.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6,
                       .weight_decay = 0.1});
  double worst = 0;
  for (int t = 1; t <= 3; ++t) {
    for (std::size_t i = 0; i < p_sgd.size(); ++i)
      sgd_model.x.grad.data()[i] = adam_model.x.grad.data()[i] = rng.normal();
    sgd.step(sgd_model);
    adamw.step(adam_model);
    for (std::size_t i = 0; i < p_sgd.size(); ++i) {
      const double g = sgd_model.x.grad.data()[i];
      const double d = g + 0.01 * p_sgd[i];
      buffer[i] = t == 1 ? d : 0.9 * buffer[i] + d;
      p_sgd[i] -= 0.1 * (d + 0.9 * buffer[i]);
      worst = std::max(worst, std::abs(p_sgd[i] - sgd_model.x.value.data()[i]));

      p_adam[i] *= 1 - 0.01 * 0.1;
      m[i] = 0.8 * m[i] + 0.2 * g;
      v[i] = 0.99 * v[i] + 0.01 * g * g;
      const double m_hat = m[i] / (1 - std::pow(0.8, t));
      const double v_hat = v[i] / (1 - std::pow(0.99, t));
      p_adam[i] -= 0.01 * m_hat / (std::sqrt(v_hat) + 1e-6);
      worst = std::max(worst, std::abs(p_adam[i] - adam_model.x.value.data()[i]));
    }
  }
  CHECK(worst < 1e-12);
}

/// Three parameters of 62,507 values in all, enough for two threads to share an Adam step.
struct ThreeParams {
  Param<float, Cpu> a{200, 150}, b{7, 1}, c{130, 250};

  template <class F>
  void for_each_param(F&& f) {
    f("a", a);
    f("b", b);
    f("c", c);
  }
};

TEST_CASE_TEMPLATE("Adam and AdamW on two and three threads give one thread's parameters and state bit for bit", Optimizer,
                   Adam<>, AdamW<>) {
  // Two threads split the 62,507 values near the middle, inside c (from entry 30,007 of the
  // concatenation), at the start of c's second block of the fused update: c's first 1,024 values
  // go to the first thread. Splitting at the middle itself changes numbers (a mutation shows it).
  auto run = [](int threads) {
    const int saved_threads = Cpu::threads();
    Cpu::set_threads(threads);
    Rng rng(8);
    ThreeParams model;
    model.for_each_param([&](const auto&, auto& p) {
      for (Index i = 0; i < p.value.size(); ++i) p.value.data()[i] = static_cast<float>(rng.normal());
    });
    Optimizer optimizer = make_optimizer<Optimizer>();
    for (int step = 0; step < 3; ++step) {
      model.for_each_param([&](const auto&, auto& p) {
        for (Index i = 0; i < p.grad.size(); ++i) p.grad.data()[i] = static_cast<float>(rng.normal());
      });
      optimizer.step(model);
    }
    Cpu::set_threads(saved_threads);
    std::vector<FloatMatrix> out;
    model.for_each_param([&](const auto&, auto& p) { out.push_back(p.value); });
    optimizer.for_each_state([&](std::string_view, FloatMatrix& m) { out.push_back(m); });
    return out;
  };
  const auto one = run(1);
  REQUIRE(one.size() >= 9);  // three values, three first and three second moments
  // Three threads split inside a and inside c.
  for (const int threads : {2, 3}) {
    CAPTURE(threads);
    const auto other = run(threads);
    REQUIRE(one.size() == other.size());
    for (std::size_t k = 0; k < one.size(); ++k) {
      CAPTURE(k);
      CHECK(bit_identical(one[k], other[k]));
    }
  }
}

TEST_CASE("lazy Adam updates only the marked columns; dense Adam and clipping ignore the marks") {
  // A 3 x 6 table whose gradient tracks its columns, and an untracked twin.
  const Index rows = 3, cols = 6;
  Rng rng(8);
  OneParam<double> lazy(rows, cols), tracked(rows, cols), plain(rows, cols);
  for (Index i = 0; i < rows * cols; ++i)
    lazy.x.value.data()[i] = tracked.x.value.data()[i] = plain.x.value.data()[i] = rng.normal();
  for (auto* m : {&lazy, &tracked}) {
    m->x.grad_columns.track(cols);
    zero_gradients(*m);
  }
  const AdamWOptions options{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6,
                             .weight_decay = 0.1};
  AdamW<double> lazy_adam({.lr = options.lr, .beta1 = options.beta1, .beta2 = options.beta2,
                           .eps = options.eps, .weight_decay = options.weight_decay,
                           .lazy = true});
  AdamW<double> tracked_adam(options), plain_adam(options);

  // Element-wise reference of the lazy rule: only marked columns move, t counts every step.
  std::vector<double> p(lazy.x.value.data(), lazy.x.value.data() + rows * cols), m(p.size()),
      v(p.size());
  const std::vector<std::vector<Index>> marked_per_step{{4, 1}, {2}, {1, 2}};
  double lazy_error = 0;
  for (std::size_t step = 0; step < marked_per_step.size(); ++step) {
    const int t = static_cast<int>(step) + 1;
    for (auto* model : {&lazy, &tracked, &plain}) zero_gradients(*model);
    for (const Index c : marked_per_step[step])
      for (Index r = 0; r < rows; ++r) {
        const double g = rng.normal();
        for (auto* model : {&lazy, &tracked, &plain}) model->x.grad(r, c) = g;
      }
    for (auto* model : {&lazy, &tracked})
      for (const Index c : marked_per_step[step]) model->x.grad_columns.mark(c);

    // The clipped norm counts the marked columns: the same as the dense gradient's.
    CHECK(gradient_norm(tracked) == doctest::Approx(gradient_norm(plain)).epsilon(1e-14));
    lazy_adam.step(lazy);
    tracked_adam.step(tracked);
    plain_adam.step(plain);

    for (const Index c : marked_per_step[step])
      for (Index r = 0; r < rows; ++r) {
        const std::size_t i = static_cast<std::size_t>(c * rows + r);
        const double g = lazy.x.grad(r, c);
        p[i] *= 1 - 0.01 * 0.1;
        m[i] = 0.8 * m[i] + 0.2 * g;
        v[i] = 0.99 * v[i] + 0.01 * g * g;
        p[i] -= 0.01 * (m[i] / (1 - std::pow(0.8, t))) /
                (std::sqrt(v[i] / (1 - std::pow(0.99, t))) + 1e-6);
      }
    for (std::size_t i = 0; i < p.size(); ++i)
      lazy_error = std::max(lazy_error, std::abs(p[i] - lazy.x.value.data()[i]));
  }
  CHECK(lazy_error < 1e-12);
  // Columns 0, 3 and 5 never had a gradient: the lazy table left them exactly as they were,
  // a dense optimizer moved them (weight decay, and momentum after their first step).
  for (const Index c : {Index{0}, Index{3}, Index{5}})
    for (Index r = 0; r < rows; ++r) {
      CHECK(lazy.x.value(r, c) == p[static_cast<std::size_t>(c * rows + r)]);
      CHECK(plain.x.value(r, c) != lazy.x.value(r, c));
    }
  // Without `lazy`, tracking changes nothing: bit for bit the untracked twin.
  CHECK(bit_identical(tracked.x.value, plain.x.value));
  CHECK(lazy_adam.steps() == 3);
}

TEST_CASE("state names, and shape changes are errors") {
  const Fixture fx;
  TwoParams model = fx.initial_model();
  Adam<> adam;
  std::vector<std::string> names;
  adam.for_each_state([&](std::string_view n, FloatMatrix&) { names.emplace_back(n); });
  CHECK(names.empty());  // allocated lazily
  fx.set_gradients(model, 0);
  adam.step(model);
  adam.for_each_state([&](std::string_view n, FloatMatrix& m) {
    names.emplace_back(n);
    CHECK(m.rows() == 3);
    CHECK(m.cols() == (n.ends_with(".0") ? 4 : 1));
  });
  CHECK(names == std::vector<std::string>{"exp_avg.0", "exp_avg_sq.0", "exp_avg.1",
                                          "exp_avg_sq.1"});
  Sgd<> momentum({.momentum = 0.5});
  momentum.step(model);
  names.clear();
  momentum.for_each_state([&](std::string_view n, FloatMatrix&) { names.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"momentum.0", "momentum.1"});

  const FloatMatrix w_before = model.w.value;
  model.b.resize(4, 1);
  CHECK_THROWS_AS(adam.step(model), ShapeError);
  CHECK(bit_identical(model.w.value, w_before));  // checked before anything is updated
  CHECK(adam.steps() == 1);

  OneParam<float> fewer(3, 4);
  CHECK_THROWS_AS(adam.step(fewer), ShapeError);
  Sgd<> plain;  // no state tensors, but the count is checked all the same
  plain.step(fewer);
  CHECK_THROWS_AS(plain.step(model), ShapeError);
}

TEST_CASE("options are validated; lr and steps can be set") {
  CHECK_THROWS_AS(Sgd<>({.nesterov = true}), Error);
  CHECK_THROWS_AS(Sgd<>({.momentum = 0.9, .dampening = 0.1, .nesterov = true}), Error);
  CHECK_THROWS_AS(Sgd<>({.lr = -1.0}), Error);
  CHECK_THROWS_AS(Adam<>({.beta1 = 1.0}), Error);
  CHECK_THROWS_AS(AdamW<>({.eps = -1.0}), Error);
  Adam<> adam({.lr = 0.5});
  CHECK(adam.lr() == 0.5);
  adam.set_lr(0.25);
  CHECK(adam.lr() == 0.25);
  adam.set_steps(7);
  CHECK(adam.steps() == 7);
}

TEST_CASE_TEMPLATE("checkpoint round trip: restored state continues bit for bit", Optimizer,
                   Sgd<>, Adam<>, AdamW<>) {
  const Fixture fx;
  Optimizer original = make_optimizer<Optimizer>();
  TwoParams model = fx.initial_model();
  for (int k = 0; k < 3; ++k) {
    fx.set_gradients(model, k);
    model.b.frozen = k == 0;  // b's own step count lags behind
    original.step(model);
  }

  // "Save" and restore into a fresh optimizer and a copy of the model.
  Optimizer restored = make_optimizer<Optimizer>();
  TwoParams copy = model;
  restored.prepare(copy);
  copy_state(original, restored);
  restored.set_steps(original.steps());
  restored.set_param_steps(original.param_steps());
  CHECK(restored.steps() == 3);

  for (int k = 3; k < 5; ++k) {
    fx.set_gradients(model, k);
    fx.set_gradients(copy, k);
    original.step(model);
    restored.step(copy);
  }
  CHECK(bit_identical(model.w.value, copy.w.value));
  CHECK(bit_identical(model.b.value, copy.b.value));
  std::map<std::string, FloatMatrix> a;
  original.for_each_state([&](std::string_view n, FloatMatrix& m) { a[std::string(n)] = m; });
  restored.for_each_state(
      [&](std::string_view n, FloatMatrix& m) { CHECK(bit_identical(a.at(std::string(n)), m)); });
}

TEST_CASE("Adam minimises a quadratic; optimizers drive a Sequential") {
  // f(x) = 0.5 sum a_i (x_i - c_i)^2 with curvatures spanning two orders of magnitude.
  OneParam<double> q(5, 1);
  const double a[] = {0.1, 1.0, 3.0, 10.0, 0.5};
  const double c[] = {1.0, -2.0, 0.5, 3.0, -1.0};
  Adam<double> adam({.lr = 0.05});
  for (int step = 0; step < 3000; ++step) {
    for (Index i = 0; i < 5; ++i) q.x.grad(i, 0) = a[i] * (q.x.value(i, 0) - c[i]);
    adam.step(q);
  }
  for (Index i = 0; i < 5; ++i) CHECK(q.x.value(i, 0) == doctest::Approx(c[i]).epsilon(1e-3));

  Sequential<Linear<4, 3>> net;
  Rng rng(1);
  net.initialize(rng);
  net.layer<0>().weight().grad.set_zero();
  net.layer<0>().weight().grad(0, 0) = 1.0f;
  net.layer<0>().bias().grad.set_zero();
  const float before = net.layer<0>().weight().value(0, 0);
  AdamW<> adamw({.lr = 0.1, .weight_decay = 0.0});
  adamw.step(net);
  CHECK(net.layer<0>().weight().value(0, 0) == doctest::Approx(before - 0.1f));
  CHECK(net.layer<0>().bias().value(1, 0) == 0.0f);
}

TEST_CASE("clip_grad_norm follows torch.nn.utils.clip_grad_norm_") {
  const Fixture fx;
  TwoParams model = fx.initial_model();
  fx.set_gradients(model, 0);
  const double norm = clip_grad_norm(model, 0.5);
  const double expected = test::load_npy("optim", "clip_norm").data[0];
  const double clipped_diff =
      std::max(max_diff(model.w.grad, test::load_npy("optim", "clip_w"), 0),
               max_diff(model.b.grad, test::load_npy("optim", "clip_b"), 0));
  CHECK(norm == doctest::Approx(expected).epsilon(1e-6));
  CHECK(clipped_diff < 1e-7);
  CHECK(gradient_norm(model) == doctest::Approx(0.5).epsilon(1e-5));

  // b frozen: neither counted nor clipped.
  fx.set_gradients(model, 0);
  model.b.frozen = true;
  const FloatMatrix b_grad = model.b.grad;
  const double norm_w = clip_grad_norm(model, 0.5);
  CHECK(norm_w == doctest::Approx(test::load_npy("optim", "clip_w_only_norm").data[0])
                      .epsilon(1e-6));
  const double w_only_diff = max_diff(model.w.grad, test::load_npy("optim", "clip_w_only_w"), 0);
  CHECK(w_only_diff < 1e-7);
  CHECK(bit_identical(model.b.grad, b_grad));
  MESSAGE("clipping: |norm diff| " << std::abs(norm - expected) << ", max |grad diff| "
                                   << std::max(clipped_diff, w_only_diff));

  // Below the threshold nothing changes.
  fx.set_gradients(model, 1);
  const FloatMatrix w_grad = model.w.grad;
  CHECK(clip_grad_norm(model, 1e3) > 0.0);
  CHECK(bit_identical(model.w.grad, w_grad));
  CHECK_THROWS_AS(clip_grad_norm(model, 0.0), Error);
}

TEST_CASE("schedules: values at key steps") {
  static_assert(LearningRateSchedule<schedule::Cosine>);
  const schedule::Constant constant{.base_lr = 0.3};
  CHECK(constant.lr(0) == 0.3);
  CHECK(constant.lr(123456) == 0.3);

  const schedule::LinearWarmupDecay linear{.base_lr = 1.0, .warmup_steps = 10,
                                           .total_steps = 110};
  CHECK(linear.lr(-5) == 0.0);
  CHECK(linear.lr(0) == 0.0);
  CHECK(linear.lr(5) == doctest::Approx(0.5));
  CHECK(linear.lr(10) == doctest::Approx(1.0));
  CHECK(linear.lr(60) == doctest::Approx(0.5));
  CHECK(linear.lr(109) == doctest::Approx(0.01));
  CHECK(linear.lr(110) == 0.0);
  CHECK(linear.lr(1000) == 0.0);
  const schedule::LinearWarmupDecay no_warmup{.base_lr = 2.0, .warmup_steps = 0,
                                              .total_steps = 4};
  CHECK(no_warmup.lr(0) == 2.0);
  CHECK(no_warmup.lr(3) == doctest::Approx(0.5));

  const schedule::Cosine cosine{.base_lr = 1.0, .total_steps = 110, .warmup_steps = 10,
                                .min_lr = 0.1};
  CHECK(cosine.lr(0) == 0.0);
  CHECK(cosine.lr(5) == doctest::Approx(0.5));
  CHECK(cosine.lr(10) == doctest::Approx(1.0));
  CHECK(cosine.lr(60) == doctest::Approx(0.55));  // half way: the mean of 1 and 0.1
  CHECK(cosine.lr(110) == doctest::Approx(0.1));
  CHECK(cosine.lr(500) == doctest::Approx(0.1));

  // Without warm-up, PyTorch's CosineAnnealingLR(T_max = 10, eta_min = 1e-4) on lr 0.1.
  const auto expected = test::load_npy("optim", "cosine_lr");
  const schedule::Cosine torch_like{.base_lr = 0.1, .total_steps = 10, .min_lr = 1e-4};
  double worst = 0;
  for (std::size_t t = 0; t < expected.size(); ++t)
    worst = std::max(worst, std::abs(torch_like.lr(std::int64_t(t)) - expected.data[t]));
  CHECK(worst < 1e-8);
}
