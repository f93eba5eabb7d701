// Trainer, checkpoints, resume, early stopping, fine-tuning with a frozen trunk, task sampling.
#include <doctest/doctest.h>

#include <mtlm/heads/sequence_classifier.hpp>
#include <mtlm/heads/token_tagger.hpp>
#include <mtlm/layers/embedding.hpp>
#include <mtlm/model/multitask.hpp>
#include <mtlm/mtlm.hpp>
#include <mtlm/optim/adam.hpp>
#include <mtlm/train/multi_dataset.hpp>
#include <mtlm/train/sampler.hpp>
#include <mtlm/train/trainer.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

using namespace mtlm;
namespace fs = std::filesystem;

namespace {

constexpr Index vocab = 12;
// Dropout in the trunk: a resumed run must also continue the dropout masks' random stream.
using Trunk = Sequential<Embedding<Dynamic, 8>, Linear<8, 8>, Tanh<>, Dropout<>>;
using Model = MultiTask<Trunk, Task<"seq", SequenceClassifier<8, 3>>, Task<"tok", TokenTagger<8, 2>>>;

Model make_model(std::uint64_t seed) {
  Model m{Trunk(Embedding<Dynamic, 8>(vocab), Linear<8, 8>(), Tanh<>(), Dropout<>(0.2)), SequenceClassifier<8, 3>(), TokenTagger<8, 2>()};
  Rng rng(seed);
  m.initialize(rng);
  return m;
}

/// 48 synthetic sequences; each epoch shuffles them into batches of 8.
train::Trainer<Model, Adam<float>>::Batches epoch_batches(Rng& rng) {
  Rng data(99);
  std::vector<std::vector<TokenId>> seqs;
  for (int i = 0; i < 48; ++i) {
    std::vector<TokenId> s(2 + data.below(5));
    for (auto& t : s) t = static_cast<TokenId>(1 + data.below(vocab - 1));
    seqs.push_back(s);
  }
  rng.shuffle(seqs);
  train::Trainer<Model, Adam<float>>::Batches out;
  for (std::size_t i = 0; i < seqs.size(); i += 8) {
    std::vector<std::vector<TokenId>> chunk(seqs.begin() + long(i), seqs.begin() + long(i + 8));
    train::TrainingBatch<Model> item{Batch::from_sequences(chunk), {}};
    std::vector<std::int32_t> labels;
    std::vector<std::vector<std::int32_t>> tags;
    for (const auto& s : chunk) {
      labels.push_back(s[0] % 3);
      tags.emplace_back();
      for (TokenId t : s) tags.back().push_back(t > 6);
    }
    item.targets.set<"seq">(labels);
    item.targets.set<"tok">(tags);
    out.push_back(std::move(item));
  }
  return out;
}

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("mtlm-test-train-" + std::to_string(Rng(std::random_device{}()).next()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

template <class M>
std::vector<float> all_values(M& model) {
  std::vector<float> v;
  model.for_each_param([&](std::string_view, auto& p) { v.insert(v.end(), p.value.data(), p.value.data() + p.size()); });
  return v;
}

/// Two epochs straight, and one epoch + checkpoint + resume into a differently initialised model
/// + a second epoch, with the same options: the final weights of both.
struct ResumeRuns {
  std::vector<float> straight, resumed;
  std::int64_t straight_steps = 0, resumed_steps = 0, epoch_after_resume = 0;
};

ResumeRuns run_straight_and_resumed(train::TrainerOptions options, const fs::path& checkpoint) {
  options.seed = 7;
  options.log = nullptr;
  options.restore_best = false;
  ResumeRuns runs;

  Model straight = make_model(1);
  Adam<float> adam_straight({.lr = 0.01});
  options.epochs = 2;
  train::Trainer<Model, Adam<float>>(straight, adam_straight, options).fit(epoch_batches);

  Model first = make_model(1);
  Adam<float> adam_first({.lr = 0.01});
  options.epochs = 1;
  options.checkpoint = checkpoint;
  train::Trainer<Model, Adam<float>>(first, adam_first, options).fit(epoch_batches);

  Model resumed = make_model(12345);  // different initial weights: all must come from the file
  Adam<float> adam_resumed({.lr = 0.01});
  options.epochs = 2;
  train::Trainer<Model, Adam<float>> trainer(resumed, adam_resumed, options);
  trainer.resume(checkpoint);
  runs.epoch_after_resume = trainer.state().epoch;
  trainer.fit(epoch_batches);

  runs.straight = all_values(straight);
  runs.resumed = all_values(resumed);
  runs.straight_steps = adam_straight.steps();
  runs.resumed_steps = adam_resumed.steps();
  return runs;
}

}  // namespace

TEST_CASE("resume: 1 epoch + save + load + 1 epoch equals 2 epochs, bit for bit") {
  TempDir dir;
  const auto runs = run_straight_and_resumed({}, dir.path / "run.ckpt");
  CHECK(runs.epoch_after_resume == 1);
  const auto& a = runs.straight;
  const auto& b = runs.resumed;
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  CHECK(runs.resumed_steps == runs.straight_steps);
  // Sanity: training moved the weights at all.
  const auto init = all_values(*std::make_unique<Model>(make_model(1)));
  CHECK(std::memcmp(a.data(), init.data(), a.size() * sizeof(float)) != 0);
}

TEST_CASE("parameter average: warm-up decay, then an exponential moving average of the values") {
  Model model = make_model(1);
  const auto start = all_values(model);
  ParameterAverage<Model> average(model, 0.9);
  CHECK(average.current_decay() == doctest::Approx(0.1));  // (1 + 0) / (10 + 0)
  // Three "steps" that shift every parameter by a known amount; the average follows
  // a_n = d_n a_{n-1} + (1 - d_n) p_n with d_n = min(0.9, (1 + n) / (10 + n)).
  std::vector<double> expected(start.begin(), start.end());
  std::vector<double> current(start.begin(), start.end());
  for (int n = 0; n < 3; ++n) {
    model.for_each_param([&](std::string_view, auto& p) { Cpu::eigen(p.value.view()).array() += 0.5f; });
    const auto values = all_values(model);
    current.assign(values.begin(), values.end());
    const double d = std::min(0.9, (1.0 + n) / (10.0 + n));
    CHECK(average.current_decay() == doctest::Approx(d));
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = d * expected[i] + (1 - d) * current[i];
    average.update(model);
  }
  CHECK(average.updates() == 3);
  const auto got = all_values(average.model());
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-5));
  // The average lies strictly between the start and the current weights (not either one).
  CHECK(got[0] != doctest::Approx(current[0]));
  CHECK(got[0] != doctest::Approx(start[0]));

