// The definitions behind tag_model.hpp, in their own translation unit, apart from the training
// command (train.cpp) and the command line (main.cpp): the demo's parts compile in parallel and a
// change to one recompiles only it.
#include "tag_model.hpp"

#include "../common/batching.hpp"
#include "../common/ensemble.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace tag {

namespace {

constexpr const char* bundle_format = "mtlm-tag-2";
/// Files of the first format hold one model whose tensors carry no member prefix.
constexpr const char* single_model_format = "mtlm-tag-1";

}  // namespace

std::vector<mtlm::SequenceExample> read_sst2(const std::filesystem::path& path) {
  auto data = mtlm::read_tsv(path);
  for (auto& ex : data) {
    if (ex.label != "0" && ex.label != "1")
      throw mtlm::FormatError(path.string(), ex.line, "label \"" + ex.label + "\", expected 0 or 1");
    ex.label = ex.label == "1" ? "positive" : "negative";
  }
  return data;
}

std::vector<std::vector<std::string>> tokens_of(const std::vector<mtlm::ConllSentence>& data) {
  std::vector<std::vector<std::string>> out;
  for (const auto& s : data) out.push_back(s.tokens);
  return out;
}

std::vector<mtlm::ConllSentence> read_conll2003(const std::filesystem::path& path) {
  return mtlm::read_conll(path, {.columns = 4});
}

namespace {

/// A CRF column's tags as its label set encodes them (CoNLL's BIO, or BIOES).
std::vector<std::string> as_encoded(const mtlm::LabelSet& set, const std::vector<std::string>& tags) {
  return mtlm::is_bioes(set.labels()) ? mtlm::to_bioes(tags) : tags;
}

}  // namespace

Vocabularies build_vocabularies(const std::vector<mtlm::ConllSentence>& conll,
                                const std::vector<mtlm::SequenceExample>& sst2, const TaskSet& tasks,
                                TagScheme scheme) {
  std::vector<std::vector<std::string>> sentences;
  if (tasks.conll()) sentences = tokens_of(conll);
  if (tasks.sentiment)
    for (const auto& ex : sst2) sentences.push_back(ex.tokens);
  // Words seen once map to <unk>, which the model then learns to read from the characters (as
  // it must for unseen test words); it also shrinks the word table (by a quarter on CoNLL +
  // SST-2), which Adam updates whole at every step.
  mtlm::VocabOptions word_options;
  word_options.min_count = 2;
  word_options.normalizer = {.lowercase = true, .digits_to_zero = true};
  std::vector<std::vector<std::string>> columns[3];
  for (const auto& s : conll)
    for (std::size_t c = 0; c < 3; ++c)
      columns[c].push_back(scheme == TagScheme::bioes && c != mtlm::conll2003::pos ? mtlm::to_bioes(s.tags[c])
                                                                                   : s.tags[c]);
  Vocabularies v{mtlm::Vocabulary::build(sentences, word_options),
                 mtlm::CharVocabulary::build(sentences),
                 mtlm::LabelSet::build(columns[mtlm::conll2003::pos]),
                 mtlm::LabelSet::build(columns[mtlm::conll2003::chunk]),
                 mtlm::LabelSet::build(columns[mtlm::conll2003::ner]),
                 mtlm::LabelSet({"negative", "positive"}),
                 {}};
  std::set<std::string> kept;
  for (const auto& s : sentences)
    for (const auto& token : s)
      if (!kept.contains(token) && mtlm::tokenize(token).size() != 1) kept.insert(token);
  v.protected_tokens.assign(kept.begin(), kept.end());
  return v;
}

