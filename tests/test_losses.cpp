// Losses: gradient checks in double (central differences), PyTorch reference values, ignored
// and masked entries, numerical stability and shape errors.
#include <doctest/doctest.h>

#include <mtlm/losses/bce.hpp>
#include <mtlm/losses/cross_entropy.hpp>
#include <mtlm/losses/mse.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include "support/npy_fixture.hpp"
#include "support/same_bits.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

using namespace mtlm;
using testing::HostMatrix;

namespace {

constexpr double gradient_tolerance = 1e-6;
constexpr double fixture_tolerance = 2e-6;

/// Checks backward(1) of `loss` against central differences of `forward` w.r.t. `x`.
template <class Forward, class Backward>
testing::GradientReport check_loss_gradient(HostMatrix& x, Forward&& forward,
                                            Backward&& backward) {
  forward();
  const HostMatrix analytic = backward();
  return testing::compare_gradient(std::span<double>(x.data(), x.size()),
                                   std::span<const double>(analytic.data(), analytic.size()),
                                   forward, "logits");
}

void require_gradient(const testing::GradientReport& r) {
  INFO("worst entry: " << r.worst);
  CHECK(r.checked > 0);
  CHECK(r.max_error < gradient_tolerance);
  MESSAGE("max gradient error " << r.max_error);
}

std::vector<std::int32_t> as_targets(const test::NpyArray& a) {
  std::vector<std::int32_t> out;
  for (double v : a.data) out.push_back(static_cast<std::int32_t>(v));
  return out;
}

std::vector<double> as_vector(const test::NpyArray& a) { return a.data; }

double max_abs(const HostMatrix& m) {
  double r = 0;
  for (Index i = 0; i < m.size(); ++i) r = std::max(r, std::abs(m.data()[i]));
  return r;
}

}  // namespace

// ---- SoftmaxCrossEntropy ------------------------------------------------------------------

TEST_CASE("SoftmaxCrossEntropy: gradients match finite differences") {
  Rng rng(11);
  const Index classes = 5, columns = 9;
  HostMatrix logits = testing::random_matrix(classes, columns, rng, 2.0);
  const std::vector<std::int32_t> targets{0, -100, 3, 4, 1, 2, -100, 4, 0};

  CrossEntropyOptions options;
  SUBCASE("mean, ignore_index") {}
  SUBCASE("label smoothing") { options.label_smoothing = 0.15; }
  SUBCASE("class weights") { options.class_weights = {0.5, 2.0, 1.0, 0.25, 1.5}; }
  SUBCASE("class weights and smoothing") {
    options.class_weights = {0.5, 2.0, 1.0, 0.25, 1.5};
    options.label_smoothing = 0.3;
  }
  SUBCASE("sum, weights and smoothing") {
    options.class_weights = {0.5, 2.0, 1.0, 0.25, 1.5};
    options.label_smoothing = 0.1;
    options.reduction = Reduction::sum;
  }
  SoftmaxCrossEntropy<double> loss(options);
  const auto report = check_loss_gradient(
      logits, [&] { return loss.forward(logits.view(), targets); },
      [&]() -> const HostMatrix& { return loss.backward(); });
  require_gradient(report);
  CHECK(loss.counted() == 7);

  const HostMatrix grad = loss.backward();
  for (Index j : {1, 6})
    for (Index c = 0; c < classes; ++c) CHECK(grad(c, j) == 0.0);
}

TEST_CASE("SoftmaxCrossEntropy: a custom ignore_index") {
  Rng rng(12);
  HostMatrix logits = testing::random_matrix(4, 6, rng);
  const std::vector<std::int32_t> targets{0, 2, 2, 3, 1, 2};
  SoftmaxCrossEntropy<double> loss({.ignore_index = 2, .label_smoothing = 0.05});
  require_gradient(check_loss_gradient(
      logits, [&] { return loss.forward(logits.view(), targets); },
      [&]() -> const HostMatrix& { return loss.backward(); }));
  CHECK(loss.counted() == 3);
}

