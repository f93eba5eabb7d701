// Character-aware word representations: CharCnn and WordCharEmbedding. Gradient checks in double
// precision on padded batches (every parameter), forward against a direct computation, padding
// and independence of words, word dropout, and a Sequential with a BiLSTM on top.
#include <doctest/doctest.h>

#include <mtlm/data/char_features.hpp>
#include <mtlm/data/vocab.hpp>
#include <mtlm/layers/char_cnn.hpp>
#include <mtlm/layers/lstm.hpp>
#include <mtlm/layers/word_char_embedding.hpp>
#include <mtlm/mtlm.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include "support/npy_fixture.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

using namespace mtlm;
using testing::HostMatrix;

namespace {

constexpr double gradient_tolerance = 1e-6;
constexpr Index word_vocab = 10, char_vocab = 13;

using Word = std::vector<TokenId>;        // character ids, without trailing <pad>
using Sentence = std::vector<std::pair<TokenId, Word>>;  // (word id, characters)

/// A padded batch with character ids; padded positions get garbage ids (tokens and characters,
/// some outside every vocabulary), which layers must ignore.
Batch make_batch(const std::vector<Sentence>& sentences, Index char_width) {
  std::vector<std::vector<TokenId>> ids;
  for (const auto& s : sentences) {
    ids.emplace_back();
    for (const auto& [id, chars] : s) ids.back().push_back(id);
  }
  Batch batch = Batch::from_sequences(ids, 0);
  batch.char_width = char_width;
  batch.chars.assign(static_cast<std::size_t>(char_width * batch.columns()), 0);
  for (Index b = 0; b < batch.batch_size; ++b)
    for (Index t = 0; t < batch.max_length; ++t) {
      const Index c = batch.column(b, t);
      TokenId* slot = batch.chars.data() + c * char_width;
      if (t < batch.lengths[static_cast<std::size_t>(b)]) {
        const Word& w = sentences[static_cast<std::size_t>(b)][static_cast<std::size_t>(t)].second;
        REQUIRE(static_cast<Index>(w.size()) <= char_width);
        std::copy(w.begin(), w.end(), slot);
      } else {
        batch.tokens[static_cast<std::size_t>(c)] = (c % 2) ? 999 : -4;
        for (Index k = 0; k < char_width; ++k)
          slot[k] = static_cast<TokenId>((c + k) % 2 ? 777 : -1);
      }
    }
  return batch;
}

/// Three sentences of lengths 4, 2 and 3 (padded to 4); words of 1 to 6 characters, among them a
/// 1-character and a 2-character word, shorter than the window width 3.
std::vector<Sentence> sentences() {
  return {{{2, {3, 4, 5, 6, 7}}, {3, {8}}, {4, {5, 9, 10}}, {5, {11, 3, 4, 6, 9, 7}}},
          {{6, {4, 4, 12, 5}}, {7, {6, 7}}},
          {{8, {9, 3}}, {3, {10, 11, 12, 3, 5}}, {9, {7, 8, 9, 10}}}};
}

Batch padded_batch(Index char_width = 6) { return make_batch(sentences(), char_width); }

/// Checks every parameter of a token-input layer against central differences of
/// loss = sum(G .* forward(batch)), G random and zero at padded positions.
template <class L>
testing::GradientReport check_token_layer(L& layer, const Batch& batch, Rng& rng,
                                          Mode mode = Mode::eval,
                                          const std::function<void()>& before_forward = [] {}) {
  auto run = [&]() -> const HostMatrix& {
    before_forward();
    return layer.forward(batch, mode);
  };
  const HostMatrix y0 = run();
  HostMatrix g = testing::random_matrix(y0.rows(), y0.cols(), rng);
  testing::zero_padding(g, batch);
  auto loss = [&] { return Cpu::dot(run().view(), g.view()); };

  zero_gradients(layer);
  run();
  layer.backward(g.view(), batch);
  std::vector<std::pair<std::string, HostMatrix>> grads;
  layer.for_each_param([&](std::string_view name, auto& p) {
    grads.emplace_back(std::string(name), p.grad);
  });
  testing::GradientReport report;
  std::size_t k = 0;
  layer.for_each_param([&](std::string_view, auto& p) {
    const auto& [name, grad] = grads[k++];
    report.merge(testing::compare_gradient(std::span<double>(p.value.data(), p.value.size()),
                                           std::span<const double>(grad.data(), grad.size()),
                                           loss, name));
  });
  return report;
}

std::vector<std::string> param_names(auto& layer) {
  std::vector<std::string> names;
  layer.for_each_param([&](std::string_view n, auto&) { names.emplace_back(n); });
  return names;
}

double max_abs_column(const HostMatrix& m, Index c) {
  double v = 0.0;
  for (Index r = 0; r < m.rows(); ++r) v = std::max(v, std::abs(m(r, c)));
  return v;
}

bool columns_equal(const HostMatrix& a, Index ca, const HostMatrix& b, Index cb, Index row0 = 0,
                   Index rows = -1) {
  if (rows < 0) rows = a.rows();
  for (Index r = row0; r < row0 + rows; ++r)
    if (a(r, ca) != b(r, cb)) return false;
  return true;
}

/// The CharCnn output of one word, computed directly from the definition.
template <class C>
std::vector<double> reference_char_cnn(C& cnn, const Word& word) {
  auto& table = cnn.char_embedding().value;
  auto& weight = cnn.weight().value;
  auto& bias = cnn.bias().value;
  const Index dim = cnn.char_dim(), width = cnn.width(), filters = cnn.filters();
  const auto length = static_cast<Index>(word.size());
  const Index windows = std::max<Index>(1, length - width + 1);
  std::vector<double> out(static_cast<std::size_t>(filters));
  for (Index f = 0; f < filters; ++f) {
    double best = -1e300;
    for (Index p = 0; p < windows; ++p) {
      double z = 0.0;
      for (Index w = 0; w < width; ++w) {
        if (p + w >= length) continue;
        const TokenId c = word[static_cast<std::size_t>(p + w)];
        for (Index d = 0; d < dim; ++d) z += weight(f, w * dim + d) * table(d, c);
      }
      best = std::max(best, z);
    }
    out[static_cast<std::size_t>(f)] = std::tanh(best + bias(f, 0));
  }
  return out;
}

using Cnn = CharCnn<Dynamic, 4, 5, 3, double>;
using WordChar = WordCharEmbedding<Dynamic, 3, Dynamic, 4, 5, 3, double>;

}  // namespace

