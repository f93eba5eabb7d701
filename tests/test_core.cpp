// Core vocabulary: random numbers, initialisers, parameters, batches, matrices, CPU kernels.
#include <doctest/doctest.h>

#include <mtlm/mtlm.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include "support/same_bits.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

using namespace mtlm;
using testing::HostMatrix;

TEST_CASE("Rng is deterministic for a seed and differs across seeds") {
  Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    const auto x = a.next();
    CHECK(x == b.next());
    CHECK(x != c.next());
  }
  Rng d(7);
  double sum = 0, sum_sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double z = d.normal();
    sum += z;
    sum_sq += z * z;
  }
  CHECK(std::abs(sum / n) < 0.01);
  CHECK(std::abs(sum_sq / n - 1.0) < 0.02);
}

TEST_CASE("Rng state can be saved and restored") {
  Rng a(3);
  a.normal();  // leaves a spare normal in the state
  const auto saved = a.state();
  const double x = a.normal(), y = a.uniform();
  Rng b(99);
  b.set_state(saved);
  CHECK(b.normal() == x);
  CHECK(b.uniform() == y);
}

TEST_CASE("Rng::below and shuffle cover their range") {
  Rng rng(1);
  std::vector<int> v(50);
  for (int i = 0; i < 50; ++i) v[static_cast<std::size_t>(i)] = i;
  rng.shuffle(v);
  CHECK(std::set<int>(v.begin(), v.end()).size() == 50);
  bool moved = false;
  for (int i = 0; i < 50; ++i) moved |= v[static_cast<std::size_t>(i)] != i;
  CHECK(moved);
  for (int i = 0; i < 1000; ++i) CHECK(rng.below(7) < 7);
}

TEST_CASE("initialisers are deterministic and respect their bounds") {
  auto draw = [](const init::Initializer& how, std::uint64_t seed) {
    Rng rng(seed);
    std::vector<float> v(4096);
    init::fill(std::span<float>(v), how, 64, 128, rng);
    return v;
  };
  SUBCASE("same seed, same values; other seed, other values") {
    CHECK(draw(init::XavierUniform{}, 5) == draw(init::XavierUniform{}, 5));
    CHECK(draw(init::XavierUniform{}, 5) != draw(init::XavierUniform{}, 6));
    CHECK(draw(init::KaimingNormal{}, 5) == draw(init::KaimingNormal{}, 5));
  }
  SUBCASE("Xavier uniform stays within sqrt(6 / (fan_in + fan_out))") {
    const double bound = std::sqrt(6.0 / (64 + 128));
    double max_abs = 0;
    for (float x : draw(init::XavierUniform{}, 1)) max_abs = std::max(max_abs, double(std::abs(x)));
    CHECK(max_abs <= bound);
    CHECK(max_abs > 0.95 * bound);
  }
  SUBCASE("Kaiming normal has variance 2 / fan_in") {
    const auto v = draw(init::KaimingNormal{}, 2);
    double sum_sq = 0;
    for (float x : v) sum_sq += double(x) * x;
    CHECK(sum_sq / double(v.size()) == doctest::Approx(2.0 / 64).epsilon(0.06));
  }
  SUBCASE("Constant fills") {
    for (float x : draw(init::Constant{}, 1)) CHECK(x == 0.0f);
    for (float x : draw(init::Constant{1.0}, 1)) CHECK(x == 1.0f);
  }
}

TEST_CASE("Matrix keeps its capacity when shrinking, copies deeply, moves cheaply") {
  Matrix<float, Cpu> m(8, 10, 1.0f);
  const float* before = m.data();
  m.resize(4, 5);
  CHECK(m.data() == before);
  CHECK(m.rows() == 4);
  m.resize(8, 10);
  CHECK(m.data() == before);
  m.set_zero(3, 3);
  m(1, 2) = 5.0f;
  Matrix<float, Cpu> copy = m;
  CHECK(copy.data() != m.data());
  CHECK(copy(1, 2) == 5.0f);
  Matrix<float, Cpu> moved = std::move(copy);
  CHECK(moved(1, 2) == 5.0f);
  CHECK(copy.data() == nullptr);
}

TEST_CASE("MatrixView slices: columns of one time step across the batch") {
  // 2 sequences of length 3, 2 features: column b*3 + t holds value 10*b + t in row 0.
  Matrix<double, Cpu> m(2, 6);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 3; ++t) {
      m(0, b * 3 + t) = 10.0 * b + t;
      m(1, b * 3 + t) = -1.0;
    }
  const auto step1 = m.view().strided_cols(1, 3, 2);
  CHECK(step1.cols == 2);
  CHECK(step1(0, 0) == 1.0);
  CHECK(step1(0, 1) == 11.0);
  const auto seq1 = m.view().middle_cols(3, 3);
  CHECK(seq1(0, 2) == 12.0);
  CHECK(m.view().middle_rows(1, 1)(0, 4) == -1.0);
}

