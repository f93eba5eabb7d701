// @brief Writes a file all at once or not at all: the bytes go to a temporary file next to the
// destination, are flushed, and the temporary is renamed over the destination, so a crash or a
// full disk never leaves a half-written model behind.
#pragma once

#include "mtlm/core/error.hpp"

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <system_error>

namespace mtlm {

/// Calls write(stream) on a temporary file, then renames it to `path`.
inline void write_atomically(const std::filesystem::path& path,
                             const std::function<void(std::ostream&)>& write) {
  namespace fs = std::filesystem;
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  fs::path tmp = dir / ("." + path.filename().string() + ".tmp" + std::to_string(std::random_device{}()));
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw Error("mtlm: cannot open " + tmp.string() + " for writing");
      write(out);
      out.close();  // explicitly: a failed flush on close must not go unnoticed
      if (!out) throw Error("mtlm: writing " + tmp.string() + " failed");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw Error("mtlm: cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

}  // namespace mtlm
