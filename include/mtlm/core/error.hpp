// @brief Error types. Every failure mtlm reports is an exception derived from mtlm::Error, so a
// caller can catch one type; input errors carry the file and line that were wrong.
#pragma once

#include <stdexcept>
#include <string>

namespace mtlm {

/// Base of every exception thrown by mtlm.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A run-time size disagrees with what a layer or model expects.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// Malformed input: the message names the file, the line (1-based, 0 when not line-based) and
/// what was expected.
class FormatError : public Error {
 public:
  FormatError(std::string file, std::size_t line, const std::string& what)
      : Error(file + (line > 0 ? ":" + std::to_string(line) : std::string()) + ": " + what),
        file_(std::move(file)),
        line_(line) {}

  const std::string& file() const noexcept { return file_; }
  std::size_t line() const noexcept { return line_; }

 private:
  std::string file_;
  std::size_t line_;
};

}  // namespace mtlm