  ParameterAverage<Model> last_only(model, 0.0);
  model.for_each_param([&](std::string_view, auto& p) { Cpu::fill(p.value.view(), 2.0f); });
  last_only.update(model);
  for (float v : all_values(last_only.model())) CHECK(v == 2.0f);
  CHECK_THROWS_WITH_AS(ParameterAverage<Model>(model, 1.0), doctest::Contains("decay must be in [0, 1)"), Error);
}

TEST_CASE("training with a parameter average evaluates, keeps and leaves the average") {
  train::TrainerOptions options;
  options.seed = 3;
  options.log = nullptr;
  options.epochs = 3;
  options.average_decay = 0.99;

  // The same run without averaging follows the same raw trajectory: the average must differ
  // from its final weights (it lags behind them) and be what the evaluator saw.
  Model plain = make_model(5);
  Adam<float> adam_plain({.lr = 0.01});
  train::TrainerOptions plain_options = options;
  plain_options.average_decay = 0.0;
  plain_options.restore_best = false;
  train::Trainer<Model, Adam<float>>(plain, adam_plain, plain_options).fit(epoch_batches);

  Model model = make_model(5);
  Adam<float> adam({.lr = 0.01});
  std::vector<std::vector<float>> seen;
  auto evaluate = [&](Model& m) {
    seen.push_back(all_values(m));
    return train::Metrics{{"score", seen.size() == 2 ? 1.0 : 0.0}};  // the second epoch is best
  };
  train::Trainer<Model, Adam<float>> trainer(model, adam, options);
  const auto result = trainer.fit(epoch_batches, evaluate);
  REQUIRE(seen.size() == 3);
  CHECK(result.best_epoch == 2);
  const auto kept = all_values(model);
  CHECK(std::memcmp(kept.data(), seen[1].data(), kept.size() * sizeof(float)) == 0);
  REQUIRE(trainer.average() != nullptr);
  const auto last_average = all_values(const_cast<Model&>(trainer.average()->model()));
  CHECK(std::memcmp(last_average.data(), seen[2].data(), kept.size() * sizeof(float)) == 0);
  const auto raw = all_values(plain);
  CHECK(std::memcmp(last_average.data(), raw.data(), raw.size() * sizeof(float)) != 0);
  CHECK(trainer.average()->updates() == adam.steps());

  // Without an evaluator (nothing selects), fit() leaves the average of the last step.
  Model unselected = make_model(5);
  Adam<float> adam_unselected({.lr = 0.01});
  train::Trainer<Model, Adam<float>> unselected_trainer(unselected, adam_unselected, options);
  unselected_trainer.fit(epoch_batches);
  const auto left = all_values(unselected);
  CHECK(std::memcmp(left.data(), last_average.data(), left.size() * sizeof(float)) == 0);
}

