// Metrics: accuracy and per-class / macro / micro P-R-F1, conlleval span F1 (hand-worked cases
// and a cross-check against seqeval), BIO <-> BIOES conversion, exact match, perplexity.
#include <doctest/doctest.h>

#include <mtlm/core/random.hpp>
#include <mtlm/data/tag_scheme.hpp>
#include <mtlm/metrics/classification.hpp>
#include <mtlm/metrics/exact_match.hpp>
#include <mtlm/metrics/perplexity.hpp>
#include <mtlm/metrics/span_f1.hpp>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace mtlm;
using namespace mtlm::metrics;
using Tags = std::vector<std::string>;

namespace {

std::vector<Span> spans(const Tags& tags) { return extract_spans(tags); }

Span span(std::string type, Index begin, Index end) { return {std::move(type), begin, end}; }

}  // namespace

TEST_CASE("accuracy counts equal positions") {
  const std::vector<TokenId> gold{0, 1, 2, 1}, predicted{0, 2, 2, 1};
  CHECK(accuracy(gold, predicted) == doctest::Approx(0.75));
  CHECK(accuracy(std::vector<TokenId>{}, std::vector<TokenId>{}) == 0.0);
  CHECK_THROWS_AS(accuracy(gold, std::vector<TokenId>{0, 1}), ShapeError);
}

TEST_CASE("classification_report: per-class, macro and micro by hand") {
  // class 0: support 2, predicted 3, tp 1 -> P 1/3, R 1/2, F 0.4
  // class 1: support 2, predicted 3, tp 2 -> P 2/3, R 1,   F 0.8
  // class 2: support 3, predicted 1, tp 1 -> P 1,   R 1/3, F 0.5
  // class 3: never seen -> not averaged
  const std::vector<TokenId> gold{0, 0, 1, 1, 2, 2, 2};
  const std::vector<TokenId> predicted{0, 1, 1, 1, 2, 0, 0};
  const auto r = classification_report(gold, predicted, 4);
  CHECK(r.total == 7);
  CHECK(r.accuracy == doctest::Approx(4.0 / 7));
  REQUIRE(r.per_class.size() == 4);
  CHECK(r.per_class[0].precision == doctest::Approx(1.0 / 3));
  CHECK(r.per_class[0].recall == doctest::Approx(0.5));
  CHECK(r.per_class[0].f1 == doctest::Approx(0.4));
  CHECK(r.per_class[1].precision == doctest::Approx(2.0 / 3));
  CHECK(r.per_class[1].recall == doctest::Approx(1.0));
  CHECK(r.per_class[1].f1 == doctest::Approx(0.8));
  CHECK(r.per_class[2].precision == doctest::Approx(1.0));
  CHECK(r.per_class[2].recall == doctest::Approx(1.0 / 3));
  CHECK(r.per_class[2].f1 == doctest::Approx(0.5));
  CHECK(r.per_class[2].support == 3);
  CHECK(r.per_class[2].predicted == 1);
  CHECK(r.per_class[3].f1 == 0.0);
  CHECK(r.averaged_classes == 3);
  CHECK(r.macro.precision == doctest::Approx(2.0 / 3));
  CHECK(r.macro.recall == doctest::Approx(11.0 / 18));
  CHECK(r.macro.f1 == doctest::Approx(1.7 / 3));
  // Nothing excluded: micro P = R = F1 = accuracy.
  CHECK(r.micro.precision == doctest::Approx(4.0 / 7));
  CHECK(r.micro.recall == doctest::Approx(4.0 / 7));
  CHECK(r.micro.f1 == doctest::Approx(4.0 / 7));

  SUBCASE("excluding a class (like O) changes micro and macro") {
    const std::vector<TokenId> excluded{2};
    const auto e = classification_report(gold, predicted, 4, excluded);
    CHECK(e.micro.true_positives == 3);
    CHECK(e.micro.predicted == 6);
    CHECK(e.micro.support == 4);
    CHECK(e.micro.precision == doctest::Approx(0.5));
    CHECK(e.micro.recall == doctest::Approx(0.75));
    CHECK(e.micro.f1 == doctest::Approx(0.6));
    CHECK(e.averaged_classes == 2);
    CHECK(e.macro.precision == doctest::Approx(0.5));
    CHECK(e.macro.recall == doctest::Approx(0.75));
    CHECK(e.macro.f1 == doctest::Approx(0.6));
    CHECK(e.per_class[2].f1 == doctest::Approx(0.5));  // still reported
  }
  SUBCASE("bad input") {
    CHECK_THROWS_AS(classification_report(gold, predicted, 2), Error);
    CHECK_THROWS_AS(classification_report(gold, std::vector<TokenId>{0}, 4), ShapeError);
    const auto empty = classification_report(std::vector<TokenId>{}, std::vector<TokenId>{}, 3);
    CHECK(empty.accuracy == 0.0);
    CHECK(empty.macro.f1 == 0.0);
  }
}

