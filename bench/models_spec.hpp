// @brief The two reference models of the model benchmarks (bench/models.cpp), their data,
// their analytic FLOP counts and the counters every figure reports, shared by the mtlm side and
// the libtorch peer so that both measure exactly the same work in the same way. Neither mtlm
// nor torch is included here.
//
// Model J, joint BiLSTM: vocabulary 1000, embedding 64, one bidirectional LSTM of 64 units per
//   direction (128 out); intent = max-pool over time -> Linear(128, 26); slots = Linear(128, 130)
//   per token; loss = CE(intent) + CE(slots); Adam lr 1e-3. Batch 32, length 24.
// Model T, small Transformer: vocabulary 1000, d_model 128, learned positions up to 64, two
//   post-LN encoder layers (4 heads, feed-forward 512, ReLU, dropout 0); intent = mean-pool ->
//   Linear(128, 26); slots = Linear(128, 130) per token; next-token LM head tied to the embedding
//   (own bias); loss = CE(intent) + CE(slots) + CE(lm); Adam lr 1e-3. Batch 32, length 32.
// Every sequence is full length (no padding), for both implementations: the figures measure
// the arithmetic, not how each library skips padding. Latency: one 16-token sentence.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <vector>

namespace bench_models {

inline constexpr std::int64_t vocab = 1000, intents = 26, slot_tags = 130;
inline constexpr std::int64_t latency_length = 16;
inline constexpr std::int64_t seed = 20240611;
/// Training steps run before the timed loop, by both implementations. The first steps of a
/// fresh Model T are 2-5x slower than the steady state: the tied LM head starts with N(0, 1)
/// embeddings, so its logits spread widely and the softmax produces denormal probabilities
/// and gradients, which the CPU multiplies slowly. The figures measure the steady state.
inline constexpr int warmup_train_steps = 8;

namespace j {
inline constexpr std::int64_t embedding = 64, hidden = 64, features = 2 * hidden;
inline constexpr std::int64_t batch = 32, length = 24;
}  // namespace j

namespace t {
inline constexpr std::int64_t dim = 128, heads = 4, feed_forward = 512, layers = 2, max_length = 64;
inline constexpr std::int64_t batch = 32, length = 32;
}  // namespace t

// ---- analytic FLOPs ---------------------------------------------------------------------------
// Only matrix products count, 2 FLOPs per multiply-add; element-wise work (gates, softmax, layer
// norm, losses, Adam) is not counted. Every product of a forward pass has two products of the
// same size in training (the input gradient and the weight gradient), so a training step is
// 3x the forward count. The first LSTM step multiplies by h_{-1} = 0 and is not counted; the
// embedding lookups are gathers (no FLOPs). Per token of a batch of `length`-token sequences:
//
// J forward = 2 dirs x [2*4H*E (input projection) + 2*4H*H*(L-1)/L (recurrence)]
//             + 2*2H*130 (slots) + 2*2H*26/L (intent, once per sequence)
//           = 161,899 FLOP at L = 24 (training 485,696)
// T forward = layers x [2*D*3D (QKV) + 2*2*L*D (scores, context) + 2*D*D (out) + 2*2*D*FF (FF)]
//             + 2*D*130 + 2*D*1000 (tied LM) + 2*D*26/L
//           = 1,108,688 FLOP at L = 32 (training 3,326,064)

constexpr double j_forward_flops_per_token(std::int64_t length) {
  const double L = static_cast<double>(length), E = j::embedding, H = j::hidden;
  const double per_direction = 2 * 4 * H * E + 2 * 4 * H * H * (L - 1) / L;
  return 2 * per_direction + 2 * (2 * H) * slot_tags + 2 * (2 * H) * intents / L;
}

constexpr double t_forward_flops_per_token(std::int64_t length) {
  const double L = static_cast<double>(length), D = t::dim, FF = t::feed_forward;
  const double per_layer = 2 * D * 3 * D + 2 * 2 * L * D + 2 * D * D + 2 * 2 * D * FF;
  return t::layers * per_layer + 2 * D * slot_tags + 2 * D * vocab + 2 * D * intents / L;
}

constexpr double train_flops_per_token(double forward) { return 3 * forward; }

// ---- data -------------------------------------------------------------------------------------
// splitmix64, so the ids are the same on every standard library.
class IdStream {
 public:
  explicit IdStream(std::uint64_t seed_value) : state_(seed_value) {}
  std::int32_t next(std::int64_t bound) {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return static_cast<std::int32_t>(z % static_cast<std::uint64_t>(bound));
  }

 private:
  std::uint64_t state_;
};

/// One batch: token ids, intent labels and slot tags, sequence-major (b * length + t).
struct Data {
  std::int64_t batch = 0, length = 0;
  std::vector<std::int32_t> tokens, intent, slots;
};

inline Data make_data(std::int64_t batch, std::int64_t length, std::uint64_t seed_value = seed) {
  IdStream ids(seed_value + static_cast<std::uint64_t>(batch * 1000 + length));
  Data d{batch, length, {}, {}, {}};
  for (std::int64_t i = 0; i < batch * length; ++i) d.tokens.push_back(ids.next(vocab));
  for (std::int64_t b = 0; b < batch; ++b) d.intent.push_back(ids.next(intents));
  for (std::int64_t i = 0; i < batch * length; ++i) d.slots.push_back(ids.next(slot_tags));
  return d;
}

// ---- counters ---------------------------------------------------------------------------------
// Rates are per second of wall time: with 2 threads, Google Benchmark's own rate counters divide
// by the main thread's CPU time, and UseRealTime() would rename every figure ".../real_time".

/// Runs the benchmark loop; returns its wall-clock seconds.
template <class Body>
double timed_loop(benchmark::State& state, Body&& body) {
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) body();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// tokens_per_second and gflops (analytic FLOPs per token x tokens per second).
inline void set_throughput(benchmark::State& state, double seconds, double tokens_per_iteration,
                           double flops_per_token) {
  if (state.iterations() == 0 || seconds <= 0) return;
  const double tokens_per_second = tokens_per_iteration * static_cast<double>(state.iterations()) / seconds;
  state.counters["tokens_per_second"] = tokens_per_second;
  state.counters["gflops"] = tokens_per_second * flops_per_token * 1e-9;
  state.counters["flops_per_token"] = flops_per_token;
}

/// latency_us: wall-clock microseconds per iteration.
inline void set_latency(benchmark::State& state, double seconds) {
  if (state.iterations() == 0) return;
  state.counters["latency_us"] = seconds * 1e6 / static_cast<double>(state.iterations());
}

}  // namespace bench_models
