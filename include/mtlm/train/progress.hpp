// @brief Training progress: a redrawn bar with per-task losses and tokens/s on a terminal,
// plain lines (about ten per epoch) when the output is a file or a pipe, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdio>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace mtlm::train {

class Progress {
 public:
  using Clock = std::chrono::steady_clock;

  Progress(std::ostream& out, bool is_terminal) : out_(out), terminal_(is_terminal) {}

  /// Progress on standard error, redrawn in place when it is a terminal.
  static Progress standard_error(std::ostream& err) { return Progress(err, ::isatty(STDERR_FILENO) != 0); }

  void start_epoch(int epoch, int epochs, std::size_t steps, std::vector<std::string_view> tasks) {
    epoch_ = epoch;
    epochs_ = epochs;
    steps_ = steps;
    tasks_ = std::move(tasks);
    loss_sum_.assign(tasks_.size(), 0.0);
    loss_count_.assign(tasks_.size(), 0);
    tokens_ = 0;
    start_ = last_draw_ = Clock::now();
    next_plain_ = steps / 10;
  }

  void update(std::size_t step, const double* task_loss, const bool* present, long tokens) {
    for (std::size_t i = 0; i < tasks_.size(); ++i)
      if (present[i]) {
        loss_sum_[i] += task_loss[i];
        ++loss_count_[i];
      }
    tokens_ += tokens;
    const auto now = Clock::now();
    if (terminal_) {
      if (now - last_draw_ < std::chrono::milliseconds(100) && step + 1 < steps_) return;
      out_ << '\r' << line(step + 1, true) << "\x1b[K" << std::flush;
    } else if (step + 1 >= next_plain_ && steps_ >= 10) {
      out_ << line(step + 1, false) << '\n' << std::flush;
      next_plain_ += steps_ / 10;
    }
    last_draw_ = now;
  }

  /// Ends the epoch's line with a summary (e.g. dev metrics).
  void finish_epoch(std::string_view summary) {
    if (terminal_) out_ << '\r' << line(steps_, true) << "\x1b[K\n";
    std::ostringstream s;  // formatted apart, so the caller's stream keeps its flags
    s << "epoch " << epoch_ << "/" << epochs_ << " done in " << std::fixed << std::setprecision(1)
      << seconds() << " s (" << std::setprecision(0) << tokens_per_second() << " tokens/s)";
    if (!summary.empty()) s << "  " << summary;
    out_ << s.str() << '\n' << std::flush;
  }

  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  double tokens_per_second() const { return tokens_ / std::max(seconds(), 1e-9); }
  double mean_loss(std::size_t task) const {
    return loss_count_[task] ? loss_sum_[task] / double(loss_count_[task]) : 0.0;
  }

 private:
  std::string line(std::size_t done, bool bar) const {
    std::ostringstream s;
    s << "epoch " << epoch_ << "/" << epochs_ << " ";
    if (bar) {
      constexpr int width = 24;
      const int filled = steps_ ? static_cast<int>(width * done / steps_) : width;
      s << '[' << std::string(static_cast<std::size_t>(filled), '#')
        << std::string(static_cast<std::size_t>(width - filled), '.') << "] ";
    }
    s << done << "/" << steps_;
    for (std::size_t i = 0; i < tasks_.size(); ++i)
      if (loss_count_[i]) s << "  " << tasks_[i] << " " << std::fixed << std::setprecision(4) << mean_loss(i);
    s << "  " << std::fixed << std::setprecision(0) << tokens_per_second() << " tok/s";
    return s.str();
  }

  std::ostream& out_;
  bool terminal_;
  int epoch_ = 0, epochs_ = 0;
  std::size_t steps_ = 0, next_plain_ = 0;
  std::vector<std::string_view> tasks_;
  std::vector<double> loss_sum_;
  std::vector<long> loss_count_;
  long tokens_ = 0;
  Clock::time_point start_, last_draw_;
};

}  // namespace mtlm::train