TEST_CASE("Batch pads sequences and builds the mask") {
  const std::vector<std::vector<TokenId>> seqs{{5, 6, 7}, {8}, {9, 10}};
  const Batch batch = Batch::from_sequences(seqs, /*pad=*/0);
  batch.validate();
  CHECK(batch.batch_size == 3);
  CHECK(batch.max_length == 3);
  CHECK(batch.token_count() == 6);
  CHECK(batch.tokens == std::vector<TokenId>{5, 6, 7, 8, 0, 0, 9, 10, 0});
  CHECK(batch.mask() == std::vector<unsigned char>{1, 1, 1, 1, 0, 0, 1, 1, 0});
  CHECK(batch.is_real(batch.column(2, 1)));
  CHECK_FALSE(batch.is_real(batch.column(1, 1)));
  CHECK(batch.token(2, 1) == 10);

  const std::vector<std::vector<TokenId>> with_empty{{1}, {}};
  CHECK_THROWS_AS(Batch::from_sequences(with_empty), ShapeError);
  Batch broken = batch;
  broken.lengths[0] = 4;
  CHECK_THROWS_AS(broken.validate(), ShapeError);
}

TEST_CASE("resolve_dim: fixed sizes win, contradictions are errors") {
  CHECK(resolve_dim(8, Dynamic, "x") == 8);
  CHECK(resolve_dim(8, 8, "x") == 8);
  CHECK(resolve_dim(Dynamic, 5, "x") == 5);
  CHECK_THROWS_AS(resolve_dim(8, 4, "x"), ShapeError);
  CHECK_THROWS_AS(resolve_dim(Dynamic, Dynamic, "x"), ShapeError);
  static_assert(dims_agree(4, 4) && dims_agree(Dynamic, 4) && !dims_agree(3, 4));
}

namespace {
struct TwoParams {
  Param<float, Cpu> weight{3, 4};
  Param<float, Cpu> bias{3, 1};
  template <class F>
  void for_each_param(F&& f) {
    f("weight", weight);
    f("bias", bias);
  }
};
struct Nested {
  TwoParams first, second;
  template <class F>
  void for_each_param(F&& f) {
    first.for_each_param(prefixed("first", f));
    second.for_each_param(prefixed("second", f));
  }
};
}  // namespace

TEST_CASE("parameters are visited uniformly with hierarchical names") {
  Nested model;
  std::vector<std::string> names;
  model.for_each_param([&](std::string_view name, auto&) { names.emplace_back(name); });
  CHECK(names == std::vector<std::string>{"first.weight", "first.bias", "second.weight",
                                          "second.bias"});
  CHECK(count_parameters(model) == 2 * (12 + 3));

  model.first.weight.grad(1, 1) = 3.0f;
  model.second.bias.grad(2, 0) = -1.0f;
  zero_gradients(model);
  model.for_each_param([](std::string_view, auto& p) {
    for (Index i = 0; i < p.size(); ++i) CHECK(p.grad.data()[i] == 0.0f);
  });

  set_frozen(model.first, true);
  int frozen = 0;
  model.for_each_param([&](std::string_view, auto& p) { frozen += p.frozen; });
  CHECK(frozen == 2);

  Rng r1(11), r2(11);
  Param<float, Cpu> a(5, 5), b(5, 5);
  a.initialize(init::XavierNormal{}, 5, 5, r1);
  b.initialize(init::XavierNormal{}, 5, 5, r2);
  for (Index i = 0; i < 25; ++i) CHECK(a.value.data()[i] == b.value.data()[i]);
}

TEST_CASE("CPU gemm matches a naive product for every transpose combination") {
  Rng rng(3);
  const auto a = testing::random_matrix(4, 5, rng);
  const auto at = testing::random_matrix(5, 4, rng);
  const auto b = testing::random_matrix(5, 3, rng);
  const auto bt = testing::random_matrix(3, 5, rng);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const HostMatrix& A = ta ? at : a;
      const HostMatrix& B = tb ? bt : b;
      HostMatrix c(4, 3, 1.0);
      Cpu::gemm(ta ? Transpose::yes : Transpose::no, tb ? Transpose::yes : Transpose::no, 2.0,
                A.view(), B.view(), 0.5, c.view());
      for (Index i = 0; i < 4; ++i)
        for (Index j = 0; j < 3; ++j) {
          double expected = 0.5;
          for (Index k = 0; k < 5; ++k)
            expected += 2.0 * (ta ? A(k, i) : A(i, k)) * (tb ? B(j, k) : B(k, j));
          CHECK(c(i, j) == doctest::Approx(expected).epsilon(1e-12));
        }
    }
}

TEST_CASE("CPU gemm writes into strided views without touching other columns") {
  Rng rng(4);
  const auto a = testing::random_matrix(3, 2, rng);
  const auto b = testing::random_matrix(2, 2, rng);
  HostMatrix c(3, 6, 7.0);
  Cpu::gemm(Transpose::no, Transpose::no, 1.0, a.view(), b.view(), 0.0,
            c.view().strided_cols(1, 3, 2));
  CHECK(c(0, 0) == 7.0);
  CHECK(c(0, 2) == 7.0);
  CHECK(c(0, 1) == doctest::Approx(a(0, 0) * b(0, 0) + a(0, 1) * b(1, 0)));
  CHECK(c(2, 4) == doctest::Approx(a(2, 0) * b(0, 1) + a(2, 1) * b(1, 1)));
}

/// Entries uniform in [-1, 1], in the scalar type under test.
template <class S>
Matrix<S, Cpu> uniform_matrix(Index rows, Index cols, Rng& rng) {
  Matrix<S, Cpu> x(rows, cols);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(rng.uniform(-1, 1));
  return x;
}