// ---- CharCnn -----------------------------------------------------------------------------------

TEST_CASE("CharCnn: forward matches a direct computation; padded positions are zero") {
  Rng rng(21);
  Cnn cnn(char_vocab);
  static_assert(Cnn::output_dim == 5 && Cnn::input_dim == Dynamic);
  CHECK(cnn.char_embedding().rows() == 4);
  CHECK(cnn.char_embedding().cols() == char_vocab);
  CHECK(cnn.weight().rows() == 5);
  CHECK(cnn.weight().cols() == 12);
  CHECK(param_names(cnn) ==
        std::vector<std::string>{"embedding.weight", "conv.weight", "conv.bias"});
  cnn.initialize(rng);
  for (Index d = 0; d < 4; ++d) CHECK(cnn.char_embedding().value(d, 0) == 0.0);

  const auto data = sentences();
  const Batch batch = padded_batch();
  const HostMatrix& y = cnn.forward(batch);
  REQUIRE(y.rows() == 5);
  REQUIRE(y.cols() == batch.columns());
  // Windows: max(1, L - 2) per word: 3 1 1 4 | 2 1 | 1 3 2.
  CHECK(cnn.window_count() == 18);
  double max_diff = 0.0;
  for (Index b = 0; b < batch.batch_size; ++b)
    for (Index t = 0; t < batch.max_length; ++t) {
      const Index c = batch.column(b, t);
      if (!batch.is_real(c)) {
        CHECK(max_abs_column(y, c) == 0.0);
        continue;
      }
      const auto expected = reference_char_cnn(
          cnn, data[static_cast<std::size_t>(b)][static_cast<std::size_t>(t)].second);
      for (Index f = 0; f < 5; ++f)
        max_diff = std::max(max_diff, std::abs(y(f, c) - expected[static_cast<std::size_t>(f)]));
      CHECK(max_abs_column(y, c) > 0.0);
    }
  CHECK(max_diff < 1e-12);
}