TEST_CASE("extract_spans follows conlleval on awkward BIO sequences") {
  SUBCASE("well-formed entities, including one at the sentence end") {
    CHECK(spans({"B-PER", "I-PER", "O", "B-LOC"}) ==
          std::vector<Span>{span("PER", 0, 2), span("LOC", 3, 4)});
    CHECK(spans({"O", "B-ORG", "I-ORG"}) == std::vector<Span>{span("ORG", 1, 3)});
  }
  SUBCASE("single-token entity, and a one-token sentence") {
    CHECK(spans({"O", "B-MISC", "O"}) == std::vector<Span>{span("MISC", 1, 2)});
    CHECK(spans({"B-MISC"}) == std::vector<Span>{span("MISC", 0, 1)});
    CHECK(spans({"O"}).empty());
    CHECK(spans({}).empty());
  }
  SUBCASE("I- after O, or at the start, begins an entity") {
    CHECK(spans({"O", "I-PER", "I-PER", "O"}) == std::vector<Span>{span("PER", 1, 3)});
    CHECK(spans({"I-LOC", "O"}) == std::vector<Span>{span("LOC", 0, 1)});
  }
  SUBCASE("I-X after B-Y or I-Y starts a new entity of type X") {
    CHECK(spans({"B-LOC", "I-PER"}) == std::vector<Span>{span("LOC", 0, 1), span("PER", 1, 2)});
    CHECK(spans({"B-LOC", "I-LOC", "I-PER", "I-PER"}) ==
          std::vector<Span>{span("LOC", 0, 2), span("PER", 2, 4)});
  }
  SUBCASE("adjacent entities of the same type: B-X B-X") {
    CHECK(spans({"B-PER", "B-PER", "I-PER"}) ==
          std::vector<Span>{span("PER", 0, 1), span("PER", 1, 3)});
  }
  SUBCASE("types with dots (ATIS) and dashes") {
    CHECK(spans({"B-fromloc.city_name", "I-fromloc.city_name", "O"}) ==
          std::vector<Span>{span("fromloc.city_name", 0, 2)});
    CHECK(spans({"B-A-B", "I-A-B"}) == std::vector<Span>{span("A-B", 0, 2)});
  }
}

TEST_CASE("extract_spans handles BIOES") {
  CHECK(spans({"S-PER", "B-LOC", "I-LOC", "E-LOC", "S-PER", "O"}) ==
        std::vector<Span>{span("PER", 0, 1), span("LOC", 1, 4), span("PER", 4, 5)});
  CHECK(spans({"S-PER", "S-PER"}) == std::vector<Span>{span("PER", 0, 1), span("PER", 1, 2)});
  CHECK(spans({"O", "E-PER"}) == std::vector<Span>{span("PER", 1, 2)});         // E after O
  CHECK(spans({"B-PER", "E-PER", "E-PER"}) ==                                    // E after E
        std::vector<Span>{span("PER", 0, 2), span("PER", 2, 3)});
  CHECK(spans({"S-X", "I-X"}) == std::vector<Span>{span("X", 0, 1), span("X", 1, 2)});
  CHECK(spans({"B-X", "S-X"}) == std::vector<Span>{span("X", 0, 1), span("X", 1, 2)});
  CHECK_THROWS_AS(spans({"B-X", ""}), Error);
}

TEST_CASE("to_bioes and to_bio rewrite the tags, never the entities") {
  SUBCASE("by hand") {
    const Tags bio{"B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-LOC", "B-MISC"};
    const Tags bioes{"B-PER", "E-PER", "O", "S-LOC", "B-LOC", "I-LOC", "E-LOC", "S-MISC"};
    CHECK(to_bioes(bio) == bioes);
    CHECK(to_bio(bioes) == bio);
    CHECK(is_bioes(bioes));
    CHECK_FALSE(is_bioes(bio));
    CHECK(to_bioes(Tags{"I-ORG", "I-ORG", "O", "I-PER"}) == Tags{"B-ORG", "E-ORG", "O", "S-PER"});  // IOB1
    CHECK(to_bio(Tags{"O", "E-PER", "S-LOC"}) == Tags{"O", "B-PER", "B-LOC"});  // as conlleval reads them
    CHECK(to_bioes(Tags{}).empty());
  }
  SUBCASE("random sequences of every prefix: the same entities in both encodings, round trips exact") {
    Rng rng(11);
    const Tags alphabet{"O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"};
    for (int trial = 0; trial < 500; ++trial) {
      Tags tags(rng.below(10));
      for (auto& t : tags) t = alphabet[rng.below(alphabet.size())];
      const Tags bioes = to_bioes(tags), bio = to_bio(tags);
      CHECK(spans(bioes) == spans(tags));
      CHECK(spans(bio) == spans(tags));
      CHECK(to_bio(bioes) == bio);
      CHECK(to_bioes(bio) == bioes);
      CHECK(bioes.size() == tags.size());
    }
  }
}

