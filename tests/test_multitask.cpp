// Multi-task composition: heads, the combined loss's gradient for whole models, missing
// targets, tied weights, learned loss weighting, and a toy task pair learned end to end.
#include <doctest/doctest.h>

#include <mtlm/heads/crf_tagger.hpp>
#include <mtlm/heads/lm_head.hpp>
#include <mtlm/heads/multi_label.hpp>
#include <mtlm/heads/regression.hpp>
#include <mtlm/heads/sequence_classifier.hpp>
#include <mtlm/heads/stacked_head.hpp>
#include <mtlm/heads/token_tagger.hpp>
#include <mtlm/layers/dropout.hpp>
#include <mtlm/layers/embedding.hpp>
#include <mtlm/layers/lstm.hpp>
#include <mtlm/model/multitask.hpp>
#include <mtlm/model/sequential.hpp>
#include <mtlm/mtlm.hpp>
#include <mtlm/optim/adam.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include "support/same_bits.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <ratio>
#include <string>
#include <vector>

using namespace mtlm;

namespace {

constexpr Index vocab = 11;

template <class S>
using Trunk = Sequential<Embedding<Dynamic, 4, S>, Linear<4, 8, S>, Tanh<Dynamic, S>>;

template <class S>
using ThreeHeads = MultiTask<
    Trunk<S>,
    Task<"intent", SequenceClassifier<8, Dynamic, PoolingKind::max, 5, S>>,
    Task<"slots", TokenTagger<8, Dynamic, S>, std::ratio<3, 2>>,
    Task<"lm", LanguageModelHead<8, Dynamic, LmDirection::both_directions, true, S>, std::ratio<1, 2>>>;

template <class S>
ThreeHeads<S> make_three_heads() {
  return ThreeHeads<S>(Trunk<S>(Embedding<Dynamic, 4, S>(vocab)),
                       SequenceClassifier<8, Dynamic, PoolingKind::max, 5, S>(3),
                       TokenTagger<8, Dynamic, S>(4), LanguageModelHead<8, Dynamic, LmDirection::both_directions, true, S>(vocab));
}

// One task keeps a recurrent layer of its own above the shared trunk; the other reads the trunk.
template <class S>
using PrivateLayers = Sequential<BiLstm<8, 3, S>, Dropout<S>>;
template <class S>
using PrivateTagger = StackedHead<PrivateLayers<S>, CrfTagger<6, Dynamic, S>>;
template <class S>
using SharedAndPrivate =
    MultiTask<Trunk<S>, Task<"intent", SequenceClassifier<8, Dynamic, PoolingKind::mean, 0, S>>,
              Task<"tags", PrivateTagger<S>, std::ratio<2>>>;

template <class S>
SharedAndPrivate<S> make_shared_and_private() {
  return SharedAndPrivate<S>(
      Trunk<S>(Embedding<Dynamic, 4, S>(vocab)), SequenceClassifier<8, Dynamic, PoolingKind::mean, 0, S>(3),
      PrivateTagger<S>(PrivateLayers<S>(BiLstm<8, 3, S>(), Dropout<S>(0.0)), CrfTagger<6, Dynamic, S>(4)));
}

Batch padded_batch() {
  const std::vector<std::vector<TokenId>> seqs{{1, 2, 3, 4}, {5, 6}, {7, 8, 9}};
  return Batch::from_sequences(seqs);
}

/// Checks every parameter gradient of model.forward_backward(...).total, with central
/// differences of step h.
template <class M>
testing::GradientReport check_model(M& model, const Batch& batch, const typename M::Targets& targets,
                                    double h = 1e-6) {
  zero_gradients(model);
  model.forward_backward(batch, targets);
  std::vector<std::pair<std::string, testing::HostMatrix>> grads;
  model.for_each_param([&](std::string_view n, auto& p) { grads.emplace_back(std::string(n), p.grad); });
  auto loss = [&] { return model.forward_backward(batch, targets).total; };
  testing::GradientReport report;
  std::size_t k = 0;
  model.for_each_param([&](std::string_view, auto& p) {
    const auto& [name, grad] = grads[k++];
    report.merge(testing::compare_gradient(std::span<double>(p.value.data(), p.value.size()),
                                           std::span<const double>(grad.data(), grad.size()), loss, name, h));
  });
  return report;
}

/// Sum of |gradient| over the parameters whose names start with `prefix`.
template <class M>
double gradient_mass(M& model, std::string_view prefix) {
  double sum = 0;
  model.for_each_param([&](std::string_view n, auto& p) {
    if (n.starts_with(prefix))
      for (Index i = 0; i < p.size(); ++i) sum += std::abs(p.grad.data()[i]);
  });
  return sum;
}

}  // namespace