TEST_CASE_TEMPLATE("SoftmaxCrossEntropy: matches F.cross_entropy", S, float, double) {
  const auto logits_f = test::as_columns<S>(test::load_npy("losses", "ce_logits"));
  const auto targets = as_targets(test::load_npy("losses", "ce_targets"));
  const auto targets_alt = as_targets(test::load_npy("losses", "ce_targets_alt"));
  const auto weight = as_vector(test::load_npy("losses", "ce_weight"));

  struct Case {
    const char* name;
    CrossEntropyOptions options;
    const std::vector<std::int32_t>* targets;
  };
  const std::vector<Case> cases{
      {"mean", {}, &targets},
      {"smooth", {.label_smoothing = 0.1}, &targets},
      {"weight", {.class_weights = weight}, &targets},
      {"all", {.label_smoothing = 0.2, .class_weights = weight}, &targets},
      {"sum", {.label_smoothing = 0.1, .class_weights = weight, .reduction = Reduction::sum},
       &targets},
      {"alt", {.ignore_index = 3, .label_smoothing = 0.05}, &targets_alt},
  };
  double worst_loss = 0, worst_grad = 0;
  for (const auto& c : cases) {
    INFO("case " << c.name);
    SoftmaxCrossEntropy<S> loss(c.options);
    const S value = loss.forward(logits_f.view(), *c.targets);
    const auto expected = test::load_npy("losses", std::string("ce_") + c.name + "_loss");
    const auto expected_grad =
        test::as_columns<S>(test::load_npy("losses", std::string("ce_") + c.name + "_grad"));
    const double loss_diff = std::abs(double(value) - expected.data[0]);
    const double grad_diff = test::max_abs_diff(loss.backward(), expected_grad);
    CHECK(loss_diff < fixture_tolerance * std::max(1.0, std::abs(expected.data[0])));
    CHECK(grad_diff < fixture_tolerance);
    worst_loss = std::max(worst_loss, loss_diff);
    worst_grad = std::max(worst_grad, grad_diff);
  }
  MESSAGE("cross-entropy fixtures: max |loss diff| " << worst_loss << ", max |grad diff| "
                                                     << worst_grad);
}

TEST_CASE("SoftmaxCrossEntropy: all targets ignored gives 0 and a zero gradient") {
  HostMatrix logits(3, 4, 1.5);
  const std::vector<std::int32_t> targets(4, -100);
  for (auto reduction : {Reduction::mean, Reduction::sum}) {
    SoftmaxCrossEntropy<double> loss({.label_smoothing = 0.1,
                                      .class_weights = {1.0, 2.0, 3.0},
                                      .reduction = reduction});
    const double value = loss.forward(logits.view(), targets);
    CHECK(value == 0.0);
    CHECK(loss.counted() == 0);
    const HostMatrix& grad = loss.backward(3.0);
    CHECK(grad.rows() == 3);
    CHECK(grad.cols() == 4);
    for (Index i = 0; i < grad.size(); ++i) CHECK(grad.data()[i] == 0.0);
  }
}

TEST_CASE("SoftmaxCrossEntropy: ignored columns are never read") {
  HostMatrix logits(3, 3, 0.0);
  logits(0, 0) = 2.0;
  for (Index c = 0; c < 3; ++c) logits(c, 1) = std::numeric_limits<double>::quiet_NaN();
  logits(2, 2) = -1.0;
  const std::vector<std::int32_t> targets{0, -100, 1};
  SoftmaxCrossEntropy<double> loss;
  const double value = loss.forward(logits.view(), targets);
  CHECK(std::isfinite(value));
  const HostMatrix& grad = loss.backward();
  for (Index i = 0; i < grad.size(); ++i) CHECK(std::isfinite(grad.data()[i]));
  for (Index c = 0; c < 3; ++c) CHECK(grad(c, 1) == 0.0);
}

