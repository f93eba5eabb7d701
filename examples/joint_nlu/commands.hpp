// @brief What mtlm-nlu's two translation units share: the training command (train.cpp) and the
// one-line score summary both commands print.
#pragma once

#include "nlu_model.hpp"

#include "../common/cli.hpp"

#include <cstdio>
#include <string>

namespace nlu {

/// `mtlm-nlu train`: trains (an ensemble of) models on DIR/train, selects on DIR/valid and writes
/// the model file. Returns the process exit code.
int train_command(const examples::Args& args);

inline std::string scores_line(const Scores& s) {
  char buffer[160];
  std::snprintf(buffer, sizeof buffer, "intent %.4f  slot_f1 %.4f  sentence %.4f", s.intent_accuracy,
                s.slot_f1, s.sentence_accuracy);
  return buffer;
}

}  // namespace nlu
