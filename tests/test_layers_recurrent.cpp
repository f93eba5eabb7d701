// Recurrent layers (RNN, LSTM, GRU; uni- and bidirectional; stacked): gradient checks in double
// with padded batches, the semantics of sequence lengths, and PyTorch reference fixtures.
#include <doctest/doctest.h>

#include <mtlm/layers/gru.hpp>
#include <mtlm/layers/linear.hpp>
#include <mtlm/layers/lstm.hpp>
#include <mtlm/layers/rnn.hpp>
#include <mtlm/model/sequential.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include "support/npy_fixture.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace mtlm;
using testing::HostMatrix;

// The dimensions of recurrent layers are checked where they meet their neighbours.
static_assert(Sequential<Linear<8, 16>, BiLstm<16, 32>>::output_dim == 64,
              "a bidirectional layer outputs [forward; reverse]: 2 * hidden");
static_assert(Sequential<Linear<8, 16>, Lstm<16, 32>, BiGru<32, 8>, Rnn<16, 5>>::output_dim == 5);
static_assert(BiRnn<4, Dynamic>::output_dim == Dynamic && BiRnn<Dynamic, 3>::output_dim == 6);
static_assert(Lstm<7, 3>::input_dim == 7 && Gru<7, 3>::output_dim == 3);

namespace {

constexpr double gradient_tolerance = 1e-6;

/// Lengths padded to their maximum, or to `max_length` if larger (tokens are not needed).
Batch batch_of(std::vector<Index> lengths, Index max_length = 0) {
  Batch batch;
  batch.batch_size = static_cast<Index>(lengths.size());
  for (Index len : lengths) max_length = std::max(max_length, len);
  batch.max_length = max_length;
  batch.lengths = std::move(lengths);
  return batch;
}

void check_report(const testing::LayerReport& r) {
  INFO("worst entry: " << r.gradients.worst);
  CHECK(r.gradients.checked > 0);
  CHECK(r.gradients.max_error < gradient_tolerance);
  CHECK(r.padding_gradient == 0.0);
  CHECK(r.padding_leak == 0.0);
  MESSAGE("max relative gradient error " << r.gradients.max_error << " over " << r.gradients.checked
                                         << " entries");
}

template <class Layer>
void check_gradients(Layer& layer, Index in, std::uint64_t seed) {
  Rng rng(seed);
  layer.initialize(rng);
  SUBCASE("lengths 4, 2, 3 (longest first)") {
    const Batch batch = batch_of({4, 2, 3});
    check_report(
        testing::check_layer(layer, testing::random_matrix(in, batch.columns(), rng), batch, rng));
  }
  SUBCASE("lengths 2, 4, 1, 3 (longest not first, a single token)") {
    const Batch batch = batch_of({2, 4, 1, 3});
    check_report(
        testing::check_layer(layer, testing::random_matrix(in, batch.columns(), rng), batch, rng));
  }
  SUBCASE("lengths 3, 2 padded to 5 (padding beyond the longest)") {
    const Batch batch = batch_of({3, 2}, 5);
    check_report(
        testing::check_layer(layer, testing::random_matrix(in, batch.columns(), rng), batch, rng));
  }
}

/// Copies x (In x B*T) into a batch padded to another length; padding gets `fill`.
HostMatrix repad(const HostMatrix& x, const Batch& from, const Batch& to, double fill) {
  HostMatrix out(x.rows(), to.columns(), fill);
  for (Index b = 0; b < from.batch_size; ++b)
    for (Index t = 0; t < from.lengths[static_cast<std::size_t>(b)]; ++t)
      for (Index r = 0; r < x.rows(); ++r) out(r, to.column(b, t)) = x(r, from.column(b, t));
  return out;
}

/// Copies the parameters of `from` into `to` by name (`to` may have fewer).
template <class From, class To>
void copy_params(From& from, To& to, const std::string& suffix_from = "") {
  to.for_each_param([&](std::string_view name, auto& dst) {
    bool found = false;
    from.for_each_param([&](std::string_view n, auto& src) {
      if (std::string(n) == std::string(name) + suffix_from) {
        dst.value = src.value;
        found = true;
      }
    });
    REQUIRE(found);
  });
}

}  // namespace

