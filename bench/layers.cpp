// Per-layer costs at batch 32, length 32, hidden 128: forward, and forward + backward.
#include <benchmark/benchmark.h>

#include <mtlm/mtlm.hpp>

#include "layer_harness.hpp"

namespace {

constexpr mtlm::Index batch_size = 32, length = 32, hidden = 128;

template <class Layer>
void run_layer(benchmark::State& state, Layer& layer, bool with_backward) {
  mtlm::bench::run_layer(state, layer, hidden, mtlm::Batch::dense(batch_size, length), with_backward);
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
