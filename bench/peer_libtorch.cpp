// @brief The libtorch peer of bench/models.cpp: Models J and T of models_spec.hpp in libtorch's
// C++ API with its stock modules (nn::LSTM, nn::TransformerEncoder), as a libtorch user would
// write them, at their best: Adam, InferenceMode (which implies NoGradGuard) + eval() for
// inference, intra-op threads and BLAS threads equal to mtlm's.
//
// Layouts: J is batch-first (B, T, 64) through a bidirectional nn::LSTM; every sequence has the
// full length, so no pack_padded_sequence is needed (nor used by mtlm's figures: no padding).
// T is (T, B, D) because libtorch 1.13's C++ TransformerEncoderLayer has no batch_first; it is
// post-LN (the only placement its C++ API offers), ReLU, dropout 0. The LM head is
// F::linear(h, embedding.weight, bias): tied to the token embedding, with its own bias.
#include "peer_libtorch.hpp"

#include "models_spec.hpp"

#include <torch/torch.h>

#include <dlfcn.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace bench_peer {
namespace {

namespace spec = bench_models;
namespace nn = torch::nn;
namespace F = torch::nn::functional;

// ---- Model J ----------------------------------------------------------------------------------
struct JNetImpl : nn::Module {
  nn::Embedding embedding{nullptr};
  nn::LSTM lstm{nullptr};
  nn::Linear intent{nullptr}, slots{nullptr};

  JNetImpl()
      : embedding(register_module("embedding", nn::Embedding(spec::vocab, spec::j::embedding))),
        lstm(register_module("lstm", nn::LSTM(nn::LSTMOptions(spec::j::embedding, spec::j::hidden)
                                                  .bidirectional(true)
                                                  .batch_first(true)))),
        intent(register_module("intent", nn::Linear(spec::j::features, spec::intents))),
        slots(register_module("slots", nn::Linear(spec::j::features, spec::slot_tags))) {}

  /// tokens (B, T) -> intent logits (B, 26), slot logits (B, T, 130).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& tokens) {
    const auto h = std::get<0>(lstm->forward(embedding->forward(tokens)));  // (B, T, 128)
    return {intent->forward(std::get<0>(h.max(1))), slots->forward(h)};
  }
};
TORCH_MODULE(JNet);

// ---- Model T ----------------------------------------------------------------------------------
struct TNetImpl : nn::Module {
  nn::Embedding tokens_embedding{nullptr}, positions{nullptr};
  nn::TransformerEncoder encoder{nullptr};
  nn::Linear intent{nullptr}, slots{nullptr};
  torch::Tensor lm_bias;

  TNetImpl()
      : tokens_embedding(register_module("tokens", nn::Embedding(spec::vocab, spec::t::dim))),
        positions(register_module("positions", nn::Embedding(spec::t::max_length, spec::t::dim))),
        encoder(register_module(
            "encoder",
            nn::TransformerEncoder(nn::TransformerEncoderOptions(
                nn::TransformerEncoderLayer(nn::TransformerEncoderLayerOptions(spec::t::dim, spec::t::heads)
                                                .dim_feedforward(spec::t::feed_forward)
                                                .dropout(0.0)
                                                .activation(torch::kReLU)),
                spec::t::layers)))),
        intent(register_module("intent", nn::Linear(spec::t::dim, spec::intents))),
        slots(register_module("slots", nn::Linear(spec::t::dim, spec::slot_tags))),
        lm_bias(register_parameter("lm_bias", torch::zeros({spec::vocab}))) {}

  struct Out {
    torch::Tensor intent, slots, lm;  ///< (B, 26), (T, B, 130), (T, B, V)
  };

  /// tokens (B, T) -> logits of every head.
  Out forward(const torch::Tensor& tokens) {
    const auto length = tokens.size(1);
    const auto x = tokens_embedding->forward(tokens.t()) +                          // (T, B, D)
                   positions->weight.slice(0, 0, length).unsqueeze(1);             // (T, 1, D)
    const auto h = encoder->forward(x);                                             // (T, B, D)
    return {intent->forward(h.mean(0)), slots->forward(h),
            F::linear(h, tokens_embedding->weight, lm_bias)};
  }
};
TORCH_MODULE(TNet);

// ---- data -------------------------------------------------------------------------------------
struct Tensors {
  torch::Tensor tokens, intent, slots;  ///< (B, T), (B), (B, T): int64 as libtorch's losses want
};

Tensors make_tensors(std::int64_t batch, std::int64_t length) {
  const auto d = spec::make_data(batch, length);
  auto as_tensor = [](const std::vector<std::int32_t>& v, std::vector<std::int64_t> shape) {
    return torch::tensor(std::vector<std::int64_t>(v.begin(), v.end()), torch::kInt64).reshape(shape);
  };
  return {as_tensor(d.tokens, {batch, length}), as_tensor(d.intent, {batch}),
          as_tensor(d.slots, {batch, length})};
}

torch::Tensor j_loss(JNet& net, const Tensors& d) {
  const auto [intent, slots] = net->forward(d.tokens);
  return F::cross_entropy(intent, d.intent) +
         F::cross_entropy(slots.reshape({-1, spec::slot_tags}), d.slots.reshape({-1}));
}

torch::Tensor t_loss(TNet& net, const Tensors& d, const torch::Tensor& slots_tb,
                     const torch::Tensor& next_tokens) {
  const auto out = net->forward(d.tokens);
  const auto length = d.tokens.size(1);
  return F::cross_entropy(out.intent, d.intent) +
         F::cross_entropy(out.slots.reshape({-1, spec::slot_tags}), slots_tb) +
         F::cross_entropy(out.lm.slice(0, 0, length - 1).reshape({-1, spec::vocab}), next_tokens);
}

