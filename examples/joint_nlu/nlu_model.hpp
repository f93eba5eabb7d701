// @brief The joint NLU model of mtlm-nlu: one shared character-aware BiLSTM trunk and three
// heads (intent, slots, and a bidirectional language model as an auxiliary task), plus what
// turns ATIS-layout examples into batches and a trained model into a single file.
#pragma once

#include <mtlm/mtlm.hpp>

#include "../common/ensemble.hpp"

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
                              mtlm::Task<"lm", LmHead, std::ratio<1, 2>>>;

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

inline Vocabularies build_vocabularies(const std::vector<mtlm::SequenceExample>& train) {
  const auto sentences = mtlm::tokens_of(train);
  return {mtlm::Vocabulary::build(sentences), mtlm::CharVocabulary::build(sentences),
          mtlm::LabelSet::build(mtlm::labels_of(train), "<unk>"), mtlm::LabelSet::build(mtlm::tags_of(train))};
}

inline Model make_model(const Vocabularies& v, const Hyperparameters& h) {
  mtlm::WordDropout word_dropout;
  word_dropout.p = h.word_dropout;
  word_dropout.unk_id = mtlm::Vocabulary::unk_id;
  return Model{Trunk(Encoder(v.words.size(), v.chars.size(), word_dropout), mtlm::Dropout<>(h.dropout),
                     mtlm::BiLstm<word_dim + char_filters, hidden>(), mtlm::Dropout<>(h.dropout)),
               IntentHead(v.intents.size()), SlotHead(v.slots.size()), LmHead(v.words.size())};
}

/// Examples as ids, prepared once and batched every epoch.
struct EncodedSet {
  std::vector<std::vector<mtlm::TokenId>> words;
  std::vector<std::vector<mtlm::TokenId>> chars;  ///< per example: width ids per token, concatenated
  std::vector<std::int32_t> intents;
  std::vector<std::vector<std::int32_t>> slots;
  std::vector<Index> lengths;
  Index char_width = 0;
};

inline EncodedSet encode(const std::vector<mtlm::SequenceExample>& data, const Vocabularies& v,
                         bool with_targets) {
  EncodedSet out;
  const mtlm::CharIdOptions char_options;
  out.char_width = char_options.width();
  for (const auto& ex : data) {
    out.words.push_back(v.words.ids(ex.tokens));
    auto& chars = out.chars.emplace_back();
    for (const auto& token : ex.tokens) {
      const auto ids = mtlm::char_ids(token, v.chars, char_options);
      chars.insert(chars.end(), ids.begin(), ids.end());
    }
    out.lengths.push_back(static_cast<Index>(ex.tokens.size()));
    if (with_targets) {
      out.intents.push_back(v.intents.id(ex.label));
      auto& tags = out.slots.emplace_back();
      for (const auto& tag : ex.tags) tags.push_back(v.slots.id(tag));
    }
  }
  return out;
}

/// The padded batch (word ids and character ids) of the examples at `indices`.
inline mtlm::Batch make_batch(const EncodedSet& set, std::span<const Index> indices) {
  mtlm::Batch batch = mtlm::make_batch(set.words, indices);
  batch.char_width = set.char_width;
  batch.chars.assign(static_cast<std::size_t>(batch.columns() * set.char_width), 0);
  for (Index b = 0; b < batch.batch_size; ++b) {
    const auto& chars = set.chars[static_cast<std::size_t>(indices[static_cast<std::size_t>(b)])];
    std::copy(chars.begin(), chars.end(), batch.chars.begin() + batch.column(b, 0) * set.char_width);
  }
  return batch;
}

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
inline Predictions predict(std::span<Model> models, const EncodedSet& set, const Vocabularies& v,
                           SlotDecoding decoding = SlotDecoding::bio, Index batch_size = 64) {
  Predictions out;
  out.intents.resize(set.words.size());
  out.slots.resize(set.words.size());
  mtlm::BatchingOptions options;
  options.max_sequences = batch_size;
  options.shuffle = false;
  mtlm::Rng unused(0);
  Eigen::MatrixXf intent_sum, slot_sum;
  examples::BioPosteriorDecoder bio_decoder(v.slots);
  for (const auto& indices : mtlm::bucket_batches(set.lengths, options, unused)) {
    const mtlm::Batch batch = make_batch(set, indices);
    intent_sum.setZero(v.intents.size(), batch.batch_size);
    slot_sum.setZero(v.slots.size(), batch.columns());
    for (Model& model : models) {
      model.forward(batch, mtlm::Mode::eval);
      examples::add_softmax(model.head<"intent">().logits(), intent_sum);
      examples::add_softmax(model.head<"slots">().logits(), slot_sum);
    }
    const auto* decoded = decoding == SlotDecoding::bio ? &bio_decoder.decode(slot_sum, batch) : nullptr;
    for (Index b = 0; b < batch.batch_size; ++b) {
      const auto i = static_cast<std::size_t>(indices[static_cast<std::size_t>(b)]);
      Index best = 0;
      intent_sum.col(b).maxCoeff(&best);
      out.intents[i] = v.intents.label(static_cast<mtlm::TokenId>(best));
      auto& tags = out.slots[i];
      tags.clear();
      for (Index t = 0; t < batch.lengths[static_cast<std::size_t>(b)]; ++t) {
        if (decoding == SlotDecoding::bio) {
          best = (*decoded)[static_cast<std::size_t>(b)][static_cast<std::size_t>(t)];
        } else {
          slot_sum.col(batch.column(b, t)).maxCoeff(&best);
        }
        tags.push_back(v.slots.label(static_cast<mtlm::TokenId>(best)));
      }
    }
  }
  return out;
}