TEST_CASE("CharCnn: gradients of every parameter match finite differences") {
  Rng rng(22);
  Cnn cnn(char_vocab);
  cnn.initialize(rng);
  const Batch batch = padded_batch();
  const testing::GradientReport report = check_token_layer(cnn, batch, rng);
  INFO("worst entry: " << report.worst);
  CHECK(report.checked == 4 * char_vocab + 5 * 12 + 5);
  CHECK(report.max_error < gradient_tolerance);
  MESSAGE("CharCnn max relative gradient error: " << report.max_error);

  // <pad> (id 0) and characters that occur only at padded positions get no gradient; a
  // character that occurs gets some.
  for (Index d = 0; d < 4; ++d) CHECK(cnn.char_embedding().grad(d, 0) == 0.0);
  CHECK(max_abs_column(cnn.char_embedding().grad, 8) > 0.0);

  SUBCASE("backward accumulates") {
    const HostMatrix once = cnn.weight().grad;
    HostMatrix g = testing::random_matrix(5, batch.columns(), rng);
    zero_gradients(cnn);
    cnn.forward(batch);
    cnn.backward(g.view(), batch);
    const HostMatrix first = cnn.weight().grad;
    cnn.backward(g.view(), batch);
    for (Index i = 0; i < first.size(); ++i)
      CHECK(cnn.weight().grad.data()[i] == doctest::Approx(2 * first.data()[i]));
    CHECK(once.size() == first.size());
  }
}

TEST_CASE("CharCnn: strided output gradients and float precision") {
  Rng rng(23);
  CharCnn<Dynamic, 4, 5, 3> cnn(char_vocab);
  cnn.initialize(rng);
  const Batch batch = padded_batch();
  const auto& y = cnn.forward(batch);
  CHECK(y.cols() == batch.columns());
  // A view into the lower rows of a taller matrix, as WordCharEmbedding passes it.
  Matrix<float, Cpu> tall(9, batch.columns(), 0.25f);
  zero_gradients(cnn);
  cnn.backward(tall.view().middle_rows(4, 5), batch);
  const Matrix<float, Cpu> strided = cnn.weight().grad;
  Matrix<float, Cpu> dense(5, batch.columns(), 0.25f);
  zero_gradients(cnn);
  cnn.backward(dense.view(), batch);
  for (Index i = 0; i < strided.size(); ++i)
    CHECK(strided.data()[i] == cnn.weight().grad.data()[i]);
}

TEST_CASE("CharCnn: a word's output depends only on its own characters") {
  Rng rng(24);
  Cnn cnn(char_vocab);
  cnn.initialize(rng);
  const Batch batch = padded_batch();
  const HostMatrix reference = cnn.forward(batch);
  const Index changed = batch.column(0, 1);

  SUBCASE("other characters, same length") {
    auto data = sentences();
    data[0][1].second = {12};
    const HostMatrix& y = cnn.forward(make_batch(data, 6));
    for (Index c = 0; c < batch.columns(); ++c)
      if (c != changed) CHECK(columns_equal(y, c, reference, c));
    CHECK(!columns_equal(y, changed, reference, changed));
  }
  SUBCASE("another length (the windows of later words move)") {
    auto data = sentences();
    data[0][1].second = {12, 3, 4, 5, 6};
    const HostMatrix& y = cnn.forward(make_batch(data, 6));
    double diff = 0.0;
    for (Index c = 0; c < batch.columns(); ++c)
      if (c != changed)
        for (Index f = 0; f < 5; ++f) diff = std::max(diff, std::abs(y(f, c) - reference(f, c)));
    CHECK(diff < 1e-14);
  }
  SUBCASE("wider character blocks (more trailing <pad>) change nothing") {
    const HostMatrix& y = cnn.forward(padded_batch(9));
    double diff = 0.0;
    for (Index i = 0; i < y.size(); ++i)
      diff = std::max(diff, std::abs(y.data()[i] - reference.data()[i]));
    CHECK(diff < 1e-14);
  }
}

