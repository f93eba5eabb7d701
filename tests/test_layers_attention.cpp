// LayerNorm, positional encodings, multi-head self-attention and Transformer encoder blocks:
// gradient checks in double with padding, the causal mask, and PyTorch reference fixtures
// (tools/fixtures/attention.py) in float.
#include <doctest/doctest.h>

#include <mtlm/layers/attention.hpp>
#include <mtlm/layers/layer_norm.hpp>
#include <mtlm/layers/positional.hpp>
#include <mtlm/layers/transformer_block.hpp>
#include <mtlm/mtlm.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include "support/npy_fixture.hpp"
#include "support/same_bits.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
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

Batch batch_with_lengths(Index length, std::vector<Index> lengths) {
  Batch batch = Batch::dense(static_cast<Index>(lengths.size()), length);
  batch.lengths = std::move(lengths);
  batch.validate();
  return batch;
}

constexpr double gradient_tolerance = 1e-6;

/// check_layer differentiates with h = 1e-6. For attention and the blocks the loss sums many
/// outputs (|L| ~ 10), and its round-off, |L| * 2^-52 / (2h) ~ 1e-9 per difference, is ~1e-6 of
/// the 1e-3 floor of the relative error: entries whose true gradient is 0 (the key bias, since
/// softmax ignores a shift shared by every key) or below the floor read as errors up to ~3e-6.
/// Those layers are held to this bound in check_layer, and additionally to gradient_tolerance by
/// the same comparison with h = 1e-5 (sharp_gradient_check), where round-off is 10x smaller and
/// the truncation error (h^2 / 6 times a third derivative, ~1e-10) stays far below it.
constexpr double round_off_tolerance = 1e-5;
constexpr double sharp_step = 1e-5;

void check_report(const testing::LayerReport& r, double tolerance = gradient_tolerance) {
  INFO("worst entry: " << r.gradients.worst);
  MESSAGE("max relative gradient error " << r.gradients.max_error << " over "
                                         << r.gradients.checked << " entries");
  CHECK(r.gradients.checked > 0);
  CHECK(r.gradients.max_error < tolerance);
  CHECK(r.padding_gradient == 0.0);
  CHECK(r.padding_leak == 0.0);
}

/// Moves every parameter away from its initial value (layer-norm gains 1, biases 0), so that
/// each one takes part in the check.
template <class L>
void perturb_params(L& layer, Rng& rng, double stddev = 0.2) {
  layer.for_each_param([&](std::string_view, auto& p) {
    for (Index i = 0; i < p.value.size(); ++i) p.value.data()[i] += rng.normal(0.0, stddev);
  });
}

/// The parameter and input comparison of check_layer, with central differences of step
/// sharp_step (see round_off_tolerance).
template <class L>
testing::GradientReport sharp_gradient_check(L& layer, HostMatrix x, const Batch& batch,
                                             Rng& rng) {
  HostMatrix g = testing::random_matrix(layer.forward(x.view(), batch).rows(), x.cols(), rng);
  testing::zero_padding(g, batch);
  auto loss = [&] { return Cpu::dot(layer.forward(x.view(), batch).view(), g.view()); };
  zero_gradients(layer);
  layer.forward(x.view(), batch);
  const HostMatrix dx = layer.backward(g.view(), batch);
  testing::GradientReport report;
  layer.for_each_param([&](std::string_view name, auto& p) {
    const HostMatrix grad = p.grad;
    report.merge(testing::compare_gradient(std::span<double>(p.value.data(), p.value.size()),
                                           std::span<const double>(grad.data(), grad.size()),
                                           loss, std::string(name), sharp_step));
  });
  report.merge(testing::compare_gradient(std::span<double>(x.data(), x.size()),
                                         std::span<const double>(dx.data(), dx.size()), loss,
                                         "input", sharp_step));
  return report;
}

