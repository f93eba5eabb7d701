// Recurrent layer costs at batch 32, length 32, input 128, hidden 128: forward, and forward +
// backward, for LSTM, GRU and BiLSTM. Every sequence is full length (the worst case: packing
// saves nothing); BM_*_Ragged uses lengths 1..32 to show what skipping padding buys.
#include <benchmark/benchmark.h>

#include <mtlm/layers/gru.hpp>
#include <mtlm/layers/lstm.hpp>

#include "layer_harness.hpp"

namespace {

constexpr mtlm::Index batch_size = 32, length = 32, input = 128, hidden = 128;

mtlm::Batch ragged_batch() {
  mtlm::Batch batch = mtlm::Batch::dense(batch_size, length);
  for (mtlm::Index b = 0; b < batch_size; ++b)
    batch.lengths[static_cast<std::size_t>(b)] = 1 + (b * 7) % length;
  return batch;
}

template <class Layer>
void run_layer(benchmark::State& state, bool with_backward, const mtlm::Batch& batch) {
  mtlm::bench::run_layer<Layer>(state, input, batch, with_backward);
}

using Lstm = mtlm::Lstm<input, hidden>;
using Gru = mtlm::Gru<input, hidden>;
using BiLstm = mtlm::BiLstm<input, hidden>;

const mtlm::Batch full = mtlm::Batch::dense(batch_size, length);

void BM_Lstm_Forward(benchmark::State& s) { run_layer<Lstm>(s, false, full); }
void BM_Lstm_ForwardBackward(benchmark::State& s) { run_layer<Lstm>(s, true, full); }
void BM_Gru_Forward(benchmark::State& s) { run_layer<Gru>(s, false, full); }
void BM_Gru_ForwardBackward(benchmark::State& s) { run_layer<Gru>(s, true, full); }
void BM_BiLstm_Forward(benchmark::State& s) { run_layer<BiLstm>(s, false, full); }
void BM_BiLstm_ForwardBackward(benchmark::State& s) { run_layer<BiLstm>(s, true, full); }
void BM_BiLstm_ForwardBackward_Ragged(benchmark::State& s) {
  run_layer<BiLstm>(s, true, ragged_batch());
}

}  // namespace

BENCHMARK(BM_Lstm_Forward);
BENCHMARK(BM_Lstm_ForwardBackward);
BENCHMARK(BM_Gru_Forward);
BENCHMARK(BM_Gru_ForwardBackward);
BENCHMARK(BM_BiLstm_Forward);
BENCHMARK(BM_BiLstm_ForwardBackward);
BENCHMARK(BM_BiLstm_ForwardBackward_Ragged);

BENCHMARK_MAIN();