TEST_CASE("CharCnn: a real word without characters outputs zeros and passes no gradient") {
  Rng rng(25);
  Cnn cnn(char_vocab);
  cnn.initialize(rng);
  auto data = sentences();
  data[1][0].second = {};
  const Batch batch = make_batch(data, 6);
  const Index empty = batch.column(1, 0);
  const HostMatrix& y = cnn.forward(batch);
  CHECK(max_abs_column(y, empty) == 0.0);
  const testing::GradientReport report = check_token_layer(cnn, batch, rng);
  INFO("worst entry: " << report.worst);
  CHECK(report.max_error < gradient_tolerance);

  // A gradient arriving at the empty word (or at padding) moves nothing.
  HostMatrix g(5, batch.columns(), 0.0);
  for (Index c = 0; c < batch.columns(); ++c)
    if (c == empty || !batch.is_real(c))
      for (Index f = 0; f < 5; ++f) g(f, c) = 1.0 + static_cast<double>(f);
  zero_gradients(cnn);
  cnn.forward(batch);
  cnn.backward(g.view(), batch);
  double moved = 0.0;
  cnn.for_each_param([&](std::string_view, auto& p) {
    for (Index i = 0; i < p.grad.size(); ++i) moved = std::max(moved, std::abs(p.grad.data()[i]));
  });
  CHECK(moved == 0.0);
}

TEST_CASE("CharCnn: shape errors name the sizes") {
  Cnn cnn(char_vocab);
  Rng rng(26);
  cnn.initialize(rng);
  Batch no_chars = Batch::from_sequences(std::vector<std::vector<TokenId>>{{1, 2}});
  CHECK_THROWS_AS(cnn.forward(no_chars), ShapeError);
  Batch bad = padded_batch();
  bad.chars[static_cast<std::size_t>(bad.column(2, 1) * 6 + 1)] = char_vocab;
  CHECK_THROWS_WITH_AS(cnn.forward(bad), doctest::Contains("outside the character vocabulary"),
                       ShapeError);
  Batch short_chars = padded_batch();
  short_chars.chars.pop_back();
  CHECK_THROWS_AS(cnn.forward(short_chars), ShapeError);
  cnn.forward(padded_batch());
  HostMatrix wrong(4, 12, 0.0);
  CHECK_THROWS_AS(cnn.backward(wrong.view()), ShapeError);
  CHECK_THROWS_AS((CharCnn<Dynamic, 4, 5, 3, double>(char_vocab, 6)), ShapeError);
  CHECK_THROWS_AS((CharCnn<Dynamic, 4, 5, 3, double>()), ShapeError);
}