/// Initialises and perturbs the layer, then runs check_layer on a padded batch; with
/// `round_off` (attention and blocks), the bound of round_off_tolerance plus the sharp check.
template <class L>
void check_random_layer(L& layer, Index rows, std::uint64_t seed, bool round_off = false) {
  Rng rng(seed);
  layer.initialize(rng);
  perturb_params(layer, rng);
  const Batch batch = padded_batch();
  const HostMatrix x = testing::random_matrix(rows, batch.columns(), rng, 1.5);
  check_report(testing::check_layer(layer, x, batch, rng),
               round_off ? round_off_tolerance : gradient_tolerance);
  if (round_off) {
    const testing::GradientReport sharp = sharp_gradient_check(layer, x, batch, rng);
    INFO("worst entry: " << sharp.worst);
    MESSAGE("with h = " << sharp_step << ": max relative gradient error " << sharp.max_error);
    CHECK(sharp.max_error < gradient_tolerance);
  }
}

std::vector<std::string> param_names(auto& layer) {
  std::vector<std::string> names;
  layer.for_each_param([&](std::string_view n, auto&) { names.emplace_back(n); });
  return names;
}

}  // namespace

// ---- LayerNorm ------------------------------------------------------------------------------

TEST_CASE("LayerNorm: gradients match finite differences with padding") {
  LayerNorm<6, double> layer;
  check_random_layer(layer, 6, 11);
}

TEST_CASE("LayerNorm: normalises each real column, zeroes padding, starts at gain 1 bias 0") {
  Rng rng(12);
  const Batch batch = padded_batch();
  LayerNorm<Dynamic, double> layer(5);
  CHECK(param_names(layer) == std::vector<std::string>{"weight", "bias"});
  HostMatrix x = testing::random_matrix(5, batch.columns(), rng, 3.0);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] += 10.0;
  const HostMatrix& y = layer.forward(x.view(), batch);
  for (Index c = 0; c < y.cols(); ++c) {
    double mean = 0, sq = 0;
    for (Index r = 0; r < 5; ++r) mean += y(r, c) / 5;
    for (Index r = 0; r < 5; ++r) sq += (y(r, c) - mean) * (y(r, c) - mean) / 5;
    if (batch.is_real(c)) {
      CHECK(std::abs(mean) < 1e-12);
      // var / (var + eps) with eps = 1e-5: the variance of x is about 9
      CHECK(sq == doctest::Approx(1.0).epsilon(1e-5));
    } else {
      CHECK(mean == 0.0);
      CHECK(sq == 0.0);
    }
  }
  // A pooled (features x B) input has no padding: every column is normalised.
  HostMatrix pooled = testing::random_matrix(5, 3, rng);
  const HostMatrix& z = layer.forward(pooled.view(), batch);
  for (Index c = 0; c < 3; ++c) CHECK(std::abs(z(0, c)) + std::abs(z(1, c)) > 0.0);
  HostMatrix wrong(4, 3, 0.0);
  CHECK_THROWS_AS(layer.forward(wrong.view(), batch), ShapeError);
}

// ---- positional encodings -------------------------------------------------------------------

TEST_CASE("SinusoidalPositions: adds sin/cos of t / 10000^(2i/D), gradients pass through") {
  SinusoidalPositions<6, double> layer;
  CHECK(param_names(layer).empty());
  check_random_layer(layer, 6, 21);

  const Batch batch = padded_batch();
  HostMatrix x(6, batch.columns(), 0.0);
  const HostMatrix& y = layer.forward(x.view(), batch);
  for (Index b = 0; b < batch.batch_size; ++b)
    for (Index t = 0; t < batch.max_length; ++t)
      for (Index i = 0; i < 6; ++i) {
        const Index c = batch.column(b, t);
        const double angle = static_cast<double>(t) / std::pow(10000.0, (i - i % 2) / 6.0);
        const double expected =
            batch.is_real(c) ? (i % 2 == 0 ? std::sin(angle) : std::cos(angle)) : 0.0;
        CHECK(y(i, c) == doctest::Approx(expected).epsilon(1e-12));
      }
  HostMatrix pooled(6, 3, 0.0);
  CHECK_THROWS_AS(layer.forward(pooled.view(), batch), ShapeError);
}