/// C = 0.5 op(A) op(B) + 2 C for one shape, every transpose combination, on `threads` threads.
/// Operands are views into the middle of bigger matrices (leading dimension > rows), and C's
/// other entries must stay untouched.
template <class S>
void check_large_gemm(Index m, Index n, Index k, int threads, bool with_bias = false) {
  REQUIRE(double(m) * double(n) * double(k) >= Cpu::parallel_gemm_min_work);
  const int saved_threads = Cpu::threads();
  Cpu::set_threads(threads);
  Rng rng(5);
  auto random = [&](Index rows, Index cols) { return uniform_matrix<S>(rows, cols, rng); };
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const Matrix<S, Cpu> A = ta ? random(k + 3, m + 2) : random(m + 3, k + 2);
      const Matrix<S, Cpu> B = tb ? random(n + 3, k + 2) : random(k + 3, n + 2);
      Matrix<S, Cpu> C = random(m + 4, n + 1);
      const Matrix<S, Cpu> bias = random(m, 1);
      const Matrix<S, Cpu> before = C;
      const auto a = A.view().middle_rows(1, ta ? k : m).middle_cols(1, ta ? m : k);
      const auto b = B.view().middle_rows(2, tb ? n : k).middle_cols(1, tb ? k : n);
      Cpu::gemm(ta ? Transpose::yes : Transpose::no, tb ? Transpose::yes : Transpose::no, S(0.5), a, b,
                S(2), C.view().middle_rows(3, m).middle_cols(1, n), with_bias ? bias.data() : nullptr);
      double worst = 0;
      bool outside_untouched = true;
      for (Index i = 0; i < m + 4; ++i)
        for (Index j = 0; j < n + 1; ++j) {
          const bool inside = i >= 3 && i < 3 + m && j >= 1;
          double expected = before.view()(i, j);
          if (inside) {
            double sum = 0;
            for (Index l = 0; l < k; ++l)
              sum += double(ta ? a(l, i - 3) : a(i - 3, l)) * double(tb ? b(j - 1, l) : b(l, j - 1));
            expected = 2 * expected + 0.5 * sum + (with_bias ? double(bias.view()(i - 3, 0)) : 0.0);
          }
          worst = std::max(worst, std::abs(double(C.view()(i, j)) - expected));
          if (!inside) outside_untouched &= C.view()(i, j) == before.view()(i, j);
        }
      CAPTURE(m);
      CAPTURE(threads);
      CAPTURE(ta);
      CAPTURE(tb);
      CAPTURE(with_bias);
      CHECK(outside_untouched);
      CHECK(worst < (std::is_same_v<S, float> ? 5e-4 : 1e-12));
    }
  Cpu::set_threads(saved_threads);
}

TEST_CASE_TEMPLATE("CPU gemm: large products (threaded, or through a CBLAS) in sub-views match a naive sum",
                   S, float, double) {
  // 160 x 150 x 200 = 4.8M multiply-adds: above the single-thread limit, so this takes the
  // large-product path (packed), or a CBLAS.
  for (const int threads : {1, 2})
    for (const bool with_bias : {false, true}) check_large_gemm<S>(160, 150, 200, threads, with_bias);
}

TEST_CASE("CPU gemm: deep products split along C's longer side, with the same bits on one, two and three threads") {
  // With B transposed and more columns than rows, the threads take bands of C's columns (each
  // packs only its own strips of B) instead of bands of rows. 41 x 301 x 300 has two depth
  // blocks and a partial last strip; 301 x 41 x 300 is its mirror, split by rows.
  for (const auto& [m, n] : {std::pair<Index, Index>{41, 301}, std::pair<Index, Index>{301, 41}}) {
    CAPTURE(m);
    for (const int threads : {1, 2}) check_large_gemm<float>(m, n, 300, threads, true);
    Rng rng(10);
    const auto bias = uniform_matrix<float>(m, 1, rng);
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        CAPTURE(ta);
        CAPTURE(tb);
        const auto a = ta ? uniform_matrix<float>(300, m, rng) : uniform_matrix<float>(m, 300, rng);
        const auto b = tb ? uniform_matrix<float>(n, 300, rng) : uniform_matrix<float>(300, n, rng);
        const auto start = uniform_matrix<float>(m, n, rng);
        auto product = [&](int threads) {
          const int saved = Cpu::threads();
          Cpu::set_threads(threads);
          Matrix<float, Cpu> c = start;
          Cpu::gemm(ta ? Transpose::yes : Transpose::no, tb ? Transpose::yes : Transpose::no, 0.5f, a.view(),
                    b.view(), -1.0f, c.view(), bias.data());
          Cpu::set_threads(saved);
          return c;
        };
        const auto one = product(1);
        CHECK(test::differing_entries(one, product(2)) == 0);
        CHECK(test::differing_entries(one, product(3)) == 0);
      }
  }
}