TEST_CASE("PyTorch fixtures: CharCnn matches Embedding + Conv1d + max + tanh") {
  using test::as_columns;
  using test::as_matrix;
  using test::load_npy;
  using test::max_abs_diff;
  constexpr double fixture_tolerance = 1e-5;
  Cnn cnn(char_vocab);
  cnn.char_embedding().value = as_columns(load_npy("char", "char_embedding_weight"));
  // PyTorch's Conv1d weight is (Filters, CharDim, Width): ours(f, w * CharDim + d) = w[f, d, w].
  const auto torch_weight = load_npy("char", "conv_weight");
  REQUIRE(torch_weight.shape == std::vector<std::size_t>{5, 4, 3});
  auto rearrange = [&](const test::NpyArray& a, HostMatrix& out) {
    for (Index f = 0; f < 5; ++f)
      for (Index d = 0; d < 4; ++d)
        for (Index w = 0; w < 3; ++w)
          out(f, w * 4 + d) = a.data[static_cast<std::size_t>(f * 12 + d * 3 + w)];
  };
  rearrange(torch_weight, cnn.weight().value);
  cnn.bias().value = as_matrix(load_npy("char", "conv_bias"));

  const auto chars = load_npy("char", "chars");
  const auto lengths = load_npy("char", "lengths");
  REQUIRE(chars.shape == std::vector<std::size_t>{3, 4, 6});
  std::vector<std::vector<TokenId>> tokens;
  for (double len : lengths.data) tokens.emplace_back(static_cast<std::size_t>(len), 1);
  Batch batch = Batch::from_sequences(tokens);
  batch.char_width = 6;
  for (double c : chars.data) batch.chars.push_back(static_cast<TokenId>(c));

  const double output_diff =
      max_abs_diff(cnn.forward(batch), as_columns(load_npy("char", "output")));
  CHECK(output_diff < fixture_tolerance);
  zero_gradients(cnn);
  cnn.backward(as_columns(load_npy("char", "upstream")).view(), batch);
  HostMatrix expected_weight_grad(5, 12);
  rearrange(load_npy("char", "grad_conv_weight"), expected_weight_grad);
  const double embedding_grad_diff =
      max_abs_diff(cnn.char_embedding().grad, as_columns(load_npy("char", "grad_char_embedding")));
  const double weight_grad_diff = max_abs_diff(cnn.weight().grad, expected_weight_grad);
  const double bias_grad_diff =
      max_abs_diff(cnn.bias().grad, as_matrix(load_npy("char", "grad_conv_bias")));
  CHECK(embedding_grad_diff < fixture_tolerance);
  CHECK(weight_grad_diff < fixture_tolerance);
  CHECK(bias_grad_diff < fixture_tolerance);
  MESSAGE("CharCnn vs PyTorch: output " << output_diff << ", grads " << embedding_grad_diff << " "
                                        << weight_grad_diff << " " << bias_grad_diff);
}

// ---- WordCharEmbedding -------------------------------------------------------------------------

namespace {

/// For each real column, whether the word rows of y show the batch's own token (0), the unknown
/// token (1), or neither (-1); padded columns are -2 (and must be zero).
std::vector<int> substitutions(WordChar& layer, const HostMatrix& y, const Batch& batch,
                               TokenId unk) {
  const auto& table = layer.weight().value;
  std::vector<int> out;
  for (Index c = 0; c < batch.columns(); ++c) {
    if (!batch.is_real(c)) {
      out.push_back(max_abs_column(y, c) == 0.0 ? -2 : -3);
      continue;
    }
    const TokenId id = batch.tokens[static_cast<std::size_t>(c)];
    if (columns_equal(y, c, table, id, 0, 3))
      out.push_back(0);
    else if (columns_equal(y, c, table, unk, 0, 3))
      out.push_back(1);
    else
      out.push_back(-1);
  }
  return out;
}

}  // namespace

TEST_CASE("WordCharEmbedding: [word vector; char features], names, tied table") {
  Rng rng(31);
  WordChar layer(word_vocab, char_vocab);
  static_assert(WordChar::output_dim == 8 && WordChar::input_dim == Dynamic);
  CHECK(layer.output_size() == 8);
  CHECK(param_names(layer) == std::vector<std::string>{"word.weight", "char.embedding.weight",
                                                      "char.conv.weight", "char.conv.bias"});
  CHECK(&layer.weight() == &layer.word_embedding().weight());
  CHECK(layer.weight().rows() == 3);
  CHECK(layer.weight().cols() == word_vocab);
  layer.initialize(rng);

  const Batch batch = padded_batch();
  const HostMatrix y = layer.forward(batch, Mode::eval);
  REQUIRE(y.rows() == 8);
  REQUIRE(y.cols() == batch.columns());
  const HostMatrix words = layer.word_embedding().forward(batch);
  const HostMatrix chars = layer.char_cnn().forward(batch);
  for (Index c = 0; c < batch.columns(); ++c) {
    CHECK(columns_equal(y, c, words, c, 0, 3));
    for (Index f = 0; f < 5; ++f) CHECK(y(3 + f, c) == chars(f, c));
    if (!batch.is_real(c)) CHECK(max_abs_column(y, c) == 0.0);
  }
}