template <class Net, class Loss>
void train(benchmark::State& state, Net net, Loss loss_of, double tokens, double flops_per_token) {
  net->train();
  // Subnormals flushed, as mtlm's side does, on this thread and on every thread of ATen's pool
  // (one chunk each), where its products run; restored after.
  const auto set_flush = [](bool on) {
    at::globalContext().setFlushDenormal(on);
    at::parallel_for(0, at::get_num_threads(), 1,
                     [on](std::int64_t, std::int64_t) { at::globalContext().setFlushDenormal(on); });
  };
  set_flush(true);
  torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(1e-3));
  auto step = [&] {
    adam.zero_grad();
    auto loss = loss_of(net);
    loss.backward();
    adam.step();
    return loss.template item<float>();
  };
  for (int i = 0; i < spec::warmup_train_steps; ++i) step();
  float loss = 0;
  const double seconds = spec::timed_loop(state, [&] { loss = step(); });
  benchmark::DoNotOptimize(loss);
  set_flush(false);
  spec::set_throughput(state, seconds, tokens, flops_per_token);
}

template <class Net>
void infer(benchmark::State& state, Net net, const torch::Tensor& tokens, double flops_per_token,
           bool latency) {
  net->eval();
  c10::InferenceMode guard;
  benchmark::DoNotOptimize(net->forward(tokens));
  const double seconds = spec::timed_loop(state, [&] {
    auto out = net->forward(tokens);
    benchmark::DoNotOptimize(out);
  });
  if (latency)
    spec::set_latency(state, seconds);
  else
    spec::set_throughput(state, seconds, static_cast<double>(tokens.numel()), flops_per_token);
}

/// Every BLAS/LAPACK/oneDNN library file mapped into this process.
std::string loaded_blas() {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> found;
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = path.substr(path.rfind('/') + 1);
    if (file.find("cublas") != std::string::npos) continue;  // a CUDA build's GPU BLAS
    for (const char* key : {"blas", "mkl", "lapack", "blis"})
      if (file.find(key) != std::string::npos) found.insert(path);
  }
  std::string out;
  for (const auto& p : found) out += (out.empty() ? "" : " ") + p;
  // PyPI's wheels link MKL statically: at::get_parallel_info() then names it.
  return out.empty() ? "no BLAS library mapped (statically linked; see libtorch_parallel)" : out;
}

}  // namespace

Info setup(int threads) {
  torch::manual_seed(spec::seed);
  at::set_num_threads(threads);
  Info info;
  // libtorch sets OpenMP's thread count; OpenBLAS (pthread or OpenMP build) keeps its own.
  if (auto set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    set(threads);
  info.blas = loaded_blas();
  if (auto config = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_config")))
    info.blas += " [" + std::string(config());
  if (auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads")))
    info.blas += ", " + std::to_string(get()) + " thread(s)";
  if (auto parallel = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"))) {
    const int p = parallel();
    info.blas += p == 0 ? ", sequential]" : p == 1 ? ", pthreads]" : ", OpenMP]";
  } else if (info.blas.find('[') != std::string::npos) {
    info.blas += "]";
  }
  std::istringstream parallel_info(at::get_parallel_info());
  for (std::string line; std::getline(parallel_info, line);)
    if (!line.empty() && line.find("----") == std::string::npos)
      info.parallel += (info.parallel.empty() ? "" : "; ") + line;
  info.threads = at::get_num_threads();
  info.version = TORCH_VERSION;
  return info;
}

void j_train(benchmark::State& state) {
  torch::manual_seed(spec::seed);
  const auto d = make_tensors(spec::j::batch, spec::j::length);
  train(state, JNet(), [&](JNet& net) { return j_loss(net, d); },
        static_cast<double>(d.tokens.numel()),
        spec::train_flops_per_token(spec::j_forward_flops_per_token(spec::j::length)));
}

void j_latency(benchmark::State& state) {
  torch::manual_seed(spec::seed);
  infer(state, JNet(), make_tensors(1, spec::latency_length).tokens, 0, true);
}

void j_infer(benchmark::State& state) {
  torch::manual_seed(spec::seed);
  infer(state, JNet(), make_tensors(spec::j::batch, spec::j::length).tokens,
        spec::j_forward_flops_per_token(spec::j::length), false);
}

void t_train(benchmark::State& state) {
  torch::manual_seed(spec::seed);
  const auto d = make_tensors(spec::t::batch, spec::t::length);
  // Targets in the (T, B) order of the logits; the LM target of position t is token t + 1.
  const auto slots_tb = d.slots.t().contiguous().reshape({-1});
  const auto next_tokens = d.tokens.t().slice(0, 1).contiguous().reshape({-1});
  train(state, TNet(), [&](TNet& net) { return t_loss(net, d, slots_tb, next_tokens); },
        static_cast<double>(d.tokens.numel()),
        spec::train_flops_per_token(spec::t_forward_flops_per_token(spec::t::length)));
}

void t_latency(benchmark::State& state) {
  torch::manual_seed(spec::seed);
  infer(state, TNet(), make_tensors(1, spec::latency_length).tokens, 0, true);
}

void t_infer(benchmark::State& state) {
  torch::manual_seed(spec::seed);
  infer(state, TNet(), make_tensors(spec::t::batch, spec::t::length).tokens,
        spec::t_forward_flops_per_token(spec::t::length), false);
}

}  // namespace bench_peer