Model make_model(const Vocabularies& v, const Hyperparameters& h) {
  mtlm::WordDropout word_dropout;
  word_dropout.p = h.word_dropout;
  word_dropout.unk_id = mtlm::Vocabulary::unk_id;
  // Token-mean CRF losses are on the per-token scale of the POS and sentiment cross-entropies, so
  // no task's gradients dwarf the others' in the shared trunk (and in Adam's moments).
  const mtlm::CrfOptions crf{.reduction = mtlm::CrfReduction::token_mean};
  Model model{Trunk(Encoder(v.words.size(), v.chars.size(), word_dropout), mtlm::Dropout<>(h.dropout),
                    mtlm::BiLstm<word_dim + char_filters, hidden>(), mtlm::Dropout<>(h.dropout)),
              PosHead(v.pos.size()), ChunkHead(v.chunk.size(), features, crf), NerHead(v.ner.size(), features, crf),
              SentimentHead(v.sentiment.size())};
  // Both CRF columns are BIO or BIOES: an I-X may only continue an X, and with BIOES an entity
  // ends only with E-X (configuration, not weights; the label set says which encoding).
  model.head<"chunk">().set_bio_constraints(v.chunk.labels());
  model.head<"ner">().set_bio_constraints(v.ner.labels());
  // A batch touches a few hundred of the table's words: zeroing and clipping skip the rest.
  model.trunk().layer<0>().word_embedding().set_sparse_gradient(true);
  return model;
}

void initialize(Model& model, mtlm::Rng& rng) {
  model.initialize(rng);
  auto& words = model.trunk().layer<0>().word_embedding().weight();
  const double bound = std::sqrt(3.0 / static_cast<double>(word_dim));
  words.initialize(mtlm::init::Uniform{-bound, bound}, words.rows(), words.cols(), rng);
}

namespace detail {

void add_sentence(EncodedSet& out, const std::vector<std::string>& tokens, const Vocabularies& v) {
  const mtlm::CharIdOptions char_options;
  out.char_width = char_options.width();
  out.words.push_back(v.words.ids(tokens));
  auto& chars = out.chars.emplace_back();
  for (const auto& token : tokens) {
    const auto ids = mtlm::char_ids(token, v.chars, char_options);
    chars.insert(chars.end(), ids.begin(), ids.end());
  }
  out.lengths.push_back(static_cast<Index>(tokens.size()));
}

std::vector<std::int32_t> tag_ids(const mtlm::LabelSet& set, const std::vector<std::string>& tags) {
  std::vector<std::int32_t> out;
  for (const auto& t : tags) out.push_back(set.id(t));
  return out;
}

}  // namespace detail

EncodedSet encode(const std::vector<mtlm::ConllSentence>& data, const Vocabularies& v, bool with_targets) {
  EncodedSet out;
  for (const auto& s : data) {
    detail::add_sentence(out, s.tokens, v);
    if (with_targets) {
      out.pos.push_back(detail::tag_ids(v.pos, s.tags[mtlm::conll2003::pos]));
      out.chunk.push_back(detail::tag_ids(v.chunk, as_encoded(v.chunk, s.tags[mtlm::conll2003::chunk])));
      out.ner.push_back(detail::tag_ids(v.ner, as_encoded(v.ner, s.tags[mtlm::conll2003::ner])));
    }
  }
  return out;
}

EncodedSet encode(const std::vector<mtlm::SequenceExample>& data, const Vocabularies& v, bool with_targets) {
  EncodedSet out;
  for (const auto& ex : data) {
    detail::add_sentence(out, ex.tokens, v);
    if (with_targets) out.sentiment.push_back(v.sentiment.id(ex.label));
  }
  return out;
}

mtlm::Batch make_batch(const EncodedSet& set, std::span<const Index> indices) {
  return examples::word_char_batch(set, indices);
}