TEST_CASE("WordCharEmbedding: gradients of every parameter match finite differences") {
  Rng rng(32);
  SUBCASE("evaluation") {
    WordChar layer(word_vocab, char_vocab, WordDropout{0.5, 1, 7});
    layer.initialize(rng);
    const testing::GradientReport report = check_token_layer(layer, padded_batch(), rng);
    INFO("worst entry: " << report.worst);
    CHECK(report.checked == 3 * word_vocab + 4 * char_vocab + 5 * 12 + 5);
    CHECK(report.max_error < gradient_tolerance);
    MESSAGE("WordCharEmbedding max relative gradient error: " << report.max_error << " at "
                                                               << report.worst);
  }
  SUBCASE("training with word dropout: the gradient follows the substituted ids") {
    WordChar layer(word_vocab, char_vocab, WordDropout{0.5, 1, 7});
    layer.initialize(rng);
    const Batch batch = padded_batch();
    const testing::GradientReport report =
        check_token_layer(layer, batch, rng, Mode::train, [&] { layer.reseed(7); });
    INFO("worst entry: " << report.worst);
    CHECK(report.max_error < gradient_tolerance);
    layer.reseed(7);
    const auto subs = substitutions(layer, layer.forward(batch, Mode::train), batch, 1);
    CHECK(std::count(subs.begin(), subs.end(), 1) > 0);
    CHECK(std::count(subs.begin(), subs.end(), 0) > 0);
  }
  SUBCASE("dynamic sizes through the two-part constructor") {
    using Dyn = WordCharEmbedding<Dynamic, Dynamic, Dynamic, Dynamic, Dynamic, Dynamic, double>;
    static_assert(Dyn::output_dim == Dynamic);
    Dyn layer(Dyn::WordEmbedding(word_vocab, 2), Dyn::CharEncoder(char_vocab, 3, 4, 2));
    CHECK(layer.output_size() == 6);
    layer.initialize(rng);
    const testing::GradientReport report = check_token_layer(layer, padded_batch(), rng);
    INFO("worst entry: " << report.worst);
    CHECK(report.max_error < gradient_tolerance);
  }
}