TEST_CASE("LearnedPositions: gradients, table layout, and sequences longer than MaxLen") {
  LearnedPositions<6, 4, double> layer;
  CHECK(param_names(layer) == std::vector<std::string>{"weight"});
  CHECK(layer.weight().rows() == 6);
  CHECK(layer.weight().cols() == 4);
  check_random_layer(layer, 6, 31);

  // Padding beyond MaxLen is never looked up...
  Rng rng(32);
  const Batch short_seqs = batch_with_lengths(6, {4, 2});
  HostMatrix x = testing::random_matrix(6, short_seqs.columns(), rng);
  CHECK_NOTHROW(layer.forward(x.view(), short_seqs));
  // ...but a real position beyond it is an error naming both sizes.
  const Batch long_seq = batch_with_lengths(6, {6, 2});
  try {
    layer.forward(x.view(), long_seq);
    FAIL("expected a ShapeError");
  } catch (const ShapeError& e) {
    const std::string what = e.what();
    CHECK(what.find("length 6") != std::string::npos);
    CHECK(what.find("maximum length 4") != std::string::npos);
  }
}

// ---- attention -----------------------------------------------------------------------------

using Attention = MultiHeadSelfAttention<8, 2, double>;
using CausalAttention = CausalSelfAttention<8, 2, double>;
using DynamicAttention = MultiHeadSelfAttention<Dynamic, 3, double>;
using CausalBlock = CausalTransformerBlock<8, 2, 16, NormPlacement::pre, Activation::gelu, double>;

TEST_CASE_TEMPLATE("MultiHeadSelfAttention: gradients match finite differences with padding", L,
                   Attention, CausalAttention, DynamicAttention) {
  L layer(L::input_dim == Dynamic ? 6 : L::input_dim);
  CHECK(param_names(layer) == std::vector<std::string>{"in_proj_weight", "in_proj_bias",
                                                       "out_proj_weight", "out_proj_bias"});
  check_random_layer(layer, layer.dim(), 41, true);
}

TEST_CASE("attention kernels: sequence x head blocks side by side on two or three threads give the same numbers") {
  // Enough blocks and tokens (about 6M multiply-adds) that two threads share the blocks; every
  // block's products are small, so each runs on one thread and the numbers must not change.
  const Batch batch = batch_with_lengths(64, {64, 50, 60, 40, 64, 30, 55, 64});
  const Index dim = 128, heads = 4, T = batch.max_length, n = batch.columns();
  Rng rng(52);
  Matrix<float, Cpu> qkv(3 * dim, n), d_context(dim, n);
  for (Index i = 0; i < qkv.size(); ++i) qkv.data()[i] = static_cast<float>(rng.normal());
  for (Index i = 0; i < d_context.size(); ++i) d_context.data()[i] = static_cast<float>(rng.normal());
  const int saved_threads = Cpu::threads();
  for (const bool causal : {false, true}) {
    const backend::AttentionShape shape{dim, heads, dim / heads, T, causal};
    auto run = [&](int threads) {
      Cpu::set_threads(threads);
      Matrix<float, Cpu> probs(T, T * batch.batch_size * heads, 0.0f), context(dim, n, 0.0f),
          d_probs(T, T * batch.batch_size * heads, 0.0f), d_qkv(3 * dim, n, 0.0f);
      const std::span<const Index> lengths(batch.lengths);
      attention_forward(Cpu{}, qkv.view(), lengths, shape, 0.25f, probs.view(), context.view());
      attention_backward(Cpu{}, qkv.view(), probs.view(), d_context.view(), lengths, shape, 0.25f,
                         d_probs.view(), d_qkv.view());
      std::vector<float> out(context.data(), context.data() + context.size());
      out.insert(out.end(), d_qkv.data(), d_qkv.data() + d_qkv.size());
      return out;
    };
    const std::vector<float> one = run(1), two = run(2), three = run(3);
    Cpu::set_threads(saved_threads);
    CAPTURE(causal);
    CHECK(one == two);
    CHECK(one == three);
    CHECK(std::any_of(one.begin(), one.end(), [](float v) { return v != 0; }));
  }
}