TEST_CASE("resume with a parameter average continues the average bit for bit") {
  TempDir dir;
  train::TrainerOptions options;
  options.average_decay = 0.95;
  const auto runs = run_straight_and_resumed(options, dir.path / "run.ckpt");
  REQUIRE(runs.straight.size() == runs.resumed.size());
  // Both runs end on their average (restore_best off): equal only if the average was resumed.
  CHECK(std::memcmp(runs.straight.data(), runs.resumed.data(), runs.straight.size() * sizeof(float)) == 0);

  // A checkpoint without an average cannot resume a run that averages.
  options.average_decay = 0.0;
  options.epochs = 1;
  options.log = nullptr;
  options.checkpoint = dir.path / "plain.ckpt";
  Model plain = make_model(1);
  Adam<float> adam_plain({.lr = 0.01});
  train::Trainer<Model, Adam<float>>(plain, adam_plain, options).fit(epoch_batches);
  options.average_decay = 0.95;
  train::Trainer<Model, Adam<float>> averaging(plain, adam_plain, options);
  CHECK_THROWS_WITH_AS(averaging.resume(dir.path / "plain.ckpt"), doctest::Contains("no parameter average"),
                       FormatError);
}

TEST_CASE("a resumed run still restores a best epoch found before the checkpoint") {
  TempDir dir;
  train::TrainerOptions options;
  options.seed = 11;
  options.log = nullptr;
  options.checkpoint = dir.path / "run.ckpt";
  std::vector<std::vector<float>> seen;
  // The first epoch is the best; every later one is worse.
  auto evaluate = [&](Model& m) {
    seen.push_back(all_values(m));
    return train::Metrics{{"score", seen.size() == 1 ? 1.0 : 0.0}};
  };

  Model first = make_model(1);
  Adam<float> adam_first({.lr = 0.01});
  options.epochs = 2;
  train::Trainer<Model, Adam<float>>(first, adam_first, options).fit(epoch_batches, evaluate);
  REQUIRE(seen.size() == 2);

  Model resumed = make_model(12345);
  Adam<float> adam_resumed({.lr = 0.01});
  options.epochs = 3;
  train::Trainer<Model, Adam<float>> trainer(resumed, adam_resumed, options);
  trainer.resume(dir.path / "run.ckpt");
  const auto result = trainer.fit(epoch_batches, evaluate);
  REQUIRE(seen.size() == 3);
  CHECK(result.best_epoch == 1);
  const auto kept = all_values(resumed);
  CHECK(std::memcmp(kept.data(), seen[0].data(), kept.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(kept.data(), seen[2].data(), kept.size() * sizeof(float)) != 0);
}

TEST_CASE("checkpoints for another model or corrupted ones are rejected clearly") {
  TempDir dir;
  Model model = make_model(1);
  Adam<float> adam;
  train::TrainerOptions options;
  options.epochs = 1;
  options.log = nullptr;
  options.checkpoint = dir.path / "run.ckpt";
  train::Trainer<Model, Adam<float>>(model, adam, options).fit(epoch_batches);

  using Other = MultiTask<Trunk, Task<"seq", SequenceClassifier<8, 4>>, Task<"tok", TokenTagger<8, 2>>>;
  Other other{Trunk(Embedding<Dynamic, 8>(vocab), Linear<8, 8>(), Tanh<>(), Dropout<>(0.2)), SequenceClassifier<8, 4>(), TokenTagger<8, 2>()};
  Adam<float> adam2;
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir.path / "run.ckpt", other, adam2),
                       doctest::Contains("\"model.seq.output.weight\" has shape [3, 8], the model expects [4, 8]"),
                       FormatError);

  std::ifstream in(dir.path / "run.ckpt", std::ios::binary);
  std::string bytes{std::istreambuf_iterator<char>(in), {}};
  std::ofstream(dir.path / "cut.ckpt", std::ios::binary).write(bytes.data(), long(bytes.size() / 2));
  Model fresh = make_model(2);
  CHECK_THROWS_AS(train::load_checkpoint(dir.path / "cut.ckpt", fresh, adam2), FormatError);

  io::save_parameters(fresh, dir.path / "weights-only.safetensors");
  CHECK_THROWS_WITH_AS(train::load_checkpoint(dir.path / "weights-only.safetensors", fresh, adam2),
                       doctest::Contains("not an mtlm checkpoint"), FormatError);
}