Predictions predict(std::span<Model> models, const EncodedSet& set, const Vocabularies& v,
                    const TaskSet& tasks, Index batch_size) {
  const std::size_t n = set.words.size();
  Predictions out;
  if (tasks.pos) out.pos.resize(n);
  if (tasks.chunk) out.chunk.resize(n);
  if (tasks.ner) out.ner.resize(n);
  if (tasks.sentiment) out.sentiment.resize(n);
  mtlm::BatchingOptions options;
  options.max_sequences = batch_size;
  options.shuffle = false;
  mtlm::Rng unused(0);
  const bool ensemble = models.size() > 1;
  examples::BioPosteriorDecoder chunk_decoder(v.chunk), ner_decoder(v.ner);
  Eigen::MatrixXf pos_sum, chunk_sum, ner_sum, sentiment_sum;
  for (const auto& indices : mtlm::bucket_batches(set.lengths, options, unused)) {
    const mtlm::Batch batch = make_batch(set, indices);
    auto keep = [&](std::vector<std::vector<std::string>>& into, const mtlm::LabelSet& labels, const auto& ids) {
      for (std::size_t b = 0; b < indices.size(); ++b)
        into[static_cast<std::size_t>(indices[b])] = labels.labels(ids[b]);
    };
    auto keep_sentiment = [&](const std::vector<std::int32_t>& ids) {
      for (std::size_t b = 0; b < indices.size(); ++b)
        out.sentiment[static_cast<std::size_t>(indices[b])] = v.sentiment.label(ids[b]);
    };
    if (!ensemble) {
      Model& model = models[0];
      model.forward(batch, mtlm::Mode::eval);
      if (tasks.pos) keep(out.pos, v.pos, model.head<"pos">().predict(batch));
      if (tasks.chunk) keep(out.chunk, v.chunk, model.head<"chunk">().predict(batch));
      if (tasks.ner) keep(out.ner, v.ner, model.head<"ner">().predict(batch));
      if (tasks.sentiment) keep_sentiment(model.head<"sentiment">().predict());
      continue;
    }
    pos_sum.setZero(v.pos.size(), batch.columns());
    chunk_sum.setZero(v.chunk.size(), batch.columns());
    ner_sum.setZero(v.ner.size(), batch.columns());
    sentiment_sum.setZero(v.sentiment.size(), batch.batch_size);
    for (Model& model : models) {
      model.forward(batch, mtlm::Mode::eval);
      if (tasks.pos) examples::add_softmax(model.head<"pos">().logits(), pos_sum);
      if (tasks.chunk) chunk_sum += mtlm::Cpu::eigen(model.head<"chunk">().marginals(batch).view());
      if (tasks.ner) ner_sum += mtlm::Cpu::eigen(model.head<"ner">().marginals(batch).view());
      if (tasks.sentiment) examples::add_softmax(model.head<"sentiment">().logits(), sentiment_sum);
    }
    if (tasks.pos) {
      const auto flat = examples::column_argmax(pos_sum);
      std::vector<std::vector<std::int32_t>> ids(indices.size());
      for (std::size_t b = 0; b < indices.size(); ++b) {
        const auto first = flat.begin() + batch.column(static_cast<Index>(b), 0);
        ids[b].assign(first, first + batch.lengths[b]);
      }
      keep(out.pos, v.pos, ids);
    }
    if (tasks.chunk) keep(out.chunk, v.chunk, chunk_decoder.decode(chunk_sum, batch));
    if (tasks.ner) keep(out.ner, v.ner, ner_decoder.decode(ner_sum, batch));
    if (tasks.sentiment) keep_sentiment(examples::column_argmax(sentiment_sum));
  }
  // BIOES-trained CRFs answer in the corpus's BIO, so scores and output read one encoding.
  for (auto [tags, set] : {std::pair{&out.chunk, &v.chunk}, {&out.ner, &v.ner}})
    if (mtlm::is_bioes(set->labels()))
      for (auto& sentence : *tags) sentence = mtlm::to_bio(sentence);
  return out;
}

Predictions predict(Model& model, const EncodedSet& set, const Vocabularies& v, const TaskSet& tasks) {
  return predict(std::span<Model>(&model, 1), set, v, tasks);
}

namespace detail {

/// Ids for metrics::accuracy; a gold label the model has never seen gets -1 (always wrong).
void append_ids(const mtlm::LabelSet& set, const std::vector<std::string>& labels,
                std::vector<mtlm::TokenId>& out) {
  for (const auto& l : labels) out.push_back(set.find(l).value_or(-1));
}

}  // namespace detail