TEST_CASE("WordCharEmbedding: word dropout") {
  Rng rng(33);
  const Batch batch = padded_batch();
  const TokenId unk = 1;

  SUBCASE("evaluation never substitutes, whatever p") {
    WordChar layer(word_vocab, char_vocab, WordDropout{1.0, unk, 3});
    layer.initialize(rng);
    const auto subs = substitutions(layer, layer.forward(batch, Mode::eval), batch, unk);
    for (Index c = 0; c < batch.columns(); ++c)
      CHECK(subs[static_cast<std::size_t>(c)] == (batch.is_real(c) ? 0 : -2));
  }
  SUBCASE("p = 1 maps every real token to unk in training; characters are kept") {
    WordChar layer(word_vocab, char_vocab, WordDropout{1.0, unk, 3});
    layer.initialize(rng);
    const HostMatrix y = layer.forward(batch, Mode::train);
    const auto subs = substitutions(layer, y, batch, unk);
    for (Index c = 0; c < batch.columns(); ++c)
      CHECK(subs[static_cast<std::size_t>(c)] == (batch.is_real(c) ? 1 : -2));
    const HostMatrix chars = layer.char_cnn().forward(batch);
    for (Index c = 0; c < batch.columns(); ++c)
      for (Index f = 0; f < 5; ++f) CHECK(y(3 + f, c) == chars(f, c));
    // Only the unknown word's vector receives gradient.
    HostMatrix g = testing::random_matrix(8, batch.columns(), rng);
    testing::zero_padding(g, batch);
    zero_gradients(layer);
    layer.forward(batch, Mode::train);
    layer.backward(g.view(), batch);
    for (Index v = 0; v < word_vocab; ++v)
      CHECK((max_abs_column(layer.weight().grad, v) > 0.0) == (v == unk));
  }
  SUBCASE("p = 0 never substitutes and draws nothing") {
    WordChar layer(word_vocab, char_vocab);
    layer.initialize(rng);
    const auto subs = substitutions(layer, layer.forward(batch, Mode::train), batch, unk);
    for (Index c = 0; c < batch.columns(); ++c)
      CHECK(subs[static_cast<std::size_t>(c)] == (batch.is_real(c) ? 0 : -2));
  }
  SUBCASE("same seed, same substitutions; the stream moves on between calls") {
    Rng r1(5), r2(5);
    WordChar a(word_vocab, char_vocab, WordDropout{0.5, unk, 11});
    WordChar b(word_vocab, char_vocab, WordDropout{0.5, unk, 11});
    WordChar other(word_vocab, char_vocab, WordDropout{0.5, unk, 12});
    a.initialize(r1);
    b.initialize(r2);
    Rng r3(5);
    other.initialize(r3);
    std::vector<std::vector<int>> seen_a, seen_b;
    for (int i = 0; i < 4; ++i) {
      seen_a.push_back(substitutions(a, a.forward(batch, Mode::train), batch, unk));
      seen_b.push_back(substitutions(b, b.forward(batch, Mode::train), batch, unk));
    }
    CHECK(seen_a == seen_b);
    CHECK(std::find(seen_a[0].begin(), seen_a[0].end(), -1) == seen_a[0].end());
    CHECK(seen_a[0] != seen_a[1]);
    CHECK(substitutions(other, other.forward(batch, Mode::train), batch, unk) != seen_a[0]);
    a.reseed(11);
    CHECK(substitutions(a, a.forward(batch, Mode::train), batch, unk) == seen_a[0]);
  }
  SUBCASE("unpinned layers derive their stream from the model's rng") {
    Rng r1(8), r2(8), r3(9);
    WordChar a(word_vocab, char_vocab, WordDropout{0.5, unk});
    WordChar b(word_vocab, char_vocab, WordDropout{0.5, unk});
    a.initialize(r1);
    b.initialize(r2);
    CHECK(substitutions(a, a.forward(batch, Mode::train), batch, unk) ==
          substitutions(b, b.forward(batch, Mode::train), batch, unk));
  }
  SUBCASE("the substituted fraction is about p") {
    std::vector<Sentence> many(40);
    for (auto& s : many)
      for (int t = 0; t < 25; ++t) s.push_back({static_cast<TokenId>(2 + t % 8), {3, 4, 5}});
    const Batch big = make_batch(many, 5);
    WordChar layer(word_vocab, char_vocab, WordDropout{0.3, unk, 17});
    layer.initialize(rng);
    const auto subs = substitutions(layer, layer.forward(big, Mode::train), big, unk);
    const double fraction =
        static_cast<double>(std::count(subs.begin(), subs.end(), 1)) / 1000.0;
    CHECK(fraction > 0.25);
    CHECK(fraction < 0.35);
    CHECK(std::count(subs.begin(), subs.end(), 0) + std::count(subs.begin(), subs.end(), 1) ==
          1000);
  }
  SUBCASE("invalid options") {
    CHECK_THROWS_AS(WordChar(word_vocab, char_vocab, WordDropout{1.5, unk}), Error);
    CHECK_THROWS_AS(WordChar(word_vocab, char_vocab, WordDropout{-0.1, unk}), Error);
    CHECK_THROWS_AS(WordChar(word_vocab, char_vocab, WordDropout{0.1, 10}), ShapeError);
    WordChar layer(word_vocab, char_vocab);
    layer.initialize(rng);
    layer.forward(batch, Mode::eval);
    HostMatrix wrong(5, batch.columns(), 0.0);
    CHECK_THROWS_AS(layer.backward(wrong.view(), batch), ShapeError);
  }
}

