// Embedding, dropout and pooling: gradient checks in double precision with padded batches,
// padding behaviour, pre-trained vector files, and PyTorch reference values (Linear, Embedding).
#include <doctest/doctest.h>

#include <mtlm/layers/dropout.hpp>
#include <mtlm/layers/embedding.hpp>
#include <mtlm/layers/pooling.hpp>
#include <mtlm/mtlm.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include "support/npy_fixture.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

using namespace mtlm;
using testing::HostMatrix;

namespace {

constexpr double gradient_tolerance = 1e-6;
constexpr double fixture_tolerance = 1e-5;

/// Three sequences of lengths 4, 2 and 3, padded to 4 (ids below 10).
Batch padded_batch() {
  const std::vector<std::vector<TokenId>> seqs{{1, 2, 3, 4}, {5, 6}, {7, 8, 9}};
  return Batch::from_sequences(seqs);
}

void check_report(const testing::LayerReport& r) {
  INFO("worst entry: " << r.gradients.worst);
  CHECK(r.gradients.checked > 0);
  CHECK(r.gradients.max_error < gradient_tolerance);
  CHECK(r.padding_gradient == 0.0);
  CHECK(r.padding_leak == 0.0);
}

/// The exception of type E that f throws, if it does.
template <class E, class F>
std::optional<E> thrown(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  }
  return std::nullopt;
}