TEST_CASE("MultiHeadSelfAttention: shapes are checked") {
  CHECK_THROWS_AS((MultiHeadSelfAttention<Dynamic, 4, double>(6)), ShapeError);
  MultiHeadSelfAttention<8, 2, double> layer;
  const Batch batch = padded_batch();
  HostMatrix rows(6, batch.columns(), 0.0), cols(8, 5, 0.0);
  CHECK_THROWS_AS(layer.forward(rows.view(), batch), ShapeError);
  CHECK_THROWS_AS(layer.forward(cols.view(), batch), ShapeError);
}

TEST_CASE_TEMPLATE("causal mask: changing token t+1 leaves outputs 0..t unchanged", L,
                   CausalAttention, CausalBlock, Attention) {
  Rng rng(51);
  L layer;
  layer.initialize(rng);
  const Batch batch = padded_batch();
  const HostMatrix x = testing::random_matrix(8, batch.columns(), rng);
  const HostMatrix y0 = layer.forward(x.view(), batch);
  double past_change = 0, present_change = 0;
  for (Index b = 0; b < batch.batch_size; ++b)
    for (Index t = 0; t + 1 < batch.lengths[static_cast<std::size_t>(b)]; ++t) {
      HostMatrix changed = x;
      for (Index r = 0; r < 8; ++r) changed(r, batch.column(b, t + 1)) += 1.0 + rng.normal();
      const HostMatrix& y = layer.forward(changed.view(), batch);
      for (Index s = 0; s <= t; ++s)
        for (Index r = 0; r < 8; ++r)
          past_change = std::max(past_change, std::abs(y(r, batch.column(b, s)) -
                                                       y0(r, batch.column(b, s))));
      for (Index r = 0; r < 8; ++r)
        present_change = std::max(present_change, std::abs(y(r, batch.column(b, t + 1)) -
                                                           y0(r, batch.column(b, t + 1))));
    }
  CHECK(present_change > 1e-3);
  if (L::causal)
    CHECK(past_change == 0.0);
  else
    CHECK(past_change > 1e-3);  // the same test sees the future without the mask
}

// ---- Transformer encoder block -------------------------------------------------------------

template <NormPlacement Norm, Activation Act>
using SmallBlock = TransformerEncoderBlock<8, 2, 16, Norm, Act, double>;
using PostReluBlock = SmallBlock<NormPlacement::post, Activation::relu>;
using PostGeluBlock = SmallBlock<NormPlacement::post, Activation::gelu>;
using PreReluBlock = SmallBlock<NormPlacement::pre, Activation::relu>;
using PreGeluBlock = SmallBlock<NormPlacement::pre, Activation::gelu>;
using CausalPostBlock =
    CausalTransformerBlock<8, 2, 16, NormPlacement::post, Activation::relu, double>;

TEST_CASE_TEMPLATE("TransformerEncoderBlock: gradients match finite differences with padding", L,
                   PostReluBlock, PostGeluBlock, PreReluBlock, PreGeluBlock, CausalPostBlock) {
  L layer;
  check_random_layer(layer, 8, 61, true);
}