TEST_CASE("SoftmaxCrossEntropy: large logits stay finite (log-sum-exp)") {
  // In float, exp(1000) overflows: a naive softmax gives inf / inf.
  Matrix<float, Cpu> logits(3, 2);
  Matrix<float, Cpu> shifted(3, 2);
  const float values[] = {1.0f, 2.0f, -0.5f, 0.25f, 0.0f, 3.0f};
  for (Index i = 0; i < 6; ++i) {
    logits.data()[i] = values[i];
    shifted.data()[i] = values[i] + 1000.0f;
  }
  const std::vector<std::int32_t> targets{1, 2};
  SoftmaxCrossEntropy<float> a({.label_smoothing = 0.1}), b({.label_smoothing = 0.1});
  const float la = a.forward(logits.view(), targets);
  const float lb = b.forward(shifted.view(), targets);
  CHECK(std::isfinite(lb));
  CHECK(lb == doctest::Approx(la).epsilon(1e-3));
  CHECK(test::max_abs_diff(a.backward(), b.backward()) < 1e-4);
}

TEST_CASE("SoftmaxCrossEntropy: backward scales, and repeats without side effects") {
  Rng rng(13);
  HostMatrix logits = testing::random_matrix(4, 5, rng);
  const std::vector<std::int32_t> targets{0, 1, 2, 3, -100};
  SoftmaxCrossEntropy<double> loss({.label_smoothing = 0.1});
  loss.forward(logits.view(), targets);
  const HostMatrix once = loss.backward();
  const HostMatrix scaled = loss.backward(2.5);
  const HostMatrix again = loss.backward(1.0);
  CHECK(test::max_abs_diff(again, once) == 0.0);
  for (Index i = 0; i < once.size(); ++i)
    CHECK(scaled.data()[i] == doctest::Approx(2.5 * once.data()[i]).epsilon(1e-14));
  // Every counted column's gradient sums to zero (softmax minus a distribution).
  for (Index j = 0; j < 4; ++j) {
    double sum = 0;
    for (Index c = 0; c < 4; ++c) sum += once(c, j);
    CHECK(std::abs(sum) < 1e-15);
  }
}

TEST_CASE_TEMPLATE("SoftmaxCrossEntropy: a blocked pass in place gives forward and backward bit for bit", S,
                   float, double) {
  Rng rng(15);
  const Index classes = 7, columns = 23;
  const Matrix<S, Cpu> logits = [&] {
    Matrix<S, Cpu> m(classes, columns);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<S>(rng.uniform(-4.0, 4.0));
    return m;
  }();
  std::vector<std::int32_t> targets(static_cast<std::size_t>(columns));
  for (auto& y : targets) y = static_cast<std::int32_t>(rng.uniform() * classes);
  targets[3] = targets[17] = -100;
  const std::vector<double> weights{0.5, 1.0, 2.0, 1.5, 0.25, 1.0, 3.0};
  const std::vector<CrossEntropyOptions> cases{
      {}, {.label_smoothing = 0.1}, {.class_weights = weights},
      {.label_smoothing = 0.2, .class_weights = weights, .reduction = Reduction::sum}};
  for (std::size_t c = 0; c < cases.size(); ++c) {
    INFO("case " << c);
    const S scale = static_cast<S>(0.375);
    SoftmaxCrossEntropy<S> whole(cases[c]), blocked(cases[c]);
    const S loss = whole.forward(logits.view(), targets);
    const Matrix<S, Cpu> gradient = whole.backward(scale);
    // Blocks of 10, 10 and 3 columns, each overwritten with its gradient.
    Matrix<S, Cpu> in_place = logits;
    blocked.begin_blocks(targets, classes, scale);
    for (Index first = 0; first < columns; first += 10)
      blocked.gradient_in_place(in_place.view().middle_cols(first, std::min<Index>(10, columns - first)), first);
    CHECK(blocked.end_blocks() == loss);
    CHECK(blocked.counted() == whole.counted());
    CHECK(blocked.weight_total() == whole.weight_total());
    CHECK(test::differing_entries(in_place, gradient) == 0);
  }
  SoftmaxCrossEntropy<S> loss;
  const std::vector<std::int32_t> outside{0, 7};
  CHECK_THROWS_AS(loss.begin_blocks(outside, classes, S(1)), ShapeError);
}

