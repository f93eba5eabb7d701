// Every layer, loss and optimizer of the CUDA policy against the CPU one: same weights (both
// initialised from one seed), same inputs, outputs and gradients within float tolerance, on a
// padded batch so the handling of lengths is compared too.
#include "cuda_compare.hpp"

#include <mtlm/testing/gradient_check.hpp>

#include <string>
#include <vector>

using namespace mtlm;
using cuda_test::check_close;
using cuda_test::check_params_close;
using cuda_test::Tolerance;

namespace {

constexpr Index vocab = 20, char_vocab = 13, char_width = 6;

/// Four sequences of lengths 5, 2, 4 and 1 padded to 5, with character ids for every word.
Batch padded_batch() {
  const std::vector<std::vector<TokenId>> ids{{1, 2, 3, 4, 5}, {6, 7}, {8, 9, 10, 11}, {12}};
  Batch batch = Batch::from_sequences(ids, 0);
  batch.char_width = char_width;
  batch.chars.assign(static_cast<std::size_t>(char_width * batch.columns()), 0);
  for (Index c = 0; c < batch.columns(); ++c) {
    if (!batch.is_real(c)) continue;
    const Index letters = 1 + c % char_width;  // 1 to 6 characters, some below the window width
    for (Index k = 0; k < letters; ++k)
      batch.chars[static_cast<std::size_t>(c * char_width + k)] =
          static_cast<TokenId>(1 + (3 * c + k) % (char_vocab - 1));
  }
  return batch;
}

/// Runs forward (train mode) and backward on both backends and compares y, dx and every
/// parameter gradient. `in_rows` is the input width for layers that read a matrix.
template <class CpuLayer, class GpuLayer>
void compare_layer(CpuLayer cpu, GpuLayer gpu, Index in_rows, Tolerance tol = {}) {
  const Batch batch = padded_batch();
  Rng init_cpu(11), init_gpu(11);
  cpu.initialize(init_cpu);
  gpu.initialize(init_gpu);
  zero_gradients(cpu);
  zero_gradients(gpu);

  Rng data(5);
  const auto x = cuda_test::random_matrix(in_rows, batch.columns(), data);
  const auto x_gpu = cuda_test::to_device(x);
  constexpr bool reads_ids = requires { cpu.forward(batch, Mode::train); };
  const auto& y_cpu = [&]() -> const auto& {
    if constexpr (reads_ids) return cpu.forward(batch, Mode::train);
    else return cpu.forward(x.view(), batch, Mode::train);
  }();
  const auto& y_gpu = [&]() -> const auto& {
    if constexpr (reads_ids) return gpu.forward(batch, Mode::train);
    else return gpu.forward(x_gpu.view(), batch, Mode::train);
  }();
  check_close(y_cpu.view(), y_gpu.view(), "output");

  const auto dy = cuda_test::random_matrix(y_cpu.rows(), y_cpu.cols(), data);
  const auto dy_gpu = cuda_test::to_device(dy);
  if constexpr (reads_ids) {
    cpu.backward(dy.view(), batch);
    gpu.backward(dy_gpu.view(), batch);
  } else {
    const auto& dx_cpu = cpu.backward(dy.view(), batch);
    const auto& dx_gpu = gpu.backward(dy_gpu.view(), batch);
    check_close(dx_cpu.view(), dx_gpu.view(), "input gradient", tol);
  }
  check_params_close(cpu, gpu, false, tol);
}

template <template <class> class L>
void compare(Index in_rows, Tolerance tol = {}) {
  compare_layer(L<Cpu>{}, L<Cuda>{}, in_rows, tol);
}

template <class B> using LinearT = Linear<12, 7, float, B>;
template <class B> using ReluT = Relu<Dynamic, float, B>;
template <class B> using GeluT = Gelu<Dynamic, float, B>;
template <class B> using TanhT = Tanh<Dynamic, float, B>;
template <class B> using SigmoidT = Sigmoid<Dynamic, float, B>;
template <class B> using LayerNormT = LayerNorm<12, float, B>;
template <class B> using RnnT = Rnn<12, 8, float, B>;
template <class B> using BiRnnT = BiRnn<12, 8, float, B>;
template <class B> using GruT = Gru<12, 8, float, B>;
template <class B> using BiGruT = BiGru<12, 8, float, B>;
template <class B> using LstmT = Lstm<12, 8, float, B>;
template <class B> using BiLstmT = BiLstm<12, 8, float, B>;
template <class B> using AttentionT = MultiHeadSelfAttention<12, 3, float, B>;
template <class B> using CausalAttentionT = CausalSelfAttention<12, 3, float, B>;
template <class B> using PostLnT = TransformerEncoderBlock<12, 3, 24, NormPlacement::post, Activation::relu, float, B>;
template <class B> using PreLnT = TransformerEncoderBlock<12, 3, 24, NormPlacement::pre, Activation::gelu, float, B>;
template <class B> using CausalBlockT = CausalTransformerBlock<12, 3, 24, NormPlacement::pre, Activation::gelu, float, B>;
template <class B> using SinusoidalT = SinusoidalPositions<12, float, B>;
template <class B> using LearnedT = LearnedPositions<12, 8, float, B>;
template <class B> using MeanPoolT = MeanPool<12, float, B>;
template <class B> using MaxPoolT = MaxPool<12, float, B>;
template <class B> using FirstPoolT = FirstTokenPool<12, float, B>;
template <class B> using LastPoolT = LastTokenPool<12, float, B>;
template <class B> using EmbeddingT = Embedding<vocab, 12, float, B>;
template <class B> using CharCnnT = CharCnn<char_vocab, 5, 6, 3, float, B>;
template <class B> using WordCharT = WordCharEmbedding<vocab, 4, char_vocab, 5, 6, 3, float, B>;

}  // namespace