void score(const std::vector<mtlm::ConllSentence>& gold, const Predictions& p, const Vocabularies& v,
           Scores& s) {
  s.conll_sentences = gold.size();
  std::vector<std::vector<std::string>> columns[3];
  for (const auto& sentence : gold) {
    s.conll_tokens += sentence.tokens.size();
    for (std::size_t c = 0; c < 3; ++c) columns[c].push_back(sentence.tags[c]);
  }
  if (!p.pos.empty()) {
    std::vector<mtlm::TokenId> gold_ids, predicted_ids;
    for (std::size_t i = 0; i < gold.size(); ++i) {
      detail::append_ids(v.pos, columns[mtlm::conll2003::pos][i], gold_ids);
      detail::append_ids(v.pos, p.pos[i], predicted_ids);
    }
    s.pos_accuracy = mtlm::metrics::accuracy(gold_ids, predicted_ids);
  }
  if (!p.chunk.empty()) s.chunk_f1 = mtlm::metrics::span_f1(columns[mtlm::conll2003::chunk], p.chunk).overall.f1;
  if (!p.ner.empty()) s.ner_f1 = mtlm::metrics::span_f1(columns[mtlm::conll2003::ner], p.ner).overall.f1;
}

void score(const std::vector<mtlm::SequenceExample>& gold, const Predictions& p, const Vocabularies& v,
           Scores& s) {
  s.sentiment_sentences = gold.size();
  if (p.sentiment.empty()) return;
  std::vector<mtlm::TokenId> gold_ids, predicted_ids;
  detail::append_ids(v.sentiment, mtlm::labels_of(gold), gold_ids);
  detail::append_ids(v.sentiment, p.sentiment, predicted_ids);
  s.sentiment_accuracy = mtlm::metrics::accuracy(gold_ids, predicted_ids);
}

namespace {

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out.append(l).append("\n");
  return out;
}

}  // namespace

void save_bundle(const std::filesystem::path& path, std::span<Model> models, const Vocabularies& v,
                 const TaskSet& tasks) {
  mtlm::io::SafetensorsWriter writer;
  examples::add_members(writer, models);
  writer.set_metadata("format", bundle_format);
  writer.set_metadata("tasks", tasks.to_string());
  writer.set_metadata("vocab.words", v.words.to_text());
  writer.set_metadata("vocab.chars", v.chars.to_text());
  writer.set_metadata("labels.pos", v.pos.to_text());
  writer.set_metadata("labels.chunk", v.chunk.to_text());
  writer.set_metadata("labels.ner", v.ner.to_text());
  writer.set_metadata("labels.sentiment", v.sentiment.to_text());
  writer.set_metadata("tokenizer.protected", join_lines(v.protected_tokens));
  writer.write(path);  // atomic: a temporary file renamed over `path`
}

Bundle load_bundle(const std::filesystem::path& path) {
  const mtlm::io::SafetensorsFile file(path);
  auto text = [&](const char* key) -> const std::string& { return examples::model_entry(file, key, "mtlm-tag"); };
  const std::string& format = text("format");
  if (format != bundle_format && format != single_model_format)
    throw mtlm::FormatError(file.source(), 0, "model format \"" + format + "\", expected \"" + bundle_format +
                                                  "\" or \"" + single_model_format + "\"");
  const std::string source = file.source();
  Vocabularies v{mtlm::Vocabulary::from_text(text("vocab.words"), source + "[vocab.words]"),
                 mtlm::CharVocabulary::from_text(text("vocab.chars"), source + "[vocab.chars]"),
                 mtlm::LabelSet::from_text(text("labels.pos"), source + "[labels.pos]"),
                 mtlm::LabelSet::from_text(text("labels.chunk"), source + "[labels.chunk]"),
                 mtlm::LabelSet::from_text(text("labels.ner"), source + "[labels.ner]"),
                 mtlm::LabelSet::from_text(text("labels.sentiment"), source + "[labels.sentiment]"),
                 mtlm::split_text_lines(text("tokenizer.protected"), source + "[tokenizer.protected]")};
  const TaskSet tasks = TaskSet::parse(text("tasks"), source + "[tasks]");
  auto make = [&] { return make_model(v, {}); };
  std::vector<Model> models;
  if (format == single_model_format)
    mtlm::io::read_parameters(file, models.emplace_back(make()));
  else
    models = examples::read_members(file, text("members"), make);
  return {std::move(v), tasks, std::move(models)};
}

}  // namespace tag