TEST_CASE("fit flushes subnormals while it trains and evaluates, and restores the mode after") {
  if (!FlushSubnormals::active()) return;
  Model model = make_model(1);
  Adam<float> adam({.lr = 1e-2});
  train::TrainerOptions options;
  options.epochs = 1;
  options.log = nullptr;
  float inside = -1.0f;
  train::Trainer(model, adam, options).fit(epoch_batches, [&](Model&) {
    volatile float smallest = std::numeric_limits<float>::min();
    inside = smallest * 0.5f;
    return train::Metrics{{"x", 0.0}};
  });
  CHECK(inside == 0.0f);
  volatile float smallest = std::numeric_limits<float>::min();
  CHECK(smallest * 0.5f > 0.0f);
}

TEST_CASE("best epoch is kept and patience stops training") {
  Model model = make_model(3);
  Adam<float> adam({.lr = 0.01});
  train::TrainerOptions options;
  options.epochs = 20;
  options.patience = 2;
  options.log = nullptr;
  int calls = 0;
  std::vector<float> at_best;
  // A metric that peaks at epoch 3, then falls: training must stop after epoch 5.
  auto evaluate = [&](Model& m) {
    ++calls;
    if (calls == 3) at_best = all_values(m);
    return train::Metrics{{"score", calls <= 3 ? double(calls) : 3.0 - calls}};
  };
  const auto result = train::Trainer<Model, Adam<float>>(model, adam, options).fit(epoch_batches, evaluate);
  CHECK(result.stopped_early);
  CHECK(result.epochs_run == 5);
  CHECK(result.best_epoch == 3);
  CHECK(result.best_metric == 3.0);
  const auto restored = all_values(model);
  CHECK(std::memcmp(restored.data(), at_best.data(), restored.size() * sizeof(float)) == 0);
}

TEST_CASE("fine-tuning with a frozen trunk changes only the head") {
  Model model = make_model(4);
  set_frozen(model.trunk(), true);
  set_frozen(model.head<"tok">(), true);
  std::map<std::string, std::vector<float>> before;
  model.for_each_param([&](std::string_view n, auto& p) {
    before[std::string(n)] = std::vector<float>(p.value.data(), p.value.data() + p.size());
  });
  Adam<float> adam({.lr = 0.05});
  train::TrainerOptions options;
  options.epochs = 1;
  options.log = nullptr;
  train::Trainer<Model, Adam<float>>(model, adam, options).fit(epoch_batches);
  model.for_each_param([&](std::string_view n, auto& p) {
    const bool same = std::memcmp(before[std::string(n)].data(), p.value.data(), sizeof(float) * std::size_t(p.size())) == 0;
    INFO(n);
    CHECK(same == !n.starts_with("seq."));
  });
  // Freezing one trunk layer only.
  set_frozen(model.trunk(), false);
  set_frozen(model.trunk().layer<0>(), true);
  int frozen = 0;
  model.for_each_param([&](std::string_view n, auto& p) { frozen += p.frozen && n.starts_with("trunk."); });
  CHECK(frozen == 1);
}