// ---- gradients ----------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("recurrent layers: gradients match finite differences with padding", L,
                   Rnn<3, 4, double>, BiRnn<3, 4, double>, Lstm<3, 4, double>, BiLstm<3, 4, double>,
                   Gru<3, 4, double>, BiGru<3, 4, double>) {
  L layer;
  check_gradients(layer, 3, 11);
}

TEST_CASE_TEMPLATE("stacked recurrent layers: gradients match finite differences", L,
                   Sequential<BiLstm<3, 4, double>, Lstm<8, 3, double>>,
                   Sequential<Gru<3, 4, double>, BiGru<4, 2, double>>,
                   Sequential<BiRnn<3, 2, double>, BiLstm<4, 3, double>>) {
  L stack;
  check_gradients(stack, 3, 12);
}

TEST_CASE("recurrent layers with Dynamic sizes: sizes from the constructor") {
  BiGru<Dynamic, Dynamic, double> layer(3, 4);
  CHECK(layer.output_size() == 8);
  check_gradients(layer, 3, 13);
  CHECK_THROWS_AS((BiGru<Dynamic, 4, double>(0, 4)), ShapeError);
  CHECK_THROWS_AS((Lstm<4, 3>(5, 3)), ShapeError);
}

// ---- sequence lengths ---------------------------------------------------------------------------

TEST_CASE_TEMPLATE("bidirectional layers: outputs do not depend on how much padding follows", L,
                   BiRnn<3, 4, double>, BiLstm<3, 4, double>, BiGru<3, 4, double>) {
  Rng rng(21);
  L layer;
  layer.initialize(rng);
  const Batch tight = batch_of({4, 2, 3});
  const Batch loose = batch_of({4, 2, 3}, 7);
  const HostMatrix x = testing::random_matrix(3, tight.columns(), rng);
  const HostMatrix y_tight = layer.forward(x.view(), tight);
  const HostMatrix y_loose = layer.forward(repad(x, tight, loose, 5.0).view(), loose);
  const HostMatrix y_back = repad(y_loose, loose, tight, 0.0);
  // Same sequences, same packing: bit for bit the same numbers.
  CHECK(test::max_abs_diff(y_tight, y_back) == 0.0);
  for (Index c = 0; c < loose.columns(); ++c)
    if (!loose.is_real(c))
      for (Index r = 0; r < y_loose.rows(); ++r) CHECK(y_loose(r, c) == 0.0);

  // Each sequence alone (no padding at all) gives the same outputs up to round-off.
  for (Index b = 0; b < tight.batch_size; ++b) {
    const Index len = tight.lengths[static_cast<std::size_t>(b)];
    const Batch alone = batch_of({len});
    HostMatrix xb(3, len);
    for (Index t = 0; t < len; ++t)
      for (Index r = 0; r < 3; ++r) xb(r, t) = x(r, tight.column(b, t));
    const HostMatrix& yb = layer.forward(xb.view(), alone);
    double diff = 0;
    for (Index t = 0; t < len; ++t)
      for (Index r = 0; r < yb.rows(); ++r)
        diff = std::max(diff, std::abs(yb(r, t) - y_tight(r, tight.column(b, t))));
    CHECK(diff < 1e-13);
  }
}

TEST_CASE_TEMPLATE(
    "bidirectional layers: [forward; reverse] are the one-way layer on the "
    "sequence and on the sequence read backwards",
    L, BiRnn<3, 4, double>, BiLstm<3, 4, double>, BiGru<3, 4, double>) {
  using Cell = typename L::CellType;
  Rng rng(22);
  L bi;
  bi.initialize(rng);
  Recurrent<Cell, 3, 4, Direction::unidirectional, double> forward, reverse;
  copy_params(bi, forward);
  copy_params(bi, reverse, "_reverse");

  const Batch batch = batch_of({2, 4, 3});
  const HostMatrix x = testing::random_matrix(3, batch.columns(), rng);
  HostMatrix x_reversed(3, batch.columns(), 0.0);
  for (Index b = 0; b < batch.batch_size; ++b) {
    const Index len = batch.lengths[static_cast<std::size_t>(b)];
    for (Index t = 0; t < len; ++t)
      for (Index r = 0; r < 3; ++r)
        x_reversed(r, batch.column(b, len - 1 - t)) = x(r, batch.column(b, t));
  }
  const HostMatrix y = bi.forward(x.view(), batch);
  const HostMatrix yf = forward.forward(x.view(), batch);
  const HostMatrix yr = reverse.forward(x_reversed.view(), batch);
  double diff = 0;
  for (Index b = 0; b < batch.batch_size; ++b) {
    const Index len = batch.lengths[static_cast<std::size_t>(b)];
    for (Index t = 0; t < len; ++t)
      for (Index r = 0; r < 4; ++r) {
        diff = std::max(diff, std::abs(y(r, batch.column(b, t)) - yf(r, batch.column(b, t))));
        diff = std::max(
            diff, std::abs(y(4 + r, batch.column(b, t)) - yr(r, batch.column(b, len - 1 - t))));
      }
  }
  CHECK(diff < 1e-13);
}