TEST_CASE("WordCharEmbedding: unknown words differ through their characters (data pipeline)") {
  const std::vector<std::vector<std::string>> train{{"show", "flights", "to", "boston"},
                                                    {"flights", "from", "denver"}};
  const Vocabulary words = Vocabulary::build(train);
  const CharVocabulary chars = CharVocabulary::build(train);
  // "dallas" and "atlanta" are unknown words: the same <unk> word vector, other spellings.
  const std::vector<std::vector<std::string>> test{{"flights", "to", "dallas"},
                                                   {"atlanta", "to", "boston", "from", "denver"}};
  std::vector<std::vector<TokenId>> ids;
  for (const auto& s : test) ids.push_back(words.ids(s));
  Batch batch = Batch::from_sequences(ids, Vocabulary::pad_id);
  const std::vector<Index> order{0, 1};
  CharIdBatch char_ids = char_id_batch(test, order, batch, chars, CharIdOptions{12, true});
  batch.char_width = char_ids.width;
  batch.chars = std::move(char_ids.ids);

  WordCharEmbedding<Dynamic, 3, Dynamic, 4, 5, 3, double> layer(words.size(), chars.size());
  Rng rng(35);
  layer.initialize(rng);
  const HostMatrix& y = layer.forward(batch, Mode::eval);
  const Index dallas = batch.column(0, 2), atlanta = batch.column(1, 0);
  REQUIRE(batch.tokens[static_cast<std::size_t>(dallas)] == Vocabulary::unk_id);
  REQUIRE(batch.tokens[static_cast<std::size_t>(atlanta)] == Vocabulary::unk_id);
  CHECK(columns_equal(y, dallas, y, atlanta, 0, 3));
  CHECK(!columns_equal(y, dallas, y, atlanta, 3, 5));
  // "to" occurs twice: same word, same vector.
  CHECK(columns_equal(y, batch.column(0, 1), y, batch.column(1, 1)));
  CHECK(max_abs_column(y, batch.column(0, 3)) == 0.0);
}

TEST_CASE("Sequential<WordCharEmbedding, BiLstm, Linear>: names, shapes and gradients") {
  using Trunk = Sequential<WordChar, BiLstm<8, 3, double>, Linear<6, 2, double>>;
  static_assert(Trunk::reads_tokens && Trunk::output_dim == 2);
  Rng rng(41);
  Trunk trunk(WordChar(word_vocab, char_vocab, WordDropout{0.2, 1, 5}));
  trunk.initialize(rng);
  const auto names = param_names(trunk);
  REQUIRE(names.size() == 14);
  CHECK(names[0] == "0.word.weight");
  CHECK(names[3] == "0.char.conv.bias");
  CHECK(names[4] == "1.weight_ih");
  const Batch batch = padded_batch();
  const HostMatrix& y = trunk.forward(batch, Mode::eval);
  CHECK(y.rows() == 2);
  CHECK(y.cols() == batch.columns());
  const testing::GradientReport report = check_token_layer(trunk, batch, rng);
  INFO("worst entry: " << report.worst);
  CHECK(report.max_error < gradient_tolerance);
  MESSAGE("Sequential trunk max relative gradient error: " << report.max_error);
  // Training mode runs (with word dropout) and backward reaches the character table.
  zero_gradients(trunk);
  HostMatrix g = testing::random_matrix(2, batch.columns(), rng);
  testing::zero_padding(g, batch);
  trunk.forward(batch, Mode::train);
  trunk.backward(g.view(), batch);
  CHECK(max_abs_column(trunk.layer<0>().char_cnn().char_embedding().grad, 3) > 0.0);
}
