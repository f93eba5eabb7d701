// mtlm-nlu: joint intent detection, slot filling and an auxiliary language model on data in the
// ATIS/SNIPS layout (DIR/{train,valid,test}/{seq.in,seq.out,label}).
//
//   mtlm-nlu train   --data DIR --out MODEL [--epochs N] [--seed N] [--threads N] [--time-budget S]
//                    [--ensemble K]  (K models, trained --threads at a time, probabilities averaged)
//                    [--lr X] [--lr-decay cosine|none]
//                    [--average D]  (evaluate and keep an average of the weights, decay D; 0: off)
//   mtlm-nlu eval    --model MODEL --data DIR [--split test] [--json] [--decode bio|argmax]
//   mtlm-nlu predict --model MODEL            (one utterance per line on stdin, JSON lines out)
#include "commands.hpp"

#include <cstdio>
#include <iostream>
#include <string>

namespace {

using examples::Args;
using examples::parse;
using examples::set_threads;

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
    std::printf("%s (%zu examples): %s\n", split.c_str(), s.examples, nlu::scores_line(s).c_str());
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
      return nlu::train_command(parse(argc, argv, {{"data", false}, {"out", false}, {"epochs", false}, {"seed", false},
                                      {"threads", false}, {"time-budget", false}, {"lr", false},
                                      {"batch-size", false}, {"dropout", false}, {"word-dropout", false},
                                      {"tasks", false}, {"ensemble", false}, {"lr-decay", false},
                                      {"average", false}}));
    if (command == "eval")
      return eval(parse(argc, argv, {{"model", false}, {"data", false}, {"split", false}, {"json", true},
                                     {"threads", false}, {"decode", false}}));
    if (command == "predict") return predict(parse(argc, argv, {{"model", false}, {"threads", false}}));
    std::cerr << "usage:\n"
                 "  mtlm-nlu train   --data DIR --out MODEL [--epochs N] [--seed N] [--threads N] [--time-budget S]\n"
                 "                   [--ensemble K] [--tasks intent,slots,lm] [--lr X] [--batch-size N]\n"
                 "                   [--dropout P] [--word-dropout P] [--lr-decay cosine|none] [--average D]\n"
                 "  mtlm-nlu eval    --model MODEL --data DIR [--split test] [--json] [--decode bio|argmax]\n"
                 "  mtlm-nlu predict --model MODEL   (utterances on stdin, one JSON object per line out)\n";
    return command.empty() || command == "--help" || command == "-h" ? 0 : 2;
  } catch (const std::exception& e) {
    std::cerr << "mtlm-nlu: " << e.what() << "\n";
    return 1;
  }
}
