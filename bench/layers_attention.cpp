// LayerNorm, multi-head self-attention and Transformer encoder blocks at batch 32, length 32,
// D 128, 4 heads, FF 512: forward, and forward + backward.
#include <benchmark/benchmark.h>

#include <mtlm/layers/attention.hpp>
#include <mtlm/layers/layer_norm.hpp>
#include <mtlm/layers/transformer_block.hpp>
#include <mtlm/mtlm.hpp>

#include "layer_harness.hpp"

namespace {

constexpr mtlm::Index batch_size = 32, length = 32, hidden = 128, heads = 4, feed_forward = 512;

template <class Layer>
void run_layer(benchmark::State& state, bool with_backward) {
  mtlm::bench::run_layer<Layer>(state, hidden, mtlm::Batch::dense(batch_size, length), with_backward);
}

using Norm = mtlm::LayerNorm<hidden>;
using Attention = mtlm::MultiHeadSelfAttention<hidden, heads>;
using CausalAttention = mtlm::CausalSelfAttention<hidden, heads>;
using PostBlock = mtlm::TransformerEncoderBlock<hidden, heads, feed_forward,
                                                mtlm::NormPlacement::post, mtlm::Activation::relu>;
using PreBlock = mtlm::TransformerEncoderBlock<hidden, heads, feed_forward,
                                               mtlm::NormPlacement::pre, mtlm::Activation::gelu>;

void BM_LayerNorm_Forward(benchmark::State& s) { run_layer<Norm>(s, false); }
void BM_LayerNorm_ForwardBackward(benchmark::State& s) { run_layer<Norm>(s, true); }
void BM_Attention_Forward(benchmark::State& s) { run_layer<Attention>(s, false); }
void BM_Attention_ForwardBackward(benchmark::State& s) { run_layer<Attention>(s, true); }
void BM_CausalAttention_Forward(benchmark::State& s) { run_layer<CausalAttention>(s, false); }
void BM_CausalAttention_ForwardBackward(benchmark::State& s) {
  run_layer<CausalAttention>(s, true);
}
void BM_BlockPostReLU_Forward(benchmark::State& s) { run_layer<PostBlock>(s, false); }
void BM_BlockPostReLU_ForwardBackward(benchmark::State& s) { run_layer<PostBlock>(s, true); }
void BM_BlockPreGELU_Forward(benchmark::State& s) { run_layer<PreBlock>(s, false); }
void BM_BlockPreGELU_ForwardBackward(benchmark::State& s) { run_layer<PreBlock>(s, true); }

}  // namespace

BENCHMARK(BM_LayerNorm_Forward);
BENCHMARK(BM_LayerNorm_ForwardBackward);
BENCHMARK(BM_Attention_Forward);
BENCHMARK(BM_Attention_ForwardBackward);
BENCHMARK(BM_CausalAttention_Forward);
BENCHMARK(BM_CausalAttention_ForwardBackward);
BENCHMARK(BM_BlockPostReLU_Forward);
BENCHMARK(BM_BlockPostReLU_ForwardBackward);
BENCHMARK(BM_BlockPreGELU_Forward);
BENCHMARK(BM_BlockPreGELU_ForwardBackward);

BENCHMARK_MAIN();