TEST_CASE("task sampling: proportional, temperature, round-robin") {
  const std::vector<std::size_t> counts{30, 10, 0, 5};
  Rng rng(1);
  SUBCASE("proportional visits every batch exactly once") {
    const auto plan = train::plan_epoch(counts, {}, rng);
    CHECK(plan.size() == 45);
    std::map<std::pair<std::size_t, std::size_t>, int> seen;
    for (const auto& d : plan) ++seen[{d.task, d.batch}];
    CHECK(seen.size() == 45);
    // Interleaved, not task after task.
    CHECK(plan.front().task != plan[1].task + 100);
    int switches = 0;
    for (std::size_t i = 1; i < plan.size(); ++i) switches += plan[i].task != plan[i - 1].task;
    CHECK(switches > 10);
  }
  SUBCASE("temperature lifts small tasks") {
    const auto p = train::task_probabilities(counts, {train::SamplingPolicy::temperature, 2.0});
    CHECK(p[0] == doctest::Approx(std::sqrt(30.0) / (std::sqrt(30.0) + std::sqrt(10.0) + std::sqrt(5.0))));
    CHECK(p[2] == 0.0);
    const auto plan = train::plan_epoch(counts, {train::SamplingPolicy::temperature, 2.0, 20000}, rng);
    std::vector<double> freq(4, 0);
    for (const auto& d : plan) freq[d.task] += 1.0 / 20000;
    for (int t = 0; t < 4; ++t) CHECK(freq[std::size_t(t)] == doctest::Approx(p[std::size_t(t)]).epsilon(0.05));
    for (const auto& d : plan) CHECK(d.batch < counts[d.task]);
  }
  SUBCASE("round-robin alternates over tasks that have data") {
    const auto plan = train::plan_epoch(counts, {train::SamplingPolicy::round_robin}, rng);
    CHECK(plan.size() == 45);
    CHECK(plan[0].task == 0);
    CHECK(plan[1].task == 1);
    CHECK(plan[2].task == 3);
    CHECK(plan[3].task == 0);
  }
  SUBCASE("weighted round-robin: exact shares, spread evenly, tasks without data skipped") {
    train::TaskSampling weighted{train::SamplingPolicy::round_robin, 2.0, 40, {2, 1, 5, 1}};
    const auto p = train::task_probabilities(counts, weighted);
    CHECK(p == std::vector<double>{0.5, 0.25, 0.0, 0.25});
    const auto plan = train::plan_epoch(counts, weighted, rng);
    REQUIRE(plan.size() == 40);
    for (const auto& d : plan) CHECK(d.batch < counts[d.task]);
    // Every window of four draws holds task 0 twice and tasks 1 and 3 once each.
    for (std::size_t start = 0; start + 4 <= plan.size(); ++start) {
      int in_window[4] = {0, 0, 0, 0};
      for (std::size_t i = start; i < start + 4; ++i) ++in_window[plan[i].task];
      CHECK(in_window[0] == 2);
      CHECK(in_window[1] == 1);
      CHECK(in_window[2] == 0);
      CHECK(in_window[3] == 1);
    }
  }
  SUBCASE("sampling weights that cannot apply are errors") {
    auto plan_with = [&](train::SamplingPolicy policy, std::vector<double> weights) {
      return train::plan_epoch(counts, {policy, 2.0, 10, std::move(weights)}, rng);
    };
    CHECK_THROWS_WITH_AS(plan_with(train::SamplingPolicy::temperature, {1, 1, 1, 1}),
                         doctest::Contains("round-robin sampling only"), Error);
    CHECK_THROWS_WITH_AS(plan_with(train::SamplingPolicy::round_robin, {1, 1}),
                         doctest::Contains("2 task sampling weights for 4 tasks"), Error);
    CHECK_THROWS_WITH_AS(plan_with(train::SamplingPolicy::round_robin, {1, -1, 1, 1}),
                         doctest::Contains("finite and >= 0"), Error);
    CHECK_THROWS_WITH_AS(plan_with(train::SamplingPolicy::round_robin, {0, 0, 1, 0}),
                         doctest::Contains("weight of 0"), Error);
  }
  SUBCASE("same seed, same plan") {
    Rng a(5), b(5);
    const auto pa = train::plan_epoch(counts, {train::SamplingPolicy::temperature}, a);
    const auto pb = train::plan_epoch(counts, {train::SamplingPolicy::temperature}, b);
    CHECK(pa.size() == pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i) CHECK((pa[i].task == pb[i].task && pa[i].batch == pb[i].batch));
  }
}