inline Predictions predict(Model& model, const EncodedSet& set, const Vocabularies& v,
                           SlotDecoding decoding = SlotDecoding::bio) {
  return predict(std::span<Model>(&model, 1), set, v, decoding);
}

struct Scores {
  double intent_accuracy = 0, slot_f1 = 0, sentence_accuracy = 0;
  std::size_t examples = 0;
};

inline Scores score(const std::vector<mtlm::SequenceExample>& gold, const Predictions& p) {
  Scores s;
  s.examples = gold.size();
  const auto gold_intents = mtlm::labels_of(gold);
  const auto gold_slots = mtlm::tags_of(gold);
  std::size_t right = 0;
  for (std::size_t i = 0; i < gold.size(); ++i) right += gold_intents[i] == p.intents[i];
  s.intent_accuracy = gold.empty() ? 0.0 : double(right) / double(gold.size());
  s.slot_f1 = mtlm::metrics::span_f1(gold_slots, p.slots).overall.f1;
  s.sentence_accuracy = mtlm::metrics::exact_match(gold_intents, p.intents, gold_slots, p.slots);
  return s;
}

// ---- the model file: every member's weights and the vocabularies in one safetensors file ---

inline constexpr const char* bundle_format = "mtlm-nlu-2";

inline void save_bundle(const std::filesystem::path& path, std::span<Model> models, const Vocabularies& v) {
  mtlm::io::SafetensorsWriter writer;
  examples::add_members(writer, models);
  writer.set_metadata("format", bundle_format);
  writer.set_metadata("vocab.words", v.words.to_text());
  writer.set_metadata("vocab.chars", v.chars.to_text());
  writer.set_metadata("labels.intents", v.intents.to_text());
  writer.set_metadata("labels.slots", v.slots.to_text());
  writer.write(path);
}

struct Bundle {
  Vocabularies vocab;
  std::vector<Model> models;
};

inline Bundle load_bundle(const std::filesystem::path& path) {
  const mtlm::io::SafetensorsFile file(path);
  const auto& meta = file.metadata();
  auto text = [&](const char* key) -> const std::string& {
    const auto it = meta.find(key);
    if (it == meta.end())
      throw mtlm::FormatError(file.source(), 0, std::string("not an mtlm-nlu model: no \"") + key + "\" entry");
    return it->second;
  };
  if (text("format") != bundle_format)
    throw mtlm::FormatError(file.source(), 0, "model format \"" + text("format") + "\", expected \"" +
                                                  bundle_format + "\"");
  const std::string source = file.source();
  Bundle bundle{{mtlm::Vocabulary::from_text(text("vocab.words"), source + "[vocab.words]"),
                 mtlm::CharVocabulary::from_text(text("vocab.chars"), source + "[vocab.chars]"),
                 mtlm::LabelSet::from_text(text("labels.intents"), source + "[labels.intents]"),
                 mtlm::LabelSet::from_text(text("labels.slots"), source + "[labels.slots]")},
                {}};
  bundle.models = examples::read_members(file, text("members"), [&] { return make_model(bundle.vocab, {}); });
  return bundle;
}

}  // namespace nlu
