// @brief Training checkpoints: model parameters, optimizer state and the trainer's own state
// (epoch, step, random generator, best metric) in one safetensors file, so a run resumed from
// it follows the same trajectory as one that never stopped.
//
// Layout: "model.<param>" and "optimizer.<state>" tensors, "optimizer.param_steps" (I64), and
// metadata "mtlm.checkpoint" = "1", "epoch", "rng", "best_metric", "best_epoch", "stale_epochs",
// and "rng.model.<name>" for every generator inside the model (dropout, word dropout); with a
// parameter average, also "average.<param>" tensors and metadata "average_updates"; with a kept
// best epoch, its parameters as "best.<param>" and metadata "best_kept" = "1".
#pragma once

#include "mtlm/core/random.hpp"
#include "mtlm/io/safetensors.hpp"
#include "mtlm/optim/parameter_average.hpp"

#include <bit>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace mtlm::train {

struct TrainingState {
  std::int64_t epoch = 0;  ///< epochs completed
  Rng::State rng{};        ///< the trainer's shuffling generator at the start of the next epoch
  double best_metric = 0.0;
  std::int64_t best_epoch = -1;
  std::int64_t stale_epochs = 0;
};

namespace detail {

inline std::string encode_rng(const Rng::State& s) {
  std::ostringstream out;
  out << std::hex;
  for (auto w : s.words) out << w << ' ';
  out << std::bit_cast<std::uint64_t>(s.spare_normal) << ' ' << int(s.has_spare_normal);
  return out.str();
}

inline Rng::State decode_rng(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  in >> std::hex;
  Rng::State s{};
  std::uint64_t spare = 0;
  int has = 0;
  for (auto& w : s.words) in >> w;
  in >> spare >> has;
  if (!in) throw FormatError(source, 0, "checkpoint metadata \"rng\" is malformed");
  s.spare_normal = std::bit_cast<double>(spare);
  s.has_spare_normal = has != 0;
  return s;
}

inline double decode_double(const std::string& text) { return std::bit_cast<double>(std::stoull(text, nullptr, 16)); }
inline std::string encode_double(double x) {
  std::ostringstream out;
  out << std::hex << std::bit_cast<std::uint64_t>(x);
  return out.str();
}

}  // namespace detail

template <HasParams Model, class Optimizer>
void save_checkpoint(const std::filesystem::path& path, Model& model, Optimizer& optimizer,
                     const TrainingState& state,
                     const std::map<std::string, std::string>& metadata = {},
                     ParameterAverage<Model>* average = nullptr, Model* best = nullptr) {
  io::SafetensorsWriter writer;
  io::add_parameters(writer, model, "model.");
  if (best) {
    io::add_parameters(writer, *best, "best.");
    writer.set_metadata("best_kept", "1");
  }
  if (average) {
    io::add_parameters(writer, average->model(), "average.");
    writer.set_metadata("average_updates", std::to_string(average->updates()));
  }
  optimizer.for_each_state([&](std::string_view name, auto& tensor) {
    io::add_matrix(writer, "optimizer." + std::string(name), tensor);
  });
  if constexpr (requires { optimizer.param_steps(); }) {
    const auto steps = optimizer.param_steps();
    writer.add("optimizer.param_steps", {static_cast<std::int64_t>(steps.size())}, steps.data(), steps.size());
  }
  for (const auto& [k, v] : metadata) writer.set_metadata(k, v);
  visit_rngs(model, [&](std::string_view name, Rng& rng) {
    writer.set_metadata("rng.model." + std::string(name), detail::encode_rng(rng.state()));
  });
  writer.set_metadata("mtlm.checkpoint", "1");
  writer.set_metadata("epoch", std::to_string(state.epoch));
  writer.set_metadata("optimizer_steps", std::to_string(optimizer.steps()));
  writer.set_metadata("rng", detail::encode_rng(state.rng));
  writer.set_metadata("best_metric", detail::encode_double(state.best_metric));
  writer.set_metadata("best_epoch", std::to_string(state.best_epoch));
  writer.set_metadata("stale_epochs", std::to_string(state.stale_epochs));
  writer.write(path);
}

/// Restores what save_checkpoint wrote; the model and optimizer must have the same structure.
/// With `average`, the checkpoint must hold a parameter average, which is restored into it.
/// With `best`, the kept best epoch's parameters are restored into it when the checkpoint has
/// them (it is left empty otherwise).
template <HasParams Model, class Optimizer>
TrainingState load_checkpoint(const std::filesystem::path& path, Model& model, Optimizer& optimizer,
                              ParameterAverage<Model>* average = nullptr,
                              std::optional<Model>* best = nullptr) {
  const io::SafetensorsFile file(path);
  const auto& meta = file.metadata();
  auto field = [&](const char* key) -> const std::string& {
    const auto it = meta.find(key);
    if (it == meta.end())
      throw FormatError(file.source(), 0, std::string("not an mtlm checkpoint: no metadata \"") + key + "\"");
    return it->second;
  };
  field("mtlm.checkpoint");
  TrainingState state;
  try {
    state.epoch = std::stoll(field("epoch"));
    state.best_metric = detail::decode_double(field("best_metric"));
    state.best_epoch = std::stoll(field("best_epoch"));
    state.stale_epochs = std::stoll(field("stale_epochs"));
  } catch (const std::logic_error&) {
    throw FormatError(file.source(), 0, "checkpoint metadata holds a malformed number");
  }
  state.rng = detail::decode_rng(field("rng"), file.source());
  const std::int64_t optimizer_steps = std::stoll(field("optimizer_steps"));

  io::read_parameters(file, model, "model.");
  if (average) {
    const auto it = meta.find("average_updates");
    if (it == meta.end())
      throw FormatError(file.source(), 0,
                        "checkpoint has no parameter average (it was written by a run without one)");
    average->model() = model;  // generators and workspaces as the model's; parameters below
    io::read_parameters(file, average->model(), "average.");
    try {
      average->set_updates(std::stoll(it->second));
    } catch (const std::logic_error&) {
      throw FormatError(file.source(), 0, "checkpoint metadata \"average_updates\" is not a number");
    }
  }
  if (best) {
    best->reset();
    // A copy of the model (its generators and workspaces) with the stored parameters.
    if (meta.contains("best_kept")) io::read_parameters(file, best->emplace(model), "best.");
  }
  visit_rngs(model, [&](std::string_view name, Rng& rng) {
    const auto it = meta.find("rng.model." + std::string(name));
    if (it == meta.end())
      throw FormatError(file.source(), 0, "checkpoint has no state for the model's generator \"" + std::string(name) + "\"");
    rng.set_state(detail::decode_rng(it->second, file.source()));
  });
  optimizer.prepare(model);
  optimizer.for_each_state([&](std::string_view name, auto& tensor) {
    io::read_matrix(file, "optimizer." + std::string(name), tensor);
  });
  optimizer.set_steps(optimizer_steps);
  if constexpr (requires { optimizer.param_steps(); }) {
    const auto steps = file.values<std::int64_t>("optimizer.param_steps");
    if (steps.size() != optimizer.param_steps().size())
      throw FormatError(file.source(), 0, "optimizer.param_steps has " + std::to_string(steps.size()) +
                                              " entries, the model has " +
                                              std::to_string(optimizer.param_steps().size()) + " parameters");
    optimizer.set_param_steps(steps);
  }
  return state;
}

}  // namespace mtlm::train