TEST_CASE("CPU gemm: wide shallow products split C's columns, with the same bits on one, two and three threads") {
  // At least twice as many columns as rows, read in place: the threads take bands of C's columns
  // (of whole widest tiles, the last band the rest). 37 x 301 x 100 has a partial packet of rows
  // and a last band of a few columns past the tiles; both layouts of B.
  Rng rng(11);
  const Index m = 37, n = 301, k = 100;
  for (const int threads : {1, 2}) check_large_gemm<float>(m, n, k, threads, true);
  const auto a = uniform_matrix<float>(m, k, rng), bias = uniform_matrix<float>(m, 1, rng);
  const auto start = uniform_matrix<float>(m, n, rng);
  for (const bool tb : {false, true}) {
    CAPTURE(tb);
    const auto b = tb ? uniform_matrix<float>(n, k, rng) : uniform_matrix<float>(k, n, rng);
    auto product = [&](int threads) {
      const int saved = Cpu::threads();
      Cpu::set_threads(threads);
      Matrix<float, Cpu> c = start;
      Cpu::gemm(Transpose::no, tb ? Transpose::yes : Transpose::no, 0.5f, a.view(), b.view(), -1.0f, c.view(),
                bias.data());
      Cpu::set_threads(saved);
      return c;
    };
    const auto one = product(1);
    CHECK(test::differing_entries(one, product(2)) == 0);
    CHECK(test::differing_entries(one, product(3)) == 0);
  }
}

TEST_CASE_TEMPLATE("CPU gemm: large shallow products (unpacked, in row bands per thread) match a naive sum", S,
                   float, double) {
  // Depth 100 keeps A's tile panels in the first-level cache, so 161 x 300 x 100 is read in place;
  // on two threads each takes a band of whole row tiles, the last one with a partial packet.
  for (const int threads : {1, 2})
    for (const bool with_bias : {false, true}) check_large_gemm<S>(161, 300, 100, threads, with_bias);
}

TEST_CASE_TEMPLATE("CPU gemm with few columns or a shallow depth (read in place, unpacked) matches a naive sum",
                   S, float, double) {
  // Every row count around the packet widths (whole tiles, a single packet, a partial last
  // packet, fewer rows than a packet), every tile width (the widest: 8 with AVX-512, 6 with
  // AVX2; the two even tiles that end a row, 4 to the widest; 4 and singles after fewer), both
  // layouts of B, sub-views with leading dimensions > rows, beta 0 over NaN (C must not be read
  // then), with and without a bias added as C is written. 45 columns (8 x 4 + 7 + 6, or 6 x 6 +
  // 5 + 4) take this path only because the depth is shallow.
  Rng rng(6);
  auto random = [&](Index rows, Index cols) { return uniform_matrix<S>(rows, cols, rng); };
  const S nan = std::numeric_limits<S>::quiet_NaN();
  for (const Index m : {1, 3, 8, 16, 17, 31, 32, 33, 47, 130})
    for (const Index n : {2, 3, 5, 8, 10, 12, 13, 16, 31, 32, 45})
      for (const Index k : {1, 7, 64})
        for (int tb = 0; tb < 2; ++tb)
          for (const S beta : {S(0), S(1), S(-0.5)})
            for (const bool with_bias : {false, true}) {
            const Matrix<S, Cpu> A = random(m + 3, k + 1);
            const Matrix<S, Cpu> bias = random(m, 1);
            const Matrix<S, Cpu> B = tb ? random(n + 2, k + 2) : random(k + 2, n + 1);
            Matrix<S, Cpu> C = random(m + 2, n + 2);
            if (beta == S(0))
              for (Index j = 0; j < n; ++j)
                for (Index i = 0; i < m; ++i) C.view()(i + 1, j + 1) = nan;
            const Matrix<S, Cpu> before = C;
            const auto a = A.view().middle_rows(2, m).middle_cols(1, k);
            const auto b = tb ? B.view().middle_rows(1, n).middle_cols(2, k)
                              : B.view().middle_rows(1, k).middle_cols(1, n);
            Cpu::gemm(Transpose::no, tb ? Transpose::yes : Transpose::no, S(0.75), a, b, beta,
                      C.view().middle_rows(1, m).middle_cols(1, n), with_bias ? bias.data() : nullptr);
            double worst = 0;
            bool outside_untouched = true;
            for (Index i = 0; i < m + 2; ++i)
              for (Index j = 0; j < n + 2; ++j) {
                const bool inside = i >= 1 && i <= m && j >= 1 && j <= n;
                if (!inside) {
                  const S was = before.view()(i, j), is = C.view()(i, j);
                  outside_untouched &= was == is;
                  continue;
                }
                double sum = 0;
                for (Index l = 0; l < k; ++l)
                  sum += double(a(i - 1, l)) * double(tb ? b(j - 1, l) : b(l, j - 1));
                const double kept = beta == S(0) ? 0.0 : double(beta) * double(before.view()(i, j));
                const double shift = with_bias ? double(bias.view()(i - 1, 0)) : 0.0;
                const double expected = 0.75 * sum + kept + shift;
                const double error = std::abs(double(C.view()(i, j)) - expected);
                worst = std::isnan(error) ? std::numeric_limits<double>::infinity() : std::max(worst, error);
              }
            CAPTURE(m);
            CAPTURE(n);
            CAPTURE(k);
            CAPTURE(tb);
            CAPTURE(beta);
            CAPTURE(with_bias);
            CHECK(outside_untouched);
            CHECK(worst < (std::is_same_v<S, float> ? 1e-4 : 1e-12));
          }
}

