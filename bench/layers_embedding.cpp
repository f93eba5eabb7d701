// Embedding, dropout and pooling at batch 32, length 32, dim 128 (vocabulary 1000): forward, and
// forward + backward. Sequences have random lengths in [16, 32], as a padded batch does.
#include <benchmark/benchmark.h>

#include <mtlm/layers/dropout.hpp>
#include <mtlm/layers/embedding.hpp>
#include <mtlm/layers/pooling.hpp>
#include <mtlm/mtlm.hpp>

#include <vector>

namespace {

constexpr mtlm::Index batch_size = 32, length = 32, dim = 128, vocab = 1000;

mtlm::Batch random_batch(mtlm::Rng& rng) {
  std::vector<std::vector<mtlm::TokenId>> seqs(batch_size);
  for (auto& s : seqs) {
    const auto extra = static_cast<mtlm::Index>(rng.below(length / 2 + 1));
    s.resize(static_cast<std::size_t>(length / 2 + extra));
    for (auto& id : s) id = static_cast<mtlm::TokenId>(rng.below(vocab));
  }
  seqs[0].resize(length, 1);  // one full-length sequence, so T = length
  return mtlm::Batch::from_sequences(seqs);
}

void set_tokens_per_second(benchmark::State& state, const mtlm::Batch& batch) {
  state.counters["tokens_per_second"] = benchmark::Counter(
      static_cast<double>(batch.columns()), benchmark::Counter::kIsIterationInvariantRate);
}

void run_embedding(benchmark::State& state, bool with_backward) {
  mtlm::Rng rng(1);
  mtlm::Embedding<mtlm::Dynamic, dim> layer(vocab, dim, 0);
  layer.initialize(rng);
  const auto batch = random_batch(rng);
  const mtlm::Matrix<float, mtlm::Cpu> dy(dim, batch.columns(), 0.5f);
  for (auto _ : state) {
    const auto& y = layer.forward(batch, mtlm::Mode::train);
    if (with_backward) layer.backward(dy.view(), batch);
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(layer.weight().grad.data());
  }
  set_tokens_per_second(state, batch);
}

/// A matrix-input layer on (dim x B*T) inputs.
template <class Layer>
void run_layer(benchmark::State& state, Layer& layer, bool with_backward) {
  mtlm::Rng rng(1);
  layer.initialize(rng);
  const auto batch = random_batch(rng);
  mtlm::Matrix<float, mtlm::Cpu> x(dim, batch.columns()), dy;
  for (mtlm::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  for (auto _ : state) {
    const auto& y = layer.forward(x.view(), batch, mtlm::Mode::train);
    if (with_backward) {
      if (dy.size() != y.size()) dy = mtlm::Matrix<float, mtlm::Cpu>(y.rows(), y.cols(), 0.5f);
      benchmark::DoNotOptimize(layer.backward(dy.view(), batch).data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_tokens_per_second(state, batch);
}

void BM_Embedding_Forward(benchmark::State& state) { run_embedding(state, false); }
void BM_Embedding_ForwardBackward(benchmark::State& state) { run_embedding(state, true); }

void BM_Dropout_Forward(benchmark::State& state) {
  mtlm::Dropout<> layer(0.1);
  run_layer(state, layer, false);
}
void BM_Dropout_ForwardBackward(benchmark::State& state) {
  mtlm::Dropout<> layer(0.1);
  run_layer(state, layer, true);
}

template <mtlm::PoolingKind Kind>
void BM_Pooling_Forward(benchmark::State& state) {
  mtlm::Pooling<Kind, dim> layer;
  run_layer(state, layer, false);
}
template <mtlm::PoolingKind Kind>
void BM_Pooling_ForwardBackward(benchmark::State& state) {
  mtlm::Pooling<Kind, dim> layer;
  run_layer(state, layer, true);
}

}  // namespace

BENCHMARK(BM_Embedding_Forward);
BENCHMARK(BM_Embedding_ForwardBackward);
BENCHMARK(BM_Dropout_Forward);
BENCHMARK(BM_Dropout_ForwardBackward);
BENCHMARK(BM_Pooling_Forward<mtlm::PoolingKind::mean>)->Name("BM_MeanPool_Forward");
BENCHMARK(BM_Pooling_ForwardBackward<mtlm::PoolingKind::mean>)->Name("BM_MeanPool_ForwardBackward");
BENCHMARK(BM_Pooling_Forward<mtlm::PoolingKind::max>)->Name("BM_MaxPool_Forward");
BENCHMARK(BM_Pooling_ForwardBackward<mtlm::PoolingKind::max>)->Name("BM_MaxPool_ForwardBackward");
BENCHMARK(BM_Pooling_Forward<mtlm::PoolingKind::last>)->Name("BM_LastTokenPool_Forward");
BENCHMARK(BM_Pooling_ForwardBackward<mtlm::PoolingKind::last>)
    ->Name("BM_LastTokenPool_ForwardBackward");

BENCHMARK_MAIN();