TEST_CASE("TransformerEncoderBlock: PyTorch parameter names, Sequential, steady-state buffers") {
  PreGeluBlock block;
  CHECK(param_names(block) ==
        std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                 "self_attn.out_proj_weight", "self_attn.out_proj_bias",
                                 "linear1.weight", "linear1.bias", "linear2.weight",
                                 "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight",
                                 "norm2.bias"});
  CHECK(count_parameters(block) == (3 * 8 * 8 + 3 * 8) + (8 * 8 + 8) + (16 * 8 + 16) +
                                       (8 * 16 + 8) + 4 * 8);

  TransformerEncoderBlock<Dynamic, 2, Dynamic, NormPlacement::pre, Activation::gelu, double>
      dynamic_block(8, 16);
  CHECK(count_parameters(dynamic_block) == count_parameters(block));

  using Trunk = Sequential<Linear<5, 8, double>, SinusoidalPositions<8, double>, PostReluBlock,
                           PreGeluBlock, LayerNorm<8, double>>;
  static_assert(Trunk::output_dim == 8);
  Trunk trunk;
  check_random_layer(trunk, 5, 71, true);

  Rng rng(72);
  const Batch batch = padded_batch();
  const HostMatrix x = testing::random_matrix(8, batch.columns(), rng);
  const HostMatrix dy = testing::random_matrix(8, batch.columns(), rng);
  block.initialize(rng);
  const double* y_data = block.forward(x.view(), batch).data();
  const double* dx_data = block.backward(dy.view(), batch).data();
  for (int i = 0; i < 2; ++i) {
    CHECK(block.forward(x.view(), batch).data() == y_data);
    CHECK(block.backward(dy.view(), batch).data() == dx_data);
  }
}

/// Inference's output of a float block equals training's bit for bit, over more tokens than one
/// feed-forward block (the last block partial, padding included), on one and two threads; so do
/// the gradients of a backward pass after either. Two threads, which share the blocks, give one
/// thread's numbers, including when one thread runs two blocks (three blocks: 600 columns).
template <class Block>
void check_inference_matches_training(Index feed_forward) {
  const Index dim = 32;
  // 369 columns: a block of 256 tokens and a partial one of 113; 600: 256, 256 and 88.
  for (const Batch& batch : {batch_with_lengths(41, {41, 17, 40, 1, 33, 41, 29, 12, 41}),
                             batch_with_lengths(75, {75, 75, 70, 75, 3, 75, 72, 30})}) {
    CAPTURE(batch.columns());
    Rng rng(91);
    Matrix<float, Cpu> x(dim, batch.columns()), dy(dim, batch.columns());
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal(0.0, 1.0));
    for (Index i = 0; i < dy.size(); ++i) dy.data()[i] = static_cast<float>(rng.normal(0.0, 1.0));
    Block block(dim, feed_forward);
    block.initialize(rng);
    // Every parameter gradient, then dx, of one backward pass after a forward pass in `mode`.
    auto gradients = [&](Mode mode) {
      zero_gradients(block);
      block.forward(x.view(), batch, mode);
      std::vector<Matrix<float, Cpu>> out;
      out.push_back(block.backward(dy.view(), batch));
      block.for_each_param([&](const auto&, auto& p) { out.push_back(p.grad); });
      return out;
    };
    auto check_equal = [](const std::vector<Matrix<float, Cpu>>& a, const std::vector<Matrix<float, Cpu>>& b) {
      REQUIRE(a.size() == b.size());
      for (std::size_t k = 0; k < a.size(); ++k) {
        CAPTURE(k);
        CHECK(test::differing_entries(a[k], b[k]) == 0);
      }
    };
    const int saved_threads = Cpu::threads();
    std::vector<Matrix<float, Cpu>> one_thread;
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      Cpu::set_threads(threads);
      const Matrix<float, Cpu> trained = block.forward(x.view(), batch, Mode::train);
      const Matrix<float, Cpu> inferred = block.forward(x.view(), batch, Mode::eval);
      CHECK(test::differing_entries(trained, inferred) == 0);
      const auto after_training = gradients(Mode::train);
      // A training forward pass over other tokens first, so that no cache left by the one above
      // can stand in for what the backward pass after inference must recompute.
      block.forward(dy.view(), batch, Mode::train);
      const auto after_inference = gradients(Mode::eval);
      check_equal(after_training, after_inference);
      std::vector<Matrix<float, Cpu>> results{inferred};
      results.insert(results.end(), after_training.begin(), after_training.end());
      if (threads == 1)
        one_thread = results;
      else
        check_equal(one_thread, results);
    }
    Cpu::set_threads(saved_threads);
  }
}