TEST_CASE("cuda: Linear and activations match the CPU") {
  compare<LinearT>(12);
  compare<ReluT>(12);
  compare<GeluT>(12);
  compare<TanhT>(12);
  compare<SigmoidT>(12);
}

TEST_CASE("cuda: Dropout draws the same mask as the CPU for the same seed") {
  compare_layer(Dropout<float, Cpu>(0.3, 42), Dropout<float, Cuda>(0.3, 42), 12);
}

TEST_CASE("cuda: LayerNorm matches the CPU") { compare<LayerNormT>(12); }

TEST_CASE("cuda: recurrent layers (RNN, GRU, LSTM; one and both directions) match the CPU") {
  compare<RnnT>(12);
  compare<BiRnnT>(12);
  compare<GruT>(12);
  compare<BiGruT>(12);
  compare<LstmT>(12);
  compare<BiLstmT>(12);
}

TEST_CASE("cuda: self-attention and Transformer blocks match the CPU") {
  compare<AttentionT>(12);
  compare<CausalAttentionT>(12);
  compare<PostLnT>(12);
  compare<PreLnT>(12);
  compare<CausalBlockT>(12);
}

TEST_CASE("cuda: positions and pooling match the CPU") {
  compare<SinusoidalT>(12);
  compare<LearnedT>(12);
  compare<MeanPoolT>(12);
  compare<MaxPoolT>(12);
  compare<FirstPoolT>(12);
  compare<LastPoolT>(12);
}

TEST_CASE("cuda: embeddings and character CNNs match the CPU") {
  compare<EmbeddingT>(0);
  compare<CharCnnT>(0);
  compare<WordCharT>(0);
}

