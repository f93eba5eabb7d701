// Linear, activations and Sequential: gradient checks in double precision, with padding.
#include <doctest/doctest.h>

#include <mtlm/mtlm.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include <string>
#include <vector>

using namespace mtlm;
using testing::HostMatrix;

namespace {

/// Three sequences of lengths 4, 2 and 3, padded to 4.
Batch padded_batch() {
  const std::vector<std::vector<TokenId>> seqs{{1, 2, 3, 4}, {5, 6}, {7, 8, 9}};
  return Batch::from_sequences(seqs);
}

constexpr double gradient_tolerance = 1e-6;

void check_report(const testing::LayerReport& r) {
  INFO("worst entry: " << r.gradients.worst);
  CHECK(r.gradients.checked > 0);
  CHECK(r.gradients.max_error < gradient_tolerance);
  CHECK(r.padding_gradient == 0.0);
  CHECK(r.padding_leak == 0.0);
}

}  // namespace

TEST_CASE("Linear: gradients match finite differences, with and without bias") {
  Rng rng(1);
  const Batch batch = padded_batch();
  SUBCASE("with bias") {
    Linear<5, 3, double> layer;
    layer.initialize(rng);
    check_report(testing::check_layer(layer, testing::random_matrix(5, batch.columns(), rng),
                                      batch, rng));
  }
  SUBCASE("without bias, dynamic sizes") {
    LinearNoBias<Dynamic, Dynamic, double> layer(6, 2);
    layer.initialize(rng);
    int params = 0;
    layer.for_each_param([&](std::string_view, auto&) { ++params; });
    CHECK(params == 1);
    check_report(testing::check_layer(layer, testing::random_matrix(6, batch.columns(), rng),
                                      batch, rng));
  }
}

TEST_CASE("Linear: forward is W x + b per column, and shape errors are reported") {
  Linear<2, 2, double> layer;
  auto& w = layer.weight().value;
  w(0, 0) = 1;
  w(0, 1) = 2;
  w(1, 0) = 3;
  w(1, 1) = 4;
  layer.bias().value(0, 0) = 0.5;
  layer.bias().value(1, 0) = -0.5;
  HostMatrix x(2, 1);
  x(0, 0) = 1;
  x(1, 0) = -1;
  const auto& y = layer.forward(x.view());
  CHECK(y(0, 0) == doctest::Approx(-0.5));
  CHECK(y(1, 0) == doctest::Approx(-1.5));
  HostMatrix wrong(3, 1, 0.0);
  CHECK_THROWS_AS(layer.forward(wrong.view()), ShapeError);
  CHECK_THROWS_AS((Linear<4, 2, double>(3, 2)), ShapeError);
}

TEST_CASE_TEMPLATE("activation layers: gradients match finite differences", L,
                   Relu<Dynamic, double>, Gelu<Dynamic, double>, Tanh<Dynamic, double>,
                   Sigmoid<4, double>) {
  Rng rng(2);
  const Batch batch = padded_batch();
  L layer;
  check_report(
      testing::check_layer(layer, testing::random_matrix(4, batch.columns(), rng), batch, rng));
}

TEST_CASE("Sequential: chains layers, names parameters by position, checks gradients") {
  using Mlp = Sequential<Linear<6, 8, double>, Tanh<Dynamic, double>, Linear<8, 3, double>,
                         Gelu<Dynamic, double>>;
  static_assert(Mlp::input_dim == 6 && Mlp::output_dim == 3);
  static_assert(Sequential<Linear<6, 8>, Relu<>>::output_dim == 8,
                "shape-preserving layers pass the width through");

  Rng rng(3);
  Mlp mlp;
  mlp.initialize(rng);
  std::vector<std::string> names;
  mlp.for_each_param([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(count_parameters(mlp) == 6 * 8 + 8 + 8 * 3 + 3);

  const Batch batch = padded_batch();
  check_report(
      testing::check_layer(mlp, testing::random_matrix(6, batch.columns(), rng), batch, rng));
}

TEST_CASE("Sequential: same seed gives the same model") {
  using Mlp = Sequential<Linear<6, 8>, Relu<>, Linear<8, 3>>;
  Rng r1(5), r2(5);
  Mlp a, b;
  a.initialize(r1);
  b.initialize(r2);
  CHECK(a.layer<2>().weight().value(2, 7) == b.layer<2>().weight().value(2, 7));
  CHECK(a.layer<0>().weight().value(0, 0) != a.layer<0>().weight().value(0, 1));
}
