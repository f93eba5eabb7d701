// mtlm-nlu: joint intent detection, slot filling and an auxiliary language model on data in the
// ATIS/SNIPS layout (DIR/{train,valid,test}/{seq.in,seq.out,label}).
//
//   mtlm-nlu train   --data DIR --out MODEL [--epochs N] [--seed N] [--threads N] [--time-budget S]
//                    [--ensemble K]  (K models, trained --threads at a time, probabilities averaged)
//                    [--lr X] [--lr-decay cosine|none]
//   mtlm-nlu eval    --model MODEL --data DIR [--split test] [--json] [--decode bio|argmax]
//   mtlm-nlu predict --model MODEL            (one utterance per line on stdin, JSON lines out)
#include "nlu_model.hpp"

#include "../common/cli.hpp"
#include "../common/ensemble.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

namespace {

using examples::Args;
using examples::parse;
using examples::set_threads;

std::string scores_line(const nlu::Scores& s) {
  char buffer[160];
  std::snprintf(buffer, sizeof buffer, "intent %.4f  slot_f1 %.4f  sentence %.4f", s.intent_accuracy,
                s.slot_f1, s.sentence_accuracy);
  return buffer;
}

int train(const Args& args) {
  const std::filesystem::path data = args.need("data");
  const std::filesystem::path out = args.need("out");
  const auto train_set = mtlm::read_atis(data / "train");
  const auto valid_set = mtlm::read_atis(data / "valid");

  nlu::Hyperparameters h;
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

  const nlu::Vocabularies vocab = nlu::build_vocabularies(train_set);
  const nlu::EncodedSet encoded = nlu::encode(train_set, vocab, true);
  const nlu::EncodedSet valid_encoded = nlu::encode(valid_set, vocab, false);
  std::vector<nlu::Model> models;
  for (int m = 0; m < members; ++m) models.push_back(nlu::make_model(vocab, h));
  std::cerr << "mtlm-nlu: " << train_set.size() << " training examples, " << vocab.words.size() << " words, "
            << vocab.chars.size() << " characters, " << vocab.intents.size() - 1 << " intents, "
            << vocab.slots.size() << " slot tags; " << members << " model(s) of "
            << mtlm::count_parameters(models[0]) << " parameters, tasks " << tasks << "\n";

  using Schedule = mtlm::schedule::Cosine;
  using Trainer = mtlm::train::Trainer<nlu::Model, mtlm::Adam<float>, Schedule>;
  mtlm::BatchingOptions batching;
  batching.max_sequences = batch_size;
  auto epoch = [&](mtlm::Rng& r) {
    Trainer::Batches batches;
    for (const auto& indices : mtlm::bucket_batches(encoded.lengths, batching, r)) {
      mtlm::train::TrainingBatch<nlu::Model> item{nlu::make_batch(encoded, indices), {}};
      if (use_intent) item.targets.set<"intent">(mtlm::gather(encoded.intents, indices));
      if (use_slots) item.targets.set<"slots">(mtlm::gather(encoded.slots, indices));
      if (use_lm) item.targets.set<"lm">({});
      batches.push_back(std::move(item));
    }
    return batches;
  };
  // Selection: sentence accuracy when both tasks train, otherwise the trained task's own score.
  const std::string select = use_intent && use_slots ? "valid_sentence" : use_intent ? "valid_intent" : "valid_slot_f1";
  auto evaluate = [&](nlu::Model& m) {
    const nlu::Scores s = nlu::score(valid_set, nlu::predict(m, valid_encoded, vocab));
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
    nlu::Model& model = models[static_cast<std::size_t>(m)];
    model.initialize(rng);
    mtlm::Adam<float> adam({.lr = schedule.base_lr});
    mtlm::train::TrainerOptions options;
    options.epochs = epochs;
    options.seed = rng.next();
    options.clip_norm = 5.0;
    options.select_metric = select;
    options.max_seconds = args.number("time-budget", 0.0) / rounds;
    options.log = m == 0 ? &std::cerr : nullptr;
    const auto result = Trainer(model, adam, options, schedule).fit(epoch, evaluate);
    reports[static_cast<std::size_t>(m)] = "model " + std::to_string(m + 1) + ": best " + select + " " +
                                           std::to_string(result.best_metric) + " at epoch " +
                                           std::to_string(result.best_epoch) + " of " +
                                           std::to_string(result.epochs_run);
  });
  for (const auto& r : reports) std::cerr << "mtlm-nlu: " << r << "\n";
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (members > 1) {
    const nlu::Scores s = nlu::score(valid_set, nlu::predict(models, valid_encoded, vocab));
    std::cerr << "mtlm-nlu: ensemble of " << members << " on valid: " << scores_line(s) << "\n";
  }
  nlu::save_bundle(out, models, vocab);
  std::cerr << "mtlm-nlu: trained in " << seconds << " s; model written to " << out.string() << "\n";
  return 0;
}

