// @brief The model benchmarks: the reference Models J (joint BiLSTM) and T (small Transformer) of
// models_spec.hpp, built with mtlm, next to the same models in libtorch (peer_libtorch.cpp, when
// CMake found libtorch), in one binary so every ratio comes from one run.
//
// Figures, per model: BM_<M>_Train (forward + backward + Adam step, tokens_per_second and the
// achieved gflops from the analytic FLOP count), BM_<M>_Latency (one 16-token sentence at batch
// 1 in eval mode, latency_us), BM_<M>_Infer (batch 32 in eval mode, tokens_per_second); each as
// /mtlm and /libtorch. BM_Gemm_Ceiling/<M> replays every matrix product of one training step
// of model M at its real shape and transposition through mtlm's CPU GEMM (its register-tiled
// kernels, Eigen's for the small transposed products they leave), with nothing else: its gflops
// is the ceiling the training figure is compared with (achieved / ceiling).
// Inference runs every head, as a deployed multi-task model answers every task at once.
//
// Threads: --threads=N (or MTLM_BENCH_THREADS=N), default 1, for mtlm (Eigen) and libtorch
// alike. Counters are per second of wall-clock time (models_spec.hpp), so they count every
// thread's work; the CPU column of the report is the main thread's alone.
// bench/compare.sh runs this binary and prints the ratios against the targets.
#include <benchmark/benchmark.h>

#include <mtlm/mtlm.hpp>

#include "models_spec.hpp"
#ifdef MTLM_BENCH_WITH_LIBTORCH
#include "peer_libtorch.hpp"
#else
namespace bench_peer {  // built without libtorch: no peer figures
constexpr void (*j_train)(benchmark::State&) = nullptr;
constexpr void (*j_latency)(benchmark::State&) = nullptr;
constexpr void (*j_infer)(benchmark::State&) = nullptr;
constexpr void (*t_train)(benchmark::State&) = nullptr;
constexpr void (*t_latency)(benchmark::State&) = nullptr;
constexpr void (*t_infer)(benchmark::State&) = nullptr;
}  // namespace bench_peer
#endif

#include <malloc.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace spec = bench_models;
using mtlm::Dynamic;
using mtlm::Index;

// ---- Model J ----------------------------------------------------------------------------------
using JEmbedding = mtlm::Embedding<Dynamic, spec::j::embedding>;
using JTrunk = mtlm::Sequential<JEmbedding, mtlm::BiLstm<spec::j::embedding, spec::j::hidden>>;
using JIntent = mtlm::SequenceClassifier<spec::j::features, Dynamic, mtlm::PoolingKind::max>;
using JSlots = mtlm::TokenTagger<spec::j::features, Dynamic>;
using JModel = mtlm::MultiTask<JTrunk, mtlm::Task<"intent", JIntent>, mtlm::Task<"slots", JSlots>>;

JModel make_j() {
  return JModel{JTrunk(JEmbedding(spec::vocab)), JIntent(spec::intents), JSlots(spec::slot_tags)};
}

// ---- Model T ----------------------------------------------------------------------------------
constexpr Index t_dim = spec::t::dim;
using TEmbedding = mtlm::Embedding<Dynamic, t_dim>;
using TBlock = mtlm::TransformerEncoderBlock<t_dim, spec::t::heads, spec::t::feed_forward,
                                             mtlm::NormPlacement::post, mtlm::Activation::relu>;
using TTrunk = mtlm::Sequential<TEmbedding, mtlm::LearnedPositions<t_dim, spec::t::max_length>, TBlock,
                                TBlock>;
using TIntent = mtlm::SequenceClassifier<t_dim, Dynamic, mtlm::PoolingKind::mean>;
using TSlots = mtlm::TokenTagger<t_dim, Dynamic>;
using TLm = mtlm::LanguageModelHead<t_dim, Dynamic, mtlm::LmDirection::next_token, /*Tied=*/true>;
using TModel = mtlm::MultiTask<TTrunk, mtlm::Task<"intent", TIntent>, mtlm::Task<"slots", TSlots>,
                               mtlm::Task<"lm", TLm>>;
static_assert(TTrunk::output_dim == t_dim);

TModel make_t() {
  return TModel{TTrunk(TEmbedding(spec::vocab)), TIntent(spec::intents), TSlots(spec::slot_tags),
                TLm(spec::vocab)};
}