TEST_CASE_TEMPLATE("bidirectional layers: directions side by side on two or three threads give the same numbers",
                   L, BiRnn<5, 6>, BiLstm<5, 6>, BiGru<5, 6>, BiLstm<5, 6, double>) {
  using S = typename L::Scalar;
  const int saved_threads = Cpu::threads();
  const Batch batch = batch_of({6, 2, 5, 1});
  Rng data_rng(24);
  Matrix<S, Cpu> x(5, batch.columns()), dy(12, batch.columns());
  for (Index c = 0; c < batch.columns(); ++c)
    for (Index r = 0; r < 12; ++r) {
      if (r < 5) x.view()(r, c) = static_cast<S>(data_rng.normal());
      dy.view()(r, c) = static_cast<S>(data_rng.normal());
    }
  struct Run {
    std::vector<S> y, dx, grads;
  };
  auto run = [&](int threads) {
    Cpu::set_threads(threads);
    Rng rng(25);
    L layer;
    layer.initialize(rng);
    Run out;
    const auto& y = layer.forward(x.view(), batch);
    out.y.assign(y.data(), y.data() + y.size());
    const auto& dx = layer.backward(dy.view(), batch);
    out.dx.assign(dx.data(), dx.data() + dx.size());
    layer.for_each_param([&](const auto&, auto& p) {
      out.grads.insert(out.grads.end(), p.grad.data(), p.grad.data() + p.grad.size());
    });
    return out;
  };
  const Run one = run(1);
  for (const int threads : {2, 3}) {
    CAPTURE(threads);
    const Run other = run(threads);
    CHECK(one.y == other.y);
    CHECK(one.dx == other.dx);
    CHECK(one.grads == other.grads);
  }
  Cpu::set_threads(saved_threads);
  // Every parameter of both directions was compared: G*H x (In + H + 2) entries per direction.
  CHECK(one.grads.size() == std::size_t{2 * L::CellType::gate_count * 6 * (5 + 6 + 2)});
  CHECK(std::any_of(one.grads.begin(), one.grads.end(), [](S g) { return g != 0; }));
}

TEST_CASE_TEMPLATE("recurrent layers: steps at batch 1 (W_hh packed on the CPU) give the bits of the batched steps", L,
                   BiLstm<8, 32>, BiGru<8, 32>, Rnn<8, 32>, BiLstm<4, 12, double>) {
  // A sentence alone, or the tail of a batch's longest, multiplies W_hh by one column per step
  // from a packed copy of it once there are a few such steps; the same sentence next to a copy
  // of itself runs every step as a two-column product. Each hidden size gives several blocks of
  // rows and, for the GRU (96 rows) and the double LSTM (48), a shorter last block.
  using S = typename L::Scalar;
  Rng rng(26);
  L layer;
  layer.initialize(rng);
  constexpr Index in = L::input_dim, long_length = 12;
  Matrix<S, Cpu> x(in, long_length);
  for (Index c = 0; c < long_length; ++c)
    for (Index r = 0; r < in; ++r) x.view()(r, c) = static_cast<S>(rng.normal());
  auto outputs = [&](const std::vector<Index>& lengths, Index sequence) {
    // `lengths` of sequences that all read x's first columns; the outputs of `sequence`.
    const Batch batch = batch_of(lengths);
    Matrix<S, Cpu> xb(in, batch.columns(), S(0));
    for (Index b = 0; b < batch.batch_size; ++b)
      for (Index t = 0; t < lengths[static_cast<std::size_t>(b)]; ++t)
        Cpu::eigen(xb.view().col(batch.column(b, t))) = Cpu::eigen(x.view().col(t));
    const auto& y = layer.forward(xb.view(), batch);
    std::vector<S> out;
    for (Index t = 0; t < lengths[static_cast<std::size_t>(sequence)]; ++t)
      out.insert(out.end(), y.view().col_ptr(batch.column(sequence, t)),
                 y.view().col_ptr(batch.column(sequence, t)) + y.rows());
    return out;
  };
  const std::vector<S> paired = outputs({long_length, long_length}, 0);
  CHECK(outputs({long_length}, 0) == paired);        // 11 steps at batch 1
  CHECK(outputs({3, long_length}, 1) == paired);     // 9 at the tail
  CHECK(outputs({long_length, 9}, 0) == paired);     // 2: too few to pack
  CHECK(std::any_of(paired.begin(), paired.end(), [](S v) { return v != 0; }));
}

