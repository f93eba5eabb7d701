// @brief Multi-dataset task sampling: when every task has its own dataset, an epoch is a
// sequence of (task, batch) draws. Proportional sampling visits every batch once; temperature
// sampling (p_i ~ n_i^(1/T), MT-DNN / T5) lifts small tasks; round-robin alternates tasks, in
// equal or weighted shares.
#pragma once

#include "mtlm/core/error.hpp"
#include "mtlm/core/random.hpp"

#include <cmath>
#include <cstddef>
#include <numeric>
#include <span>
#include <string>
#include <vector>

namespace mtlm::train {

enum class SamplingPolicy { proportional, temperature, round_robin };

struct TaskSampling {
  SamplingPolicy policy = SamplingPolicy::proportional;
  /// T for the temperature policy: 1 is proportional, larger flattens towards uniform.
  double temperature = 2.0;
  /// Draws per epoch; 0 means the total number of batches of all tasks.
  std::size_t draws_per_epoch = 0;
  /// Round-robin only: task i takes weights[i] draws for every weights[j] of task j, spread
  /// evenly (smooth weighted round-robin), so that a large auxiliary dataset can take fewer steps
  /// than the main task without the noise of random draws. Empty: equal shares.
  std::vector<double> weights{};
};

struct TaskDraw {
  std::size_t task;
  std::size_t batch;  ///< index into that task's batches for the epoch
};

/// Sampling probability of each task for a policy (round-robin: its share of the weights).
inline std::vector<double> task_probabilities(std::span<const std::size_t> batch_counts,
                                              const TaskSampling& sampling) {
  if (!sampling.weights.empty()) {
    if (sampling.policy != SamplingPolicy::round_robin)
      throw Error("mtlm: task sampling weights apply to round-robin sampling only");
    if (sampling.weights.size() != batch_counts.size())
      throw Error("mtlm: " + std::to_string(sampling.weights.size()) + " task sampling weights for " +
                  std::to_string(batch_counts.size()) + " tasks");
    for (double w : sampling.weights)
      if (!(w >= 0) || !std::isfinite(w))
        throw Error("mtlm: task sampling weights must be finite and >= 0, got " + std::to_string(w));
  }
  std::vector<double> p(batch_counts.size(), 0.0);
  for (std::size_t i = 0; i < p.size(); ++i) {
    const double n = static_cast<double>(batch_counts[i]);
    switch (sampling.policy) {
      case SamplingPolicy::proportional: p[i] = n; break;
      case SamplingPolicy::temperature: p[i] = n > 0 ? std::pow(n, 1.0 / sampling.temperature) : 0.0; break;
      case SamplingPolicy::round_robin:
        p[i] = n > 0 ? (sampling.weights.empty() ? 1.0 : sampling.weights[i]) : 0.0;
        break;
    }
  }
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  if (!sampling.weights.empty() && !(total > 0))
    throw Error("mtlm: task sampling weights give every task with data a weight of 0");
  for (auto& x : p) x /= total;
  return p;
}

/// The draws of one epoch. Each task cycles through its batches in a shuffled order and is
/// reshuffled when exhausted, so an up-sampled task repeats its data evenly.
inline std::vector<TaskDraw> plan_epoch(std::span<const std::size_t> batch_counts,
                                        const TaskSampling& sampling, Rng& rng) {
  if (sampling.policy == SamplingPolicy::temperature && !(sampling.temperature > 0))
    throw Error("mtlm: temperature sampling needs a positive temperature");
  const std::size_t tasks = batch_counts.size();
  const std::size_t total_batches = std::accumulate(batch_counts.begin(), batch_counts.end(), std::size_t{0});
  if (total_batches == 0) return {};
  const std::size_t draws = sampling.draws_per_epoch ? sampling.draws_per_epoch : total_batches;

  std::vector<std::vector<std::size_t>> order(tasks);
  std::vector<std::size_t> next(tasks, 0);
  auto reshuffle = [&](std::size_t t) {
    order[t].resize(batch_counts[t]);
    std::iota(order[t].begin(), order[t].end(), std::size_t{0});
    rng.shuffle(order[t]);
    next[t] = 0;
  };
  for (std::size_t t = 0; t < tasks; ++t) reshuffle(t);
  auto take = [&](std::size_t t) {
    if (next[t] == order[t].size()) reshuffle(t);
    return TaskDraw{t, order[t][next[t]++]};
  };

  std::vector<TaskDraw> plan;
  plan.reserve(draws);
  if (sampling.policy == SamplingPolicy::proportional && draws == total_batches) {
    // Every batch exactly once, tasks interleaved at random.
    std::vector<std::size_t> tasks_sequence;
    for (std::size_t t = 0; t < tasks; ++t) tasks_sequence.insert(tasks_sequence.end(), batch_counts[t], t);
    rng.shuffle(tasks_sequence);
    for (std::size_t t : tasks_sequence) plan.push_back(take(t));
  } else if (sampling.policy == SamplingPolicy::round_robin && !sampling.weights.empty()) {
    // Each draw, every task earns its share and the task with the most credit goes and pays 1.
    const auto share = task_probabilities(batch_counts, sampling);
    std::vector<double> credit(tasks, 0.0);
    for (std::size_t i = 0; i < draws; ++i) {
      std::size_t best = tasks;
      for (std::size_t t = 0; t < tasks; ++t) {
        if (share[t] == 0) continue;
        credit[t] += share[t];
        if (best == tasks || credit[t] > credit[best]) best = t;
      }
      credit[best] -= 1.0;
      plan.push_back(take(best));
    }
  } else if (sampling.policy == SamplingPolicy::round_robin) {
    for (std::size_t i = 0, t = 0; i < draws; t = (t + 1) % tasks)
      if (batch_counts[t] > 0) {
        plan.push_back(take(t));
        ++i;
      }
  } else {
    const auto p = task_probabilities(batch_counts, sampling);
    for (std::size_t i = 0; i < draws; ++i) {
      double u = rng.uniform();
      std::size_t t = 0;
      while (t + 1 < tasks && (u >= p[t] || batch_counts[t] == 0)) u -= p[t++];
      plan.push_back(take(t));
    }
  }
  return plan;
}

}  // namespace mtlm::train
