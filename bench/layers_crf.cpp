// Linear-chain CRF costs at batch 32, length 32 (every sequence full), 17 tags (CoNLL-2003 BIO:
// 4 types) and 130 tags (about ATIS's slot set): the negative log-likelihood alone, with its
// gradient (forward-backward), and Viterbi decoding. BM_Crf_DirectLogSumExp_Nll is the textbook
// log-space forward algorithm (a Tags x Tags log-sum-exp per sequence and step) measured in the
// same binary, to show what computing each step's log-sum-exp as one GEMM over the batch buys.
#include <benchmark/benchmark.h>

#include <mtlm/layers/crf.hpp>

#include <Eigen/Core>

#include <cmath>
#include <vector>

namespace {

constexpr mtlm::Index batch_size = 32, length = 32;
using Crf = mtlm::LinearChainCrf<mtlm::Dynamic, float>;
using Emissions = mtlm::Matrix<float, mtlm::Cpu>;

struct Setup {
  mtlm::Batch batch = mtlm::Batch::dense(batch_size, length);
  Crf crf;
  Emissions emissions;
  Crf::TagSequences gold;

  explicit Setup(mtlm::Index tags) : crf(tags), emissions(tags, batch_size * length) {
    mtlm::Rng rng(1);
    crf.initialize(rng);
    for (mtlm::Index i = 0; i < emissions.size(); ++i)
      emissions.data()[i] = static_cast<float>(rng.normal(0.0, 2.0));
    gold.assign(batch_size, std::vector<std::int32_t>(length));
    for (auto& seq : gold)
      for (auto& y : seq)
        y = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(tags)));
  }
};

void report(benchmark::State& state) {
  state.counters["tokens_per_second"] = benchmark::Counter(
      static_cast<double>(batch_size * length), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Crf_Nll(benchmark::State& state) {
  Setup s(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(s.crf.forward(s.emissions.view(), s.batch, s.gold));
  report(state);
}

void BM_Crf_NllGradient(benchmark::State& state) {
  Setup s(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(s.crf.forward(s.emissions.view(), s.batch, s.gold));
    benchmark::DoNotOptimize(s.crf.backward(1.0f, s.batch).data());
  }
  report(state);
}

void BM_Crf_Viterbi(benchmark::State& state) {
  Setup s(state.range(0));
  Crf::TagSequences out;
  for (auto _ : state) {
    s.crf.decode(s.emissions.view(), s.batch, out);
    benchmark::DoNotOptimize(out.data());
  }
  report(state);
}

/// The reference: alpha_t(j) = E_t(j) + log sum_i exp(alpha_{t-1}(i) + A(i, j)), a log-sum-exp
/// over Tags terms for every tag, sequence and step (Tags^2 exponentials per token), each one
/// vectorised with Eigen (log Z only, no gradient).
void BM_Crf_DirectLogSumExp_Nll(benchmark::State& state) {
  Setup s(state.range(0));
  const mtlm::Index tags = state.range(0);
  Eigen::MatrixXf A = Eigen::MatrixXf::Random(tags, tags) * 0.1f;
  Eigen::VectorXf start = Eigen::VectorXf::Zero(tags), end = Eigen::VectorXf::Zero(tags);
  Eigen::VectorXf alpha(tags), next(tags), candidate(tags);
  const auto E = mtlm::Cpu::eigen(s.emissions.view());
  for (auto _ : state) {
    double total = 0;
    for (mtlm::Index b = 0; b < batch_size; ++b) {
      alpha = start + E.col(b * length);
      for (mtlm::Index t = 1; t < length; ++t) {
        for (mtlm::Index j = 0; j < tags; ++j) {
          candidate = alpha + A.col(j);
          const float m = candidate.maxCoeff();
          next(j) = m + std::log((candidate.array() - m).exp().sum());
        }
        alpha = next + E.col(b * length + t);
      }
      const float m = (alpha + end).maxCoeff();
      total += m + std::log(((alpha + end).array() - m).exp().sum());
    }
    benchmark::DoNotOptimize(total);
  }
  report(state);
}

}  // namespace

BENCHMARK(BM_Crf_Nll)->Arg(17)->Arg(130);
BENCHMARK(BM_Crf_NllGradient)->Arg(17)->Arg(130);
BENCHMARK(BM_Crf_Viterbi)->Arg(17)->Arg(130);
BENCHMARK(BM_Crf_DirectLogSumExp_Nll)->Arg(17)->Arg(130);

BENCHMARK_MAIN();
