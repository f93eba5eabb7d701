// @brief Command-line parsing shared by the example programs: a command followed by
// --name value options and --flag switches, each checked against the command's known options.
#pragma once

#include <mtlm/mtlm.hpp>

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

}  // namespace examples