TEST_CASE("recurrent layers: non-finite padding stays out of real outputs and gradients") {
  Rng rng(23);
  BiLstm<3, 4> layer;
  layer.initialize(rng);
  const Batch batch = batch_of({1, 4, 2});
  Matrix<float, Cpu> x(3, batch.columns(), std::numeric_limits<float>::quiet_NaN());
  for (Index c = 0; c < batch.columns(); ++c)
    if (batch.is_real(c))
      for (Index r = 0; r < 3; ++r) x(r, c) = static_cast<float>(rng.normal());
  const auto& y = layer.forward(x.view(), batch);
  Matrix<float, Cpu> dy(y.rows(), y.cols(), std::numeric_limits<float>::infinity());
  for (Index c = 0; c < batch.columns(); ++c) {
    for (Index r = 0; r < y.rows(); ++r) {
      if (batch.is_real(c)) {
        CHECK(std::isfinite(y(r, c)));
        dy(r, c) = 1.0f;
      } else {
        CHECK(y(r, c) == 0.0f);
      }
    }
  }
  const auto& dx = layer.backward(dy.view(), batch);
  for (Index c = 0; c < batch.columns(); ++c)
    for (Index r = 0; r < 3; ++r) {
      if (batch.is_real(c))
        CHECK(std::isfinite(dx(r, c)));
      else
        CHECK(dx(r, c) == 0.0f);
    }
  layer.for_each_param([](std::string_view, auto& p) {
    for (Index i = 0; i < p.size(); ++i) REQUIRE(std::isfinite(p.grad.data()[i]));
  });
}

// ---- interface ----------------------------------------------------------------------------------