// ---- data -------------------------------------------------------------------------------------
mtlm::Batch make_batch(const spec::Data& d) {
  mtlm::Batch batch = mtlm::Batch::dense(d.batch, d.length);
  batch.tokens.assign(d.tokens.begin(), d.tokens.end());
  batch.validate();
  return batch;
}

template <class Model>
typename Model::Targets make_targets(const spec::Data& d) {
  typename Model::Targets targets;
  targets.template set<"intent">(d.intent);
  std::vector<std::vector<std::int32_t>> tags(static_cast<std::size_t>(d.batch));
  for (std::int64_t b = 0; b < d.batch; ++b)
    tags[static_cast<std::size_t>(b)].assign(d.slots.begin() + b * d.length,
                                             d.slots.begin() + (b + 1) * d.length);
  targets.template set<"slots">(std::move(tags));
  if constexpr (Model::task_count == 3) targets.template set<"lm">({});
  return targets;
}

// ---- mtlm benchmarks --------------------------------------------------------------------------
template <class Model>
void mtlm_train(benchmark::State& state, Model model, std::int64_t batch_size, std::int64_t length,
                double flops_per_token) {
  // As mtlm::Trainer does: a fixed batch trained over and over drives softmax outputs (the LM
  // head's over 1000 words most) into the subnormal range, where a product's multiply-adds cost
  // up to a hundred times more. The peer flushes them too (peer_libtorch.cpp).
  const mtlm::FlushSubnormals flush;
  mtlm::Rng rng(spec::seed);
  model.initialize(rng);
  mtlm::AdamOptions options;
  options.lr = 1e-3;
  mtlm::Adam<> adam(options);
  const auto data = spec::make_data(batch_size, length);
  const auto batch = make_batch(data);
  const auto targets = make_targets<Model>(data);
  auto step = [&] {
    mtlm::zero_gradients(model);
    const double loss = model.forward_backward(batch, targets).total;
    adam.step(model);
    return loss;
  };
  for (int i = 0; i < spec::warmup_train_steps; ++i)
    if (!std::isfinite(step())) {
      state.SkipWithError("non-finite loss");
      break;
    }
  double loss = 0;
  const double seconds = spec::timed_loop(state, [&] { loss = step(); });
  benchmark::DoNotOptimize(loss);
  spec::set_throughput(state, seconds, static_cast<double>(batch.columns()), flops_per_token);
}

template <class Model>
void mtlm_infer(benchmark::State& state, Model model, std::int64_t batch_size, std::int64_t length,
                double flops_per_token, bool latency) {
  mtlm::Rng rng(spec::seed);
  model.initialize(rng);
  const auto batch = make_batch(spec::make_data(batch_size, length));
  model.forward(batch, mtlm::Mode::eval);  // sizes every workspace
  const double seconds = spec::timed_loop(state, [&] {
    model.forward(batch, mtlm::Mode::eval);
    benchmark::DoNotOptimize(model.template head<"slots">().logits().data());
  });
  if (latency)
    spec::set_latency(state, seconds);
  else
    spec::set_throughput(state, seconds, static_cast<double>(batch.columns()), flops_per_token);
}

void j_train(benchmark::State& s) {
  mtlm_train(s, make_j(), spec::j::batch, spec::j::length,
             spec::train_flops_per_token(spec::j_forward_flops_per_token(spec::j::length)));
}
void j_latency(benchmark::State& s) {
  mtlm_infer(s, make_j(), 1, spec::latency_length, 0, true);
}
void j_infer(benchmark::State& s) {
  mtlm_infer(s, make_j(), spec::j::batch, spec::j::length,
             spec::j_forward_flops_per_token(spec::j::length), false);
}
void t_train(benchmark::State& s) {
  mtlm_train(s, make_t(), spec::t::batch, spec::t::length,
             spec::train_flops_per_token(spec::t_forward_flops_per_token(spec::t::length)));
}
void t_latency(benchmark::State& s) {
  mtlm_infer(s, make_t(), 1, spec::latency_length, 0, true);
}
void t_infer(benchmark::State& s) {
  mtlm_infer(s, make_t(), spec::t::batch, spec::t::length,
             spec::t_forward_flops_per_token(spec::t::length), false);
}

// ---- GEMM ceiling -----------------------------------------------------------------------------
// C (m x n) = op(A) (m x k) * op(B) (k x n), `count` times; the shapes and transpositions of the
// products mtlm's layers issue in one training step (layers/{linear,recurrent,attention}.hpp).
struct Gemm {
  mtlm::Transpose ta, tb;
  Index m, n, k, count;
};
constexpr auto N = mtlm::Transpose::no;
constexpr auto Y = mtlm::Transpose::yes;

