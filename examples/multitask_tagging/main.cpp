// mtlm-tag: one model for part-of-speech tags, chunks and named entities (CoNLL-2003's columns)
// and sentence sentiment (SST-2, a dataset of its own), the two datasets mixed by the library's
// multi-dataset sampler.
//
//   mtlm-tag train   --conll DIR --sst2 DIR --out MODEL [--epochs N] [--seed N] [--threads N]
//                    [--time-budget S] [--tasks pos,chunk,ner,sentiment] [--lr X] [--batch-size N]
//                    [--sampling round-robin|temperature|proportional] [--temperature T]
//                    [--lr-decay cosine|none] [--ensemble K]
//   mtlm-tag eval    --model MODEL --conll DIR --sst2 DIR [--split test|dev] [--json]
//   mtlm-tag predict --model MODEL            (one sentence per line on stdin, JSON lines out)
//
// CoNLL DIR holds train.txt, dev.txt, test.txt ("WORD POS CHUNK NER"); SST-2 DIR holds train.tsv
// and dev.tsv ("sentence<TAB>label"). SST-2's test.tsv has no labels, so sentiment is always
// scored on dev.tsv, and the JSON of eval says so.
#include "tag_model.hpp"

#include "../common/cli.hpp"
#include "../common/ensemble.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <span>
#include <string>

