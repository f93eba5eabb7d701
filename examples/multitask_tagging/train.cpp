// The training command of mtlm-tag, in a translation unit of its own: training instantiates the
// model's backward pass (three tagging heads, two of them CRFs, and a sentence classifier), the
// optimizer and the trainer, as much code as the rest of the program.
#include "commands.hpp"

#include "../common/ensemble.hpp"

#include <chrono>
#include <cmath>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tag {

namespace {

using examples::Args;

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
  // --mix C:S draws C CoNLL batches for every S SST-2 batches (round-robin, evenly spread).
  if (const std::string mix = args.get("mix", ""); !mix.empty()) {
    auto share = [&](const std::string& text) {
      try {
        std::size_t used = 0;
        const double v = std::stod(text, &used);
        if (used == text.size() && v >= 0) return v;
      } catch (const std::logic_error&) {
      }
      throw mtlm::Error("--mix expects CONLL:SST2 shares such as 2:1, got \"" + mix + "\"");
    };
    const std::size_t colon = mix.find(':');
    if (colon == std::string::npos) share("");
    s.weights = {share(mix.substr(0, colon)), share(mix.substr(colon + 1))};
  }
  return s;
}

}  // namespace

int train_command(const Args& args) {
  const TaskSet tasks = TaskSet::parse(args.get("tasks", "pos,chunk,ner,sentiment"), "--tasks");
  const std::string scheme_name = args.get("tag-scheme", "bio");
  if (scheme_name != "bio" && scheme_name != "bioes")
    throw mtlm::Error("--tag-scheme expects bio or bioes, got \"" + scheme_name + "\"");
  const TagScheme scheme = scheme_name == "bioes" ? TagScheme::bioes : TagScheme::bio;
  const std::filesystem::path conll = args.need("conll");  // always: the tag sets size the heads
  const std::filesystem::path out = args.need("out");
  const auto conll_train = read_conll2003(conll / "train.txt");
  const auto conll_dev = tasks.conll() ? read_conll2003(conll / "dev.txt") : std::vector<mtlm::ConllSentence>{};
  std::vector<mtlm::SequenceExample> sst2_train, sst2_dev;
  if (tasks.sentiment) {
    const std::filesystem::path sst2 = args.need("sst2");
    sst2_train = read_sst2(sst2 / "train.tsv");
    sst2_dev = read_sst2(sst2 / "dev.tsv");
  }

  Hyperparameters h;
  h.dropout = args.number("dropout", h.dropout);
  h.word_dropout = args.number("word-dropout", h.word_dropout);
  const auto seed = static_cast<std::uint64_t>(args.number("seed", 1));
  const auto batch_size = static_cast<mtlm::Index>(args.number("batch-size", 32));
  mtlm::train::TaskSampling sampling = sampling_of(args);
  const int members = static_cast<int>(args.number("ensemble", 1));
  const int threads = static_cast<int>(args.number("threads", 1));
  if (members < 1 || threads < 1) throw mtlm::Error("--ensemble and --threads must be at least 1");
  const double average = examples::parameter_average_decay(args, 0.0);
  // Lazy Adam moves only the word vectors a batch used (and their moments), not the whole table.
  const bool lazy = args.flags.contains("lazy-adam");
  // Several members train side by side on one thread each: a BiLSTM batch keeps one core busier
  // than two, so K models in parallel get more epochs in than K models one after the other.
  const int side_by_side = std::min(members, threads);
  const int rounds = (members + side_by_side - 1) / side_by_side;
  const int threads_per_member = std::max(1, threads / side_by_side);

  const Vocabularies vocab = build_vocabularies(conll_train, sst2_train, tasks, scheme);
  // The datasets the sampler mixes: CoNLL batches carry the tag tasks, SST-2 batches sentiment.
  std::vector<EncodedSet> datasets;
  if (tasks.conll()) datasets.push_back(encode(conll_train, vocab, true));
  if (tasks.sentiment) datasets.push_back(encode(sst2_train, vocab, true));
  if (datasets.size() != 2) sampling.weights.clear();  // one dataset: nothing to mix
  const EncodedSet conll_dev_encoded = encode(conll_dev, vocab, false);
  const EncodedSet sst2_dev_encoded = encode(sst2_dev, vocab, false);

  std::vector<Model> models;
  for (int m = 0; m < members; ++m) models.push_back(make_model(vocab, h));
  std::cerr << "mtlm-tag: " << conll_train.size() << " CoNLL sentences, " << sst2_train.size()
            << " SST-2 sentences; " << vocab.words.size() << " words, " << vocab.chars.size() << " characters, "
            << vocab.pos.size() << " POS tags, " << vocab.chunk.size() << " chunk tags, " << vocab.ner.size()
            << " NER tags; " << members << " model(s) of " << mtlm::count_parameters(models[0])
            << " parameters, tasks " << tasks.to_string() << "\n";

  using Schedule = mtlm::schedule::Cosine;
  using Trainer = mtlm::train::Trainer<Model, mtlm::Adam<float>, Schedule>;
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
      const EncodedSet& set = datasets[d];
      const auto& indices = batches[d][b];
      mtlm::train::TrainingBatch<Model> item{make_batch(set, indices), {}};
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
  auto dev_scores = [&](std::span<Model> m) {
    Scores s;
    if (tasks.conll()) score(conll_dev, predict(m, conll_dev_encoded, vocab, tasks.conll_part()), vocab, s);
    if (tasks.sentiment)
      score(sst2_dev, predict(m, sst2_dev_encoded, vocab, tasks.sentiment_part()), vocab, s);
    return s;
  };
  auto evaluate = [&](Model& m) {
    const Scores s = dev_scores(std::span<Model>(&m, 1));
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
    Model& model = models[static_cast<std::size_t>(m)];
    initialize(model, rng);
    mtlm::Adam<float> adam({.lr = schedule.base_lr, .lazy = lazy});
    mtlm::train::TrainerOptions options;
    options.epochs = epochs;
    options.seed = rng.next();
    options.clip_norm = 5.0;
    options.select_metric = "dev_mean";
    options.max_seconds = args.number("time-budget", 0.0) / rounds;  // checked after each epoch
    options.log = m == 0 ? &std::cerr : nullptr;
    options.average_decay = average;
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
  save_bundle(out, models, vocab, tasks);
  std::cerr << "mtlm-tag: trained in " << seconds << " s; model written to " << out.string() << "\n";
  return 0;
}

}  // namespace tag