/// A linear map y = W x (out x in) over `cols` columns: forward, weight gradient, input gradient.
void add_linear(std::vector<Gemm>& g, Index out, Index in, Index cols, Index count = 1,
                bool input_gradient = true) {
  g.push_back({N, N, out, cols, in, count});  // y = W x
  g.push_back({N, Y, out, in, cols, count});  // dW = dy x^T
  if (input_gradient) g.push_back({Y, N, in, cols, out, count});  // dx = W^T dy
}

std::vector<Gemm> j_training_gemms() {
  const Index B = spec::j::batch, L = spec::j::length, n = B * L, H = spec::j::hidden;
  const Index E = spec::j::embedding, gates = 4 * H;
  std::vector<Gemm> g;
  for (int direction = 0; direction < 2; ++direction) {
    add_linear(g, gates, E, n);                   // input projection over all steps
    g.push_back({N, N, gates, B, H, L - 1});      // W_hh h_{t-1}, steps 1..L-1
    g.push_back({Y, N, H, B, gates, L - 1});      // dh_{t-1} += W_hh^T dgates_t
    g.push_back({N, Y, gates, H, n - B, 1});      // dW_hh, one GEMM over steps 1..L-1
  }
  add_linear(g, spec::slot_tags, 2 * H, n);
  add_linear(g, spec::intents, 2 * H, B);
  return g;
}

std::vector<Gemm> t_training_gemms() {
  const Index B = spec::t::batch, L = spec::t::length, n = B * L, D = t_dim, FF = spec::t::feed_forward;
  const Index heads = spec::t::heads, hd = D / heads, pairs = B * heads;
  std::vector<Gemm> g;
  for (Index layer = 0; layer < spec::t::layers; ++layer) {
    add_linear(g, 3 * D, D, n);              // packed Q, K, V projection
    g.push_back({Y, N, L, L, hd, pairs});    // scores = k^T q
    g.push_back({N, N, hd, L, L, pairs});    // context = v P
    g.push_back({N, Y, hd, L, L, pairs});    // dv = d_out P^T
    g.push_back({Y, N, L, L, hd, pairs});    // dP = v^T d_out
    g.push_back({N, N, hd, L, L, pairs});    // dq = k dS
    g.push_back({N, Y, hd, L, L, pairs});    // dk = q dS^T
    add_linear(g, D, D, n);                  // output projection
    add_linear(g, FF, D, n);
    add_linear(g, D, FF, n);
  }
  add_linear(g, spec::slot_tags, D, n);
  add_linear(g, spec::intents, D, B);
  // Tied LM head: logits = E^T h with the embedding table E (D x V).
  g.push_back({Y, N, spec::vocab, n, D, 1});
  g.push_back({N, Y, D, spec::vocab, n, 1});
  g.push_back({N, N, D, n, spec::vocab, 1});
  return g;
}

double gemm_flops(const std::vector<Gemm>& g) {
  double f = 0;
  for (const auto& c : g) f += 2.0 * static_cast<double>(c.m * c.n * c.k * c.count);
  return f;
}

void gemm_ceiling(benchmark::State& state, const std::vector<Gemm>& calls, double tokens) {
  using M = mtlm::Matrix<float, mtlm::Cpu>;
  std::vector<M> a, b, c;
  mtlm::Rng rng(spec::seed);
  auto random = [&](Index rows, Index cols) {
    M m(rows, cols);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.normal());
    return m;
  };
  for (const auto& g : calls) {
    a.push_back(g.ta == N ? random(g.m, g.k) : random(g.k, g.m));
    b.push_back(g.tb == N ? random(g.k, g.n) : random(g.n, g.k));
    c.push_back(random(g.m, g.n));
  }
  auto replay = [&] {
    for (std::size_t i = 0; i < calls.size(); ++i)
      for (Index r = 0; r < calls[i].count; ++r)
        mtlm::Cpu::gemm(calls[i].ta, calls[i].tb, 1.0f, a[i].view(), b[i].view(), 0.0f, c[i].view());
  };
  replay();
  const double seconds = spec::timed_loop(state, [&] {
    replay();
    benchmark::ClobberMemory();
  });
  spec::set_throughput(state, seconds, tokens, gemm_flops(calls) / tokens);
}