TEST_CASE_TEMPLATE("CPU gemm: an A whose columns crowd a few cache sets is read from a copy, with the bits of A in place",
                   S, float, double) {
  namespace narrow = backend::narrow;
  // A leading dimension of 2 KiB maps every column of a row block's slice of A onto the same two
  // cache sets: the unpacked kernel copies the slice first. One more entry of leading dimension
  // (not a whole number of cache lines) leaves A in place; the tiles, and so every bit of C, are
  // the same. Rows: whole two-packet blocks, then a packet and a partial one after them.
  constexpr Index w = narrow::packet_size<S>;
  const Index crowded = 2048 / Index{sizeof(S)};
  Rng rng(11);
  for (const Index m : {2 * w, 4 * w + w + 3})
    for (const Index n : {16, 45, 100})
      for (const Index k : {64, 128})
        for (int tb = 0; tb < 2; ++tb)
          for (const S beta : {S(0), S(-0.5)})
            for (const bool with_bias : {false, true}) {
              INFO("m ", m, ", n ", n, ", k ", k, ", B transposed ", tb, ", beta ", beta, ", bias ", with_bias);
              REQUIRE(narrow::suits(n, k));
              CHECK(narrow::copies_a_slices<S>(n, k, crowded));
              CHECK_FALSE(narrow::copies_a_slices<S>(n, k, crowded + 1));
              Matrix<S, Cpu> a_crowded(crowded, k, std::numeric_limits<S>::quiet_NaN());
              Matrix<S, Cpu> a_in_place(crowded + 1, k, std::numeric_limits<S>::quiet_NaN());
              const Matrix<S, Cpu> values = uniform_matrix<S>(m, k, rng);
              Cpu::copy(values.view(), a_crowded.view().middle_rows(0, m));
              Cpu::copy(values.view(), a_in_place.view().middle_rows(0, m));
              const Matrix<S, Cpu> B = tb ? uniform_matrix<S>(n, k, rng) : uniform_matrix<S>(k, n, rng);
              const Matrix<S, Cpu> bias = uniform_matrix<S>(m, 1, rng);
              const Matrix<S, Cpu> start = uniform_matrix<S>(m, n, rng);
              Matrix<S, Cpu> from_copy = start, in_place = start;
              const Transpose transpose_b = tb ? Transpose::yes : Transpose::no;
              const S* shift = with_bias ? bias.data() : nullptr;
              Cpu::gemm(Transpose::no, transpose_b, S(0.75), a_crowded.view().middle_rows(0, m), B.view(), beta,
                        from_copy.view(), shift);
              Cpu::gemm(Transpose::no, transpose_b, S(0.75), a_in_place.view().middle_rows(0, m), B.view(), beta,
                        in_place.view(), shift);
              CHECK(test::differing_entries(from_copy, in_place) == 0);
              double worst = 0;
              for (Index i = 0; i < m; ++i)
                for (Index j = 0; j < n; ++j) {
                  double sum = 0;
                  for (Index l = 0; l < k; ++l)
                    sum += double(values.view()(i, l)) * double(tb ? B.view()(j, l) : B.view()(l, j));
                  const double expected = 0.75 * sum + (beta == S(0) ? 0.0 : double(beta) * double(start.view()(i, j))) +
                                          (with_bias ? double(bias.view()(i, 0)) : 0.0);
                  worst = std::max(worst, std::abs(double(from_copy.view()(i, j)) - expected));
                }
              CHECK(worst < (std::is_same_v<S, float> ? 1e-4 : 1e-12));
            }
}