TEST_CASE("MultiTask: the combined loss's gradient matches finite differences (3 heads)") {
  Rng rng(1);
  auto model = make_three_heads<double>();
  model.initialize(rng);
  const Batch batch = padded_batch();
  ThreeHeads<double>::Targets targets;
  targets.set<"intent">({2, -100, 0});  // the second sequence lacks an intent
  targets.set<"slots">({{0, 1, 2, 3}, {3, -100}, {1, 1, 0}});
  targets.set<"lm">({});

  std::vector<std::string> names;
  model.for_each_param([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"trunk.0.weight", "trunk.1.weight", "trunk.1.bias",
                                          "intent.hidden.weight", "intent.hidden.bias",
                                          "intent.output.weight", "intent.output.bias",
                                          "slots.output.weight", "slots.output.bias", "lm.bias",
                                          "lm.bias_backward"});

  const auto report = check_model(model, batch, targets);
  INFO(report.worst);
  CHECK(report.checked == count_parameters(model));
  CHECK(report.max_error < 1e-6);

  // The total is the weighted sum of the task losses.
  const auto losses = model.forward_backward(batch, targets);
  CHECK(losses.total == doctest::Approx(losses.task[0] + 1.5 * losses.task[1] + 0.5 * losses.task[2]));
  CHECK(ThreeHeads<double>::task_weights[2] == 0.5);
}

TEST_CASE("MultiTask: a task without targets adds no loss and no gradient") {
  Rng rng(2);
  auto model = make_three_heads<double>();
  model.initialize(rng);
  const Batch batch = padded_batch();
  ThreeHeads<double>::Targets targets;
  targets.set<"slots">({{0, 1, 2, 3}, {3, 2}, {1, 1, 0}});
  zero_gradients(model);
  const auto losses = model.forward_backward(batch, targets);
  CHECK_FALSE(losses.present[0]);
  CHECK(losses.present[1]);
  CHECK(losses.total == doctest::Approx(1.5 * losses.task[1]));
  CHECK(gradient_mass(model, "intent.") == 0.0);
  CHECK(gradient_mass(model, "trunk.") > 0.0);

  const auto report = check_model(model, batch, targets);
  INFO(report.worst);
  CHECK(report.max_error < 1e-6);
}

