// @brief Command-line parsing shared by the example programs: a command followed by
// --name value options and --flag switches, each checked against the command's known options.
#pragma once

#include <mtlm/mtlm.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

namespace examples {

struct Args {
  std::string command;
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;

  const std::string& need(const std::string& name) const {
    const auto it = values.find(name);
    if (it == values.end()) throw mtlm::Error("missing --" + name);
    return it->second;
  }
  std::string get(const std::string& name, std::string fallback) const {
    const auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  double number(const std::string& name, double fallback) const {
    const auto it = values.find(name);
    if (it == values.end()) return fallback;
    try {
      std::size_t used = 0;
      const double v = std::stod(it->second, &used);
      if (used != it->second.size()) throw std::invalid_argument("");
      return v;
    } catch (const std::logic_error&) {
      throw mtlm::Error("--" + name + " expects a number, got \"" + it->second + "\"");
    }
  }
};

inline Args parse(int argc, char** argv, const std::map<std::string, bool>& known) {
  Args a;
  if (argc < 2) throw mtlm::Error("missing command (train, eval or predict)");
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (!arg.starts_with("--") || !known.contains(arg.substr(2)))
      throw mtlm::Error("unknown option \"" + arg + "\" for " + a.command);
    const std::string name = arg.substr(2);
    if (known.at(name)) {
      a.flags[name] = true;
    } else {
      if (i + 1 >= argc) throw mtlm::Error("--" + name + " needs a value");
      a.values[name] = argv[++i];
    }
  }
  return a;
}

inline void set_threads(const Args& args) {
  const int threads = static_cast<int>(args.number("threads", 1));
  if (threads < 1) throw mtlm::Error("--threads must be at least 1");
  mtlm::Cpu::set_threads(threads);
}

/// The learning rate of --lr over --epochs of `steps_per_epoch` steps, decayed along a cosine to
/// 0 when --lr-decay is cosine, constant when it is none.
inline mtlm::schedule::Cosine learning_rate_schedule(const Args& args, double default_lr,
                                                     const std::string& default_decay, int epochs,
                                                     std::int64_t steps_per_epoch) {
  const double lr = args.number("lr", default_lr);
  const std::string decay = args.get("lr-decay", default_decay);
  if (decay != "cosine" && decay != "none")
    throw mtlm::Error("--lr-decay expects cosine or none, got \"" + decay + "\"");
  return {.base_lr = lr,
          .total_steps = std::max<std::int64_t>(1, epochs * steps_per_epoch),
          .warmup_steps = 0,
          .min_lr = decay == "none" ? lr : 0.0};
}

/// The decay of --average (an exponential moving average of the weights that is evaluated and
/// kept; 0 turns it off).
inline double parameter_average_decay(const Args& args, double default_decay) {
  const double decay = args.number("average", default_decay);
  if (!(decay >= 0.0 && decay < 1.0)) throw mtlm::Error("--average expects a decay in [0, 1) (0: off)");
  return decay;
}

}  // namespace examples
