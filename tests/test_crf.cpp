// Linear-chain CRF and the CrfTagger head: log-partition, Viterbi and marginals against brute-force
// enumeration of every tag sequence, gradients against finite differences (padded batches,
// constraints, a whole multi-task model), numerical range, BIO constraints, steady-state
// allocation, and a tagging task that only a model of tag transitions can learn.
#include <doctest/doctest.h>

#include <mtlm/heads/crf_tagger.hpp>
#include <mtlm/heads/token_tagger.hpp>
#include <mtlm/layers/activation.hpp>
#include <mtlm/layers/crf.hpp>
#include <mtlm/layers/embedding.hpp>
#include <mtlm/layers/lstm.hpp>
#include <mtlm/model/multitask.hpp>
#include <mtlm/model/sequential.hpp>
#include <mtlm/optim/adam.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include "support/npy_fixture.hpp"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <new>
#include <ratio>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// Counts heap allocations, to check that forward, backward and decode reuse their workspaces.
namespace {
std::atomic<long> allocations{0};
}  // namespace

// GCC sees malloc/free inside replaced new/delete as a mismatch once they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

using namespace mtlm;
using testing::HostMatrix;
using Tags = std::vector<std::vector<std::int32_t>>;

namespace {

constexpr double minus_inf = -std::numeric_limits<double>::infinity();

/// Finite-difference step. A sequence's NLL is a difference of sums of O(10) scores, so it carries
/// rounding noise of ~1e-15 absolute; at the default step 1e-6 that is ~1e-9 in a difference
/// quotient, which reads as 1e-6 relative error on gradients near the 1e-3 floor. At 1e-5 the
/// noise is ten times smaller and the truncation error (~h^2) still negligible.
constexpr double fd_step = 1e-5;

/// Three sequences of lengths 4, 2 and 3, padded to 4.
Batch padded_batch() {
  const std::vector<std::vector<TokenId>> seqs{{1, 2, 3, 4}, {5, 6}, {7, 8, 9}};
  return Batch::from_sequences(seqs);
}

Batch batch_of_lengths(const std::vector<Index>& lengths) {
  std::vector<std::vector<TokenId>> seqs;
  for (Index len : lengths) seqs.emplace_back(static_cast<std::size_t>(len), 1);
  return Batch::from_sequences(seqs);
}

Tags random_tags(const Batch& batch, Index tags, Rng& rng) {
  Tags out(static_cast<std::size_t>(batch.batch_size));
  for (Index b = 0; b < batch.batch_size; ++b)
    for (Index t = 0; t < batch.lengths[std::size_t(b)]; ++t)
      out[std::size_t(b)].push_back(static_cast<std::int32_t>(rng.below(std::uint64_t(tags))));
  return out;
}

template <class Crf>
void randomize(Crf& crf, Rng& rng, double stddev = 1.0) {
  crf.for_each_param([&](std::string_view, auto& p) {
    for (Index i = 0; i < p.size(); ++i)
      p.value.data()[i] = static_cast<typename Crf::Scalar>(rng.normal(0.0, stddev));
  });
}

/// Everything about one sequence's distribution, by enumerating all Tags^L tag sequences.
struct Enumerated {
  double log_z = minus_inf;
  std::vector<std::int32_t> best;
  double best_score = minus_inf;
  HostMatrix unary;  ///< Tags x L: p(y_t = i)
  HostMatrix pair;   ///< Tags x Tags: sum_t p(y_t = i, y_{t+1} = j)
};

/// A, start, end may hold -inf (excluded); emissions are the columns of one sequence.
Enumerated enumerate(const HostMatrix& emissions, const Batch& batch, Index b, const HostMatrix& A,
                     const HostMatrix& start, const HostMatrix& end) {
  const Index tags = A.rows(), length = batch.lengths[std::size_t(b)];
  Index count = 1;
  for (Index t = 0; t < length; ++t) count *= tags;
  std::vector<double> scores(static_cast<std::size_t>(count));
  std::vector<std::int32_t> y(static_cast<std::size_t>(length));
  Enumerated out;
  auto decode_index = [&](Index code) {
    for (Index t = 0; t < length; ++t, code /= tags) y[std::size_t(t)] = std::int32_t(code % tags);
  };
  for (Index code = 0; code < count; ++code) {
    decode_index(code);
    double s = start(y[0], 0) + end(y[std::size_t(length - 1)], 0);
    for (Index t = 0; t < length; ++t) {
      s += emissions(y[std::size_t(t)], batch.column(b, t));
      if (t > 0) s += A(y[std::size_t(t - 1)], y[std::size_t(t)]);
    }
    scores[std::size_t(code)] = s;
    if (s > out.best_score) {
      out.best_score = s;
      out.best = y;
    }
  }
  long double sum = 0;
  for (double s : scores) sum += std::exp(static_cast<long double>(s - out.best_score));
  out.log_z = out.best_score + static_cast<double>(std::log(sum));
  out.unary.set_zero(tags, length);
  out.pair.set_zero(tags, tags);
  for (Index code = 0; code < count; ++code) {
    decode_index(code);
    const double p = std::exp(scores[std::size_t(code)] - out.log_z);
    for (Index t = 0; t < length; ++t) {
      out.unary(y[std::size_t(t)], t) += p;
      if (t > 0) out.pair(y[std::size_t(t - 1)], y[std::size_t(t)]) += p;
    }
  }
  return out;
}

/// The CRF's effective scores (parameters with excluded entries at -inf), in double.
template <class Crf>
void effective(Crf& crf, HostMatrix& A, HostMatrix& start, HostMatrix& end) {
  const Index n = crf.tags();
  A.resize(n, n);
  start.resize(n, 1);
  end.resize(n, 1);
  for (Index i = 0; i < n; ++i) {
    start(i, 0) = crf.start_allowed(i) ? double(crf.start().value(i, 0)) : minus_inf;
    end(i, 0) = crf.end_allowed(i) ? double(crf.end().value(i, 0)) : minus_inf;
    for (Index j = 0; j < n; ++j)
      A(i, j) = crf.transition_allowed(i, j) ? double(crf.transitions().value(i, j)) : minus_inf;
  }
}

/// A CRF with `crf`'s parameters and no constraints: what decoding would pick without them.
template <class Crf>
Crf without_constraints(const Crf& crf) {
  Crf free = crf;
  free.clear_constraints();
  return free;
}

template <class S>
Matrix<S, Cpu> random_emissions(Index tags, const Batch& batch, Rng& rng, double stddev = 1.0) {
  Matrix<S, Cpu> e(tags, batch.columns());
  for (Index i = 0; i < e.size(); ++i) e.data()[i] = static_cast<S>(rng.normal(0.0, stddev));
  return e;
}

/// Central differences of scale * crf.forward(...) against backward(scale) for the three
/// parameters and the emissions.
template <class Crf>
testing::GradientReport check_crf(Crf& crf, HostMatrix& emissions, const Batch& batch,
                                  const Tags& tags, double scale, HostMatrix& demissions) {
  zero_gradients(crf);
  crf.forward(emissions.view(), batch, tags);
  demissions = crf.backward(scale, batch);
  std::vector<std::pair<std::string, HostMatrix>> grads;
  crf.for_each_param(
      [&](std::string_view n, auto& p) { grads.emplace_back(std::string(n), p.grad); });
  auto loss = [&] { return scale * crf.forward(emissions.view(), batch, tags); };
  testing::GradientReport report;
  std::size_t k = 0;
  crf.for_each_param([&](std::string_view, auto& p) {
    const auto& [name, grad] = grads[k++];
    report.merge(testing::compare_gradient(std::span<double>(p.value.data(), p.value.size()),
                                           std::span<const double>(grad.data(), grad.size()), loss,
                                           name, fd_step));
  });
  report.merge(testing::compare_gradient(
      std::span<double>(emissions.data(), emissions.size()),
      std::span<const double>(demissions.data(), demissions.size()), loss, "emissions", fd_step));
  return report;
}

/// Largest |value| in the columns c for which keep(c) is false.
double max_abs_outside(const HostMatrix& m, const std::function<bool(Index)>& keep) {
  double worst = 0;
  for (Index c = 0; c < m.cols(); ++c)
    if (!keep(c))
      for (Index r = 0; r < m.rows(); ++r) worst = std::max(worst, std::abs(m(r, c)));
  return worst;
}

const std::vector<std::string> bio_labels{"O", "B-PER", "I-PER", "B-LOC", "I-LOC"};

const std::vector<std::string> bioes_labels{"O", "B-PER", "I-PER", "E-PER", "S-PER"};

/// A BIOES path over bioes_labels: B and I continue into I or E; only B and I lead into I or E.
bool valid_bioes(const std::vector<std::int32_t>& path) {
  auto open = [](std::int32_t tag) { return tag == 1 || tag == 2; };
  auto inside = [](std::int32_t tag) { return tag == 2 || tag == 3; };
  for (std::size_t t = 0; t <= path.size(); ++t) {
    const bool was_open = t > 0 && open(path[t - 1]);
    const bool continues = t < path.size() && inside(path[t]);
    if (was_open != continues) return false;
  }
  return true;
}

bool valid_bio(const std::vector<std::int32_t>& path) {
  for (std::size_t t = 0; t < path.size(); ++t) {
    const std::string& tag = bio_labels[std::size_t(path[t])];
    if (!tag.starts_with("I-")) continue;
    if (t == 0) return false;
    const std::string& prev = bio_labels[std::size_t(path[t - 1])];
    if (prev == "O" || prev.substr(2) != tag.substr(2)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("LinearChainCrf: log Z, Viterbi and marginals equal brute-force enumeration") {
  Rng rng(1);
  LinearChainCrf<3, double> crf;
  const Batch batch = batch_of_lengths({4, 1, 2, 3, 4});
  HostMatrix A, start, end;
  double worst_log_z = 0, worst_marginal = 0, worst_pair = 0, worst_sum = 0;
  int viterbi_agree = 0, trials = 0;
  for (int trial = 0; trial < 20; ++trial) {
    randomize(crf, rng);
    HostMatrix emissions = random_emissions<double>(3, batch, rng, 1.5);
    const Tags gold = random_tags(batch, 3, rng);
    const double loss = crf.forward(emissions.view(), batch, gold);
    effective(crf, A, start, end);
    // With reduction mean, the loss is the mean of log Z - s(gold).
    double expected_loss = 0;
    for (Index b = 0; b < batch.batch_size; ++b) {
      const Enumerated e = enumerate(emissions, batch, b, A, start, end);
      worst_log_z = std::max(worst_log_z, std::abs(crf.log_partition()[std::size_t(b)] - e.log_z));
      double gold_score = start(gold[std::size_t(b)][0], 0) + end(gold[std::size_t(b)].back(), 0);
      for (Index t = 0; t < batch.lengths[std::size_t(b)]; ++t) {
        gold_score += emissions(gold[std::size_t(b)][std::size_t(t)], batch.column(b, t));
        if (t > 0)
          gold_score +=
              A(gold[std::size_t(b)][std::size_t(t - 1)], gold[std::size_t(b)][std::size_t(t)]);
      }
      expected_loss += (e.log_z - gold_score) / double(batch.batch_size);
    }
    CHECK(loss == doctest::Approx(expected_loss).epsilon(1e-12));

    const Tags decoded = crf.decode(emissions.view(), batch);
    const HostMatrix marginals = crf.marginals(emissions.view(), batch);
    for (Index b = 0; b < batch.batch_size; ++b) {
      const Enumerated e = enumerate(emissions, batch, b, A, start, end);
      ++trials;
      viterbi_agree += decoded[std::size_t(b)] == e.best;
      for (Index t = 0; t < batch.lengths[std::size_t(b)]; ++t) {
        double sum = 0;
        for (Index i = 0; i < 3; ++i) {
          sum += marginals(i, batch.column(b, t));
          worst_marginal =
              std::max(worst_marginal, std::abs(marginals(i, batch.column(b, t)) - e.unary(i, t)));
        }
        worst_sum = std::max(worst_sum, std::abs(sum - 1.0));
      }
    }
    CHECK(max_abs_outside(marginals, [&](Index c) { return batch.is_real(c); }) == 0.0);

    // Pair marginals through the transition gradient of one sequence at a time (reduction sum):
    // dL/dA = sum_t p(y_t = i, y_t+1 = j) - gold transition counts.
    LinearChainCrf<3, double> one(3, {.reduction = CrfReduction::sum});
    one.for_each_param([&](std::string_view name, auto& p) {
      crf.for_each_param([&](std::string_view other, auto& q) {
        if (name == other) p.value = q.value;
      });
    });
    for (Index b = 0; b < batch.batch_size; ++b) {
      Tags only(std::size_t(batch.batch_size));
      only[std::size_t(b)] = gold[std::size_t(b)];
      zero_gradients(one);
      one.forward(emissions.view(), batch, only);
      one.backward(1.0, batch);
      HostMatrix pair = one.transitions().grad;
      for (std::size_t t = 1; t < only[std::size_t(b)].size(); ++t)
        pair(only[std::size_t(b)][t - 1], only[std::size_t(b)][t]) += 1.0;
      const Enumerated e = enumerate(emissions, batch, b, A, start, end);
      for (Index i = 0; i < pair.size(); ++i)
        worst_pair = std::max(worst_pair, std::abs(pair.data()[i] - e.pair.data()[i]));
    }
  }
  MESSAGE("brute force (3 tags, lengths 1-4, 100 sequences): max |log Z diff| "
          << worst_log_z << ", max |marginal diff| " << worst_marginal
          << ", max |pair marginal diff| " << worst_pair << ", max |sum of marginals - 1| "
          << worst_sum << ", Viterbi agrees " << viterbi_agree << "/" << trials);
  CHECK(worst_log_z < 1e-12);
  CHECK(worst_marginal < 1e-12);
  CHECK(worst_pair < 1e-12);
  CHECK(worst_sum < 1e-12);
  CHECK(viterbi_agree == trials);
}

TEST_CASE_TEMPLATE("LinearChainCrf matches pytorch-crf 0.7.2 (tools/fixtures/crf.py)", S, double,
                   float) {
  using test::as_columns;
  using test::as_matrix;
  using test::load_npy;
  using test::max_abs_diff;
  const Batch batch = batch_of_lengths({5, 2, 4});
  const auto emissions = as_columns<S>(load_npy("crf", "emissions"));
  REQUIRE(emissions.rows() == 6);
  REQUIRE(emissions.cols() == batch.columns());
  const auto tag_array = load_npy("crf", "tags");
  Tags gold(3);
  for (Index b = 0; b < 3; ++b)
    for (Index t = 0; t < batch.lengths[std::size_t(b)]; ++t)
      gold[std::size_t(b)].push_back(std::int32_t(tag_array.data[std::size_t(b * 5 + t)]));
  // The fixture holds float32 roundings of float64 results (values up to ~1: ~6e-8).
  const double tolerance = std::is_same_v<S, double> ? 1e-6 : 1e-5;
  double worst = 0;
  const std::vector<std::pair<std::string, CrfReduction>> cases{
      {"mean", CrfReduction::mean},
      {"token_mean", CrfReduction::token_mean},
      {"sum", CrfReduction::sum}};
  for (const auto& entry : cases) {
    const std::string name = entry.first;  // not a structured binding: INFO captures it
    const CrfReduction reduction = entry.second;
    LinearChainCrf<6, S> crf(6, {.reduction = reduction});
    crf.transitions().value = as_matrix<S>(load_npy("crf", "transitions"));
    crf.start().value = as_columns<S>(load_npy("crf", "start"));
    crf.end().value = as_columns<S>(load_npy("crf", "end"));
    zero_gradients(crf);
    const double loss = crf.forward(emissions.view(), batch, gold);
    const auto& demissions = crf.backward(S(1), batch);
    const double expected = load_npy("crf", "nll_" + name).data[0];
    INFO(name);
    CHECK(loss == doctest::Approx(expected).epsilon(1e-6));
    const double diffs[] = {
        max_abs_diff(demissions, as_columns<S>(load_npy("crf", "grad_emissions_" + name))),
        max_abs_diff(crf.transitions().grad,
                     as_matrix<S>(load_npy("crf", "grad_transitions_" + name))),
        max_abs_diff(crf.start().grad, as_columns<S>(load_npy("crf", "grad_start_" + name))),
        max_abs_diff(crf.end().grad, as_columns<S>(load_npy("crf", "grad_end_" + name)))};
    for (double d : diffs) {
      CHECK(d < tolerance);
      worst = std::max(worst, d);
    }
    if (reduction == CrfReduction::mean) {
      const auto viterbi = load_npy("crf", "viterbi");
      const Tags decoded = crf.decode(emissions.view(), batch);
      for (Index b = 0; b < 3; ++b)
        for (Index t = 0; t < 5; ++t) {
          const auto expected_tag = std::int32_t(viterbi.data[std::size_t(b * 5 + t)]);
          if (t < batch.lengths[std::size_t(b)])
            CHECK(decoded[std::size_t(b)][std::size_t(t)] == expected_tag);
          else
            CHECK(expected_tag == -1);
        }
    }
  }
  MESSAGE("pytorch-crf fixture (" << std::string(std::is_same_v<S, double> ? "double" : "float")
                                  << "): max |gradient diff| " << worst);
}

TEST_CASE("LinearChainCrf: gradients match finite differences on padded batches") {
  Rng rng(2);
  const Batch batch = padded_batch();
  auto run = [&](LinearChainCrf<Dynamic, double>& crf, const Tags& tags, double scale) {
    HostMatrix emissions = random_emissions<double>(crf.tags(), batch, rng);
    // Padding holds garbage that must never be read.
    for (Index c = 0; c < emissions.cols(); ++c)
      if (!batch.is_real(c))
        for (Index r = 0; r < emissions.rows(); ++r)
          emissions(r, c) = std::numeric_limits<double>::quiet_NaN();
    HostMatrix demissions;
    const auto report = check_crf(crf, emissions, batch, tags, scale, demissions);
    INFO(report.worst);
    CHECK(report.checked == count_parameters(crf) + emissions.size());
    CHECK(report.max_error < 1e-6);
    CHECK(max_abs_outside(demissions, [&](Index c) {
            return batch.is_real(c) && !tags[std::size_t(c / batch.max_length)].empty() &&
                   tags[std::size_t(c / batch.max_length)][0] != -100;
          }) == 0.0);
    return report.max_error;
  };
  double worst = 0;
  SUBCASE("mean over sequences, 5 tags") {
    LinearChainCrf<Dynamic, double> crf(5);
    randomize(crf, rng);
    worst = std::max(worst, run(crf, random_tags(batch, 5, rng), 1.0));
  }
  SUBCASE("sum and token mean, scaled") {
    for (auto reduction : {CrfReduction::sum, CrfReduction::token_mean}) {
      LinearChainCrf<Dynamic, double> crf(4, {.reduction = reduction});
      randomize(crf, rng);
      worst = std::max(worst, run(crf, random_tags(batch, 4, rng), 0.7));
    }
  }
  SUBCASE("sequences without tags add nothing") {
    LinearChainCrf<Dynamic, double> crf(4);
    randomize(crf, rng);
    Tags tags = random_tags(batch, 4, rng);
    tags[1].clear();
    worst = std::max(worst, run(crf, tags, 1.0));
    tags = random_tags(batch, 4, rng);
    tags[0].assign(4, -100);
    worst = std::max(worst, run(crf, tags, 1.0));
    // The mean is over the two sequences with tags: the loss equals that of a batch without the
    // untagged one.
    HostMatrix emissions = random_emissions<double>(4, batch, rng);
    const double with_untagged = crf.forward(emissions.view(), batch, tags);
    CHECK(crf.counted_sequences() == 2);
    CHECK(std::isnan(crf.log_partition()[0]));
    Tags none(3);
    CHECK(crf.forward(emissions.view(), batch, none) == 0.0);
    zero_gradients(crf);
    const HostMatrix d = crf.backward(1.0, batch);
    CHECK(max_abs_outside(d, [](Index) { return false; }) == 0.0);
    LinearChainCrf<Dynamic, double, Cpu> sum_crf(4, {.reduction = CrfReduction::sum});
    sum_crf.for_each_param([&](std::string_view name, auto& p) {
      crf.for_each_param([&](std::string_view other, auto& q) {
        if (name == other) p.value = q.value;
      });
    });
    CHECK(with_untagged == doctest::Approx(sum_crf.forward(emissions.view(), batch, tags) / 2));
  }
  SUBCASE("single-token sequences (no transitions), and a single tag") {
    const Batch ones = batch_of_lengths({1, 1, 1});
    for (Index tags : {Index(3), Index(1)}) {
      LinearChainCrf<Dynamic, double> crf(tags);
      randomize(crf, rng);
      HostMatrix emissions = random_emissions<double>(tags, ones, rng);
      HostMatrix demissions;
      const auto report =
          check_crf(crf, emissions, ones, random_tags(ones, tags, rng), 1.0, demissions);
      INFO(report.worst);
      CHECK(report.max_error < 1e-6);
      worst = std::max(worst, report.max_error);
      for (Index i = 0; i < crf.transitions().size(); ++i)
        CHECK(crf.transitions().grad.data()[i] == 0.0);
    }
  }
  // Valid sequences of lengths 4, 2, 3 under each encoding's constraints.
  auto constrained = [&](const std::vector<std::string>& labels, const Tags& tags) {
    LinearChainCrf<Dynamic, double> crf(5);
    randomize(crf, rng);
    crf.set_bio_constraints(labels);
    worst = std::max(worst, run(crf, tags, 1.0));
    for (Index i = 0; i < 5; ++i) {
      if (!crf.start_allowed(i)) CHECK(crf.start().grad(i, 0) == 0.0);
      if (!crf.end_allowed(i)) CHECK(crf.end().grad(i, 0) == 0.0);
      for (Index j = 0; j < 5; ++j)
        if (!crf.transition_allowed(i, j)) CHECK(crf.transitions().grad(i, j) == 0.0);
    }
  };
  SUBCASE("with BIO constraints: excluded entries get zero gradient") {
    constrained(bio_labels, {{1, 2, 2, 0}, {3, 4}, {0, 1, 0}});
  }
  SUBCASE("with BIOES constraints: excluded entries, including the ends, get zero gradient") {
    constrained(bioes_labels, {{1, 2, 3, 0}, {4, 4}, {0, 1, 3}});
  }
  MESSAGE("CRF gradient check: max relative error " << worst);
}

TEST_CASE(
    "LinearChainCrf: accurate at large score ranges (direct log-sum-exp where sums underflow)") {
  Rng rng(3);
  const Batch batch = batch_of_lengths({4, 3, 2});
  HostMatrix A, start, end;
  SUBCASE("double, scores of a few hundred") {
    LinearChainCrf<3, double> crf(3, {.reduction = CrfReduction::sum});
    double worst_log_z = 0, worst_marginal = 0, worst_pair = 0;
    Index direct = 0;
    for (int trial = 0; trial < 10; ++trial) {
      randomize(crf, rng, 300.0);
      const HostMatrix emissions = random_emissions<double>(3, batch, rng, 300.0);
      const HostMatrix marginals = crf.marginals(emissions.view(), batch);
      direct += crf.direct_entries();
      effective(crf, A, start, end);
      for (Index b = 0; b < batch.batch_size; ++b) {
        const Enumerated e = enumerate(emissions, batch, b, A, start, end);
        worst_log_z =
            std::max(worst_log_z, std::abs(crf.log_partition()[std::size_t(b)] - e.log_z) /
                                      std::max(1.0, std::abs(e.log_z)));
        for (Index t = 0; t < batch.lengths[std::size_t(b)]; ++t)
          for (Index i = 0; i < 3; ++i)
            worst_marginal = std::max(worst_marginal,
                                      std::abs(marginals(i, batch.column(b, t)) - e.unary(i, t)));
        Tags only(3);
        only[std::size_t(b)] = e.best;
        zero_gradients(crf);
        crf.forward(emissions.view(), batch, only);
        crf.backward(1.0, batch);
        HostMatrix pair = crf.transitions().grad;
        for (std::size_t t = 1; t < e.best.size(); ++t) pair(e.best[t - 1], e.best[t]) += 1.0;
        for (Index i = 0; i < pair.size(); ++i)
          worst_pair = std::max(worst_pair, std::abs(pair.data()[i] - e.pair.data()[i]));
      }
    }
    MESSAGE("double, scale 300: max rel |log Z diff| "
            << worst_log_z << ", max |marginal diff| " << worst_marginal << ", max |pair diff| "
            << worst_pair << ", direct entries " << direct);
    CHECK(direct > 0);  // the test exercises the direct route
    CHECK(worst_log_z < 1e-13);
    CHECK(worst_marginal < 1e-9);
    CHECK(worst_pair < 1e-9);
  }
  SUBCASE("float, scores of a few tens, against a double brute force") {
    LinearChainCrf<3, float> crf(3, {.reduction = CrfReduction::sum});
    double worst_log_z = 0, worst_marginal = 0;
    Index direct = 0;
    for (int trial = 0; trial < 10; ++trial) {
      randomize(crf, rng, 40.0);
      const Matrix<float, Cpu> emissions = random_emissions<float>(3, batch, rng, 40.0);
      HostMatrix emissions_d(3, batch.columns());
      for (Index i = 0; i < emissions.size(); ++i) emissions_d.data()[i] = emissions.data()[i];
      const Matrix<float, Cpu> marginals = crf.marginals(emissions.view(), batch);
      direct += crf.direct_entries();
      effective(crf, A, start, end);
      for (Index b = 0; b < batch.batch_size; ++b) {
        const Enumerated e = enumerate(emissions_d, batch, b, A, start, end);
        worst_log_z =
            std::max(worst_log_z, std::abs(crf.log_partition()[std::size_t(b)] - e.log_z) /
                                      std::max(1.0, std::abs(e.log_z)));
        for (Index t = 0; t < batch.lengths[std::size_t(b)]; ++t)
          for (Index i = 0; i < 3; ++i)
            worst_marginal = std::max(
                worst_marginal, std::abs(double(marginals(i, batch.column(b, t))) - e.unary(i, t)));
      }
    }
    MESSAGE("float, scale 40: max rel |log Z diff| " << worst_log_z << ", max |marginal diff| "
                                                     << worst_marginal << ", direct entries "
                                                     << direct);
    CHECK(direct > 0);
    CHECK(worst_log_z < 1e-6);
    CHECK(worst_marginal < 1e-4);
  }
}

TEST_CASE("LinearChainCrf: BIOES constraints, chosen by the tag names, decode the best valid path") {
  Rng rng(5);
  LinearChainCrf<Dynamic, double> crf(5);
  randomize(crf, rng);
  crf.set_bio_constraints(bioes_labels);
  // O B-PER I-PER E-PER S-PER: an entity opened by B or I must go on with I or E, and only there.
  CHECK_FALSE(crf.start_allowed(2));
  CHECK_FALSE(crf.start_allowed(3));
  CHECK(crf.start_allowed(1));
  CHECK(crf.start_allowed(4));
  CHECK_FALSE(crf.end_allowed(1));
  CHECK_FALSE(crf.end_allowed(2));
  CHECK(crf.end_allowed(3));
  CHECK_FALSE(crf.transition_allowed(1, 0));  // B -> O leaves the entity open
  CHECK_FALSE(crf.transition_allowed(2, 4));  // I -> S likewise
  CHECK_FALSE(crf.transition_allowed(0, 3));  // O -> E closes nothing
  CHECK_FALSE(crf.transition_allowed(3, 2));  // E -> I
  CHECK(crf.transition_allowed(1, 3));
  CHECK(crf.transition_allowed(3, 1));
  CHECK(crf.transition_allowed(4, 4));
  int valid_paths = 0;
  for (int code = 0; code < 5 * 5 * 5; ++code) {
    const std::vector<std::int32_t> path{code % 5, code / 5 % 5, code / 25};
    bool allowed = crf.start_allowed(path[0]) && crf.end_allowed(path[2]);
    for (std::size_t t = 1; t < path.size(); ++t) allowed = allowed && crf.transition_allowed(path[t - 1], path[t]);
    CHECK(allowed == valid_bioes(path));
    valid_paths += allowed;
  }
  CHECK(valid_paths > 0);

  // Emissions favouring B and I everywhere: unconstrained Viterbi leaves entities open.
  const Batch batch = batch_of_lengths({4, 3, 1, 2});
  HostMatrix A, start, end;
  int invalid_unconstrained = 0;
  for (int trial = 0; trial < 30; ++trial) {
    HostMatrix emissions = random_emissions<double>(5, batch, rng, 2.0);
    for (Index c = 0; c < emissions.cols(); ++c) {
      emissions(1, c) += 6.0;
      emissions(2, c) += 5.0;
    }
    const Tags decoded = crf.decode(emissions.view(), batch);
    const HostMatrix marginals = crf.marginals(emissions.view(), batch);
    effective(crf, A, start, end);
    for (Index b = 0; b < batch.batch_size; ++b) {
      CHECK(valid_bioes(decoded[std::size_t(b)]));
      const Enumerated e = enumerate(emissions, batch, b, A, start, end);
      CHECK(decoded[std::size_t(b)] == e.best);
      CHECK(crf.log_partition()[std::size_t(b)] == doctest::Approx(e.log_z).epsilon(1e-12));
      const Index last = batch.column(b, batch.lengths[std::size_t(b)] - 1);
      CHECK(marginals(1, last) == 0.0);  // B cannot end a sequence
    }
    LinearChainCrf<Dynamic, double> free = without_constraints(crf);
    for (const auto& path : free.decode(emissions.view(), batch))
      invalid_unconstrained += !valid_bioes(path);
  }
  CHECK(invalid_unconstrained > 0);
  // A gold path that leaves an entity open is an error.
  const HostMatrix emissions = random_emissions<double>(5, batch, rng);
  CHECK_THROWS_AS(crf.forward(emissions.view(), batch, Tags{{0, 1, 0, 0}, {0, 0, 0}, {0}, {0, 0}}), Error);
  CHECK_NOTHROW(crf.forward(emissions.view(), batch, Tags{{0, 1, 3, 0}, {4, 0, 0}, {4}, {1, 3}}));
}

TEST_CASE("LinearChainCrf: BIO constraints are never violated, even when emissions favour it") {
  Rng rng(4);
  LinearChainCrf<Dynamic, double> crf(5);
  randomize(crf, rng);
  crf.set_bio_constraints(bio_labels);
  CHECK_FALSE(crf.start_allowed(2));
  CHECK_FALSE(crf.transition_allowed(0, 2));  // O -> I-PER
  CHECK_FALSE(crf.transition_allowed(3, 2));  // B-LOC -> I-PER
  CHECK(crf.transition_allowed(1, 2));
  CHECK(crf.transition_allowed(2, 2));
  CHECK(crf.transition_allowed(2, 4) == false);
  CHECK(crf.transition_allowed(4, 1));  // I-LOC -> B-PER

  // Emissions that make I- tags the per-token favourites everywhere, the transitions into them
  // large too: unconstrained decoding would pick invalid paths.
  const Batch batch = batch_of_lengths({4, 3, 1, 2});
  crf.transitions().value(0, 2) = 20;
  crf.transitions().value(3, 2) = 20;
  crf.start().value(4, 0) = 20;
  HostMatrix A, start, end;
  int invalid_unconstrained = 0;
  for (int trial = 0; trial < 50; ++trial) {
    HostMatrix emissions = random_emissions<double>(5, batch, rng, 2.0);
    for (Index c = 0; c < emissions.cols(); ++c) {
      emissions(2, c) += 8.0;
      emissions(4, c) += 6.0;
    }
    const Tags decoded = crf.decode(emissions.view(), batch);
    effective(crf, A, start, end);
    for (Index b = 0; b < batch.batch_size; ++b) {
      CHECK(valid_bio(decoded[std::size_t(b)]));
      const Enumerated e = enumerate(emissions, batch, b, A, start, end);
      CHECK(decoded[std::size_t(b)] == e.best);  // the best valid path
      CHECK(crf.marginals(emissions.view(), batch)(2, batch.column(b, 0)) == 0.0);
    }
    // The log partition sums over valid paths only.
    const HostMatrix marginals = crf.marginals(emissions.view(), batch);
    for (Index b = 0; b < batch.batch_size; ++b) {
      const Enumerated e = enumerate(emissions, batch, b, A, start, end);
      CHECK(crf.log_partition()[std::size_t(b)] == doctest::Approx(e.log_z).epsilon(1e-12));
    }
    LinearChainCrf<Dynamic, double> free = without_constraints(crf);
    for (const auto& path : free.decode(emissions.view(), batch))
      invalid_unconstrained += !valid_bio(path);
  }
  CHECK(invalid_unconstrained > 0);  // the emissions really do favour invalid paths

  // A gold path through an excluded transition is an error, as is partial tagging.
  HostMatrix emissions = random_emissions<double>(5, batch, rng);
  CHECK_THROWS_AS(crf.forward(emissions.view(), batch, Tags{{0, 2, 0, 0}, {0, 0, 0}, {0}, {0, 0}}),
                  Error);
  CHECK_THROWS_AS(crf.forward(emissions.view(), batch, Tags{{2, 0, 0, 0}, {0, 0, 0}, {0}, {0, 0}}),
                  Error);
  CHECK_THROWS_AS(
      crf.forward(emissions.view(), batch, Tags{{0, -100, 0, 0}, {0, 0, 0}, {0}, {0, 0}}), Error);
  CHECK_THROWS_AS(crf.forward(emissions.view(), batch, Tags{{0, 0, 0}, {0, 0, 0}, {0}, {0, 0}}),
                  ShapeError);
  CHECK_THROWS_AS(crf.forward(emissions.view(), batch, Tags{{0, 0, 0, 5}, {0, 0, 0}, {0}, {0, 0}}),
                  ShapeError);
  CHECK_THROWS_AS(crf.forward(emissions.view(), batch, Tags{{0, 0, 0, 0}}), ShapeError);
  CHECK_THROWS_AS(crf.set_bio_constraints({"O", "B-X"}), ShapeError);
  const HostMatrix wrong(4, batch.columns(), 0.0);
  CHECK_THROWS_AS(crf.decode(wrong.view(), batch), ShapeError);
  crf.clear_constraints();
  CHECK(crf.transition_allowed(0, 2));
  CHECK_NOTHROW(crf.forward(emissions.view(), batch, Tags{{0, 2, 0, 0}, {0, 0, 0}, {0}, {0, 0}}));
}

TEST_CASE("LinearChainCrf: forward, backward and decode do not allocate in the steady state") {
  Rng rng(5);
  LinearChainCrf<Dynamic, float> crf(17);
  crf.initialize(rng);
  crf.set_bio_constraints({"O", "B-A", "I-A", "B-B", "I-B", "B-C", "I-C", "B-D", "I-D", "B-E",
                           "I-E", "B-F", "I-F", "B-G", "I-G", "B-H", "I-H"});
  const Batch batch = batch_of_lengths({7, 3, 9, 1, 9, 4});
  const Matrix<float, Cpu> emissions = random_emissions<float>(17, batch, rng);
  Tags gold = crf.decode(emissions.view(), batch);  // valid under the constraints
  Tags decoded;
  auto step = [&] {
    crf.forward(emissions.view(), batch, gold);
    crf.backward(1.0f, batch);
    crf.decode(emissions.view(), batch, decoded);
  };
  step();
  step();
  const long before = allocations.load();
  step();
  step();
  const long after = allocations.load();
  CHECK(after - before == 0);
  CHECK(decoded == gold);
}

TEST_CASE("LinearChainCrf: decoding between forward and backward leaves the gradient alone") {
  Rng rng(9);
  LinearChainCrf<Dynamic, double> crf(4);
  randomize(crf, rng);
  const Batch batch = padded_batch();
  const HostMatrix emissions = random_emissions<double>(4, batch, rng);
  const Tags gold = random_tags(batch, 4, rng);
  crf.forward(emissions.view(), batch, gold);
  const HostMatrix reference = crf.backward(1.0, batch);
  crf.forward(emissions.view(), batch, gold);
  const Tags decoded = crf.decode(emissions.view(), batch);
  CHECK(decoded.size() == 3);
  CHECK(test::max_abs_diff(crf.backward(1.0, batch), reference) == 0.0);
  CHECK_THROWS_AS(crf.backward(1.0, batch), Error);  // once per forward
  crf.forward(emissions.view(), batch, gold);
  crf.marginals(emissions.view(), batch);
  CHECK_THROWS_AS(crf.backward(1.0, batch), Error);  // marginals replaced the forward state
}

namespace {

constexpr Index vocab = 11;
using Trunk = Sequential<Embedding<Dynamic, 4, double>, BiLstm<4, 3, double>>;
using Joint = MultiTask<Trunk, Task<"chunks", CrfTagger<6, Dynamic, double>>,
                        Task<"pos", TokenTagger<6, Dynamic, double>, std::ratio<1, 2>>>;

}  // namespace

TEST_CASE(
    "CrfTagger in a MultiTask model: the combined loss's gradient matches finite differences") {
  Rng rng(6);
  Joint model{Trunk(Embedding<Dynamic, 4, double>(vocab)), CrfTagger<6, Dynamic, double>(5),
              TokenTagger<6, Dynamic, double>(3)};
  model.initialize(rng);
  model.head<"chunks">().set_bio_constraints(bio_labels);
  // Transitions away from their small initial values, so that they matter.
  model.head<"chunks">().for_each_param([&](std::string_view name, auto& p) {
    if (name.starts_with("crf."))
      for (Index i = 0; i < p.size(); ++i) p.value.data()[i] = rng.normal(0.0, 1.0);
  });
  const Batch batch = padded_batch();
  Joint::Targets targets;
  targets.set<"chunks">({{1, 2, 0, 3}, {}, {3, 4, 4}});  // the second sequence has no chunk tags
  targets.set<"pos">({{0, 1, 2, 0}, {2, -100}, {1, 1, 0}});

  std::vector<std::string> names;
  model.for_each_param([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(std::vector<std::string>(names.end() - 7, names.end()) ==
        std::vector<std::string>{"chunks.output.weight", "chunks.output.bias",
                                 "chunks.crf.transitions", "chunks.crf.start", "chunks.crf.end",
                                 "pos.output.weight", "pos.output.bias"});

  zero_gradients(model);
  model.forward_backward(batch, targets);
  std::vector<std::pair<std::string, HostMatrix>> grads;
  model.for_each_param(
      [&](std::string_view n, auto& p) { grads.emplace_back(std::string(n), p.grad); });
  auto loss = [&] { return model.forward_backward(batch, targets).total; };
  testing::GradientReport report;
  std::size_t k = 0;
  model.for_each_param([&](std::string_view, auto& p) {
    const auto& [name, grad] = grads[k++];
    report.merge(testing::compare_gradient(std::span<double>(p.value.data(), p.value.size()),
                                           std::span<const double>(grad.data(), grad.size()), loss,
                                           name, fd_step));
  });
  MESSAGE("MultiTask (Embedding + BiLSTM trunk, CRF + softmax taggers): max relative error "
          << report.max_error << " over " << report.checked << " parameters");
  INFO(report.worst);
  CHECK(report.checked == count_parameters(model));
  CHECK(report.max_error < 1e-6);

  const auto losses = model.forward_backward(batch, targets);
  CHECK(losses.total == doctest::Approx(losses.task[0] + 0.5 * losses.task[1]));
  model.forward(batch, Mode::eval);
  const auto paths = model.head<"chunks">().predict(batch);
  REQUIRE(paths.size() == 3);
  for (Index b = 0; b < 3; ++b) {
    CHECK(Index(paths[std::size_t(b)].size()) == batch.lengths[std::size_t(b)]);
    CHECK(valid_bio(paths[std::size_t(b)]));
  }
}

TEST_CASE("CrfTagger learns tags that depend on the previous tag; a per-token softmax cannot") {
  // Tokens: 1 opens a PER chunk, 2 opens a LOC chunk, 3 continues the open chunk, 4..10 are
  // outside. Tags O, B-PER, I-PER, B-LOC, I-LOC. A continuation token's tag is I-PER or I-LOC
  // depending on the previous tag; the trunk sees one token at a time (no recurrence), so only a
  // model of tag transitions can tell them apart.
  using Model = MultiTask<Sequential<Embedding<Dynamic, 8>, Linear<8, 8>, Tanh<>>,
                          Task<"crf", CrfTagger<8, 5>>, Task<"softmax", TokenTagger<8, 5>>>;
  Rng rng(7);
  Model model{Sequential<Embedding<Dynamic, 8>, Linear<8, 8>, Tanh<>>(Embedding<Dynamic, 8>(vocab)),
              CrfTagger<8, 5>(), TokenTagger<8, 5>()};
  model.initialize(rng);
  Adam<float> adam({.lr = 0.03});

  auto make = [](Rng& r, int count, Tags& tags) {
    std::vector<std::vector<TokenId>> seqs;
    tags.clear();
    for (int i = 0; i < count; ++i) {
      std::vector<TokenId> s;
      std::vector<std::int32_t> y;
      const Index length = 2 + Index(r.below(9));
      std::int32_t open = 0;  // 0: outside, 1: PER, 2: LOC
      while (Index(s.size()) < length) {
        const auto u = r.below(10);
        if (open != 0 && u < 5) {
          s.push_back(3);
          y.push_back(open == 1 ? 2 : 4);
        } else if (u < 7) {
          open = u % 2 == 0 ? 1 : 2;
          s.push_back(open == 1 ? 1 : 2);
          y.push_back(open == 1 ? 1 : 3);
        } else {
          open = 0;
          s.push_back(TokenId(4 + r.below(7)));
          y.push_back(0);
        }
      }
      seqs.push_back(s);
      tags.push_back(y);
    }
    return seqs;
  };

  Rng data(8);
  Tags tags;
  for (int step = 0; step < 250; ++step) {
    const auto seqs = make(data, 16, tags);
    const Batch batch = Batch::from_sequences(seqs);
    Model::Targets targets;
    targets.set<"crf">(tags);
    targets.set<"softmax">(tags);
    zero_gradients(model);
    model.forward_backward(batch, targets);
    adam.step(model);
  }
  const auto seqs = make(data, 300, tags);
  const Batch test = Batch::from_sequences(seqs);
  model.forward(test, Mode::eval);
  const auto crf_pred = model.head<"crf">().predict(test);
  const auto softmax_pred = model.head<"softmax">().predict(test);
  double crf_right = 0, softmax_right = 0, continuation = 0, crf_cont = 0, softmax_cont = 0;
  double tokens = 0;
  for (std::size_t b = 0; b < seqs.size(); ++b)
    for (std::size_t t = 0; t < seqs[b].size(); ++t, ++tokens) {
      crf_right += crf_pred[b][t] == tags[b][t];
      softmax_right += softmax_pred[b][t] == tags[b][t];
      if (seqs[b][t] == 3) {
        ++continuation;
        crf_cont += crf_pred[b][t] == tags[b][t];
        softmax_cont += softmax_pred[b][t] == tags[b][t];
      }
    }
  MESSAGE("token accuracy: CRF " << crf_right / tokens << " (continuations "
                                 << crf_cont / continuation << "), softmax "
                                 << softmax_right / tokens << " (continuations "
                                 << softmax_cont / continuation << ")");
  CHECK(crf_right / tokens > 0.99);
  CHECK(crf_cont / continuation > 0.98);
  CHECK(softmax_cont / continuation < 0.8);
}
