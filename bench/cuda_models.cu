// Training throughput on the GPU (CUDA policy): the ATIS demo's model and a Transformer trunk
// of d_model 512, 6 layers, 8 heads (batch 64, length 128). Figures: tokens_per_second of one
// full training step (forward, backward, Adam), waiting for the device at the end of each step.
// bench/peer_pytorch_cuda.py measures the same models in PyTorch on the same GPU.
#include <benchmark/benchmark.h>

#include <mtlm/backend/cuda.hpp>
#include <mtlm/mtlm.hpp>

#include <ratio>
#include <vector>

namespace {

using namespace mtlm;

// The demo's model (examples/joint_nlu/nlu_model.hpp) with the backend as a parameter.
template <class B>
using DemoModel = MultiTask<
    Sequential<WordCharEmbedding<Dynamic, 100, Dynamic, 30, 50, 3, float, B>, Dropout<float, B>,
               BiLstm<150, 128, float, B>, Dropout<float, B>>,
    Task<"intent", SequenceClassifier<256, Dynamic, PoolingKind::max, 0, float, B>>,
    Task<"slots", TokenTagger<256, Dynamic, float, B>>,
    Task<"lm", LanguageModelHead<256, Dynamic, LmDirection::both_directions, false, float, B>,
         std::ratio<1, 2>>>;

constexpr Index d_model = 512, layers_ff = 2048, max_length = 128;
template <class B>
using Block = TransformerEncoderBlock<d_model, 8, layers_ff, NormPlacement::post, Activation::relu, float, B>;
template <class B>
using TransformerModel = MultiTask<
    Sequential<Embedding<Dynamic, d_model, float, B>, LearnedPositions<d_model, max_length, float, B>,
               Block<B>, Block<B>, Block<B>, Block<B>, Block<B>, Block<B>>,
    Task<"intent", SequenceClassifier<d_model, Dynamic, PoolingKind::mean, 0, float, B>>,
    Task<"slots", TokenTagger<d_model, Dynamic, float, B>>>;

constexpr Index vocab = 1000, char_vocab = 60, char_width = 16, intents = 26, slot_tags = 130;

/// Random ids with a fixed seed; full-length sequences, so tokens per step = batch * length.
Batch random_batch(Index batch_size, Index length, bool with_chars, Rng& rng) {
  Batch batch = Batch::dense(batch_size, length);
  for (auto& t : batch.tokens) t = static_cast<TokenId>(1 + rng.uniform() * (vocab - 1));
  if (with_chars) {
    batch.char_width = char_width;
    batch.chars.assign(static_cast<std::size_t>(char_width * batch.columns()), 0);
    for (Index c = 0; c < batch.columns(); ++c)
      for (Index k = 0; k < 3 + c % 8; ++k)
        batch.chars[static_cast<std::size_t>(c * char_width + k)] =
            static_cast<TokenId>(1 + rng.uniform() * (char_vocab - 1));
  }
  return batch;
}

template <class Model, bool WithLm>
typename Model::Targets random_targets(const Batch& batch, Rng& rng) {
  typename Model::Targets targets;
  std::vector<std::int32_t> intent(static_cast<std::size_t>(batch.batch_size));
  for (auto& y : intent) y = static_cast<std::int32_t>(rng.uniform() * intents);
  std::vector<std::vector<std::int32_t>> slots(static_cast<std::size_t>(batch.batch_size));
  for (auto& s : slots) {
    s.resize(static_cast<std::size_t>(batch.max_length));
    for (auto& y : s) y = static_cast<std::int32_t>(rng.uniform() * slot_tags);
  }
  targets.template set<"intent">(intent);
  targets.template set<"slots">(slots);
  if constexpr (WithLm) targets.template set<"lm">({});
  return targets;
}

template <class Model>
void train_steps(benchmark::State& state, Model& model, const Batch& batch,
                 const typename Model::Targets& targets) {
  Adam<float, Cuda> optimizer;
  auto step = [&] {
    zero_gradients(model);
    benchmark::DoNotOptimize(model.forward_backward(batch, targets).total);
    optimizer.step(model);
    cuda::synchronize();
  };
  step();  // first step: allocations, cuBLAS heuristics
  const auto allocations = cuda::MemoryPool::get().stats().device_allocations;
  for (auto _ : state) step();
  const double tokens = static_cast<double>(batch.batch_size * batch.max_length);
  state.counters["tokens_per_second"] =
      benchmark::Counter(tokens * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["device_allocations_in_loop"] =
      static_cast<double>(cuda::MemoryPool::get().stats().device_allocations - allocations);
  state.counters["MiB_reserved"] =
      static_cast<double>(cuda::MemoryPool::get().stats().bytes_reserved) / (1 << 20);
}

void BM_Demo_Train_Cuda(benchmark::State& state) {
  const Index batch_size = state.range(0), length = 24;
  DemoModel<Cuda> model(
      Sequential<WordCharEmbedding<Dynamic, 100, Dynamic, 30, 50, 3, float, Cuda>, Dropout<float, Cuda>,
                 BiLstm<150, 128, float, Cuda>, Dropout<float, Cuda>>(
          WordCharEmbedding<Dynamic, 100, Dynamic, 30, 50, 3, float, Cuda>(vocab, char_vocab),
          Dropout<float, Cuda>(0.3), BiLstm<150, 128, float, Cuda>(), Dropout<float, Cuda>(0.3)),
      SequenceClassifier<256, Dynamic, PoolingKind::max, 0, float, Cuda>(intents),
      TokenTagger<256, Dynamic, float, Cuda>(slot_tags),
      LanguageModelHead<256, Dynamic, LmDirection::both_directions, false, float, Cuda>(vocab));
  Rng rng(1);
  model.initialize(rng);
  const Batch batch = random_batch(batch_size, length, true, rng);
  const auto targets = random_targets<DemoModel<Cuda>, true>(batch, rng);
  train_steps(state, model, batch, targets);
}

void BM_Transformer_Train_Cuda(benchmark::State& state) {
  const Index batch_size = 64, length = max_length;
  TransformerModel<Cuda> model{
      Sequential<Embedding<Dynamic, d_model, float, Cuda>, LearnedPositions<d_model, max_length, float, Cuda>,
                 Block<Cuda>, Block<Cuda>, Block<Cuda>, Block<Cuda>, Block<Cuda>, Block<Cuda>>{
          Embedding<Dynamic, d_model, float, Cuda>{vocab}},
      SequenceClassifier<d_model, Dynamic, PoolingKind::mean, 0, float, Cuda>{intents},
      TokenTagger<d_model, Dynamic, float, Cuda>{slot_tags}};
  Rng rng(1);
  model.initialize(rng);
  const Batch batch = random_batch(batch_size, length, false, rng);
  const auto targets = random_targets<TransformerModel<Cuda>, false>(batch, rng);
  if (state.range(0) == 1) cuda::set_math_mode(cuda::MathMode::tf32);
  train_steps(state, model, batch, targets);
  cuda::set_math_mode(cuda::MathMode::fp32);
}

}  // namespace

BENCHMARK(BM_Demo_Train_Cuda)->Arg(16)->Arg(64)->ArgName("batch")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Transformer_Train_Cuda)->Arg(0)->Arg(1)->ArgName("tf32")->UseRealTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  if (cuda::device_count() == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
