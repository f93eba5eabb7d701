// The definitions behind nlu_model.hpp. They live in their own translation unit, apart from the
// training command (train.cpp) and the command line (main.cpp), so that the demo's three parts
// compile in parallel and a change to one recompiles only it: the model's forward pass, the
// ensemble's decoding and the model file are instantiated here once.
#include "nlu_model.hpp"

#include "../common/batching.hpp"
#include "../common/ensemble.hpp"

#include <algorithm>

namespace nlu {

namespace {

constexpr const char* bundle_format = "mtlm-nlu-2";

}  // namespace

Vocabularies build_vocabularies(const std::vector<mtlm::SequenceExample>& train) {
  const auto sentences = mtlm::tokens_of(train);
  return {mtlm::Vocabulary::build(sentences), mtlm::CharVocabulary::build(sentences),
          mtlm::LabelSet::build(mtlm::labels_of(train), "<unk>"), mtlm::LabelSet::build(mtlm::tags_of(train))};
}

Model make_model(const Vocabularies& v, const Hyperparameters& h) {
  mtlm::WordDropout word_dropout;
  word_dropout.p = h.word_dropout;
  word_dropout.unk_id = mtlm::Vocabulary::unk_id;
  return Model{Trunk(Encoder(v.words.size(), v.chars.size(), word_dropout), mtlm::Dropout<>(h.dropout),
                     mtlm::BiLstm<word_dim + char_filters, hidden>(), mtlm::Dropout<>(h.dropout)),
               IntentHead(v.intents.size()), SlotHead(v.slots.size()), LmHead(v.words.size())};
}

EncodedSet encode(const std::vector<mtlm::SequenceExample>& data, const Vocabularies& v,
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

mtlm::Batch make_batch(const EncodedSet& set, std::span<const Index> indices) {
  return examples::word_char_batch(set, indices);
}

Predictions predict(std::span<Model> models, const EncodedSet& set, const Vocabularies& v,
                    SlotDecoding decoding, Index batch_size) {
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

Predictions predict(Model& model, const EncodedSet& set, const Vocabularies& v,
                    SlotDecoding decoding) {
  return predict(std::span<Model>(&model, 1), set, v, decoding);
}

Scores score(const std::vector<mtlm::SequenceExample>& gold, const Predictions& p) {
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

void save_bundle(const std::filesystem::path& path, std::span<Model> models, const Vocabularies& v) {
  mtlm::io::SafetensorsWriter writer;
  examples::add_members(writer, models);
  writer.set_metadata("format", bundle_format);
  writer.set_metadata("vocab.words", v.words.to_text());
  writer.set_metadata("vocab.chars", v.chars.to_text());
  writer.set_metadata("labels.intents", v.intents.to_text());
  writer.set_metadata("labels.slots", v.slots.to_text());
  writer.write(path);
}

Bundle load_bundle(const std::filesystem::path& path) {
  const mtlm::io::SafetensorsFile file(path);
  auto text = [&](const char* key) -> const std::string& { return examples::model_entry(file, key, "mtlm-nlu"); };
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