nlu::SlotDecoding decoding(const Args& args) {
  const std::string name = args.get("decode", "bio");
  if (name == "bio") return nlu::SlotDecoding::bio;
  if (name == "argmax") return nlu::SlotDecoding::argmax;
  throw mtlm::Error("--decode must be bio or argmax, got \"" + name + "\"");
}

int eval(const Args& args) {
  set_threads(args);
  nlu::Bundle bundle = nlu::load_bundle(args.need("model"));
  const std::string split = args.get("split", "test");
  const auto data = mtlm::read_atis(std::filesystem::path(args.need("data")) / split);
  const nlu::Scores s = nlu::score(
      data, nlu::predict(bundle.models, nlu::encode(data, bundle.vocab, false), bundle.vocab, decoding(args)));
  if (args.flags.contains("json")) {
    std::printf("{\"split\": %s, \"examples\": %zu, \"intent_accuracy\": %.6f, \"slot_f1\": %.6f, "
                "\"sentence_accuracy\": %.6f}\n",
                mtlm::json::quote(split).c_str(), s.examples, s.intent_accuracy, s.slot_f1, s.sentence_accuracy);
  } else {
    std::printf("%s (%zu examples): %s\n", split.c_str(), s.examples, scores_line(s).c_str());
  }
  return 0;
}

int predict(const Args& args) {
  set_threads(args);
  nlu::Bundle bundle = nlu::load_bundle(args.need("model"));
  // Training tokens such as "st." stay whole instead of splitting off their period.
  mtlm::TokenizerOptions tokenizer;
  for (const auto& token : bundle.vocab.words.tokens())
    if (token.find_first_of(".'-:/&") != std::string::npos) tokenizer.protected_tokens.insert(token);
  std::string line;
  std::size_t number = 0;
  while (std::getline(std::cin, line)) {
    ++number;
    mtlm::SequenceExample ex;
    ex.tokens = mtlm::tokenize(line, tokenizer, "<stdin>", number);
    if (ex.tokens.empty()) {
      std::printf("{\"text\": %s, \"tokens\": [], \"intent\": null, \"slots\": []}\n", mtlm::json::quote(line).c_str());
      continue;
    }
    for (auto& t : ex.tokens) t = mtlm::utf8::to_lower(t);
    const auto p = nlu::predict(bundle.models, nlu::encode({ex}, bundle.vocab, false), bundle.vocab);
    std::string tokens = "[", slots = "[";
    for (std::size_t i = 0; i < ex.tokens.size(); ++i) {
      if (i) {
        tokens += ", ";
        slots += ", ";
      }
      tokens += mtlm::json::quote(ex.tokens[i]);
      slots += mtlm::json::quote(p.slots[0][i]);
    }
    std::printf("{\"text\": %s, \"tokens\": %s], \"intent\": %s, \"slots\": %s]}\n", mtlm::json::quote(line).c_str(),
                tokens.c_str(), mtlm::json::quote(p.intents[0]).c_str(), slots.c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string command = argc > 1 ? argv[1] : "";
    if (command == "train")
      return train(parse(argc, argv, {{"data", false}, {"out", false}, {"epochs", false}, {"seed", false},
                                      {"threads", false}, {"time-budget", false}, {"lr", false},
                                      {"batch-size", false}, {"dropout", false}, {"word-dropout", false},
                                      {"tasks", false}, {"ensemble", false}, {"lr-decay", false}}));
    if (command == "eval")
      return eval(parse(argc, argv, {{"model", false}, {"data", false}, {"split", false}, {"json", true},
                                     {"threads", false}, {"decode", false}}));
    if (command == "predict") return predict(parse(argc, argv, {{"model", false}, {"threads", false}}));
    std::cerr << "usage:\n"
                 "  mtlm-nlu train   --data DIR --out MODEL [--epochs N] [--seed N] [--threads N] [--time-budget S]\n"
                 "                   [--ensemble K] [--tasks intent,slots,lm] [--lr X] [--batch-size N]\n"
                 "                   [--dropout P] [--word-dropout P] [--lr-decay cosine|none]\n"
                 "  mtlm-nlu eval    --model MODEL --data DIR [--split test] [--json] [--decode bio|argmax]\n"
                 "  mtlm-nlu predict --model MODEL   (utterances on stdin, one JSON object per line out)\n";
    return command.empty() || command == "--help" || command == "-h" ? 0 : 2;
  } catch (const std::exception& e) {
    std::cerr << "mtlm-nlu: " << e.what() << "\n";
    return 1;
  }
}