TEST_CASE("SoftmaxCrossEntropy: two or three threads give one thread's loss and gradient bit for bit") {
  // 300 classes x 777 columns: enough work for two threads to share the columns.
  Rng rng(16);
  const Index classes = 300, columns = 777;
  Matrix<float, Cpu> logits(classes, columns);
  for (Index i = 0; i < logits.size(); ++i) logits.data()[i] = static_cast<float>(rng.uniform(-4.0, 4.0));
  std::vector<std::int32_t> targets(static_cast<std::size_t>(columns));
  for (auto& y : targets) y = static_cast<std::int32_t>(rng.uniform() * classes);
  for (std::size_t j = 5; j < targets.size(); j += 37) targets[j] = -100;
  std::vector<double> weights(static_cast<std::size_t>(classes));
  for (auto& w : weights) w = rng.uniform(0.25, 2.0);
  const std::vector<CrossEntropyOptions> cases{{}, {.label_smoothing = 0.2, .class_weights = weights}};
  const int saved_threads = Cpu::threads();
  for (std::size_t c = 0; c < cases.size(); ++c) {
    INFO("case " << c);
    struct Result {
      float loss, blocked_loss;
      Matrix<float, Cpu> gradient, in_place;
    };
    auto run = [&](int threads) {
      Cpu::set_threads(threads);
      SoftmaxCrossEntropy<float> whole(cases[c]), blocked(cases[c]);
      Result r{whole.forward(logits.view(), targets), 0.0f, whole.backward(0.5f), logits};
      // In place, in blocks of 400 and 377 columns (smoothing reads a copy of each column).
      blocked.begin_blocks(targets, classes, 0.5f);
      blocked.gradient_in_place(r.in_place.view().middle_cols(0, 400), 0);
      blocked.gradient_in_place(r.in_place.view().middle_cols(400, columns - 400), 400);
      r.blocked_loss = blocked.end_blocks();
      return r;
    };
    const Result one = run(1);
    for (const int threads : {2, 3}) {
      CAPTURE(threads);
      const Result other = run(threads);
      CHECK(one.loss == other.loss);
      CHECK(one.blocked_loss == other.blocked_loss);
      CHECK(test::differing_entries(one.gradient, other.gradient) == 0);
      CHECK(test::differing_entries(one.in_place, other.in_place) == 0);
    }
    Cpu::set_threads(saved_threads);
    CHECK(std::isfinite(one.loss));
    CHECK(one.loss == one.blocked_loss);
    CHECK(test::differing_entries(one.gradient, one.in_place) == 0);
  }
}

TEST_CASE("SoftmaxCrossEntropy: workspaces are reused across calls") {
  Rng rng(14);
  HostMatrix big = testing::random_matrix(6, 10, rng);
  HostMatrix small = testing::random_matrix(6, 4, rng);
  const std::vector<std::int32_t> t_big(10, 1), t_small(4, 2);
  SoftmaxCrossEntropy<double> loss;
  loss.forward(big.view(), t_big);
  const double* first = loss.backward().data();
  loss.forward(small.view(), t_small);
  CHECK(loss.backward().data() == first);
  loss.forward(big.view(), t_big);
  CHECK(loss.backward().data() == first);
}

TEST_CASE("SoftmaxCrossEntropy: argmax and size errors") {
  HostMatrix logits(3, 4, 0.0);
  logits(2, 0) = 1.0;
  logits(0, 1) = 5.0;
  logits(1, 2) = -1.0;  // column 2: classes 0 and 2 tie at 0, the first wins
  logits(1, 3) = 0.5;
  std::vector<std::int32_t> predicted(4);
  SoftmaxCrossEntropy<double>::argmax(logits.view(), predicted);
  CHECK(predicted == std::vector<std::int32_t>{2, 0, 0, 1});
  std::vector<std::int32_t> wrong_size(3);
  CHECK_THROWS_AS(SoftmaxCrossEntropy<double>::argmax(logits.view(), wrong_size), ShapeError);

  SoftmaxCrossEntropy<double> loss;
  CHECK_THROWS_AS(loss.forward(logits.view(), std::vector<std::int32_t>{0, 1, 2}), ShapeError);
  CHECK_THROWS_AS(loss.forward(logits.view(), std::vector<std::int32_t>{0, 1, 3, 0}),
                  ShapeError);
  CHECK_THROWS_AS(loss.forward(logits.view(), std::vector<std::int32_t>{0, -1, 2, 0}),
                  ShapeError);
  SoftmaxCrossEntropy<double> weighted({.class_weights = {1.0, 2.0}});
  CHECK_THROWS_AS(weighted.forward(logits.view(), std::vector<std::int32_t>{0, 1, 2, 0}),
                  ShapeError);
  CHECK_THROWS_AS(SoftmaxCrossEntropy<double>({.label_smoothing = 1.5}), Error);
  CHECK_THROWS_AS(SoftmaxCrossEntropy<double>({.class_weights = {1.0, -1.0}}), Error);
}

