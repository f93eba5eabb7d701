// @brief Trainer: the epoch loop around a multi-task model and an optimizer. It sees only the
// model's concept (forward_backward, for_each_param, Targets) and the optimizer's step, never
// layer types. Per epoch: batches from a deterministic source, optimizer steps with optional
// clipping and a learning-rate schedule, progress, a dev evaluation, best-model keeping, early
// stopping on patience, a resumable checkpoint, and optionally an average of the parameters
// (ParameterAverage) that is what gets evaluated, selected and kept.
//
// Determinism: the only randomness the trainer owns is its generator, handed to the batch
// source once per epoch; it is saved in every checkpoint, so "1 epoch, save, load, 1 epoch"
// reproduces "2 epochs" bit for bit on the CPU.
#pragma once

#include "mtlm/backend/subnormals.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/core/random.hpp"
#include "mtlm/optim/clipping.hpp"
#include "mtlm/optim/parameter_average.hpp"
#include "mtlm/optim/schedule.hpp"
#include "mtlm/train/checkpoint.hpp"
#include "mtlm/train/progress.hpp"

#include <cmath>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace mtlm::train {

/// One batch with the targets of the tasks it has labels for.
template <class Model>
struct TrainingBatch {
  Batch batch;
  typename Model::Targets targets;
};

/// Named dev metrics, in the order they are printed.
using Metrics = std::vector<std::pair<std::string, double>>;

struct TrainerOptions {
  int epochs = 10;
  std::uint64_t seed = 1;
  /// Clip the global gradient norm to this value (0: no clipping).
  double clip_norm = 0.0;
  /// Stop after this many epochs without improvement of the selection metric (0: never).
  int patience = 0;
  /// Dev metric that selects the best epoch (empty: the first one the evaluator returns).
  std::string select_metric;
  bool maximize = true;
  /// When set, a checkpoint is written here after every epoch, for resume().
  std::filesystem::path checkpoint;
  /// Stop after the epoch during which training time passed this many seconds (0: no limit).
  double max_seconds = 0.0;
  /// Restore the best epoch's parameters at the end of fit().
  bool restore_best = true;
  /// Decay of an exponential moving average of the parameters, updated after every step
  /// (0: none). When set, evaluation, selection and the model fit() leaves are the average's.
  double average_decay = 0.0;
  /// Progress and epoch summaries (nullptr: silent).
  std::ostream* log = &std::cerr;
};

template <class Model, class Optimizer, class Schedule = schedule::Constant>
class Trainer {
 public:
  using Batches = std::vector<TrainingBatch<Model>>;
  /// Produces one epoch's batches; the generator decides the shuffling.
  using BatchSource = std::function<Batches(Rng&)>;
  using Evaluator = std::function<Metrics(Model&)>;

  struct Result {
    double best_metric = 0.0;
    int best_epoch = -1;
    int epochs_run = 0;
    bool stopped_early = false;
    double seconds = 0.0;
  };

  Trainer(Model& model, Optimizer& optimizer, TrainerOptions options, Schedule schedule)
      : model_(model), optimizer_(optimizer), options_(std::move(options)), schedule_(std::move(schedule)) {
    Rng rng(options_.seed);
    state_.rng = rng.state();
    state_.best_metric = options_.maximize ? -std::numeric_limits<double>::infinity()
                                           : std::numeric_limits<double>::infinity();
  }
  Trainer(Model& model, Optimizer& optimizer, TrainerOptions options)
    requires std::is_same_v<Schedule, schedule::Constant>
      : Trainer(model, optimizer, options, schedule::Constant{optimizer.lr()}) {}

  /// Continues from a checkpoint written by a trainer with the same options.
  void resume(const std::filesystem::path& checkpoint) {
    if (options_.average_decay > 0) average_.emplace(model_, options_.average_decay);
    state_ = load_checkpoint(checkpoint, model_, optimizer_, average_ ? &*average_ : nullptr, &best_);
  }