/// A batch's parameter gradients are the sums of its sequences', and its dx their dx: the
/// feed-forward network's blocks of tokens (over a batch of 369 columns: 256 and 113, padding
/// included) must cover every token once and put each one's gradient where it belongs.
template <class Block>
void check_batch_equals_its_sequences(Index feed_forward) {
  const Index dim = 16, longest = 41;
  const std::vector<Index> lengths{41, 17, 40, 1, 33, 41, 29, 12, 41};
  const Batch batch = batch_with_lengths(longest, lengths);
  REQUIRE(batch.columns() == 369);
  Rng rng(92);
  HostMatrix x = testing::random_matrix(dim, batch.columns(), rng);
  HostMatrix dy = testing::random_matrix(dim, batch.columns(), rng);
  Block block(dim, feed_forward);
  block.initialize(rng);
  auto gradients = [&] {
    std::vector<HostMatrix> out;
    block.for_each_param([&](const auto&, auto& p) { out.push_back(p.grad); });
    return out;
  };
  zero_gradients(block);
  block.forward(x.view(), batch, Mode::train);
  const HostMatrix dx = block.backward(dy.view(), batch);
  const auto batch_gradients = gradients();
  zero_gradients(block);
  double worst_dx = 0;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    const Index len = lengths[b], first = static_cast<Index>(b) * longest;
    const Batch one = batch_with_lengths(len, {len});
    block.forward(x.view().middle_cols(first, len), one, Mode::train);
    const HostMatrix& dx_one = block.backward(dy.view().middle_cols(first, len), one);
    for (Index j = 0; j < len; ++j)
      for (Index i = 0; i < dim; ++i) worst_dx = std::max(worst_dx, std::abs(dx_one(i, j) - dx(i, first + j)));
  }
  CHECK(worst_dx < 1e-12);
  const auto summed = gradients();
  REQUIRE(summed.size() == batch_gradients.size());
  for (std::size_t k = 0; k < summed.size(); ++k) {
    CAPTURE(k);
    double worst = 0;
    for (Index i = 0; i < summed[k].size(); ++i)
      worst = std::max(worst, std::abs(summed[k].data()[i] - batch_gradients[k].data()[i]));
    CHECK(worst < 1e-12);
  }
}

TEST_CASE("TransformerEncoderBlock: a batch's gradients are its sequences' (feed-forward blocks)") {
  check_batch_equals_its_sequences<
      TransformerEncoderBlock<Dynamic, 4, Dynamic, NormPlacement::post, Activation::relu, double>>(48);
  check_batch_equals_its_sequences<
      TransformerEncoderBlock<Dynamic, 4, Dynamic, NormPlacement::pre, Activation::gelu, double>>(40);
}

TEST_CASE("TransformerEncoderBlock: inference gives training's outputs bit for bit") {
  // Inference runs the feed-forward network a block of tokens at a time.
  check_inference_matches_training<
      TransformerEncoderBlock<Dynamic, 4, Dynamic, NormPlacement::post, Activation::relu>>(96);
  check_inference_matches_training<
      TransformerEncoderBlock<Dynamic, 4, Dynamic, NormPlacement::pre, Activation::gelu>>(64);
}

// ---- PyTorch fixtures (float) ---------------------------------------------------------------