TEST_CASE("cuda: losses match the CPU (ignore index, smoothing, class weights, masks)") {
  Rng data(3);
  const Index classes = 7, columns = 40;
  const auto logits = cuda_test::random_matrix(classes, columns, data);
  const auto logits_gpu = cuda_test::to_device(logits);
  std::vector<std::int32_t> targets(columns);
  for (Index j = 0; j < columns; ++j) targets[static_cast<std::size_t>(j)] = j % 5 == 0 ? -100 : static_cast<std::int32_t>(j % classes);

  std::vector<CrossEntropyOptions> variants(3);
  variants[1].label_smoothing = 0.1;
  variants[2].label_smoothing = 0.2;
  variants[2].class_weights = {1.0, 0.5, 2.0, 1.5, 1.0, 0.25, 3.0};
  for (const auto& options : variants) {
    SoftmaxCrossEntropy<float, Cpu> cpu(options);
    SoftmaxCrossEntropy<float, Cuda> gpu(options);
    const float loss_cpu = cpu.forward(logits.view(), targets);
    const float loss_gpu = gpu.forward(logits_gpu.view(), targets);
    CHECK(loss_gpu == doctest::Approx(loss_cpu).epsilon(1e-5));
    check_close(cpu.backward(0.5f).view(), gpu.backward(0.5f).view(), "cross-entropy gradient");
  }

  std::vector<std::int32_t> best_cpu(columns), best_gpu(columns);
  backend::argmax_columns(Cpu{}, logits.view(), std::span<std::int32_t>(best_cpu));
  backend::argmax_columns(Cuda{}, logits_gpu.view(), std::span<std::int32_t>(best_gpu));
  CHECK(best_cpu == best_gpu);

  Matrix<float, Cpu> labels(classes, columns), mask(classes, columns);
  for (Index i = 0; i < labels.size(); ++i) {
    labels.data()[i] = static_cast<float>(data.uniform() < 0.3);
    mask.data()[i] = static_cast<float>(data.uniform() < 0.8);
  }
  const auto labels_gpu = cuda_test::to_device(labels);
  const auto mask_gpu = cuda_test::to_device(mask);
  BceOptions bce_options;
  bce_options.pos_weight = {1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 1.5};
  BinaryCrossEntropyWithLogits<float, Cpu> bce_cpu(bce_options);
  BinaryCrossEntropyWithLogits<float, Cuda> bce_gpu(bce_options);
  CHECK(bce_gpu.forward(logits_gpu.view(), labels_gpu.view(), mask_gpu.view()) ==
        doctest::Approx(bce_cpu.forward(logits.view(), labels.view(), mask.view())).epsilon(1e-5));
  check_close(bce_cpu.backward().view(), bce_gpu.backward().view(), "BCE gradient");

  MeanSquaredError<float, Cpu> mse_cpu;
  MeanSquaredError<float, Cuda> mse_gpu;
  CHECK(mse_gpu.forward(logits_gpu.view(), labels_gpu.view()) ==
        doctest::Approx(mse_cpu.forward(logits.view(), labels.view())).epsilon(1e-5));
  check_close(mse_cpu.backward().view(), mse_gpu.backward().view(), "MSE gradient");
}

namespace {
/// Three steps of the same optimizer on both backends, from the same weights and gradients.
template <class CpuOptimizer, class GpuOptimizer>
void compare_steps(CpuOptimizer cpu_opt, GpuOptimizer gpu_opt) {
  BiLstmT<Cpu> cpu;
  BiLstmT<Cuda> gpu;
  Rng a(1), b(1);
  cpu.initialize(a);
  gpu.initialize(b);
  const Batch batch = padded_batch();
  Rng data(9);
  const auto x = cuda_test::random_matrix(12, batch.columns(), data);
  const auto x_gpu = cuda_test::to_device(x);
  for (int step = 0; step < 3; ++step) {
    zero_gradients(cpu);
    zero_gradients(gpu);
    const auto& y = cpu.forward(x.view(), batch);
    const auto dy = cuda_test::random_matrix(y.rows(), y.cols(), data);
    gpu.forward(x_gpu.view(), batch);
    cpu.backward(dy.view(), batch);
    gpu.backward(cuda_test::to_device(dy).view(), batch);
    cpu_opt.step(cpu);
    gpu_opt.step(gpu);
  }
  check_params_close(cpu, gpu, true);
}
}  // namespace

TEST_CASE("cuda: optimizers take the same steps as on the CPU") {
  const AdamOptions adam{.lr = 1e-2, .weight_decay = 1e-3};
  compare_steps(Adam<float, Cpu>(adam), Adam<float, Cuda>(adam));
  const AdamWOptions adamw{.lr = 1e-2};
  compare_steps(AdamW<float, Cpu>(adamw), AdamW<float, Cuda>(adamw));
  const SgdOptions sgd{.lr = 0.1, .momentum = 0.9, .nesterov = true};
  compare_steps(Sgd<float, Cpu>(sgd), Sgd<float, Cuda>(sgd));
}

TEST_CASE("cuda: the memory pool serves a repeated step without new device allocations") {
  BiLstmT<Cuda> layer;
  Rng rng(1);
  layer.initialize(rng);
  const Batch batch = padded_batch();
  Rng data(2);
  const auto x = cuda_test::to_device(cuda_test::random_matrix(12, batch.columns(), data));
  const auto dy = cuda_test::to_device(cuda_test::random_matrix(16, batch.columns(), data));
  auto step = [&] {
    layer.forward(x.view(), batch);
    layer.backward(dy.view(), batch);
  };
  step();
  step();
  const auto before = cuda::MemoryPool::get().stats();
  for (int i = 0; i < 10; ++i) step();
  const auto after = cuda::MemoryPool::get().stats();
  CHECK(after.device_allocations == before.device_allocations);
  CHECK(after.bytes_in_use == before.bytes_in_use);
}