/// Exact, element-wise equality of two matrices of the same shape.
bool equal(const HostMatrix& a, const HostMatrix& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (Index i = 0; i < a.size(); ++i)
    if (a.data()[i] != b.data()[i]) return false;
  return true;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    Rng rng((static_cast<std::uint64_t>(std::random_device{}()) << 32) ^
            static_cast<std::uint64_t>(std::hash<const void*>{}(this)));
    path_ = std::filesystem::temp_directory_path() /
            ("mtlm_test_embedding_" + std::to_string(rng.next()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::filesystem::path write(const std::string& name, const std::string& contents) const {
    const auto file = path_ / name;
    std::ofstream(file, std::ios::binary) << contents;
    return file;
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// Analytic gradient of loss = sum(G .* embedding(batch)) for the table, against central
/// differences of the same loss.
template <class E>
testing::GradientReport check_embedding_gradient(E& embedding, const Batch& batch,
                                                 const HostMatrix& g) {
  auto loss = [&] { return Cpu::dot(embedding.forward(batch).view(), g.view()); };
  zero_gradients(embedding);
  embedding.forward(batch);
  embedding.backward(g.view(), batch);
  const HostMatrix analytic = embedding.weight().grad;
  auto& table = embedding.weight().value;
  return testing::compare_gradient(std::span<double>(table.data(), table.size()),
                                   std::span<const double>(analytic.data(), analytic.size()),
                                   loss, "weight");
}

}  // namespace

// ---- Embedding ---------------------------------------------------------------------------------

TEST_CASE("Embedding: forward copies table columns, padded positions are zero") {
  Rng rng(11);
  Embedding<Dynamic, 3, double> embedding(10);
  CHECK(embedding.vocab_size() == 10);
  CHECK(embedding.dim() == 3);
  CHECK(embedding.weight().rows() == 3);
  CHECK(embedding.weight().cols() == 10);
  CHECK(!embedding.padding_index());
  embedding.initialize(rng);
  const Batch batch = padded_batch();
  const HostMatrix& y = embedding.forward(batch);
  REQUIRE(y.rows() == 3);
  REQUIRE(y.cols() == batch.columns());
  const auto& w = embedding.weight().value;
  for (Index b = 0; b < batch.batch_size; ++b)
    for (Index t = 0; t < batch.max_length; ++t)
      for (Index i = 0; i < 3; ++i) {
        const Index c = batch.column(b, t);
        const double expected = batch.is_real(c) ? w(i, batch.token(b, t)) : 0.0;
        CHECK(y(i, c) == expected);
      }
  // Padded positions hold id 0 (the batch's pad id), which is an ordinary token here.
  CHECK(w(0, 0) != 0.0);
}

TEST_CASE("Embedding: table gradient matches finite differences; padding gets none") {
  Rng rng(12);
  // Id 3 is the padding index and occurs at real positions; id 1 repeats; the padded positions
  // hold id 11, which occurs nowhere else.
  const std::vector<std::vector<TokenId>> seqs{{1, 2, 3, 1}, {5, 3}, {7, 1, 9}};
  const Batch batch = Batch::from_sequences(seqs, 11);
  Embedding<Dynamic, Dynamic, double> embedding(12, 5, 3);
  CHECK(embedding.padding_index() == 3);
  embedding.initialize(rng);
  for (Index i = 0; i < 5; ++i) CHECK(embedding.weight().value(i, 3) == 0.0);

  // The upstream gradient is non-zero at padded positions too: they must still not contribute.
  const HostMatrix g = testing::random_matrix(5, batch.columns(), rng);
  const testing::GradientReport report = check_embedding_gradient(embedding, batch, g);
  INFO("worst entry: " << report.worst);
  CHECK(report.checked == 5 * 12);
  CHECK(report.max_error < gradient_tolerance);

  const HostMatrix grad = embedding.weight().grad;
  double padding_row = 0.0, padded_token_row = 0.0;
  for (Index i = 0; i < 5; ++i) {
    padding_row = std::max(padding_row, std::abs(grad(i, 3)));
    padded_token_row = std::max(padded_token_row, std::abs(grad(i, 11)));
  }
  CHECK(padding_row == 0.0);
  CHECK(padded_token_row == 0.0);
  // Token 1 occurs at columns (0,0), (0,3) and (2,1): its gradient is the sum of the three.
  for (Index i = 0; i < 5; ++i)
    CHECK(grad(i, 1) == doctest::Approx(g(i, batch.column(0, 0)) + g(i, batch.column(0, 3)) +
                                        g(i, batch.column(2, 1))));

  // The padding row's positions output zeros.
  const HostMatrix& y = embedding.forward(batch);
  for (Index i = 0; i < 5; ++i) CHECK(y(i, batch.column(1, 1)) == 0.0);

  SUBCASE("backward accumulates") {
    zero_gradients(embedding);
    embedding.forward(batch);
    embedding.backward(g.view(), batch);
    embedding.backward(g.view(), batch);
    for (Index i = 0; i < 5; ++i)
      CHECK(embedding.weight().grad(i, 1) == doctest::Approx(2 * grad(i, 1)));
  }
}

TEST_CASE("Embedding: a sparse gradient marks the batch's tokens and zeroes only those") {
  Rng rng(13);
  // Id 3 is the padding index; the padded positions hold id 11, which occurs nowhere else.
  const std::vector<std::vector<TokenId>> seqs{{1, 2, 3, 1}, {5, 3}, {7, 1, 9}};
  const Batch batch = Batch::from_sequences(seqs, 11);
  const Batch other = Batch::from_sequences(std::vector<std::vector<TokenId>>{{4, 2}, {10}});
  Embedding<Dynamic, Dynamic, double> sparse(12, 5, 3);
  sparse.initialize(rng);
  Embedding<Dynamic, Dynamic, double> dense = sparse;
  sparse.set_sparse_gradient(true);
  CHECK(sparse.sparse_gradient());
  CHECK_FALSE(dense.sparse_gradient());
  const HostMatrix g = testing::random_matrix(5, batch.columns(), rng);
  const HostMatrix g_other = testing::random_matrix(5, other.columns(), rng);

  // Whatever the gradient held when tracking began, the first zeroing clears all of it.
  sparse.weight().grad.data()[0] = 1.0;
  CHECK(sparse.weight().grad_columns.dense());
  zero_gradients(sparse);
  CHECK(sparse.weight().grad(0, 0) == 0.0);
  CHECK_FALSE(sparse.weight().grad_columns.dense());

  for (auto* e : {&sparse, &dense}) {
    zero_gradients(*e);
    e->forward(batch);
    e->backward(g.view(), batch);
  }
  CHECK(equal(sparse.weight().grad, dense.weight().grad));
  std::vector<Index> marked(sparse.weight().grad_columns.columns().begin(),
                            sparse.weight().grad_columns.columns().end());
  std::sort(marked.begin(), marked.end());
  CHECK(marked == std::vector<Index>{1, 2, 5, 7, 9});  // not the padding index 3, not id 11

  // The next batch's gradient, after zeroing, matches a dense table's bit for bit.
  for (auto* e : {&sparse, &dense}) {
    zero_gradients(*e);
    e->forward(other);
    e->backward(g_other.view(), other);
  }
  CHECK(equal(sparse.weight().grad, dense.weight().grad));
  CHECK(sparse.weight().grad_columns.columns().size() == 3);

  // Finite differences see the same gradient with tracking on.
  const testing::GradientReport report = check_embedding_gradient(sparse, batch, g);
  CHECK(report.max_error < gradient_tolerance);

  sparse.set_sparse_gradient(false);
  CHECK(sparse.weight().grad_columns.dense());
}

TEST_CASE("Embedding: ids at padded positions never leak into the output") {
  Rng rng(13);
  Embedding<Dynamic, 4, double> embedding(10);
  embedding.initialize(rng);
  Batch batch = padded_batch();
  const HostMatrix reference = embedding.forward(batch);
  // Any id, even one outside the vocabulary, is ignored past a sequence's length.
  for (Index c = 0; c < batch.columns(); ++c)
    if (!batch.is_real(c)) batch.tokens[static_cast<std::size_t>(c)] = (c % 2) ? 999 : -5;
  const HostMatrix& shaken = embedding.forward(batch);
  REQUIRE(shaken.size() == reference.size());
  double leak = 0.0;
  for (Index i = 0; i < shaken.size(); ++i)
    leak = std::max(leak, std::abs(shaken.data()[i] - reference.data()[i]));
  CHECK(leak == 0.0);
}

TEST_CASE("Embedding: size errors name the sizes") {
  Embedding<Dynamic, 4, double> embedding(10);
  SUBCASE("id outside the vocabulary at a real position") {
    for (TokenId bad : {10, -1}) {
      const std::vector<std::vector<TokenId>> seqs{{1, 2}, {3, bad}};
      const Batch batch = Batch::from_sequences(seqs);
      const auto e = thrown<ShapeError>([&] { embedding.forward(batch); });
      REQUIRE(e);
      INFO(e->what());
      CHECK(contains(e->what(), "token id " + std::to_string(bad)));
      CHECK(contains(e->what(), "vocabulary of size 10"));
    }
  }
  SUBCASE("construction") {
    CHECK_THROWS_AS((Embedding<Dynamic, 4, double>()), ShapeError);
    CHECK_THROWS_AS((Embedding<10, 4, double>(12)), ShapeError);
    const auto e = thrown<ShapeError>([] { Embedding<Dynamic, 4, double>(10, 4, 10); });
    REQUIRE(e);
    CHECK(contains(e->what(), "padding index 10"));
    CHECK(contains(e->what(), "size 10"));
  }
  SUBCASE("gradient shape and a batch without ids") {
    const Batch batch = padded_batch();
    embedding.forward(batch);
    HostMatrix wrong(4, batch.columns() + 1, 0.0);
    CHECK_THROWS_AS(embedding.backward(wrong.view(), batch), ShapeError);
    Batch no_ids = padded_batch();
    no_ids.tokens.clear();
    CHECK_THROWS_AS(embedding.forward(no_ids), ShapeError);
  }
}

TEST_CASE("Embedding: the same seed gives the same table") {
  Rng r1(21), r2(21);
  Embedding<50, 6> a, b;
  a.initialize(r1);
  b.initialize(r2);
  CHECK(a.weight().value(5, 49) == b.weight().value(5, 49));
  CHECK(a.weight().value(0, 0) != a.weight().value(0, 1));
}

// ---- pre-trained vectors -----------------------------------------------------------------------

TEST_CASE("Embedding: load_pretrained reads word2vec / GloVe text") {
  TempDir dir;
  // Index 0 is the padding index; "zebra" is not in the vectors file and keeps its values.
  const std::unordered_map<std::string, Index> vocabulary{
      {"<pad>", 0}, {"the", 1}, {"café", 2}, {"zebra", 3}, {"dog", 4}};
  Embedding<Dynamic, 3, double> embedding(5, 3, 0);
  Rng rng(31);
  embedding.initialize(rng);
  const double zebra = embedding.weight().value(1, 3);
  const auto& w = embedding.weight().value;

  SUBCASE("with a header, CRLF, trailing spaces, unknown and repeated words") {
    const auto file = dir.write("vectors.txt",
                                "6 3\r\n"
                                "the 0.5 -1 2e-1 \r\n"
                                "unknown 1 2 3\r\n"
                                "café\t-0.25\t0.125\t+4\r\n"
                                "<pad> 9 9 9\r\n"
                                "the 7 7 7\r\n"
                                "\r\n"
                                "dog 1.5 2.5 3.5");
    CHECK(embedding.load_pretrained(file, vocabulary) == 3);
    CHECK(w(0, 1) == 0.5);
    CHECK(w(1, 1) == -1.0);
    CHECK(w(2, 1) == doctest::Approx(0.2));
    CHECK(w(0, 2) == -0.25);
    CHECK(w(1, 2) == 0.125);
    CHECK(w(2, 2) == 4.0);
    CHECK(w(2, 4) == 3.5);
    CHECK(w(1, 3) == zebra);
    for (Index i = 0; i < 3; ++i) CHECK(w(i, 0) == 0.0);  // the padding row stays zero
  }
  SUBCASE("without a header, through a lookup function, in float") {
    const auto file = dir.write("glove.txt", "dog 1 2 3\nthe 4 5 6\n");
    Embedding<Dynamic, 3> small(2);
    const Index found = small.load_pretrained(
        file, [](std::string_view word) -> std::optional<Index> {
          if (word == "dog") return 1;
          return std::nullopt;
        });
    CHECK(found == 1);
    CHECK(small.weight().value(2, 1) == 3.0f);
    const std::map<std::string, int> ordered{{"the", 0}};
    CHECK(small.load_pretrained(file, ordered) == 1);
    CHECK(small.weight().value(0, 0) == 4.0f);
  }
}

TEST_CASE("Embedding: load_pretrained reports malformed files with file and line") {
  TempDir dir;
  const std::map<std::string, Index> vocabulary{{"a", 0}, {"b", 1}};
  Embedding<Dynamic, 3, double> embedding(2);

  auto format_error = [&](const std::string& contents) {
    const auto file = dir.write("bad.txt", contents);
    const auto e = thrown<FormatError>([&] { embedding.load_pretrained(file, vocabulary); });
    if (e) {
      CHECK(e->file() == file.string());
      CHECK(contains(e->what(), file.string()));
    }
    return e;
  };

  SUBCASE("a value that is not a number, even for a word outside the vocabulary") {
    const auto e = format_error("a 1 2 3\nzzz 1 x2 3\nb 1 2 3\n");
    REQUIRE(e);
    INFO(e->what());
    CHECK(e->line() == 2);
    CHECK(contains(e->what(), "expected a number"));
    CHECK(contains(e->what(), "'x2'"));
    CHECK(contains(e->what(), ":2:"));
  }
  SUBCASE("too few values") {
    const auto e = format_error("a 1 2 3\nb 1 2\n");
    REQUIRE(e);
    INFO(e->what());
    CHECK(e->line() == 2);
    CHECK(contains(e->what(), "3 values, found 2"));
  }
  SUBCASE("too many values") {
    const auto e = format_error("a 1 2 3 4\n");
    REQUIRE(e);
    CHECK(e->line() == 1);
    CHECK(contains(e->what(), "3 values, found 4"));
  }
  SUBCASE("a header with another dimension") {
    const auto e = format_error("2 300\na 1 2 3\n");
    REQUIRE(e);
    INFO(e->what());
    CHECK(e->line() == 1);
    CHECK(contains(e->what(), "dimension 300"));
    CHECK(contains(e->what(), "expected 3"));
  }
  SUBCASE("a missing file") {
    const auto missing = dir.path() / "missing.txt";
    const auto e =
        thrown<FormatError>([&] { embedding.load_pretrained(missing, vocabulary); });
    REQUIRE(e);
    CHECK(e->line() == 0);
    CHECK(e->file() == missing.string());
  }
  SUBCASE("a lookup outside the vocabulary") {
    const auto file = dir.write("ok.txt", "a 1 2 3\n");
    const std::map<std::string, Index> too_big{{"a", 7}};
    const auto e = thrown<ShapeError>([&] { embedding.load_pretrained(file, too_big); });
    REQUIRE(e);
    CHECK(contains(e->what(), "7"));
    CHECK(contains(e->what(), "size 2"));
  }
}

// ---- Dropout -----------------------------------------------------------------------------------

TEST_CASE("Dropout: a seed replays the same masks") {
  Rng rng(41);
  const HostMatrix x = testing::random_matrix(16, 24, rng);
  Dropout<double> a(0.5, 7), b(0.5, 7);
  const HostMatrix ya = a.forward(x.view());
  const HostMatrix mask_a = a.mask();
  const HostMatrix yb = b.forward(x.view());
  CHECK(equal(mask_a, b.mask()));
  CHECK(equal(ya, yb));

  // The documented draw: element by element in column-major order, dropped when uniform() < p.
  Rng reference(7);
  Index differ = 0;
  for (Index i = 0; i < mask_a.size(); ++i)
    differ += mask_a.data()[i] != (reference.uniform() < 0.5 ? 0.0 : 2.0);
  CHECK(differ == 0);

  const HostMatrix second = a.forward(x.view());
  CHECK(!equal(second, ya));  // a fresh mask every forward
  a.reseed(7);
  CHECK(equal(HostMatrix(a.forward(x.view())), ya));

  SUBCASE("initialize gives unpinned layers distinct streams, and leaves pinned ones alone") {
    Rng model(3);
    Dropout<double> c(0.5), d(0.5), pinned(0.5, 7);
    c.initialize(model);
    d.initialize(model);
    pinned.initialize(model);
    const HostMatrix yc = c.forward(x.view());
    CHECK(!equal(yc, HostMatrix(d.forward(x.view()))));
    CHECK(equal(HostMatrix(pinned.forward(x.view())), ya));
  }
}

TEST_CASE("Dropout: drops a fraction p and scales the rest by 1/(1-p)") {
  Rng rng(42);
  constexpr double p = 0.3;
  const HostMatrix x = testing::random_matrix(200, 500, rng);
  Dropout<double> layer(p, 1);
  const HostMatrix& y = layer.forward(x.view());
  Index dropped = 0;
  double worst_scale = 0.0;
  for (Index i = 0; i < x.size(); ++i) {
    if (y.data()[i] == 0.0)
      ++dropped;
    else
      worst_scale = std::max(worst_scale, std::abs(y.data()[i] - x.data()[i] / (1 - p)));
  }
  const double fraction = static_cast<double>(dropped) / static_cast<double>(x.size());
  // 100000 draws: the standard deviation of the fraction is 0.0015.
  CHECK(fraction == doctest::Approx(p).epsilon(0.03));
  CHECK(worst_scale < 1e-12);

  HostMatrix dy = testing::random_matrix(200, 500, rng);
  const HostMatrix& dx = layer.backward(dy.view());
  Index mismatches = 0;  // compared exactly (a difference could be contracted into an FMA)
  for (Index i = 0; i < x.size(); ++i)
    mismatches += dx.data()[i] != dy.data()[i] * layer.mask().data()[i];
  CHECK(mismatches == 0);
}

TEST_CASE("Dropout: identity in eval mode and for p = 0") {
  Rng rng(43);
  const Batch batch = padded_batch();
  const HostMatrix x = testing::random_matrix(6, batch.columns(), rng);
  const HostMatrix dy = testing::random_matrix(6, batch.columns(), rng);
  Dropout<double> eval_layer(0.9, 1), zero(0.0, 1);
  CHECK(equal(HostMatrix(eval_layer.forward(x.view(), batch, Mode::eval)), x));
  CHECK(equal(HostMatrix(eval_layer.backward(dy.view(), batch)), dy));
  CHECK(equal(HostMatrix(zero.forward(x.view(), batch, Mode::train)), x));
  CHECK(equal(HostMatrix(zero.backward(dy.view(), batch)), dy));
  CHECK_THROWS_AS(Dropout<double>(1.0), Error);
  CHECK_THROWS_AS(Dropout<double>(-0.1), Error);
  HostMatrix wrong(6, 2, 0.0);
  CHECK_THROWS_AS(eval_layer.backward(wrong.view(), batch), ShapeError);
}

TEST_CASE("Dropout: gradients match finite differences in train mode") {
  Rng rng(44);
  const Batch batch = padded_batch();
  Dropout<double> layer(0.4);
  // The same mask for every forward of the check, as backward sees the mask of the last one.
  check_report(testing::check_layer(layer, testing::random_matrix(5, batch.columns(), rng), batch,
                                    rng, Mode::train, [&] { layer.reseed(99); }));
  Index dropped = 0;
  for (Index i = 0; i < layer.mask().size(); ++i) dropped += layer.mask().data()[i] == 0.0;
  CHECK(dropped > 0);  // the check did cover dropped elements
  static_assert(Sequential<Linear<6, 8>, Dropout<>, Linear<8, 3>>::output_dim == 3);
}

// ---- Pooling -----------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("Pooling: gradients match finite differences with padding", L,
                   MeanPool<Dynamic, double>, MaxPool<4, double>, FirstTokenPool<Dynamic, double>,
                   LastTokenPool<4, double>) {
  static_assert(L::preserves_features && L::input_dim == L::output_dim);
  Rng rng(51);
  const Batch batch = padded_batch();
  L layer;
  // Continuous random inputs: ties in max pooling have probability zero.
  check_report(
      testing::check_layer(layer, testing::random_matrix(4, batch.columns(), rng), batch, rng));
}

TEST_CASE("Pooling: values come from real positions only") {
  Rng rng(52);
  const Batch batch = padded_batch();
  HostMatrix x = testing::random_matrix(3, batch.columns(), rng);
  // Large padded values would win every max and shift every mean if they were read.
  for (Index c = 0; c < x.cols(); ++c)
    if (!batch.is_real(c))
      for (Index i = 0; i < 3; ++i) x(i, c) = 100.0;

  MeanPool<Dynamic, double> mean;
  MaxPool<Dynamic, double> max;
  FirstTokenPool<Dynamic, double> first;
  LastTokenPool<Dynamic, double> last;
  const HostMatrix& ymean = mean.forward(x.view(), batch);
  const HostMatrix& ymax = max.forward(x.view(), batch);
  const HostMatrix& yfirst = first.forward(x.view(), batch);
  const HostMatrix& ylast = last.forward(x.view(), batch);
  REQUIRE(ymean.cols() == batch.batch_size);
  for (Index b = 0; b < batch.batch_size; ++b) {
    const Index len = batch.lengths[static_cast<std::size_t>(b)];
    for (Index i = 0; i < 3; ++i) {
      double sum = 0.0, best = -1e300;
      for (Index t = 0; t < len; ++t) {
        sum += x(i, batch.column(b, t));
        best = std::max(best, x(i, batch.column(b, t)));
      }
      CHECK(ymean(i, b) == doctest::Approx(sum / static_cast<double>(len)));
      CHECK(ymax(i, b) == best);
      CHECK(yfirst(i, b) == x(i, batch.column(b, 0)));
      CHECK(ylast(i, b) == x(i, batch.column(b, len - 1)));
    }
  }

  HostMatrix wrong_cols = testing::random_matrix(3, batch.columns() - 1, rng);
  CHECK_THROWS_AS(mean.forward(wrong_cols.view(), batch), ShapeError);
  MaxPool<4, double> four;
  CHECK_THROWS_AS(four.forward(x.view(), batch), ShapeError);
  HostMatrix wrong_dy(3, batch.batch_size + 1, 0.0);
  CHECK_THROWS_AS(last.backward(wrong_dy.view(), batch), ShapeError);
}

// ---- PyTorch reference values ------------------------------------------------------------------

TEST_CASE("PyTorch fixtures: Linear(5, 3) forward and gradients") {
  using test::as_columns;
  using test::as_matrix;
  using test::load_npy;
  using test::max_abs_diff;
  Linear<5, 3> layer;
  layer.weight().value = as_matrix<float>(load_npy("basic", "linear_weight"));
  layer.bias().value = as_matrix<float>(load_npy("basic", "linear_bias"));
  const auto x = as_columns<float>(load_npy("basic", "linear_input"));
  const auto g = as_columns<float>(load_npy("basic", "linear_upstream"));
  REQUIRE(x.rows() == 5);
  REQUIRE(x.cols() == 6);
  const Batch batch = Batch::dense(1, 6);

  const double output = max_abs_diff(layer.forward(x.view(), batch),
                                     as_columns<float>(load_npy("basic", "linear_output")));
  zero_gradients(layer);
  const double grad_input = max_abs_diff(layer.backward(g.view(), batch),
                                         as_columns<float>(load_npy("basic", "linear_grad_input")));
  const double grad_weight = max_abs_diff(
      layer.weight().grad, as_matrix<float>(load_npy("basic", "linear_grad_weight")));
  const double grad_bias =
      max_abs_diff(layer.bias().grad, as_matrix<float>(load_npy("basic", "linear_grad_bias")));
  CHECK(output < fixture_tolerance);
  CHECK(grad_input < fixture_tolerance);
  CHECK(grad_weight < fixture_tolerance);
  CHECK(grad_bias < fixture_tolerance);
}

TEST_CASE("PyTorch fixtures: Embedding(10, 4, padding_idx=0) forward and gradient") {
  using test::as_columns;
  using test::load_npy;
  using test::max_abs_diff;
  Embedding<Dynamic, 4> embedding(10, 4, 0);
  embedding.weight().value = as_columns<float>(load_npy("basic", "embedding_weight"));
  REQUIRE(embedding.weight().rows() == 4);
  REQUIRE(embedding.weight().cols() == 10);

  const auto tokens = load_npy("basic", "embedding_tokens");
  const auto lengths = load_npy("basic", "embedding_lengths");
  REQUIRE(tokens.shape.size() == 2);
  Batch batch;
  batch.batch_size = static_cast<Index>(tokens.shape[0]);
  batch.max_length = static_cast<Index>(tokens.shape[1]);
  for (double id : tokens.data) batch.tokens.push_back(static_cast<TokenId>(id));
  for (double len : lengths.data) batch.lengths.push_back(static_cast<Index>(len));
  REQUIRE(batch.lengths == std::vector<Index>{4, 2, 3});

  const auto g = as_columns<float>(load_npy("basic", "embedding_upstream"));
  const double output = max_abs_diff(embedding.forward(batch),
                                     as_columns<float>(load_npy("basic", "embedding_output")));
  zero_gradients(embedding);
  embedding.backward(g.view(), batch);
  const double grad_weight =
      max_abs_diff(embedding.weight().grad,
                   as_columns<float>(load_npy("basic", "embedding_grad_weight")));
  CHECK(output < fixture_tolerance);
  CHECK(grad_weight < fixture_tolerance);
  for (Index i = 0; i < 4; ++i) CHECK(embedding.weight().grad(i, 0) == 0.0f);
}

// ---- Sequential with an Embedding first ---------------------------------------------------------

TEST_CASE("Sequential: an Embedding plugs in as the first layer") {
  using Model = Sequential<Embedding<Dynamic, 8, double>, Linear<8, 4, double>,
                           Tanh<Dynamic, double>, Dropout<double>, MeanPool<Dynamic, double>>;
  static_assert(Model::reads_tokens);
  static_assert(Model::output_dim == 4);
  static_assert(Sequential<Embedding<Dynamic, 8>, Linear<8, 4>>::output_dim == 4);

  Rng rng(61);
  Model model(Embedding<Dynamic, 8, double>(12, 8, 0), Linear<8, 4, double>(),
              Tanh<Dynamic, double>(), Dropout<double>(0.25, 5), MeanPool<Dynamic, double>());
  model.initialize(rng);
  std::vector<std::string> names;
  model.for_each_param([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"0.weight", "1.weight", "1.bias"});
  CHECK(count_parameters(model) == 12 * 8 + 8 * 4 + 4);

  const std::vector<std::vector<TokenId>> seqs{{1, 2, 3, 4}, {5, 0}, {7, 8, 11}};
  const Batch batch = Batch::from_sequences(seqs, 0);
  auto forward = [&]() -> const HostMatrix& {
    model.layer<3>().reseed(5);
    return model.forward(batch, Mode::train);
  };
  const HostMatrix y = forward();
  CHECK(y.rows() == 4);
  CHECK(y.cols() == batch.batch_size);

  const HostMatrix g = testing::random_matrix(4, batch.batch_size, rng);
  auto loss = [&] { return Cpu::dot(forward().view(), g.view()); };
  zero_gradients(model);
  forward();
  model.backward(g.view(), batch);

  std::vector<HostMatrix> grads;
  model.for_each_param([&](std::string_view, auto& p) { grads.push_back(p.grad); });
  testing::GradientReport report;
  std::size_t k = 0;
  model.for_each_param([&](std::string_view name, auto& p) {
    const HostMatrix& grad = grads[k++];
    report.merge(testing::compare_gradient(std::span<double>(p.value.data(), p.value.size()),
                                           std::span<const double>(grad.data(), grad.size()),
                                           loss, std::string(name)));
  });
  INFO("worst entry: " << report.worst);
  CHECK(report.checked == count_parameters(model));
  CHECK(report.max_error < gradient_tolerance);
  const auto& table_grad = model.layer<0>().weight().grad;
  for (Index i = 0; i < 8; ++i) {
    CHECK(table_grad(i, 0) == 0.0);   // padding index, also at a real position
    CHECK(table_grad(i, 10) == 0.0);  // not in the batch
  }
}