namespace {

const std::string group = "attention";

/// float32 round-off (6e-8 relative) through a few dozen operations on O(1) values, with sums in
/// another order than PyTorch's, stays below 1e-6; an error in a formula is O(1e-2) or more.
constexpr double fixture_tolerance = 1e-5;

struct Reference {
  Batch batch;
  Matrix<float, Cpu> x, grad_out;
};

Reference load_reference() {
  Reference r;
  const test::NpyArray lengths = test::load_npy(group, "lengths");
  const auto x = test::load_npy(group, "x");
  REQUIRE(x.shape.size() == 3);
  std::vector<Index> lens;
  for (double l : lengths.data) lens.push_back(static_cast<Index>(l));
  r.batch = batch_with_lengths(static_cast<Index>(x.shape[1]), lens);
  r.x = test::as_columns<float>(x);
  r.grad_out = test::as_columns<float>(test::load_npy(group, "grad_out"));
  return r;
}

std::string file_name(std::string_view param) {
  std::string s(param);
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

/// |a - b| / max(1, |b|), over every column or only over the real ones.
double max_diff(const Matrix<float, Cpu>& a, const Matrix<float, Cpu>& b, const Batch* real) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  double m = 0;
  for (Index c = 0; c < a.cols(); ++c) {
    if (real && !real->is_real(c)) continue;
    for (Index r = 0; r < a.rows(); ++r)
      m = std::max(m, std::abs(double(a(r, c)) - double(b(r, c))) /
                          std::max(1.0, std::abs(double(b(r, c)))));
  }
  return m;
}

/// Loads the parameters saved as `params`_<name>, runs forward and backward on the fixture
/// input and compares with `expected`_out, _dx and _grad_<name>.
template <class L>
void compare_with_pytorch(L& layer, const std::string& params, const std::string& expected) {
  const Reference ref = load_reference();
  layer.for_each_param([&](std::string_view name, auto& p) {
    const auto value =
        test::as_matrix<float>(test::load_npy(group, params + "_" + file_name(name)));
    REQUIRE(value.rows() == p.rows());
    REQUIRE(value.cols() == p.cols());
    p.value = value;
  });
  zero_gradients(layer);
  const auto& y = layer.forward(ref.x.view(), ref.batch, Mode::train);
  const double out_diff =
      max_diff(y, test::as_columns<float>(test::load_npy(group, expected + "_out")), &ref.batch);
  const auto& dx = layer.backward(ref.grad_out.view(), ref.batch);
  const double dx_diff =
      max_diff(dx, test::as_columns<float>(test::load_npy(group, expected + "_dx")), nullptr);
  double grad_diff = 0;
  layer.for_each_param([&](std::string_view name, auto& p) {
    const auto g = test::as_matrix<float>(
        test::load_npy(group, expected + "_grad_" + file_name(name)));
    grad_diff = std::max(grad_diff, max_diff(p.grad, g, nullptr));
  });
  MESSAGE(expected << ": max difference to PyTorch: output " << out_diff << ", input gradient "
                   << dx_diff << ", parameter gradients " << grad_diff);
  CHECK(out_diff < fixture_tolerance);
  CHECK(dx_diff < fixture_tolerance);
  CHECK(grad_diff < fixture_tolerance);
}

}  // namespace

TEST_CASE("PyTorch fixtures: nn.LayerNorm") {
  LayerNorm<8> layer;
  compare_with_pytorch(layer, "ln", "ln");
}

TEST_CASE("PyTorch fixtures: nn.MultiheadAttention with key_padding_mask, with and without "
          "a causal attn_mask") {
  MultiHeadSelfAttention<8, 2> layer;
  compare_with_pytorch(layer, "mha", "mha");
  CausalSelfAttention<8, 2> causal;
  compare_with_pytorch(causal, "mha", "mha_causal");
}

TEST_CASE("PyTorch fixtures: nn.TransformerEncoderLayer, norm_first False (ReLU) and True (GELU)") {
  TransformerEncoderBlock<8, 2, 16, NormPlacement::post, Activation::relu> post;
  compare_with_pytorch(post, "post_relu", "post_relu");
  TransformerEncoderBlock<8, 2, 16, NormPlacement::pre, Activation::gelu> pre;
  compare_with_pytorch(pre, "pre_gelu", "pre_gelu");
}