TEST_CASE_TEMPLATE("packed GEMV: steps from W packed on the first give the bits of the CPU gemm's one-column product",
                   S, float, double) {
  // Row counts of one packet, several, one block, a block and a packet, a shorter last block, and
  // an LSTM's 4 x 64 gates; depths from 1 to 127 (Eigen's GEMV sums one block of columns below
  // 128); alpha 1 and not; beta 0 over NaN (y must not be read), 1 and -0.5; A a view inside a
  // bigger matrix; both orders of the blocks. The bits are Eigen's GEMV's whatever the compiler
  // fuses: both call the same packet multiply-add.
  namespace kernel = backend::packed_gemv;
  constexpr Index w = kernel::packet_size<S>, block = kernel::block_rows<S>;
  Rng rng(7);
  auto random = [&](Index rows, Index cols) { return uniform_matrix<S>(rows, cols, rng); };
  // From 128 columns, or with rows not in whole packets, the product stays with the GEMM.
  CHECK_FALSE(kernel::suits<S>(256, 128));
  CHECK_FALSE(kernel::suits<S>(w + 1, 64));
  for (const Index m : {w, 3 * w, block, block + w, 2 * block + 3 * w, Index{256}})
    for (const Index k : {1, 5, 64, 127})
      for (const S alpha : {S(1), S(0.75)})
        for (const S beta : {S(0), S(1), S(-0.5)}) {
          CAPTURE(m);
          CAPTURE(k);
          CAPTURE(alpha);
          CAPTURE(beta);
          if (!kernel::suits<S>(m, k)) {
            // Eigen multiplies these coefficient by coefficient: they stay with the GEMM.
            CHECK(m + k + 1 < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD);
            continue;
          }
          const Matrix<S, Cpu> A = random(m + 3, k + 1), x = random(k, 1);
          const auto a = A.view().middle_rows(2, m).middle_cols(1, k);
          Matrix<S, Cpu> y0 = random(m, 1);
          if (beta == S(0)) Cpu::fill(y0.view(), std::numeric_limits<S>::quiet_NaN());
          Matrix<S, Cpu> expected = y0;
          Cpu::gemm(Transpose::no, Transpose::no, alpha, a, x.view(), beta, expected.view());
          std::vector<S> packed(static_cast<std::size_t>(m * k));
          Matrix<S, Cpu> first = y0, forwards = y0, backwards = y0;
          kernel::multiply_and_pack(m, k, alpha, a.data, a.stride, x.data(), beta, first.data(), packed.data());
          kernel::multiply(m, k, alpha, packed.data(), x.data(), beta, forwards.data(), false);
          kernel::multiply(m, k, alpha, packed.data(), x.data(), beta, backwards.data(), true);
          CHECK(test::differing_entries(first, expected) == 0);
          CHECK(test::differing_entries(forwards, expected) == 0);
          CHECK(test::differing_entries(backwards, expected) == 0);
          // And the product itself, against a naive sum in double.
          double worst = 0;
          for (Index i = 0; i < m; ++i) {
            double sum = 0;
            for (Index l = 0; l < k; ++l) sum += double(a(i, l)) * double(x.view()(l, 0));
            const double kept = beta == S(0) ? 0.0 : double(beta) * double(y0.view()(i, 0));
            const double error = std::abs(double(first.view()(i, 0)) - (double(alpha) * sum + kept));
            worst = std::isnan(error) ? std::numeric_limits<double>::infinity() : std::max(worst, error);
          }
          CHECK(worst < (std::is_same_v<S, float> ? 1e-4 : 1e-12));
        }
}

/// C = 0.75 op(A) op(B) + beta C + bias for one shape, against a naive sum in double. A, B and C
/// are views into the middle of bigger matrices (leading dimensions > rows); with beta 0, C starts
/// as NaN (it must not be read); C's other entries must stay untouched.
template <class S>
void check_gemm_against_naive(Rng& rng, bool ta, bool tb, Index m, Index n, Index k, S beta, bool with_bias) {
  auto random = [&](Index rows, Index cols) { return uniform_matrix<S>(rows, cols, rng); };
  const Matrix<S, Cpu> A = ta ? random(k + 2, m + 1) : random(m + 3, k + 1);
  const Matrix<S, Cpu> B = tb ? random(n + 2, k + 1) : random(k + 1, n + 2);
  const Matrix<S, Cpu> bias = random(m, 1);
  Matrix<S, Cpu> C = random(m + 1, n + 1);
  if (beta == S(0))
    for (Index j = 0; j < n; ++j)
      for (Index i = 0; i < m; ++i) C.view()(i + 1, j) = std::numeric_limits<S>::quiet_NaN();
  const Matrix<S, Cpu> before = C;
  const auto a = ta ? A.view().middle_rows(1, k).middle_cols(1, m) : A.view().middle_rows(2, m).middle_cols(1, k);
  const auto b = tb ? B.view().middle_rows(1, n).middle_cols(1, k) : B.view().middle_rows(1, k).middle_cols(2, n);
  Cpu::gemm(ta ? Transpose::yes : Transpose::no, tb ? Transpose::yes : Transpose::no, S(0.75), a, b, beta,
            C.view().middle_rows(1, m).middle_cols(0, n), with_bias ? bias.data() : nullptr);
  double worst = 0;
  bool outside_untouched = true;
  for (Index i = 0; i < m + 1; ++i)
    for (Index j = 0; j < n + 1; ++j) {
      if (i == 0 || j == n) {
        outside_untouched &= before.view()(i, j) == C.view()(i, j);
        continue;
      }
      double sum = 0;
      for (Index l = 0; l < k; ++l)
        sum += double(ta ? a(l, i - 1) : a(i - 1, l)) * double(tb ? b(j, l) : b(l, j));
      const double kept = beta == S(0) ? 0.0 : double(beta) * double(before.view()(i, j));
      const double shift = with_bias ? double(bias.view()(i - 1, 0)) : 0.0;
      const double error = std::abs(double(C.view()(i, j)) - (0.75 * sum + kept + shift));
      worst = std::isnan(error) ? std::numeric_limits<double>::infinity() : std::max(worst, error);
    }
  CAPTURE(m);
  CAPTURE(n);
  CAPTURE(k);
  CAPTURE(ta);
  CAPTURE(tb);
  CAPTURE(beta);
  CAPTURE(with_bias);
  CHECK(outside_untouched);
  CHECK(worst < (std::is_same_v<S, float> ? 5e-4 : 1e-12));
}

