// The training command of mtlm-nlu, in a translation unit of its own: training instantiates the
// model's backward pass, the optimizer and the trainer, as much code as the rest of the program,
// and in one unit with it the demo took 38 s to compile.
#include "commands.hpp"

#include "../common/ensemble.hpp"

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

namespace nlu {

using examples::Args;

int train_command(const Args& args) {
  const std::filesystem::path data = args.need("data");
  const std::filesystem::path out = args.need("out");
  const auto train_set = mtlm::read_atis(data / "train");
  const auto valid_set = mtlm::read_atis(data / "valid");

  Hyperparameters h;
  h.dropout = args.number("dropout", h.dropout);
  h.word_dropout = args.number("word-dropout", h.word_dropout);
  const std::string tasks = args.get("tasks", "intent,slots,lm");
  const bool use_intent = tasks.find("intent") != std::string::npos;
  const bool use_slots = tasks.find("slots") != std::string::npos;
  const bool use_lm = tasks.find("lm") != std::string::npos;
  if (!use_intent && !use_slots) throw mtlm::Error("--tasks needs intent or slots");
  const auto seed = static_cast<std::uint64_t>(args.number("seed", 1));
  const auto batch_size = static_cast<mtlm::Index>(args.number("batch-size", 16));
  const int members = static_cast<int>(args.number("ensemble", 1));
  const int threads = static_cast<int>(args.number("threads", 1));
  if (members < 1 || threads < 1) throw mtlm::Error("--ensemble and --threads must be at least 1");
  const int rounds = (members + threads - 1) / threads;
  const double average = examples::parameter_average_decay(args, 0.999);

  const Vocabularies vocab = build_vocabularies(train_set);
  const EncodedSet encoded = encode(train_set, vocab, true);
  const EncodedSet valid_encoded = encode(valid_set, vocab, false);
  std::vector<Model> models;
  for (int m = 0; m < members; ++m) models.push_back(make_model(vocab, h));
  std::cerr << "mtlm-nlu: " << train_set.size() << " training examples, " << vocab.words.size() << " words, "
            << vocab.chars.size() << " characters, " << vocab.intents.size() - 1 << " intents, "
            << vocab.slots.size() << " slot tags; " << members << " model(s) of "
            << mtlm::count_parameters(models[0]) << " parameters, tasks " << tasks << "\n";

  using Schedule = mtlm::schedule::Cosine;
  using Trainer = mtlm::train::Trainer<Model, mtlm::Adam<float>, Schedule>;
  mtlm::BatchingOptions batching;
  batching.max_sequences = batch_size;
  auto epoch = [&](mtlm::Rng& r) {
    Trainer::Batches batches;
    for (const auto& indices : mtlm::bucket_batches(encoded.lengths, batching, r)) {
      mtlm::train::TrainingBatch<Model> item{make_batch(encoded, indices), {}};
      if (use_intent) item.targets.set<"intent">(mtlm::gather(encoded.intents, indices));
      if (use_slots) item.targets.set<"slots">(mtlm::gather(encoded.slots, indices));
      if (use_lm) item.targets.set<"lm">({});
      batches.push_back(std::move(item));
    }
    return batches;
  };
  // Selection: sentence accuracy when both tasks train, otherwise the trained task's own score.
  const std::string select = use_intent && use_slots ? "valid_sentence" : use_intent ? "valid_intent" : "valid_slot_f1";
  auto evaluate = [&](Model& m) {
    const Scores s = score(valid_set, predict(m, valid_encoded, vocab));
    return mtlm::train::Metrics{{"valid_sentence", s.sentence_accuracy},
                                {"valid_intent", s.intent_accuracy},
                                {"valid_slot_f1", s.slot_f1}};
  };

  // Constant unless --lr-decay cosine (the number of batches does not depend on the shuffle, so
  // every epoch has as many steps).
  const int epochs = static_cast<int>(args.number("epochs", 40));
  mtlm::Rng count_rng(seed);
  const auto steps_per_epoch =
      static_cast<std::int64_t>(mtlm::bucket_batches(encoded.lengths, batching, count_rng).size());
  const Schedule schedule = examples::learning_rate_schedule(args, 1e-3, "none", epochs, steps_per_epoch);

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> reports(static_cast<std::size_t>(members));
  examples::train_side_by_side(members, threads, [&](int m) {
    mtlm::Cpu::set_threads(1);  // parallelism comes from training members side by side
    mtlm::Rng rng(seed * 1000003 + static_cast<std::uint64_t>(m));
    Model& model = models[static_cast<std::size_t>(m)];
    model.initialize(rng);
    mtlm::Adam<float> adam({.lr = schedule.base_lr});
    mtlm::train::TrainerOptions options;
    options.epochs = epochs;
    options.seed = rng.next();
    options.clip_norm = 5.0;
    options.select_metric = select;
    options.max_seconds = args.number("time-budget", 0.0) / rounds;
    options.log = m == 0 ? &std::cerr : nullptr;
    options.average_decay = average;
    const auto result = Trainer(model, adam, options, schedule).fit(epoch, evaluate);
    reports[static_cast<std::size_t>(m)] = "model " + std::to_string(m + 1) + ": best " + select + " " +
                                           std::to_string(result.best_metric) + " at epoch " +
                                           std::to_string(result.best_epoch) + " of " +
                                           std::to_string(result.epochs_run);
  });
  for (const auto& r : reports) std::cerr << "mtlm-nlu: " << r << "\n";
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (members > 1) {
    const Scores s = score(valid_set, predict(models, valid_encoded, vocab));
    std::cerr << "mtlm-nlu: ensemble of " << members << " on valid: " << scores_line(s) << "\n";
  }
  save_bundle(out, models, vocab);
  std::cerr << "mtlm-nlu: trained in " << seconds << " s; model written to " << out.string() << "\n";
  return 0;
}

}  // namespace nlu
