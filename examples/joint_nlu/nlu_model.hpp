// @brief The joint NLU model of mtlm-nlu: one shared character-aware BiLSTM trunk and three
// heads (intent, slots, and a bidirectional language model as an auxiliary task), plus what
// turns ATIS-layout examples into batches and a trained model into a single file.
#pragma once

#include <mtlm/mtlm.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace nlu {

using mtlm::Dynamic;
using mtlm::Index;

inline constexpr Index word_dim = 100;
inline constexpr Index char_dim = 30;
inline constexpr Index char_filters = 50;
inline constexpr Index char_window = 3;
inline constexpr Index hidden = 128;
inline constexpr Index features = 2 * hidden;

using Encoder = mtlm::WordCharEmbedding<Dynamic, word_dim, Dynamic, char_dim, char_filters, char_window>;
using Trunk = mtlm::Sequential<Encoder, mtlm::Dropout<>, mtlm::BiLstm<word_dim + char_filters, hidden>,
                               mtlm::Dropout<>>;
using IntentHead = mtlm::SequenceClassifier<features, Dynamic, mtlm::PoolingKind::max>;
using SlotHead = mtlm::TokenTagger<features, Dynamic>;
using LmHead = mtlm::LanguageModelHead<features, Dynamic, mtlm::LmDirection::both_directions>;
using Model = mtlm::MultiTask<Trunk, mtlm::Task<"intent", IntentHead>, mtlm::Task<"slots", SlotHead>,
                              mtlm::Task<"lm", LmHead, std::ratio<1, 4>>>;

/// Everything besides the weights that a trained model needs to read text.
struct Vocabularies {
  mtlm::Vocabulary words;
  mtlm::CharVocabulary chars;
  mtlm::LabelSet intents;  ///< id 0 is <unk>: intents never seen in training
  mtlm::LabelSet slots;
};

struct Hyperparameters {
  double dropout = 0.3;
  double word_dropout = 0.1;
};

/// Vocabularies of the training split: words, characters, intents (with <unk>) and slot tags.
Vocabularies build_vocabularies(const std::vector<mtlm::SequenceExample>& train);

/// An untrained model sized for `v`.
Model make_model(const Vocabularies& v, const Hyperparameters& h);

/// Examples as ids, prepared once and batched every epoch.
struct EncodedSet {
  std::vector<std::vector<mtlm::TokenId>> words;
  std::vector<std::vector<mtlm::TokenId>> chars;  ///< per example: width ids per token, concatenated
  std::vector<std::int32_t> intents;
  std::vector<std::vector<std::int32_t>> slots;
  std::vector<Index> lengths;
  Index char_width = 0;
};

/// The examples as ids; `with_targets` adds their intent and slot ids.
EncodedSet encode(const std::vector<mtlm::SequenceExample>& data, const Vocabularies& v,
                  bool with_targets);

/// The padded batch (word ids and character ids) of the examples at `indices`.
mtlm::Batch make_batch(const EncodedSet& set, std::span<const Index> indices);

/// Predictions for a list of examples, in their order.
struct Predictions {
  std::vector<std::string> intents;
  std::vector<std::vector<std::string>> slots;
};

/// How slot tags are read off the per-token probabilities.
enum class SlotDecoding {
  argmax,  ///< each token's most probable tag on its own
  bio,     ///< the most probable tag sequence that is valid BIO (no I-X after O or after B-Y)
};

/// Predictions of an ensemble: the members' class probabilities are averaged (for one model,
/// these are its own probabilities).
Predictions predict(std::span<Model> models, const EncodedSet& set, const Vocabularies& v,
                    SlotDecoding decoding = SlotDecoding::bio, Index batch_size = 64);

Predictions predict(Model& model, const EncodedSet& set, const Vocabularies& v,
                    SlotDecoding decoding = SlotDecoding::bio);

struct Scores {
  double intent_accuracy = 0, slot_f1 = 0, sentence_accuracy = 0;
  std::size_t examples = 0;
};

/// Intent accuracy, slot span F1 (conlleval rules) and sentence exact match against `gold`.
Scores score(const std::vector<mtlm::SequenceExample>& gold, const Predictions& p);

// ---- the model file: every member's weights and the vocabularies in one safetensors file ---

/// Writes every member and the vocabularies to `path` (atomically: a temporary file, then rename).
void save_bundle(const std::filesystem::path& path, std::span<Model> models, const Vocabularies& v);

struct Bundle {
  Vocabularies vocab;
  std::vector<Model> models;
};

/// Reads a file written by save_bundle; a wrong or damaged file is a clear error naming it.
Bundle load_bundle(const std::filesystem::path& path);

}  // namespace nlu