TEST_CASE("span_f1 by hand: type and both boundaries must match") {
  // gold: PER[0,2) LOC[3,4) | ORG[1,2)     predicted: PER[0,2) ORG[3,4) | ORG[1,2)
  const std::vector<Tags> gold{{"B-PER", "I-PER", "O", "B-LOC"}, {"O", "B-ORG"}};
  const std::vector<Tags> predicted{{"B-PER", "I-PER", "O", "B-ORG"}, {"O", "B-ORG"}};
  const auto s = span_f1(gold, predicted);
  CHECK(s.overall.true_positives == 2);
  CHECK(s.overall.predicted == 3);
  CHECK(s.overall.support == 3);
  CHECK(s.overall.f1 == doctest::Approx(2.0 / 3));
  REQUIRE(s.per_type.size() == 3);
  CHECK(s.per_type.at("PER").f1 == doctest::Approx(1.0));
  CHECK(s.per_type.at("LOC").precision == 0.0);
  CHECK(s.per_type.at("LOC").recall == 0.0);
  CHECK(s.per_type.at("LOC").support == 1);
  CHECK(s.per_type.at("ORG").precision == doctest::Approx(0.5));
  CHECK(s.per_type.at("ORG").recall == doctest::Approx(1.0));
  CHECK(s.per_type.at("ORG").f1 == doctest::Approx(2.0 / 3));

  SUBCASE("a boundary or type mismatch is a miss, not partial credit") {
    CHECK(span_f1(std::vector<Tags>{{"B-PER", "I-PER"}}, std::vector<Tags>{{"B-PER", "O"}})
              .overall.f1 == 0.0);
    CHECK(span_f1(std::vector<Tags>{{"B-PER", "I-PER"}}, std::vector<Tags>{{"B-LOC", "I-LOC"}})
              .overall.f1 == 0.0);
    // I- continuation right after a matching B- of the same type is the same entity.
    CHECK(span_f1(std::vector<Tags>{{"B-PER", "I-PER"}}, std::vector<Tags>{{"I-PER", "I-PER"}})
              .overall.f1 == 1.0);
  }
  SUBCASE("no entities anywhere gives zeros") {
    const auto z = span_f1(std::vector<Tags>{{"O", "O"}}, std::vector<Tags>{{"O", "O"}});
    CHECK(z.overall.f1 == 0.0);
    CHECK(z.per_type.empty());
  }
  SUBCASE("entities never cross sentences") {
    SpanF1 acc;
    acc.add(Tags{"O", "B-PER"}, Tags{"O", "B-PER"});
    acc.add(Tags{"I-PER", "O"}, Tags{"I-PER", "O"});
    const auto r = acc.result();
    CHECK(r.overall.support == 2);
    CHECK(r.overall.f1 == 1.0);
    CHECK(acc.sentences() == 2);
  }
  SUBCASE("length mismatches are ShapeErrors") {
    CHECK_THROWS_AS(span_f1(std::vector<Tags>{{"O"}}, std::vector<Tags>{{"O", "O"}}), ShapeError);
    CHECK_THROWS_AS(span_f1(std::vector<Tags>{{"O"}}, std::vector<Tags>{}), ShapeError);
  }
}

