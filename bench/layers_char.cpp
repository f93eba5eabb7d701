// Character-aware word representations at batch 32, length 24, 16 characters per word (every
// word full, so 14 windows of width 3 per word), CharDim 30, Filters 50: CharCnn alone and
// WordCharEmbedding (vocabulary 1000, word dim 100, word dropout 0.1), forward and
// forward + backward.
#include <benchmark/benchmark.h>

#include <mtlm/layers/char_cnn.hpp>
#include <mtlm/layers/word_char_embedding.hpp>
#include <mtlm/mtlm.hpp>

#include <vector>

namespace {

constexpr mtlm::Index batch_size = 32, length = 24, chars_per_word = 16;
constexpr mtlm::Index char_vocab = 100, char_dim = 30, filters = 50, width = 3;
constexpr mtlm::Index vocab = 1000, word_dim = 100;

mtlm::Batch char_batch(mtlm::Rng& rng) {
  std::vector<std::vector<mtlm::TokenId>> seqs(batch_size);
  for (auto& s : seqs) {
    s.resize(length);
    for (auto& id : s) id = static_cast<mtlm::TokenId>(rng.below(vocab));
  }
  auto batch = mtlm::Batch::from_sequences(seqs);
  batch.char_width = chars_per_word;
  batch.chars.resize(static_cast<std::size_t>(chars_per_word * batch.columns()));
  for (auto& c : batch.chars) c = static_cast<mtlm::TokenId>(1 + rng.below(char_vocab - 1));
  return batch;
}

void set_tokens_per_second(benchmark::State& state, const mtlm::Batch& batch) {
  state.counters["tokens_per_second"] = benchmark::Counter(
      static_cast<double>(batch.columns()), benchmark::Counter::kIsIterationInvariantRate);
}

template <class Layer>
void run(benchmark::State& state, Layer& layer, bool with_backward) {
  mtlm::Rng rng(1);
  layer.initialize(rng);
  const auto batch = char_batch(rng);
  mtlm::Matrix<float, mtlm::Cpu> dy;
  for (auto _ : state) {
    const auto& y = layer.forward(batch, mtlm::Mode::train);
    if (with_backward) {
      if (dy.size() != y.size()) dy = mtlm::Matrix<float, mtlm::Cpu>(y.rows(), y.cols(), 0.5f);
      layer.backward(dy.view(), batch);
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_tokens_per_second(state, batch);
}

using Cnn = mtlm::CharCnn<mtlm::Dynamic, char_dim, filters, width>;
using WordChar =
    mtlm::WordCharEmbedding<mtlm::Dynamic, word_dim, mtlm::Dynamic, char_dim, filters, width>;

void BM_CharCnn_Forward(benchmark::State& state) {
  Cnn layer(char_vocab);
  run(state, layer, false);
}
void BM_CharCnn_ForwardBackward(benchmark::State& state) {
  Cnn layer(char_vocab);
  run(state, layer, true);
}
void BM_WordCharEmbedding_Forward(benchmark::State& state) {
  WordChar layer(vocab, char_vocab, mtlm::WordDropout{0.1, 1, 3});
  run(state, layer, false);
}
void BM_WordCharEmbedding_ForwardBackward(benchmark::State& state) {
  WordChar layer(vocab, char_vocab, mtlm::WordDropout{0.1, 1, 3});
  run(state, layer, true);
}

}  // namespace

BENCHMARK(BM_CharCnn_Forward);
BENCHMARK(BM_CharCnn_ForwardBackward);
BENCHMARK(BM_WordCharEmbedding_Forward);
BENCHMARK(BM_WordCharEmbedding_ForwardBackward);

BENCHMARK_MAIN();
