// @brief The multi-task tagging model of mtlm-tag: one shared character-aware BiLSTM trunk and
// four heads, three trained on CoNLL-2003's columns (POS, chunks, named entities) and one on its
// own dataset (SST-2 sentence sentiment), plus what turns both datasets into batches and a
// trained model into a single file.
#pragma once

#include <mtlm/mtlm.hpp>

#include <algorithm>
#include <filesystem>
#include <ratio>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace tag {

using mtlm::Dynamic;
using mtlm::Index;

inline constexpr Index word_dim = 100;
inline constexpr Index char_dim = 30;
inline constexpr Index char_filters = 50;
inline constexpr Index char_window = 3;
inline constexpr Index hidden = 200;
inline constexpr Index features = 2 * hidden;

using Encoder = mtlm::WordCharEmbedding<Dynamic, word_dim, Dynamic, char_dim, char_filters, char_window>;
using Trunk = mtlm::Sequential<Encoder, mtlm::Dropout<>, mtlm::BiLstm<word_dim + char_filters, hidden>,
                               mtlm::Dropout<>>;
using PosHead = mtlm::TokenTagger<features, Dynamic>;
using ChunkHead = mtlm::CrfTagger<features, Dynamic>;
using NerHead = mtlm::CrfTagger<features, Dynamic>;
using SentimentHead = mtlm::SequenceClassifier<features, Dynamic, mtlm::PoolingKind::max>;
/// NER's loss counts twice: with equal weights the shared trunk serves POS, chunks and sentiment
/// at NER's expense (1 to 2 points of test F1; README, "Does sharing help?").
using NerWeight = std::ratio<2>;
using Model = mtlm::MultiTask<Trunk, mtlm::Task<"pos", PosHead>, mtlm::Task<"chunk", ChunkHead>,
                              mtlm::Task<"ner", NerHead, NerWeight>, mtlm::Task<"sentiment", SentimentHead>>;

/// Which heads train (and are scored): every model has all four, --tasks picks the targets set.
struct TaskSet {
  bool pos = true, chunk = true, ner = true, sentiment = true;

  bool conll() const { return pos || chunk || ner; }
  /// The tasks each dataset scores (predicting the other dataset's tasks would be wasted work).
  TaskSet conll_part() const { return {pos, chunk, ner, false}; }
  TaskSet sentiment_part() const { return {false, false, false, sentiment}; }
  int count() const { return int(pos) + int(chunk) + int(ner) + int(sentiment); }

  /// "pos,chunk,ner,sentiment" or any non-empty subset; `source` names the text in errors.
  static TaskSet parse(const std::string& text, const std::string& source) {
    TaskSet t{false, false, false, false};
    std::size_t begin = 0;
    while (begin <= text.size()) {
      const std::size_t comma = std::min(text.find(',', begin), text.size());
      const std::string name = text.substr(begin, comma - begin);
      bool* flag = name == "pos" ? &t.pos : name == "chunk" ? &t.chunk : name == "ner" ? &t.ner
                                   : name == "sentiment"    ? &t.sentiment : nullptr;
      if (!flag)
        throw mtlm::Error(source + ": unknown task \"" + name + "\" in \"" + text +
                          "\", expected a list of pos, chunk, ner, sentiment");
      *flag = true;
      begin = comma + 1;
    }
    return t;
  }
  std::string to_string() const {
    std::string out;
    for (const auto& [on, name] : {std::pair{pos, "pos"}, {chunk, "chunk"}, {ner, "ner"}, {sentiment, "sentiment"}})
      if (on) {
        if (!out.empty()) out += ',';
        out += name;
      }
    return out;
  }
};

/// Everything besides the weights that a trained model needs to read text.
struct Vocabularies {
  mtlm::Vocabulary words;      ///< lower-cased, digits -> 0: case lives in the characters
  mtlm::CharVocabulary chars;  ///< original case: capitals are the best clue for names
  mtlm::LabelSet pos;
  mtlm::LabelSet chunk;
  mtlm::LabelSet ner;
  mtlm::LabelSet sentiment;
  /// Training tokens the tokenizer would split ("U.S.", "-lrb-"): raw input keeps them whole.
  std::vector<std::string> protected_tokens;
};

struct Hyperparameters {
  double dropout = 0.5;
  double word_dropout = 0.05;
};

/// How the chunk and NER CRFs encode spans. CoNLL's files are BIO (IOB2); with BIOES the CRFs
/// learn entity ends (E-) and single-token entities (S-) as tags of their own. The label sets
/// stored with a model say which it is, and predictions are always given back in BIO.
enum class TagScheme { bio, bioes };