  Result fit(const BatchSource& source, const Evaluator& evaluate = {}) {
    const FlushSubnormals flush;  // optimizer moments of idle rows decay through the slow range
    Result result;
    const auto start = Progress::Clock::now();
    std::optional<Progress> progress;
    if (options_.log) progress.emplace(*options_.log, options_.log == &std::cerr && ::isatty(STDERR_FILENO));
    if (options_.average_decay > 0 && !average_) average_.emplace(model_, options_.average_decay);

    for (int epoch = static_cast<int>(state_.epoch); epoch < options_.epochs; ++epoch) {
      Rng rng;
      rng.set_state(state_.rng);
      const Batches batches = source(rng);
      state_.rng = rng.state();

      std::vector<std::string_view> names(Model::task_names.begin(), Model::task_names.end());
      if (progress) progress->start_epoch(epoch + 1, options_.epochs, batches.size(), names);
      for (std::size_t i = 0; i < batches.size(); ++i) {
        const auto& item = batches[i];
        zero_gradients(model_);
        const auto losses = model_.forward_backward(item.batch, item.targets);
        if (!std::isfinite(losses.total))
          throw Error("mtlm: training diverged: loss " + std::to_string(losses.total) + " at epoch " +
                      std::to_string(epoch + 1) + ", step " + std::to_string(i + 1));
        if (options_.clip_norm > 0) clip_grad_norm(model_, options_.clip_norm);
        optimizer_.set_lr(schedule_.lr(optimizer_.steps()));
        optimizer_.step(model_);
        if (average_) average_->update(model_);
        if (progress)
          progress->update(i, losses.task.data(), losses.present.data(),
                           static_cast<long>(item.batch.token_count()));
      }

      std::string summary;
      if (evaluate) {
        const Metrics metrics = evaluate(evaluated());
        summary = describe(metrics);
        const double value = select(metrics);
        const bool better = options_.maximize ? value > state_.best_metric : value < state_.best_metric;
        if (better) {
          state_.best_metric = value;
          state_.best_epoch = epoch + 1;
          state_.stale_epochs = 0;
          if (options_.restore_best) best_ = evaluated();
          summary += "  (best)";
        } else {
          ++state_.stale_epochs;
        }
      }
      state_.epoch = epoch + 1;
      if (progress) progress->finish_epoch(summary);
      if (!options_.checkpoint.empty())
        save_checkpoint(options_.checkpoint, model_, optimizer_, state_, {}, average_ ? &*average_ : nullptr,
                        best_ ? &*best_ : nullptr);
      ++result.epochs_run;
      if (options_.patience > 0 && state_.stale_epochs >= options_.patience) {
        result.stopped_early = true;
        break;
      }
      if (options_.max_seconds > 0 &&
          std::chrono::duration<double>(Progress::Clock::now() - start).count() > options_.max_seconds) {
        result.stopped_early = true;
        break;
      }
    }
    if (best_ && options_.restore_best)
      model_ = *best_;
    else if (average_)
      model_ = average_->model();
    result.best_metric = state_.best_metric;
    result.best_epoch = static_cast<int>(state_.best_epoch);
    result.seconds = std::chrono::duration<double>(Progress::Clock::now() - start).count();
    return result;
  }

  const TrainingState& state() const { return state_; }
  /// The running parameter average (average_decay > 0, after fit() or resume() began it).
  const ParameterAverage<Model>* average() const { return average_ ? &*average_ : nullptr; }

 private:
  double select(const Metrics& metrics) const {
    if (metrics.empty()) throw Error("mtlm: the evaluator returned no metric");
    if (options_.select_metric.empty()) return metrics.front().second;
    for (const auto& [name, value] : metrics)
      if (name == options_.select_metric) return value;
    throw Error("mtlm: the evaluator returned no metric named \"" + options_.select_metric + "\"");
  }

  Model& evaluated() { return average_ ? average_->model() : model_; }

  static std::string describe(const Metrics& metrics) {
    std::ostringstream s;
    s.setf(std::ios::fixed);
    s.precision(4);
    for (const auto& [name, value] : metrics) s << name << " " << value << "  ";
    std::string out = s.str();
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
  }

  Model& model_;
  Optimizer& optimizer_;
  TrainerOptions options_;
  Schedule schedule_;
  TrainingState state_;
  std::optional<Model> best_;
  std::optional<ParameterAverage<Model>> average_;
};

}  // namespace mtlm::train
