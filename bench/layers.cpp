// Per-layer costs at batch 32, length 32, hidden 128: forward, and forward + backward.
#include <benchmark/benchmark.h>

#include <mtlm/mtlm.hpp>

namespace {

constexpr mtlm::Index batch_size = 32, length = 32, hidden = 128;

template <class Layer>
void run_layer(benchmark::State& state, Layer& layer, bool with_backward) {
  mtlm::Rng rng(1);
  layer.initialize(rng);
  const auto batch = mtlm::Batch::dense(batch_size, length);
  mtlm::Matrix<float, mtlm::Cpu> x(hidden, batch.columns()), dy;
  for (mtlm::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  for (auto _ : state) {
    const auto& y = layer.forward(x.view(), batch, mtlm::Mode::train);
    if (with_backward) {
      if (dy.size() != y.size()) dy = mtlm::Matrix<float, mtlm::Cpu>(y.rows(), y.cols(), 0.5f);
      benchmark::DoNotOptimize(layer.backward(dy.view(), batch).data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["tokens_per_second"] = benchmark::Counter(
      static_cast<double>(batch.columns()), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Linear_Forward(benchmark::State& state) {
  mtlm::Linear<hidden, hidden> layer;
  run_layer(state, layer, false);
}
void BM_Linear_ForwardBackward(benchmark::State& state) {
  mtlm::Linear<hidden, hidden> layer;
  run_layer(state, layer, true);
}
void BM_Gelu_Forward(benchmark::State& state) {
  mtlm::Gelu<hidden> layer;
  run_layer(state, layer, false);
}
void BM_Gelu_ForwardBackward(benchmark::State& state) {
  mtlm::Gelu<hidden> layer;
  run_layer(state, layer, true);
}

}  // namespace

BENCHMARK(BM_Linear_Forward);
BENCHMARK(BM_Linear_ForwardBackward);
BENCHMARK(BM_Gelu_Forward);
BENCHMARK(BM_Gelu_ForwardBackward);

BENCHMARK_MAIN();