namespace {

using examples::Args;
using examples::parse;
using examples::set_threads;

/// Round-robin by default: CoNLL and SST-2 get one step each in turn. SST-2 has 4.8 times
/// CoNLL's sentences, but each CoNLL batch trains three heads, and sentiment levels off after a few
/// passes over its phrases while NER is still learning.
mtlm::train::TaskSampling sampling_of(const Args& args) {
  mtlm::train::TaskSampling s;
  const std::string policy = args.get("sampling", "round-robin");
  if (policy == "temperature")
    s.policy = mtlm::train::SamplingPolicy::temperature;
  else if (policy == "proportional")
    s.policy = mtlm::train::SamplingPolicy::proportional;
  else if (policy == "round-robin")
    s.policy = mtlm::train::SamplingPolicy::round_robin;
  else
    throw mtlm::Error("--sampling expects temperature, proportional or round-robin, got \"" + policy + "\"");
  s.temperature = args.number("temperature", s.temperature);
  return s;
}

std::string scores_line(const tag::Scores& s, const tag::TaskSet& tasks) {
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

int train(const Args& args) {
  const tag::TaskSet tasks = tag::TaskSet::parse(args.get("tasks", "pos,chunk,ner,sentiment"), "--tasks");
  const std::filesystem::path conll = args.need("conll");  // always: the tag sets size the heads
  const std::filesystem::path out = args.need("out");
  const auto conll_train = tag::read_conll2003(conll / "train.txt");
  const auto conll_dev = tasks.conll() ? tag::read_conll2003(conll / "dev.txt") : std::vector<mtlm::ConllSentence>{};
  std::vector<mtlm::SequenceExample> sst2_train, sst2_dev;
  if (tasks.sentiment) {
    const std::filesystem::path sst2 = args.need("sst2");
    sst2_train = tag::read_sst2(sst2 / "train.tsv");
    sst2_dev = tag::read_sst2(sst2 / "dev.tsv");
  }

  tag::Hyperparameters h;
  h.dropout = args.number("dropout", h.dropout);
  h.word_dropout = args.number("word-dropout", h.word_dropout);
  const auto seed = static_cast<std::uint64_t>(args.number("seed", 1));
  const auto batch_size = static_cast<mtlm::Index>(args.number("batch-size", 32));
  const mtlm::train::TaskSampling sampling = sampling_of(args);
  const int members = static_cast<int>(args.number("ensemble", 1));
  const int threads = static_cast<int>(args.number("threads", 1));
  if (members < 1 || threads < 1) throw mtlm::Error("--ensemble and --threads must be at least 1");
  // Several members train side by side on one thread each: a BiLSTM batch keeps one core busier
  // than two, so K models in parallel get more epochs in than K models one after the other.
  const int side_by_side = std::min(members, threads);
  const int rounds = (members + side_by_side - 1) / side_by_side;
  const int threads_per_member = std::max(1, threads / side_by_side);

  const tag::Vocabularies vocab = tag::build_vocabularies(conll_train, sst2_train, tasks);
  // The datasets the sampler mixes: CoNLL batches carry the tag tasks, SST-2 batches sentiment.
  std::vector<tag::EncodedSet> datasets;
  if (tasks.conll()) datasets.push_back(tag::encode(conll_train, vocab, true));
  if (tasks.sentiment) datasets.push_back(tag::encode(sst2_train, vocab, true));
  const tag::EncodedSet conll_dev_encoded = tag::encode(conll_dev, vocab, false);
  const tag::EncodedSet sst2_dev_encoded = tag::encode(sst2_dev, vocab, false);

  std::vector<tag::Model> models;
  for (int m = 0; m < members; ++m) models.push_back(tag::make_model(vocab, h));
  std::cerr << "mtlm-tag: " << conll_train.size() << " CoNLL sentences, " << sst2_train.size()
            << " SST-2 sentences; " << vocab.words.size() << " words, " << vocab.chars.size() << " characters, "
            << vocab.pos.size() << " POS tags, " << vocab.chunk.size() << " chunk tags, " << vocab.ner.size()
            << " NER tags; " << members << " model(s) of " << mtlm::count_parameters(models[0])
            << " parameters, tasks " << tasks.to_string() << "\n";

  using Schedule = mtlm::schedule::Cosine;
  using Trainer = mtlm::train::Trainer<tag::Model, mtlm::Adam<float>, Schedule>;
  mtlm::BatchingOptions batching;
  batching.max_sequences = batch_size;
  // An epoch ends when the most up-sampled dataset has been seen once (expected), so dev
  // evaluation and the time budget come round often; proportional sampling is one pass. The
  // batch counts do not depend on the shuffle, so every epoch has the same number of steps.
  auto epoch_sampling = [&](const std::vector<std::size_t>& counts) {
    mtlm::train::TaskSampling s = sampling;
    const auto p = mtlm::train::task_probabilities(counts, s);
    double draws = 0;
    for (std::size_t d = 0; d < counts.size(); ++d)
      if (p[d] > 0) draws = draws == 0 ? counts[d] / p[d] : std::min(draws, counts[d] / p[d]);
    s.draws_per_epoch = static_cast<std::size_t>(std::lround(draws));
    return s;
  };
  auto epoch = [&](mtlm::Rng& r) {
    std::vector<std::vector<std::vector<mtlm::Index>>> batches;
    std::vector<std::size_t> counts;
    for (const auto& set : datasets) {
      batches.push_back(mtlm::bucket_batches(set.lengths, batching, r));
      counts.push_back(batches.back().size());
    }
    Trainer::Batches out;
    for (const auto& [d, b] : mtlm::train::plan_epoch(counts, epoch_sampling(counts), r)) {
      const tag::EncodedSet& set = datasets[d];
      const auto& indices = batches[d][b];
      mtlm::train::TrainingBatch<tag::Model> item{tag::make_batch(set, indices), {}};
      // Tasks left unset add no loss: a CoNLL batch trains the tag heads, an SST-2 batch sentiment.
      if (!set.pos.empty() && tasks.pos) item.targets.set<"pos">(mtlm::gather(set.pos, indices));
      if (!set.chunk.empty() && tasks.chunk) item.targets.set<"chunk">(mtlm::gather(set.chunk, indices));
      if (!set.ner.empty() && tasks.ner) item.targets.set<"ner">(mtlm::gather(set.ner, indices));
      if (!set.sentiment.empty()) item.targets.set<"sentiment">(mtlm::gather(set.sentiment, indices));
      out.push_back(std::move(item));
    }
    return out;
  };
  // Selection: the mean of the trained tasks' dev scores (one task: its own score).
  auto dev_scores = [&](std::span<tag::Model> m) {
    tag::Scores s;
    if (tasks.conll()) tag::score(conll_dev, tag::predict(m, conll_dev_encoded, vocab, tasks.conll_part()), vocab, s);
    if (tasks.sentiment)
      tag::score(sst2_dev, tag::predict(m, sst2_dev_encoded, vocab, tasks.sentiment_part()), vocab, s);
    return s;
  };
  auto evaluate = [&](tag::Model& m) {
    const tag::Scores s = dev_scores(std::span<tag::Model>(&m, 1));
    mtlm::train::Metrics metrics;
    if (tasks.pos) metrics.emplace_back("dev_pos", s.pos_accuracy);
    if (tasks.chunk) metrics.emplace_back("dev_chunk", s.chunk_f1);
    if (tasks.ner) metrics.emplace_back("dev_ner", s.ner_f1);
    if (tasks.sentiment) metrics.emplace_back("dev_sentiment", s.sentiment_accuracy);
    double sum = 0;
    for (const auto& [name, value] : metrics) sum += value;
    metrics.emplace_back("dev_mean", sum / static_cast<double>(metrics.size()));
    return metrics;
  };

  const int epochs = static_cast<int>(args.number("epochs", 30));
  // Cosine decay over the planned epochs by default: the last epochs take small steps around a
  // good point instead of bouncing at the full rate.
  std::vector<std::size_t> counts;
  mtlm::Rng count_rng(seed);
  for (const auto& set : datasets) counts.push_back(mtlm::bucket_batches(set.lengths, batching, count_rng).size());
  const auto steps_per_epoch = static_cast<std::int64_t>(epoch_sampling(counts).draws_per_epoch);
  const Schedule schedule = examples::learning_rate_schedule(args, 2e-3, "cosine", epochs, steps_per_epoch);

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> reports(static_cast<std::size_t>(members));
  examples::train_side_by_side(members, side_by_side, [&](int m) {
    mtlm::Cpu::set_threads(threads_per_member);
    // Member 0 draws from the seed itself, so one model trains as it always has for a seed.
    mtlm::Rng rng(m == 0 ? seed : seed * 1000003 + static_cast<std::uint64_t>(m));
    tag::Model& model = models[static_cast<std::size_t>(m)];
    tag::initialize(model, rng);
    mtlm::Adam<float> adam({.lr = schedule.base_lr});
    mtlm::train::TrainerOptions options;
    options.epochs = epochs;
    options.seed = rng.next();
    options.clip_norm = 5.0;
    options.select_metric = "dev_mean";
    options.max_seconds = args.number("time-budget", 0.0) / rounds;  // checked after each epoch
    options.log = m == 0 ? &std::cerr : nullptr;
    const auto result = Trainer(model, adam, options, schedule).fit(epoch, evaluate);
    reports[static_cast<std::size_t>(m)] =
        "model " + std::to_string(m + 1) + ": best dev_mean " + std::to_string(result.best_metric) +
        " at epoch " + std::to_string(result.best_epoch) + " of " + std::to_string(result.epochs_run) +
        (result.stopped_early ? " (time budget reached)" : "");
  });
  for (const auto& r : reports) std::cerr << "mtlm-tag: " << r << "\n";
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (members > 1)
    std::cerr << "mtlm-tag: ensemble of " << members << " on dev: " << scores_line(dev_scores(models), tasks) << "\n";
  tag::save_bundle(out, models, vocab, tasks);
  std::cerr << "mtlm-tag: trained in " << seconds << " s; model written to " << out.string() << "\n";
  return 0;
}

std::string json_number(bool on, double value) {
  if (!on) return "null";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6f", value);
  return buffer;
}

int eval(const Args& args) {
  set_threads(args);
  tag::Bundle bundle = tag::load_bundle(args.need("model"));
  const tag::TaskSet& tasks = bundle.tasks;
  const std::string split = args.get("split", "test");
  if (split != "test" && split != "dev") throw mtlm::Error("--split expects test or dev, got \"" + split + "\"");
  tag::Scores s;
  if (tasks.conll()) {
    const auto data = tag::read_conll2003(std::filesystem::path(args.need("conll")) / (split + ".txt"));
    tag::score(data, tag::predict(bundle.models, tag::encode(data, bundle.vocab, false), bundle.vocab,
                                  tasks.conll_part()),
               bundle.vocab, s);
  }
  if (tasks.sentiment) {  // SST-2's test.tsv is unlabelled: dev.tsv is the scored split
    const auto data = tag::read_sst2(std::filesystem::path(args.need("sst2")) / "dev.tsv");
    tag::score(data, tag::predict(bundle.models, tag::encode(data, bundle.vocab, false), bundle.vocab,
                                  tasks.sentiment_part()),
               bundle.vocab, s);
  }
  if (args.flags.contains("json")) {
    std::printf("{\"split\": %s, \"conll_split\": %s, \"sentiment_split\": %s, \"tasks\": %s, "
                "\"pos_accuracy\": %s, \"chunk_f1\": %s, \"ner_f1\": %s, \"sentiment_accuracy\": %s, "
                "\"conll_sentences\": %zu, \"conll_tokens\": %zu, \"sentiment_sentences\": %zu}\n",
                mtlm::json::quote(split).c_str(), tasks.conll() ? mtlm::json::quote(split).c_str() : "null",
                tasks.sentiment ? "\"dev\"" : "null", mtlm::json::quote(tasks.to_string()).c_str(),
                json_number(tasks.pos, s.pos_accuracy).c_str(), json_number(tasks.chunk, s.chunk_f1).c_str(),
                json_number(tasks.ner, s.ner_f1).c_str(), json_number(tasks.sentiment, s.sentiment_accuracy).c_str(),
                s.conll_sentences, s.conll_tokens, s.sentiment_sentences);
  } else {
    std::printf("CoNLL %s (%zu sentences), SST-2 dev (%zu sentences): %s\n", split.c_str(), s.conll_sentences,
                s.sentiment_sentences, scores_line(s, tasks).c_str());
  }
  return 0;
}

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + mtlm::json::quote(items[i]);
  return out + "]";
}

int predict(const Args& args) {
  set_threads(args);
  tag::Bundle bundle = tag::load_bundle(args.need("model"));
  const tag::TaskSet& tasks = bundle.tasks;
  // Training tokens such as "U.S." stay whole instead of splitting off their period.
  mtlm::TokenizerOptions tokenizer;
  tokenizer.protected_tokens.insert(bundle.vocab.protected_tokens.begin(), bundle.vocab.protected_tokens.end());
  const std::vector<std::string> none;
  std::string line;
  std::size_t number = 0;
  while (std::getline(std::cin, line)) {
    ++number;
    mtlm::SequenceExample ex;
    ex.tokens = mtlm::tokenize(line, tokenizer, "<stdin>", number);
    tag::Predictions p;
    if (!ex.tokens.empty())
      p = tag::predict(bundle.models, tag::encode({ex}, bundle.vocab, false), bundle.vocab, tasks);
    auto tags = [&](bool on, const std::vector<std::vector<std::string>>& of) {
      return !on ? std::string("null") : json_list(of.empty() ? none : of[0]);
    };
    const std::string sentiment =
        !tasks.sentiment || p.sentiment.empty() ? "null" : mtlm::json::quote(p.sentiment[0]);
    std::printf("{\"text\": %s, \"tokens\": %s, \"pos\": %s, \"chunk\": %s, \"ner\": %s, \"sentiment\": %s}\n",
                mtlm::json::quote(line).c_str(), json_list(ex.tokens).c_str(), tags(tasks.pos, p.pos).c_str(),
                tags(tasks.chunk, p.chunk).c_str(), tags(tasks.ner, p.ner).c_str(), sentiment.c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string command = argc > 1 ? argv[1] : "";
    if (command == "train")
      return train(parse(argc, argv, {{"conll", false}, {"sst2", false}, {"out", false}, {"epochs", false},
                                      {"seed", false}, {"threads", false}, {"time-budget", false}, {"lr", false},
                                      {"batch-size", false}, {"dropout", false}, {"word-dropout", false},
                                      {"tasks", false}, {"sampling", false}, {"temperature", false},
                                      {"lr-decay", false}, {"ensemble", false}}));
    if (command == "eval")
      return eval(parse(argc, argv, {{"model", false}, {"conll", false}, {"sst2", false}, {"split", false},
                                     {"json", true}, {"threads", false}}));
    if (command == "predict") return predict(parse(argc, argv, {{"model", false}, {"threads", false}}));
    std::cerr << "usage:\n"
                 "  mtlm-tag train   --conll DIR --sst2 DIR --out MODEL [--epochs N] [--seed N] [--threads N]\n"
                 "                   [--time-budget S] [--tasks pos,chunk,ner,sentiment] [--lr X] [--batch-size N]\n"
                 "                   [--sampling round-robin|temperature|proportional] [--temperature T]\n"
                 "                   [--dropout P] [--word-dropout P] [--lr-decay cosine|none]\n"
                 "                   [--ensemble K]  (K models, trained --threads at a time, probabilities averaged)\n"
                 "  mtlm-tag eval    --model MODEL --conll DIR --sst2 DIR [--split test|dev] [--json]\n"
                 "  mtlm-tag predict --model MODEL   (sentences on stdin, one JSON object per line out)\n";
    return command.empty() || command == "--help" || command == "-h" ? 0 : 2;
  } catch (const std::exception& e) {
    std::cerr << "mtlm-tag: " << e.what() << "\n";
    return 1;
  }
}
