// @brief What mtlm-tag's translation units share: the training command (train.cpp) and the
// one-line score summary both commands print.
#pragma once

#include "tag_model.hpp"

#include "../common/cli.hpp"

#include <cstdio>
#include <string>

namespace tag {

/// `mtlm-tag train`: trains (an ensemble of) models on the CoNLL and SST-2 training splits,
/// selects on their dev splits and writes the model file. Returns the process exit code.
int train_command(const examples::Args& args);

/// The scores of the tasks in `tasks`, on one line.
inline std::string scores_line(const Scores& s, const TaskSet& tasks) {
  std::string out;
  char buffer[64];
  auto add = [&](bool on, const char* name, double value) {
    if (!on) return;
    std::snprintf(buffer, sizeof buffer, "%s%s %.4f", out.empty() ? "" : "  ", name, value);
    out += buffer;
  };
  add(tasks.pos, "pos_accuracy", s.pos_accuracy);
  add(tasks.chunk, "chunk_f1", s.chunk_f1);
  add(tasks.ner, "ner_f1", s.ner_f1);
  add(tasks.sentiment, "sentiment_accuracy", s.sentiment_accuracy);
  return out;
}

}  // namespace tag