TEST_CASE("progress: plain lines when not a terminal") {
  std::ostringstream out;
  train::Progress progress(out, false);
  std::vector<std::string_view> names{"a", "b"};
  progress.start_epoch(1, 3, 20, names);
  const double losses[2] = {0.5, 1.5};
  const bool present[2] = {true, false};
  for (std::size_t i = 0; i < 20; ++i) progress.update(i, losses, present, 100);
  progress.finish_epoch("dev 0.9");
  const std::string text = out.str();
  CHECK(text.find('\r') == std::string::npos);
  CHECK(text.find("a 0.5000") != std::string::npos);
  CHECK(text.find("  b ") == std::string::npos);
  CHECK(text.find("epoch 1/3 done") != std::string::npos);
  CHECK(text.find("dev 0.9") != std::string::npos);
}

TEST_CASE("multi-dataset training: each task from its own data, interleaved by the sampler") {
  // Task "seq" sees only sequences of 3-5 tokens, task "tok" only longer ones; each batch carries one
  // task's targets. Both tasks must still learn through the shared trunk.
  auto source_for = [](bool sequence_task) {
    return [sequence_task](Rng& rng) {
      train::Trainer<Model, Adam<float>>::Batches out;
      for (int i = 0; i < (sequence_task ? 6 : 3); ++i) {
        std::vector<std::vector<TokenId>> seqs;
        for (int k = 0; k < 8; ++k) {
          std::vector<TokenId> s(sequence_task ? 3 + rng.below(3) : 6 + rng.below(3));
          for (auto& t : s) t = static_cast<TokenId>(1 + rng.below(vocab - 1));
          seqs.push_back(s);
        }
        train::TrainingBatch<Model> item{Batch::from_sequences(seqs), {}};
        if (sequence_task) {
          std::vector<std::int32_t> labels;
          for (const auto& s : seqs)  // what a max-pooled classifier can see: which tokens occur
            labels.push_back((std::find(s.begin(), s.end(), 2) != s.end()) + (std::find(s.begin(), s.end(), 5) != s.end()));
          item.targets.set<"seq">(labels);
        } else {
          std::vector<std::vector<std::int32_t>> tags;
          for (const auto& s : seqs) {
            tags.emplace_back();
            for (TokenId t : s) tags.back().push_back(t > 6);
          }
          item.targets.set<"tok">(tags);
        }
        out.push_back(std::move(item));
      }
      return out;
    };
  };
  const auto source = train::multi_dataset_source<Model>({source_for(true), source_for(false)},
                                                         {train::SamplingPolicy::round_robin, 2.0, 12});
  Rng rng(3);
  const auto epoch = source(rng);
  REQUIRE(epoch.size() == 12);
  for (std::size_t i = 0; i < epoch.size(); ++i) {
    CHECK(epoch[i].targets.at<0>().has_value() == (i % 2 == 0));
    CHECK(epoch[i].targets.at<1>().has_value() == (i % 2 == 1));
  }

  // Mean losses (inference mode) on fresh data from each task's own distribution.
  auto losses_of = [&](Model& m) {
    Rng fresh(77);
    double seq = 0, tok = 0;
    for (const auto& item : source_for(true)(fresh)) {
      m.forward(item.batch, Mode::eval);
      seq += m.head<"seq">().loss(*item.targets.at<0>(), item.batch) / 6;
    }
    for (const auto& item : source_for(false)(fresh)) {
      m.forward(item.batch, Mode::eval);
      tok += m.head<"tok">().loss(*item.targets.at<1>(), item.batch) / 3;
    }
    return std::pair{seq, tok};
  };
  Model model = make_model(8);
  const auto [seq_before, tok_before] = losses_of(model);
  Adam<float> adam({.lr = 0.02});
  train::TrainerOptions options;
  options.epochs = 60;
  options.log = nullptr;
  train::Trainer<Model, Adam<float>>(model, adam, options).fit(source);
  const auto [seq_after, tok_after] = losses_of(model);
  CHECK(seq_after < 0.25 * seq_before);
  CHECK(tok_after < 0.1 * tok_before);
}