// ---- BinaryCrossEntropyWithLogits ---------------------------------------------------------

TEST_CASE("BinaryCrossEntropyWithLogits: gradients match finite differences") {
  Rng rng(21);
  const Index classes = 4, columns = 6;
  HostMatrix logits = testing::random_matrix(classes, columns, rng, 3.0);
  HostMatrix targets(classes, columns), mask(classes, columns);
  for (Index i = 0; i < targets.size(); ++i) {
    targets.data()[i] = rng.uniform() < 0.4 ? 1.0 : 0.0;
    mask.data()[i] = rng.uniform() < 0.7 ? 1.0 : 0.0;
  }
  targets(0, 0) = 0.3;  // soft targets are allowed
  BceOptions options;
  bool masked = false;
  SUBCASE("mean") {}
  SUBCASE("pos_weight") { options.pos_weight = {0.5, 2.0, 1.0, 3.0}; }
  SUBCASE("mask and pos_weight") {
    options.pos_weight = {0.5, 2.0, 1.0, 3.0};
    masked = true;
  }
  SUBCASE("sum with mask") {
    options.reduction = Reduction::sum;
    masked = true;
  }
  BinaryCrossEntropyWithLogits<double> loss(options);
  auto forward = [&] {
    return masked ? loss.forward(logits.view(), targets.view(), mask.view())
                  : loss.forward(logits.view(), targets.view());
  };
  require_gradient(check_loss_gradient(logits, forward,
                                       [&]() -> const HostMatrix& { return loss.backward(); }));
  if (masked) {
    const HostMatrix& grad = loss.backward();
    Index valid = 0;
    for (Index i = 0; i < mask.size(); ++i) {
      if (mask.data()[i] == 0.0)
        CHECK(grad.data()[i] == 0.0);
      else
        ++valid;
    }
    CHECK(loss.counted() == valid);
  } else {
    CHECK(loss.counted() == classes * columns);
  }
}

TEST_CASE_TEMPLATE("BinaryCrossEntropyWithLogits: matches F.binary_cross_entropy_with_logits", S,
                   float, double) {
  const auto logits = test::as_columns<S>(test::load_npy("losses", "bce_logits"));
  const auto targets = test::as_columns<S>(test::load_npy("losses", "bce_targets"));
  const auto mask = test::as_columns<S>(test::load_npy("losses", "bce_mask"));
  const auto pos_weight = as_vector(test::load_npy("losses", "bce_pos_weight"));
  struct Case {
    const char* name;
    BceOptions options;
    bool masked;
  };
  const std::vector<Case> cases{{"mean", {}, false},
                                {"pos", {.pos_weight = pos_weight}, false},
                                {"sum", {.reduction = Reduction::sum}, false},
                                {"mask_pos", {.pos_weight = pos_weight}, true}};
  double worst_loss = 0, worst_grad = 0;
  for (const auto& c : cases) {
    INFO("case " << c.name);
    BinaryCrossEntropyWithLogits<S> loss(c.options);
    const S value = c.masked ? loss.forward(logits.view(), targets.view(), mask.view())
                             : loss.forward(logits.view(), targets.view());
    const auto expected = test::load_npy("losses", std::string("bce_") + c.name + "_loss");
    const auto expected_grad =
        test::as_columns<S>(test::load_npy("losses", std::string("bce_") + c.name + "_grad"));
    const double loss_diff = std::abs(double(value) - expected.data[0]);
    const double grad_diff = test::max_abs_diff(loss.backward(), expected_grad);
    CHECK(loss_diff < fixture_tolerance * std::max(1.0, std::abs(expected.data[0])));
    CHECK(grad_diff < fixture_tolerance);
    worst_loss = std::max(worst_loss, loss_diff);
    worst_grad = std::max(worst_grad, grad_diff);
  }
  MESSAGE("BCE fixtures: max |loss diff| " << worst_loss << ", max |grad diff| " << worst_grad);
}