TEST_CASE("StackedHead: a task's own layers train only with its targets, and its gradient "
          "matches finite differences") {
  Rng rng(7);
  auto model = make_shared_and_private<double>();
  model.initialize(rng);
  const Batch batch = padded_batch();

  std::vector<std::string> names;
  model.for_each_param([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(std::find(names.begin(), names.end(), "tags.layers.0.weight_hh_reverse") != names.end());
  CHECK(std::find(names.begin(), names.end(), "tags.head.crf.transitions") != names.end());

  SharedAndPrivate<double>::Targets both;
  both.set<"intent">({2, 0, 1});
  both.set<"tags">({{0, 1, 2, 3}, {3, 2}, {1, 1, 0}});
  // A wider step than the other models': a loss through two recurrent layers and a CRF sums
  // enough terms that round-off at h = 1e-6 (about 1e-9) reaches the gradients' own size here.
  const auto report = check_model(model, batch, both, 1e-5);
  INFO(report.worst);
  CHECK(report.checked == count_parameters(model));
  CHECK(report.max_error < 1e-6);

  // Without tag targets the private layers get no gradient; the trunk still does.
  SharedAndPrivate<double>::Targets intent_only;
  intent_only.set<"intent">({2, 0, 1});
  zero_gradients(model);
  model.forward_backward(batch, intent_only);
  CHECK(gradient_mass(model, "tags.") == 0.0);
  CHECK(gradient_mass(model, "trunk.") > 0.0);

  // Decoding goes to the head: one tag per real token, the same as asking the head itself.
  model.forward(batch);
  const auto tags = model.head<"tags">().predict(batch);
  CHECK(tags == model.head<"tags">().head().predict(batch));
  REQUIRE(tags.size() == 3);
  CHECK(tags[0].size() == 4);
  CHECK(tags[1].size() == 2);
}

TEST_CASE("MultiTask: a tied language-model head makes a sparse table's gradient dense") {
  Rng rng(3);
  auto dense = make_three_heads<double>();
  dense.initialize(rng);
  auto sparse = dense;
  sparse.trunk().layer<0>().set_sparse_gradient(true);
  const Batch batch = padded_batch();
  ThreeHeads<double>::Targets targets;
  targets.set<"slots">({{0, 1, 2, 3}, {3, 2}, {1, 1, 0}});
  targets.set<"lm">({});
  auto& table = sparse.trunk().layer<0>().weight();
  for (auto* m : {&sparse, &dense}) {
    zero_gradients(*m);
    m->forward_backward(batch, targets);
  }
  // The LM head wrote every column of the tied table (word 10 is in no sentence).
  CHECK(table.grad_columns.dense());
  CHECK(table.grad(0, 10) != 0.0);
  CHECK(table.grad(0, 10) == dense.trunk().layer<0>().weight().grad(0, 10));
  // Zeroing clears all of it, so the next step starts from zero everywhere.
  zero_gradients(sparse);
  double left = 0;
  for (Index i = 0; i < table.size(); ++i) left = std::max(left, std::abs(table.grad.data()[i]));
  CHECK(left == 0.0);
}

TEST_CASE("MultiTask: multi-label and regression heads, learned uncertainty weighting") {
  using Model = UncertaintyWeightedMultiTask<
      Sequential<Embedding<Dynamic, 4, double>, Linear<4, 6, double>, Tanh<Dynamic, double>>,
      Task<"topics", MultiLabelClassifier<6, 3, PoolingKind::mean, 0, double>>,
      Task<"score", SequenceRegressor<6, 2, PoolingKind::last, 4, double>, std::ratio<2>>,
      Task<"next", LanguageModelHead<6, Dynamic, LmDirection::next_token, false, double>>>;
  Rng rng(3);
  using Trunk6 = Sequential<Embedding<Dynamic, 4, double>, Linear<4, 6, double>, Tanh<Dynamic, double>>;
  Model model{Trunk6(Embedding<Dynamic, 4, double>(vocab)),
              MultiLabelClassifier<6, 3, PoolingKind::mean, 0, double>(),
              SequenceRegressor<6, 2, PoolingKind::last, 4, double>(),
              LanguageModelHead<6, Dynamic, LmDirection::next_token, false, double>(vocab)};
  model.initialize(rng);
  // Start away from s = 0 so the weighting's gradient is not trivially symmetric.
  model.for_each_param([&](std::string_view n, auto& p) {
    if (n == "loss_weighting.log_variance")
      for (Index i = 0; i < p.size(); ++i) p.value.data()[i] = 0.3 * double(i) - 0.2;
  });
  const Batch batch = padded_batch();
  Model::Targets targets;
  targets.set<"topics">({std::vector<std::int32_t>{0, 2}, std::nullopt, std::vector<std::int32_t>{}});
  targets.set<"score">({std::vector<double>{0.5, -1.0}, std::vector<double>{2.0, 0.0}, std::nullopt});
  targets.set<"next">({});
  const auto report = check_model(model, batch, targets);
  INFO(report.worst);
  CHECK(report.checked == count_parameters(model));
  CHECK(report.max_error < 1e-6);
}

TEST_CASE_TEMPLATE("LanguageModelHead: forward_backward gives forward, loss and backward bit for bit", Head,
                   LanguageModelHead<16, Dynamic, LmDirection::both_directions, true, float>,
                   LanguageModelHead<16, Dynamic, LmDirection::next_token, false, float>) {
  // forward_backward makes each block's logits, their gradient and its products in one go; a
  // whole-batch forward makes all logits with one product. 5 x 120 columns make blocks of 256,
  // 256 and 88 tokens; 3 x 92 make one block of 276 (a 20-token tail joins it). Padding included.
  constexpr Index words = 300;
  using Table = Sequential<Embedding<Dynamic, 8, float>>;
  Rng rng(21);
  for (const auto& [sequences, longest] : {std::pair{5, 120}, std::pair{3, 92}}) {
    std::vector<std::vector<TokenId>> seqs(static_cast<std::size_t>(sequences));
    for (std::size_t b = 0; b < seqs.size(); ++b) {
      seqs[b].resize(static_cast<std::size_t>(longest - 7 * static_cast<Index>(b)));
      for (auto& t : seqs[b]) t = static_cast<TokenId>(rng.uniform() * words);
    }
    const Batch batch = Batch::from_sequences(seqs);
    Matrix<float, Cpu> x(16, batch.columns());
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-2.0, 2.0));
    Table table{Embedding<Dynamic, 8, float>(words)};
    table.initialize(rng);
    Head head(words);
    head.initialize(rng);
    // A non-zero bias so a block that skipped it would show.
    head.for_each_param([&](std::string_view, auto& p) {
      for (Index i = 0; i < p.size(); ++i) p.value.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
    });
    for (const int threads : {1, 2, 3}) {
      INFO(batch.columns() << " columns, " << threads << " threads");
      const int saved_threads = Cpu::threads();
      Cpu::set_threads(threads);
      Table table_a = table, table_b = table;
      Head a = head, b = head;
      a.tie(table_a);
      b.tie(table_b);
      const float scale = 0.75f;
      a.forward(x.view(), batch, Mode::train);
      const double loss_a = a.loss({}, batch);
      const Matrix<float, Cpu> dx_a = a.backward(scale, batch);
      const double loss_b = b.forward_backward(x.view(), {}, batch, scale);
      CHECK(loss_b == loss_a);
      CHECK(b.token_count() == a.token_count());
      CHECK(test::differing_entries(b.feature_gradient(), dx_a) == 0);
      std::vector<Matrix<float, Cpu>> grads_a;
      a.for_each_param([&](std::string_view, auto& p) { grads_a.push_back(p.grad); });
      std::size_t k = 0;
      b.for_each_param([&](std::string_view name, auto& p) {
        INFO(name);
        CHECK(test::differing_entries(p.grad, grads_a[k++]) == 0);
      });
      CHECK(test::differing_entries(table_b.template layer<0>().weight().grad,
                                    table_a.template layer<0>().weight().grad) == 0);
      Cpu::set_threads(saved_threads);
    }
  }
}

