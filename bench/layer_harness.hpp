// The loop every per-layer benchmark runs: forward (and, if asked, backward with a constant
// upstream gradient) of one matrix-input layer on random inputs, reporting real tokens per second.
#pragma once

#include <benchmark/benchmark.h>

#include <mtlm/backend/cpu.hpp>
#include <mtlm/core/batch.hpp>
#include <mtlm/core/matrix.hpp>
#include <mtlm/core/random.hpp>

namespace mtlm::bench {

/// Initialises `layer`, then times forward (+ backward) on an `input_rows x B*T` input.
template <class Layer>
void run_layer(benchmark::State& state, Layer& layer, Index input_rows, const Batch& batch,
               bool with_backward) {
  Rng rng(1);
  layer.initialize(rng);
  Matrix<float, Cpu> x(input_rows, batch.columns()), dy;
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  for (auto _ : state) {
    const auto& y = layer.forward(x.view(), batch, Mode::train);
    if (with_backward) {
      if (dy.size() != y.size()) dy = Matrix<float, Cpu>(y.rows(), y.cols(), 0.5f);
      benchmark::DoNotOptimize(layer.backward(dy.view(), batch).data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  // Real tokens: for full-length batches, every column of the batch.
  state.counters["tokens_per_second"] = benchmark::Counter(
      static_cast<double>(batch.token_count()), benchmark::Counter::kIsIterationInvariantRate);
}

/// The same for a default-constructed layer.
template <class Layer>
void run_layer(benchmark::State& state, Index input_rows, const Batch& batch, bool with_backward) {
  Layer layer;
  run_layer(state, layer, input_rows, batch, with_backward);
}

}  // namespace mtlm::bench