/// SST-2 (GLUE layout, "sentence<TAB>label") with its labels 0 / 1 read as negative / positive.
std::vector<mtlm::SequenceExample> read_sst2(const std::filesystem::path& path);

/// The token lists of CoNLL sentences.
std::vector<std::vector<std::string>> tokens_of(const std::vector<mtlm::ConllSentence>& data);

/// A CoNLL-2003 file; every token line must have its four fields (WORD POS CHUNK NER).
std::vector<mtlm::ConllSentence> read_conll2003(const std::filesystem::path& path);

/// Word and character vocabularies come from the training data of the tasks that train (a word
/// seen only by an untrained task would get an untrained vector instead of <unk>'s); the tag
/// sets always come from CoNLL, so every head has its size.
Vocabularies build_vocabularies(const std::vector<mtlm::ConllSentence>& conll,
                                const std::vector<mtlm::SequenceExample>& sst2, const TaskSet& tasks,
                                TagScheme scheme = TagScheme::bio);

/// An untrained model sized for `v`, its chunk and NER CRFs restricted to valid sequences of
/// their label sets' encoding (BIO or BIOES).
Model make_model(const Vocabularies& v, const Hyperparameters& h);

/// Random initial weights; word vectors are uniform in +-sqrt(3 / word_dim) (variance 1/dim, as
/// Lample et al. 2016) instead of N(0, 1): vectors learned from scratch then rise above their
/// initial noise within a few hundred Adam steps instead of thousands.
void initialize(Model& model, mtlm::Rng& rng);

/// Sentences as ids, prepared once and batched every epoch; the targets present are those of
/// the sentences' dataset (CoNLL: pos, chunk, ner; SST-2: sentiment).
struct EncodedSet {
  std::vector<std::vector<mtlm::TokenId>> words;
  std::vector<std::vector<mtlm::TokenId>> chars;  ///< per sentence: width ids per token, concatenated
  std::vector<Index> lengths;
  Index char_width = 0;
  std::vector<std::vector<std::int32_t>> pos, chunk, ner;
  std::vector<std::int32_t> sentiment;
};

/// CoNLL sentences as ids; `with_targets` adds their POS, chunk and NER tag ids.
EncodedSet encode(const std::vector<mtlm::ConllSentence>& data, const Vocabularies& v, bool with_targets);

/// SST-2 sentences as ids; `with_targets` adds their sentiment ids.
EncodedSet encode(const std::vector<mtlm::SequenceExample>& data, const Vocabularies& v, bool with_targets);

/// The padded batch (word ids and character ids) of the sentences at `indices`.
mtlm::Batch make_batch(const EncodedSet& set, std::span<const Index> indices);

/// Predictions for a list of sentences, in their order; a task left out stays empty.
struct Predictions {
  std::vector<std::vector<std::string>> pos, chunk, ner;
  std::vector<std::string> sentiment;
};

/// Predictions of one model, or of an ensemble: one model decodes its CRFs by Viterbi and takes
/// the argmax of its softmaxes; an ensemble averages the members' per-token tag probabilities (CRF
/// marginals, POS softmax) and sentence probabilities, then decodes chunks and entities as the
/// most probable BIO-valid sequence of the averages.
Predictions predict(std::span<Model> models, const EncodedSet& set, const Vocabularies& v,
                    const TaskSet& tasks, Index batch_size = 64);

Predictions predict(Model& model, const EncodedSet& set, const Vocabularies& v, const TaskSet& tasks);

struct Scores {
  double pos_accuracy = 0, chunk_f1 = 0, ner_f1 = 0, sentiment_accuracy = 0;
  std::size_t conll_sentences = 0, conll_tokens = 0, sentiment_sentences = 0;
};

/// POS accuracy per token; chunk and NER F1 per entity with conlleval's rules.
void score(const std::vector<mtlm::ConllSentence>& gold, const Predictions& p, const Vocabularies& v,
           Scores& s);

/// Sentiment accuracy.
void score(const std::vector<mtlm::SequenceExample>& gold, const Predictions& p, const Vocabularies& v,
           Scores& s);

// ---- the model file: the weights, vocabularies, label sets and trained tasks in one file ----

/// Writes every member, the vocabularies and the trained tasks to `path` (atomically).
void save_bundle(const std::filesystem::path& path, std::span<Model> models, const Vocabularies& v,
                 const TaskSet& tasks);

struct Bundle {
  Vocabularies vocab;
  TaskSet tasks;
  std::vector<Model> models;
};

/// Reads a file written by save_bundle (or a single model of the first format); a wrong or
/// damaged file is a clear error naming it.
Bundle load_bundle(const std::filesystem::path& path);

}  // namespace tag