TEST_CASE("MultiTask: heads by name, tied weights survive copies") {
  Rng rng(4);
  auto model = make_three_heads<float>();
  model.initialize(rng);
  CHECK(model.head<"intent">().classes() == 3);
  CHECK(model.head<"slots">().tags() == 4);
  CHECK(model.head<"lm">().vocab_size() == vocab);

  auto copy = model;
  const Batch batch = padded_batch();
  model.forward(batch);
  copy.forward(batch);
  CHECK(copy.head<"lm">().logits()(3, 2) == model.head<"lm">().logits()(3, 2));
  // Changing the copy's embedding changes the copy's tied head only.
  copy.trunk().layer<0>().weight().value(0, 3) += 1.0f;
  model.forward(batch);
  copy.forward(batch);
  CHECK(copy.head<"lm">().logits()(3, 2) != model.head<"lm">().logits()(3, 2));
}

TEST_CASE("MultiTask: a toy model learns a synthetic task pair to near-perfect accuracy") {
  // Sequence task: does the sequence contain token 3? Token task: is the token id even?
  using Model = MultiTask<Sequential<Embedding<Dynamic, 16>, Linear<16, 16>, Tanh<>>,
                          Task<"has3", SequenceClassifier<16, 2, PoolingKind::max>>,
                          Task<"even", TokenTagger<16, 2>>>;
  Rng rng(5);
  Model model{Sequential<Embedding<Dynamic, 16>, Linear<16, 16>, Tanh<>>(Embedding<Dynamic, 16>(vocab)),
              SequenceClassifier<16, 2, PoolingKind::max>(), TokenTagger<16, 2>()};
  model.initialize(rng);
  Adam<float> adam({.lr = 0.02});

  auto make = [&](Rng& r, int count) {
    std::vector<std::vector<TokenId>> seqs;
    for (int i = 0; i < count; ++i) {
      std::vector<TokenId> s(1 + r.below(7));
      for (auto& t : s) t = static_cast<TokenId>(1 + r.below(vocab - 1));
      seqs.push_back(s);
    }
    return seqs;
  };
  auto targets_for = [](const Batch& batch) {
    Model::Targets t;
    std::vector<std::int32_t> has3;
    std::vector<std::vector<std::int32_t>> even;
    for (Index b = 0; b < batch.batch_size; ++b) {
      bool found = false;
      even.emplace_back();
      for (Index i = 0; i < batch.lengths[std::size_t(b)]; ++i) {
        found |= batch.token(b, i) == 3;
        even.back().push_back(batch.token(b, i) % 2 == 0);
      }
      has3.push_back(found);
    }
    t.set<"has3">(has3);
    t.set<"even">(even);
    return t;
  };

  Rng data(6);
  for (int step = 0; step < 300; ++step) {
    const auto seqs = make(data, 16);
    const Batch batch = Batch::from_sequences(seqs);
    zero_gradients(model);
    model.forward_backward(batch, targets_for(batch));
    adam.step(model);
  }
  const auto test_seqs = make(data, 400);
  const Batch test = Batch::from_sequences(test_seqs);
  const auto gold = targets_for(test);
  model.forward(test, Mode::eval);
  const auto seq_pred = model.head<"has3">().predict();
  const auto tag_pred = model.head<"even">().predict(test);
  double seq_right = 0, tok_right = 0, tokens = 0;
  for (Index b = 0; b < test.batch_size; ++b) {
    seq_right += seq_pred[std::size_t(b)] == (*gold.at<0>())[std::size_t(b)];
    for (std::size_t i = 0; i < tag_pred[std::size_t(b)].size(); ++i, ++tokens)
      tok_right += tag_pred[std::size_t(b)][i] == (*gold.at<1>())[std::size_t(b)][i];
  }
  CHECK(seq_right / double(test.batch_size) > 0.97);
  CHECK(tok_right / tokens > 0.99);
}