TEST_CASE_TEMPLATE("CPU gemm: deep or transposed-A products (A packed in panels) match a naive sum", S, float,
                   double) {
  // Past depth 128, or with A transposed, and more than 32 columns: A is copied a panel of two
  // packets of rows at a time, in passes of 256 over the depth, and a transposed B into strips of
  // 8 columns. Row counts around the panel height (a partial last panel, fewer rows than one),
  // depths of one pass, of two and of a partial third, column counts around the strips and the
  // 256-column blocks, every transpose combination, beta 0 over NaN, with and without a bias;
  // and an empty depth (C = beta C + bias, whichever kernel takes it).
  Rng rng(7);
  for (const Index m : {5, 16, 32, 45, 64})
    for (const Index n : {33, 45, 300})
      for (const Index k : {0, 40, 129, 256, 600})
        for (const bool ta : {false, true})
          for (const bool tb : {false, true})
            for (const S beta : {S(0), S(-0.5)})
              for (const bool with_bias : {false, true}) {
                if (!ta && k <= 128) continue;  // the unpacked kernel's shapes, tested above
                check_gemm_against_naive<S>(rng, ta, tb, m, n, k, beta, with_bias);
              }
}

TEST_CASE_TEMPLATE("CPU gemm: a transposed A times few columns (run as its transpose) matches a naive sum", S,
                   float, double) {
  // C = A^T op(B) with at most two packets of columns, 64 or more rows and depth 64 or more runs as
  // C^T = op(B)^T A, each tile's block written back transposed. Row counts around the column
  // blocks (8, 4, singles), column counts around one and two packets (past two, Eigen's GEMM),
  // both layouts of B, beta 0 over NaN, with and without a bias; smaller shapes (Eigen's) for
  // comparison; 1000 x 16 x 300 is large enough to split over two threads.
  Rng rng(8);
  const int saved_threads = Cpu::threads();
  struct Shape {
    Index m, k;
    int threads;
  };
  for (const Shape shape : {Shape{3, 1, 1}, Shape{13, 7, 1}, Shape{37, 300, 1}, Shape{64, 64, 1}, Shape{67, 64, 1},
                            Shape{77, 129, 1}, Shape{133, 300, 1}, Shape{1000, 300, 2}})
    for (const Index n : {2, 5, 8, 16, 17, 31, 32})
      for (const bool tb : {false, true})
        for (const S beta : {S(0), S(-0.5)})
          for (const bool with_bias : {false, true}) {
            Cpu::set_threads(shape.threads);
            CAPTURE(shape.threads);
            check_gemm_against_naive<S>(rng, true, tb, shape.m, n, shape.k, beta, with_bias);
          }
  Cpu::set_threads(saved_threads);
}

TEST_CASE_TEMPLATE("CPU gemm: a transposed A times few columns over whole panels (packed) matches a naive sum", S,
                   float, double) {
  // C = A^T op(B) with at most 32 columns, rows a whole number of panels (two packets) and a depth
  // of a panel or more, but too small to run as its transpose (under 64 rows or depth): A^T is
  // packed, as for wider products (attention's 32 x 32 x 32 blocks). Depths of a panel, of one
  // past whole packets, and just under 64; both layouts of B, beta 0 over NaN, with and without a
  // bias.
  constexpr Index panel = 2 * backend::narrow::packet_size<S>;
  Rng rng(9);
  for (const Index m : {panel, 2 * panel, 4 * panel})
    for (const Index k : {panel, panel + 1, Index{63}})
      for (const Index n : {2, 5, 8, 17, 32})
        for (const bool tb : {false, true})
          for (const S beta : {S(0), S(-0.5)})
            for (const bool with_bias : {false, true}) check_gemm_against_naive<S>(rng, true, tb, m, n, k, beta, with_bias);
}

TEST_CASE("CPU element-wise passes over large matrices give the same bits on one, two and three threads") {
  // 300 x 400 is above the size from which passes split by columns (and column sums by rows)
  // over the threads; every entry must come out exactly as the single-threaded pass computes it.
  REQUIRE(300 * 400 >= Cpu::parallel_pass_min_size);
  Rng rng(9);
  const auto a = uniform_matrix<float>(300, 400, rng);
  const auto b = uniform_matrix<float>(300, 400, rng);
  const auto gain = uniform_matrix<float>(300, 1, rng);
  const auto shift = uniform_matrix<float>(300, 1, rng);
  using M = Matrix<float, Cpu>;
  auto run_all = [&](int threads) {
    const int saved = Cpu::threads();
    Cpu::set_threads(threads);
    std::vector<M> out(12, M(300, 400));
    Cpu::fill(out[0].view(), 0.25f);
    Cpu::copy(a.view(), out[1].view());
    Cpu::copy(a.view(), out[2].view());
    Cpu::scale(out[2].view(), -1.5f);
    Cpu::copy(a.view(), out[3].view());
    Cpu::axpy(0.75f, b.view(), out[3].view());
    Cpu::multiply(a.view(), b.view(), out[4].view());
    Cpu::add(a.view(), b.view(), out[5].view());
    Cpu::copy_scaled(0.3f, a.view(), out[6].view());
    Cpu::activate<Activation::relu>(a.view(), out[7].view());
    Cpu::activate<Activation::gelu>(a.view(), out[8].view());
    Cpu::activate_backward<Activation::gelu>(a.view(), out[8].view(), b.view(), out[9].view());
    M sums(300, 1), inv_std(1, 400);
    Cpu::sum_columns(a.view(), 0.0f, sums.view());
    Cpu::sum_columns(b.view(), 0.5f, sums.view());
    backend::layer_norm_forward(Cpu{}, a.view(), gain.view(), shift.view(), 1e-5f, out[10].view(), inv_std.view(),
                                out[11].view());
    M dx(300, 400), dgain(300, 1), dshift(300, 1);
    Cpu::fill(dgain.view(), 0.5f);
    Cpu::fill(dshift.view(), -0.5f);
    backend::layer_norm_backward(Cpu{}, b.view(), out[10].view(), inv_std.view(), gain.view(), dx.view(), dgain.view(),
                                 dshift.view());
    out.push_back(std::move(sums));
    out.push_back(std::move(inv_std));
    out.push_back(std::move(dx));
    out.push_back(std::move(dgain));
    out.push_back(std::move(dshift));
    Cpu::set_threads(saved);
    return out;
  };
  const auto one = run_all(1);
  for (const int threads : {2, 3}) {
    CAPTURE(threads);
    const auto other = run_all(threads);
    for (std::size_t k = 0; k < one.size(); ++k) {
      CAPTURE(k);
      CHECK(test::differing_entries(one[k], other[k]) == 0);
    }
  }
  // And the passes compute what they claim (spot checks; the kernels' own tests cover the math).
  CHECK(one[5].view()(7, 300) == a.view()(7, 300) + b.view()(7, 300));
  CHECK(one[6].view()(299, 0) == 0.3f * a.view()(299, 0));
  CHECK(one[7].view()(1, 1) == std::max(a.view()(1, 1), 0.0f));
  double sum_a = 0, sum_b = 0;
  for (Index j = 0; j < 400; ++j) {
    sum_a += double(a.view()(5, j));
    sum_b += double(b.view()(5, j));
  }
  CHECK(double(one[12].view()(5, 0)) == doctest::Approx(0.5 * sum_a + sum_b).epsilon(1e-4));
}