TEST_CASE("BinaryCrossEntropyWithLogits: extreme logits, empty masks, shape errors") {
  Matrix<float, Cpu> logits(2, 1), targets(2, 1);
  logits(0, 0) = 100.0f;   // confidently wrong: loss 100, gradient 1
  logits(1, 0) = -100.0f;  // confidently right: loss ~0, gradient ~0
  targets(0, 0) = 0.0f;
  targets(1, 0) = 0.0f;
  BinaryCrossEntropyWithLogits<float> loss({.reduction = Reduction::sum});
  CHECK(loss.forward(logits.view(), targets.view()) == doctest::Approx(100.0f));
  const auto& grad = loss.backward();
  CHECK(grad(0, 0) == doctest::Approx(1.0f));
  CHECK(std::abs(grad(1, 0)) < 1e-30f);

  HostMatrix x(3, 2, std::numeric_limits<double>::quiet_NaN()), y(3, 2, 1.0), none(3, 2, 0.0);
  BinaryCrossEntropyWithLogits<double> masked;
  CHECK(masked.forward(x.view(), y.view(), none.view()) == 0.0);
  CHECK(masked.counted() == 0);
  CHECK(max_abs(masked.backward()) == 0.0);

  HostMatrix wrong(2, 2, 0.0);
  CHECK_THROWS_AS(masked.forward(x.view(), wrong.view()), ShapeError);
  CHECK_THROWS_AS(masked.forward(x.view(), y.view(), wrong.view()), ShapeError);
  BinaryCrossEntropyWithLogits<double> weighted({.pos_weight = {1.0, 2.0}});
  CHECK_THROWS_AS(weighted.forward(x.view(), y.view()), ShapeError);
}

// ---- MeanSquaredError ---------------------------------------------------------------------

TEST_CASE("MeanSquaredError: gradients match finite differences") {
  Rng rng(31);
  HostMatrix predictions = testing::random_matrix(3, 5, rng);
  const HostMatrix targets = testing::random_matrix(3, 5, rng);
  HostMatrix mask(3, 5, 1.0);
  mask(1, 2) = 0.0;
  mask(0, 4) = 0.0;
  MeanSquaredError<double> loss;
  require_gradient(check_loss_gradient(
      predictions, [&] { return loss.forward(predictions.view(), targets.view()); },
      [&]() -> const HostMatrix& { return loss.backward(); }));
  require_gradient(check_loss_gradient(
      predictions, [&] { return loss.forward(predictions.view(), targets.view(), mask.view()); },
      [&]() -> const HostMatrix& { return loss.backward(); }));
  CHECK(loss.counted() == 13);
  CHECK(loss.backward()(1, 2) == 0.0);
}

TEST_CASE_TEMPLATE("MeanSquaredError: matches F.mse_loss", S, float, double) {
  const auto pred = test::as_columns<S>(test::load_npy("losses", "mse_pred"));
  const auto target = test::as_columns<S>(test::load_npy("losses", "mse_target"));
  const auto mask = test::as_columns<S>(test::load_npy("losses", "mse_mask"));
  MeanSquaredError<S> loss;
  double worst_loss = 0, worst_grad = 0;
  for (bool masked : {false, true}) {
    const std::string name = masked ? "mask" : "mean";
    const S value = masked ? loss.forward(pred.view(), target.view(), mask.view())
                           : loss.forward(pred.view(), target.view());
    const auto expected = test::load_npy("losses", "mse_" + name + "_loss");
    const auto expected_grad =
        test::as_columns<S>(test::load_npy("losses", "mse_" + name + "_grad"));
    worst_loss = std::max(worst_loss, std::abs(double(value) - expected.data[0]));
    worst_grad = std::max(worst_grad, test::max_abs_diff(loss.backward(), expected_grad));
  }
  CHECK(worst_loss < fixture_tolerance);
  CHECK(worst_grad < fixture_tolerance);
  MESSAGE("MSE fixtures: max |loss diff| " << worst_loss << ", max |grad diff| " << worst_grad);
}
