// @brief Multi-dataset training: every task has its own dataset (sentiment sentences for one
// head, NER sentences for another). Each task's source yields its own batches, with only that
// task's targets set; an epoch interleaves them by a sampling policy (train/sampler.hpp), so one
// Trainer drives all tasks through the shared trunk.
#pragma once

#include "mtlm/train/sampler.hpp"
#include "mtlm/train/trainer.hpp"

#include <functional>
#include <utility>
#include <vector>

namespace mtlm::train {

/// Combines one batch source per task into the source of a multi-dataset epoch. A task's
/// batches are made once per epoch (shuffled by the epoch's generator) and drawn in the order
/// plan_epoch gives; an up-sampled task reuses its batches.
template <class Model>
std::function<std::vector<TrainingBatch<Model>>(Rng&)> multi_dataset_source(
    std::vector<std::function<std::vector<TrainingBatch<Model>>(Rng&)>> per_task, TaskSampling sampling) {
  return [per_task = std::move(per_task), sampling](Rng& rng) {
    std::vector<std::vector<TrainingBatch<Model>>> pools;
    std::vector<std::size_t> counts;
    for (const auto& source : per_task) {
      pools.push_back(source(rng));
      counts.push_back(pools.back().size());
    }
    std::vector<TrainingBatch<Model>> epoch;
    const auto plan = plan_epoch(counts, sampling, rng);
    epoch.reserve(plan.size());
    for (const TaskDraw& d : plan) epoch.push_back(pools[d.task][d.batch]);
    return epoch;
  };
}

}  // namespace mtlm::train