TEST_CASE("recurrent layers: PyTorch parameter names and shapes") {
  BiLstm<5, 3> lstm;
  std::vector<std::string> names;
  std::vector<std::pair<Index, Index>> shapes;
  lstm.for_each_param([&](std::string_view n, auto& p) {
    names.emplace_back(n);
    shapes.emplace_back(p.rows(), p.cols());
  });
  CHECK(names == std::vector<std::string>{"weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                          "weight_ih_reverse", "weight_hh_reverse",
                                          "bias_ih_reverse", "bias_hh_reverse"});
  CHECK(shapes[0] == std::pair<Index, Index>{12, 5});
  CHECK(shapes[1] == std::pair<Index, Index>{12, 3});
  CHECK(shapes[3] == std::pair<Index, Index>{12, 1});
  CHECK(count_parameters(lstm) == 2 * (12 * 5 + 12 * 3 + 24));
  Gru<5, 3> gru;
  CHECK(count_parameters(gru) == 9 * 5 + 9 * 3 + 18);
  Rnn<5, 3> rnn;
  CHECK(count_parameters(rnn) == 3 * 5 + 3 * 3 + 6);

  Sequential<BiLstm<5, 3>, Gru<6, 2>> stack;
  names.clear();
  stack.for_each_param([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(names.size() == 12);
  CHECK(names[4] == "0.weight_ih_reverse");
  CHECK(names[11] == "1.bias_hh");
}

TEST_CASE("recurrent layers: size mismatches throw, workspaces are reused") {
  Rng rng(24);
  BiGru<3, 4> layer;
  layer.initialize(rng);
  const Batch batch = batch_of({4, 2, 3});
  Matrix<float, Cpu> wrong_rows(2, batch.columns(), 0.0f), wrong_cols(3, 5, 0.0f);
  CHECK_THROWS_AS(layer.forward(wrong_rows.view(), batch), ShapeError);
  CHECK_THROWS_AS(layer.forward(wrong_cols.view(), batch), ShapeError);
  Batch bad = batch_of({4, 2, 3});
  bad.lengths[1] = 0;
  Matrix<float, Cpu> x(3, batch.columns(), 0.5f);
  CHECK_THROWS_AS(layer.forward(x.view(), bad), ShapeError);

  const float* first = layer.forward(x.view(), batch).data();
  Matrix<float, Cpu> dy(8, batch.columns(), 1.0f);
  const float* dx = layer.backward(dy.view(), batch).data();
  Matrix<float, Cpu> dy_wrong(4, batch.columns(), 1.0f);
  CHECK_THROWS_AS(layer.backward(dy_wrong.view(), batch), ShapeError);
  // A smaller batch afterwards fits in the same memory.
  const Batch smaller = batch_of({3, 1});
  Matrix<float, Cpu> xs(3, smaller.columns(), 0.25f), dys(8, smaller.columns(), 1.0f);
  CHECK(layer.forward(xs.view(), smaller).data() == first);
  CHECK(layer.backward(dys.view(), smaller).data() == dx);
}

// ---- PyTorch reference --------------------------------------------------------------------------
//
// tools/fixtures/recurrent.py runs nn.LSTM, nn.GRU (both bidirectional) and nn.RNN (tanh) with
// batch_first=True over pack_padded_sequence (lengths 5, 2, 4: the longest is not last, padding
// holds random values) in float32 and stores the weights, the outputs and the gradients of
// loss = sum(out * G) (G random, zero at padding). We run the same computation in float.
// Values and gradients are O(1) and each passes through at most 5 steps of a few dozen float
// operations, so both sides carry round-off of a few 1e-7; 1e-5 absolute leaves a margin of ten
// while any real error (a swapped gate, an off-by-one in the reversal) is of order 0.1.

namespace {

constexpr double fixture_tolerance = 1e-5;

template <class Layer>
void check_against_pytorch(const std::string& model) {
  auto load = [&](const std::string& name) {
    return test::load_npy("recurrent", model + "_" + name);
  };
  Layer layer;
  layer.for_each_param([&](std::string_view name, auto& p) {
    const auto m = test::as_matrix<float>(load(std::string(name)));
    REQUIRE(m.rows() == p.rows());
    REQUIRE(m.cols() == p.cols());
    p.value = m;
  });
  const auto lengths = load("lengths");
  const auto x_npy = load("x");
  std::vector<Index> lens;
  for (double v : lengths.data) lens.push_back(static_cast<Index>(v));
  const Batch batch = batch_of(lens, static_cast<Index>(x_npy.shape.at(1)));
  const auto x = test::as_columns<float>(x_npy);
  const auto g = test::as_columns<float>(load("g"));

  const auto y = layer.forward(x.view(), batch);
  const double y_diff = test::max_abs_diff(y, test::as_columns<float>(load("y")));
  MESSAGE(model << ": max |y - torch| = " << y_diff);
  CHECK(y_diff < fixture_tolerance);

  zero_gradients(layer);
  const auto dx = layer.backward(g.view(), batch);
  const double dx_diff = test::max_abs_diff(dx, test::as_columns<float>(load("dx")));
  MESSAGE(model << ": max |dx - torch| = " << dx_diff);
  CHECK(dx_diff < fixture_tolerance);
  double grad_diff = 0;
  layer.for_each_param([&](std::string_view name, auto& p) {
    const auto expected = test::as_matrix<float>(load("grad_" + std::string(name)));
    const double d = test::max_abs_diff(p.grad, expected);
    INFO(name);
    CHECK(d < fixture_tolerance);
    grad_diff = std::max(grad_diff, d);
  });
  MESSAGE(model << ": max |dparam - torch| = " << grad_diff);
}

}  // namespace

TEST_CASE("BiLstm matches PyTorch nn.LSTM(bidirectional) over packed sequences") {
  check_against_pytorch<BiLstm<4, 3>>("bilstm");
}

TEST_CASE("BiGru matches PyTorch nn.GRU(bidirectional) over packed sequences") {
  check_against_pytorch<BiGru<4, 3>>("bigru");
}

TEST_CASE("Gru matches PyTorch nn.GRU over packed sequences") {
  check_against_pytorch<Gru<4, 3>>("gru");
}

TEST_CASE("Rnn matches PyTorch nn.RNN(tanh) over packed sequences") {
  check_against_pytorch<Rnn<4, 3>>("rnn");
}