/// The replayed products must be exactly the analytic count the training figures use.
void check_flop_counts() {
  const double j_tokens = spec::j::batch * spec::j::length, t_tokens = spec::t::batch * spec::t::length;
  const double j = gemm_flops(j_training_gemms()) / j_tokens;
  const double t = gemm_flops(t_training_gemms()) / t_tokens;
  const double j_expected = spec::train_flops_per_token(spec::j_forward_flops_per_token(spec::j::length));
  const double t_expected = spec::train_flops_per_token(spec::t_forward_flops_per_token(spec::t::length));
  if (std::abs(j - j_expected) > 1e-6 * j_expected || std::abs(t - t_expected) > 1e-6 * t_expected)
    throw std::logic_error("models.cpp: GEMM replay and analytic FLOP count disagree: J " +
                           std::to_string(j) + " vs " + std::to_string(j_expected) + ", T " +
                           std::to_string(t) + " vs " + std::to_string(t_expected));
}

int parse_threads(int& argc, char** argv) {
  int threads = 1;
  if (const char* env = std::getenv("MTLM_BENCH_THREADS")) threads = std::atoi(env);
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0)
      threads = std::atoi(argv[i] + 10);
    else
      argv[out++] = argv[i];
  }
  argc = out;
  if (threads < 1) throw std::invalid_argument("models.cpp: --threads must be >= 1");
  return threads;
}

using BenchmarkFn = void (*)(benchmark::State&);

struct Figure {
  const char* name;
  BenchmarkFn mtlm, peer;  ///< peer: nullptr when built without libtorch
};

void add(const std::string& name, BenchmarkFn fn) {
  benchmark::RegisterBenchmark(name.c_str(), fn)->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  // Keep glibc from returning and re-mapping large blocks every step: libtorch allocates its
  // tensors per call and gains markedly; mtlm reuses its workspaces and is indifferent. Set for
  // the whole process so both sides run under the same allocator (compare.sh also sets the
  // equivalent MALLOC_*_ environment variables, which take effect before any allocation).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);

  const int threads = parse_threads(argc, argv);
  mtlm::Cpu::set_threads(threads);
  check_flop_counts();

  benchmark::AddCustomContext("mtlm_threads", std::to_string(mtlm::Cpu::threads()));
  benchmark::AddCustomContext("requested_threads", std::to_string(threads));
  benchmark::AddCustomContext(
      "flops_per_token_train",
      "J " + std::to_string(spec::train_flops_per_token(spec::j_forward_flops_per_token(spec::j::length))) +
          ", T " + std::to_string(spec::train_flops_per_token(spec::t_forward_flops_per_token(spec::t::length))));
#ifdef MTLM_BENCH_WITH_LIBTORCH
  const bench_peer::Info peer = bench_peer::setup(threads);
  benchmark::AddCustomContext("libtorch", peer.version);
  benchmark::AddCustomContext("libtorch_threads", std::to_string(peer.threads));
  benchmark::AddCustomContext("libtorch_blas", peer.blas);
  benchmark::AddCustomContext("libtorch_parallel", peer.parallel);
  std::cerr << "libtorch " << peer.version << ": " << peer.threads << " thread(s), BLAS loaded: "
            << peer.blas << "\n  " << peer.parallel << "\n";
#else
  benchmark::AddCustomContext("libtorch", "not built (libtorch not found by CMake)");
#endif

  // mtlm and its peer alternate figure by figure, so a change of machine load hits both.
  const Figure figures[] = {
      {"BM_J_Train", j_train, bench_peer::j_train},
      {"BM_J_Latency", j_latency, bench_peer::j_latency},
      {"BM_J_Infer", j_infer, bench_peer::j_infer},
      {"BM_T_Train", t_train, bench_peer::t_train},
      {"BM_T_Latency", t_latency, bench_peer::t_latency},
      {"BM_T_Infer", t_infer, bench_peer::t_infer},
  };
  for (const auto& f : figures) {
    add(std::string(f.name) + "/mtlm", f.mtlm);
    if (f.peer) add(std::string(f.name) + "/libtorch", f.peer);
  }
  const auto j_gemms = j_training_gemms();
  const auto t_gemms = t_training_gemms();
  benchmark::RegisterBenchmark("BM_Gemm_Ceiling/J", gemm_ceiling, j_gemms,
                               static_cast<double>(spec::j::batch * spec::j::length))
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_Gemm_Ceiling/T", gemm_ceiling, t_gemms,
                               static_cast<double>(spec::t::batch * spec::t::length))
      ->Unit(benchmark::kMicrosecond);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
