// mtlm-tag: one model for part-of-speech tags, chunks and named entities (CoNLL-2003's columns)
// and sentence sentiment (SST-2, a dataset of its own), the two datasets mixed by the library's
// multi-dataset sampler.
//
//   mtlm-tag train   --conll DIR --sst2 DIR --out MODEL [--epochs N] [--seed N] [--threads N]
//                    [--time-budget S] [--tasks pos,chunk,ner,sentiment] [--lr X] [--batch-size N]
//                    [--sampling round-robin|temperature|proportional] [--temperature T] [--mix C:S]
//                    [--lr-decay cosine|none] [--ensemble K] [--average D] [--lazy-adam]
//                    [--tag-scheme bio|bioes]
//   mtlm-tag eval    --model MODEL --conll DIR --sst2 DIR [--split test|dev] [--json]
//   mtlm-tag predict --model MODEL            (one sentence per line on stdin, JSON lines out)
//
// CoNLL DIR holds train.txt, dev.txt, test.txt ("WORD POS CHUNK NER"); SST-2 DIR holds train.tsv
// and dev.tsv ("sentence<TAB>label"). SST-2's test.tsv has no labels, so sentiment is always
// scored on dev.tsv, and the JSON of eval says so.
#include "commands.hpp"

#include <cstdio>
#include <iostream>
#include <string>

namespace {

using examples::Args;
using examples::parse;
using examples::set_threads;

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
                s.sentiment_sentences, tag::scores_line(s, tasks).c_str());
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
      return tag::train_command(parse(argc, argv, {{"conll", false}, {"sst2", false}, {"out", false}, {"epochs", false},
                                      {"seed", false}, {"threads", false}, {"time-budget", false}, {"lr", false},
                                      {"batch-size", false}, {"dropout", false}, {"word-dropout", false},
                                      {"tasks", false}, {"sampling", false}, {"temperature", false}, {"mix", false},
                                      {"lr-decay", false}, {"ensemble", false},
                                      {"average", false}, {"lazy-adam", true},
                                      {"tag-scheme", false}}));
    if (command == "eval")
      return eval(parse(argc, argv, {{"model", false}, {"conll", false}, {"sst2", false}, {"split", false},
                                     {"json", true}, {"threads", false}}));
    if (command == "predict") return predict(parse(argc, argv, {{"model", false}, {"threads", false}}));
    std::cerr << "usage:\n"
                 "  mtlm-tag train   --conll DIR --sst2 DIR --out MODEL [--epochs N] [--seed N] [--threads N]\n"
                 "                   [--time-budget S] [--tasks pos,chunk,ner,sentiment] [--lr X] [--batch-size N]\n"
                 "                   [--sampling round-robin|temperature|proportional] [--temperature T] [--mix C:S]\n"
                 "                   [--dropout P] [--word-dropout P] [--lr-decay cosine|none] [--average D] [--lazy-adam]\n"
                 "                   [--tag-scheme bio|bioes]  (how the chunk and NER CRFs encode spans)\n"
                 "                   [--ensemble K]  (K models, trained --threads at a time, probabilities averaged)\n"
                 "  mtlm-tag eval    --model MODEL --conll DIR --sst2 DIR [--split test|dev] [--json]\n"
                 "  mtlm-tag predict --model MODEL   (sentences on stdin, one JSON object per line out)\n";
    return command.empty() || command == "--help" || command == "-h" ? 0 : 2;
  } catch (const std::exception& e) {
    std::cerr << "mtlm-tag: " << e.what() << "\n";
    return 1;
  }
}