TEST_CASE("CPU bias kernels") {
  HostMatrix y(2, 3, 1.0), bias(2, 1);
  bias(0, 0) = 0.5;
  bias(1, 0) = -2.0;
  Cpu::add_bias(bias.view(), y.view());
  CHECK(y(0, 2) == 1.5);
  CHECK(y(1, 0) == -1.0);
  HostMatrix sums(2, 1, 10.0);
  Cpu::sum_columns(y.view(), 1.0, sums.view());
  CHECK(sums(0, 0) == doctest::Approx(14.5));
  CHECK(sums(1, 0) == doctest::Approx(7.0));
}

TEST_CASE_TEMPLATE("CPU activation derivatives match finite differences", Tag,
                   std::integral_constant<Activation, Activation::relu>,
                   std::integral_constant<Activation, Activation::gelu>,
                   std::integral_constant<Activation, Activation::tanh>,
                   std::integral_constant<Activation, Activation::sigmoid>,
                   std::integral_constant<Activation, Activation::identity>) {
  constexpr Activation A = Tag::value;
  Rng rng(9);
  HostMatrix x = testing::random_matrix(3, 7, rng, 2.0);
  HostMatrix y(3, 7), ones(3, 7, 1.0), dx(3, 7);
  Cpu::activate<A>(x.view(), y.view());
  Cpu::activate_backward<A>(x.view(), y.view(), ones.view(), dx.view());
  const double h = 1e-6;
  for (Index i = 0; i < x.size(); ++i) {
    HostMatrix xp = x, xm = x, yp(3, 7), ym(3, 7);
    xp.data()[i] += h;
    xm.data()[i] -= h;
    Cpu::activate<A>(xp.view(), yp.view());
    Cpu::activate<A>(xm.view(), ym.view());
    const double numeric = (yp.data()[i] - ym.data()[i]) / (2 * h);
    CHECK(dx.data()[i] == doctest::Approx(numeric).epsilon(1e-6));
  }
}

namespace {
/// Half the smallest normal float: a subnormal, or 0 where subnormals are flushed. `volatile`
/// keeps the product at run time, under the floating-point mode of the moment.
float half_of_smallest_normal() {
  volatile float smallest = std::numeric_limits<float>::min();
  volatile float half = smallest * 0.5f;
  return half;
}

/// How many of two OpenMP threads (1 without OpenMP) get a subnormal result.
int threads_keeping_subnormals() {
  int count = 0;
#if defined(_OPENMP)
#pragma omp parallel num_threads(2) reduction(+ : count)
#endif
  count += half_of_smallest_normal() > 0.0f;
  return count;
}
}  // namespace

TEST_CASE("FlushSubnormals flushes on the calling thread and its product threads, then restores") {
  REQUIRE(half_of_smallest_normal() > 0.0f);  // this build does not flush by default
  if (!FlushSubnormals::active()) return;
  const int threads = Cpu::threads();
  Cpu::set_threads(2);  // the team the scope sets up is the one of the current thread count
  {
    const FlushSubnormals flush;
    CHECK(half_of_smallest_normal() == 0.0f);
    {
      const FlushSubnormals nested;
      CHECK(half_of_smallest_normal() == 0.0f);
    }
    CHECK(half_of_smallest_normal() == 0.0f);  // the inner scope restores the outer one's mode
    CHECK(threads_keeping_subnormals() == 0);
  }
  CHECK(half_of_smallest_normal() > 0.0f);
#if defined(_OPENMP)
  CHECK(threads_keeping_subnormals() == 2);
#else
  CHECK(threads_keeping_subnormals() == 1);
#endif
  Cpu::set_threads(threads);
}