TEST_CASE("span_f1 matches seqeval on random tag sequences") {
  // tests/fixtures/span_f1/seqeval.txt is written by tools/fixtures/span_f1.py.
  std::ifstream in(std::string(MTLM_TEST_FIXTURES) + "/span_f1/seqeval.txt");
  REQUIRE(in);
  auto read_tags = [](std::istringstream& fields) {
    Tags tags;
    for (std::string t; fields >> t;) tags.push_back(t);
    return tags;
  };
  std::vector<Tags> gold, predicted, all_gold, all_predicted;
  std::string case_name, line;
  int cases = 0, sentences = 0, types_checked = 0;
  double max_diff = 0;
  auto near = [&](double a, double b) {
    max_diff = std::max(max_diff, std::abs(a - b));
    return std::abs(a - b) <= 1e-9;
  };
  SpanScores corpus;
  bool in_corpus = false;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string kind;
    fields >> kind;
    if (kind.empty() || kind[0] == '#') continue;
    if (kind == "case") {
      fields >> case_name;
      gold.clear();
      predicted.clear();
    } else if (kind == "g") {
      gold.push_back(read_tags(fields));
      all_gold.push_back(gold.back());
      ++sentences;
    } else if (kind == "p") {
      predicted.push_back(read_tags(fields));
      all_predicted.push_back(predicted.back());
    } else if (kind == "prf") {
      double p = 0, r = 0, f = 0;
      fields >> p >> r >> f;
      const auto s = span_f1(gold, predicted);
      INFO("case " << case_name);
      CHECK(near(s.overall.precision, p));
      CHECK(near(s.overall.recall, r));
      CHECK(near(s.overall.f1, f));
      ++cases;
    } else if (kind == "corpus") {
      corpus = span_f1(all_gold, all_predicted);
      in_corpus = true;
    } else if (kind == "type") {
      REQUIRE(in_corpus);
      std::string type;
      double p = 0, r = 0, f = 0;
      Index support = 0;
      fields >> type >> p >> r >> f >> support;
      INFO("type " << type);
      REQUIRE(corpus.per_type.count(type) == 1);
      const Scores& s = corpus.per_type.at(type);
      CHECK(near(s.precision, p));
      CHECK(near(s.recall, r));
      CHECK(near(s.f1, f));
      CHECK(s.support == support);
      ++types_checked;
    } else if (kind == "overall") {
      REQUIRE(in_corpus);
      double p = 0, r = 0, f = 0;
      fields >> p >> r >> f;
      CHECK(near(corpus.overall.precision, p));
      CHECK(near(corpus.overall.recall, r));
      CHECK(near(corpus.overall.f1, f));
    } else {
      FAIL("unexpected fixture line: " << line);
    }
  }
  CHECK(cases == 240);
  CHECK(sentences >= 300);
  CHECK(types_checked == static_cast<int>(corpus.per_type.size()));
  MESSAGE("span F1 vs seqeval: " << cases << " cases, " << sentences
                                 << " sentence pairs, max |diff| = " << max_diff);
}

TEST_CASE("exact_match needs the intent and every slot right") {
  const std::vector<TokenId> gold_intents{0, 1, 1}, predicted_intents{0, 1, 0};
  const std::vector<std::vector<TokenId>> gold_slots{{1, 2}, {3}, {4, 4}};
  const std::vector<std::vector<TokenId>> predicted_slots{{1, 2}, {0}, {4, 4}};
  // sentence 0 right; 1: intent right, a slot wrong; 2: slots right, intent wrong.
  CHECK(exact_match(gold_intents, predicted_intents, gold_slots, predicted_slots) ==
        doctest::Approx(1.0 / 3));
  CHECK(sequence_exact_match(gold_slots, predicted_slots) == doctest::Approx(2.0 / 3));
  CHECK(exact_match(gold_intents, gold_intents, gold_slots, gold_slots) == 1.0);

  const std::vector<std::string> intents{"flight", "fare"};
  const std::vector<Tags> tags{{"O", "B-city"}, {"O"}};
  CHECK(exact_match(intents, intents, tags, tags) == 1.0);
  CHECK(exact_match(intents, std::vector<std::string>{"flight", "flight"}, tags, tags) == 0.5);

  CHECK_THROWS_AS(exact_match(gold_intents, predicted_intents, gold_slots,
                              std::vector<std::vector<TokenId>>{{1, 2}, {0, 0}, {4, 4}}),
                  ShapeError);
  CHECK_THROWS_AS(exact_match(gold_intents, std::vector<TokenId>{0}, gold_slots, gold_slots),
                  ShapeError);
  CHECK(sequence_exact_match(std::vector<Tags>{}, std::vector<Tags>{}) == 0.0);
}

TEST_CASE("perplexity is exp of the mean NLL per token") {
  // A uniform model over V classes has NLL log V per token and perplexity V.
  CHECK(perplexity(5 * std::log(10.0), 5) == doctest::Approx(10.0));
  CHECK(perplexity(0.0, 3) == 1.0);
  CHECK_THROWS_AS(perplexity(1.0, 0), Error);

  PerplexityMeter meter;
  CHECK_THROWS_AS(meter.perplexity(), Error);
  meter.add(2.0, 2);
  meter.add(4.0, 2);  // batches weigh by their tokens: mean 6 / 4
  CHECK(meter.tokens() == 4);
  CHECK(meter.mean_nll() == doctest::Approx(1.5));
  CHECK(meter.perplexity() == doctest::Approx(std::exp(1.5)));
  meter.reset();
  CHECK(meter.tokens() == 0);
  CHECK(std::isinf(perplexity(1e6, 1)));
}
