// @brief What the example programs share to train and use ensembles: members trained side by
// side on threads of their own, summed class probabilities, BIO-valid decoding of summed
// per-token probabilities, and every member's weights in one model file.
#pragma once

#include <mtlm/mtlm.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace examples {

/// Calls train(m) for m = 0 .. members-1, `side_by_side` calls at a time on threads of their
/// own; the first exception thrown by any call is rethrown here once its round has finished.
inline void train_side_by_side(int members, int side_by_side, const std::function<void(int)>& train) {
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto guarded = [&](int m) {
    try {
      train(m);
    } catch (...) {
      std::lock_guard lock(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
  };
  for (int first = 0; first < members; first += side_by_side) {
    std::vector<std::thread> workers;
    for (int m = first; m < std::min(members, first + side_by_side); ++m) workers.emplace_back(guarded, m);
    for (auto& w : workers) w.join();
    if (failure) std::rethrow_exception(failure);
  }
}

/// Adds the softmax of every column of `logits` to `sum` (same shape). Scalar exp: GCC 12
/// misreports Eigen's AVX-512 packet exp as -Wuninitialized in some translation units.
inline void add_softmax(const mtlm::Matrix<float, mtlm::Cpu>& logits, Eigen::MatrixXf& sum) {
  const auto z = mtlm::Cpu::eigen(logits.view());
  Eigen::VectorXf e(z.rows());
  for (mtlm::Index j = 0; j < z.cols(); ++j) {
    const float top = z.col(j).maxCoeff();
    for (mtlm::Index i = 0; i < z.rows(); ++i) e[i] = std::exp(z(i, j) - top);
    sum.col(j) += e / e.sum();
  }
}

/// The most probable valid tag sequences (BIO, or BIOES when the tags say so) under summed
/// per-token probabilities (Tags x B*T): a CRF whose scores are all zero decodes the
/// log-probabilities under its constraints alone.
class BioPosteriorDecoder {
 public:
  using TagSequences = mtlm::LinearChainCrf<mtlm::Dynamic>::TagSequences;

  explicit BioPosteriorDecoder(const mtlm::LabelSet& tags) : crf_(tags.size()) {
    crf_.set_bio_constraints(tags.labels());
  }

  const TagSequences& decode(const Eigen::MatrixXf& sum, const mtlm::Batch& batch) {
    log_probabilities_.resize(sum.rows(), sum.cols());
    // Scalar log (GCC 12 misreports Eigen's AVX-512 packet log as -Wuninitialized); the floor
    // keeps a tag whose probability underflowed decodable when it is the only valid one.
    std::transform(sum.data(), sum.data() + sum.size(), log_probabilities_.data(),
                   [](float p) { return std::log(std::max(p, 1e-30f)); });
    crf_.decode(log_probabilities_.view(), batch, decoded_);
    return decoded_;
  }

 private:
  mtlm::LinearChainCrf<mtlm::Dynamic> crf_;
  mtlm::Matrix<float, mtlm::Cpu> log_probabilities_;
  TagSequences decoded_;
};

/// The index of the largest entry of every column.
inline std::vector<std::int32_t> column_argmax(const Eigen::MatrixXf& m) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(m.cols()));
  for (mtlm::Index j = 0; j < m.cols(); ++j) {
    mtlm::Index best = 0;
    m.col(j).maxCoeff(&best);
    ids[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(best);
  }
  return ids;
}

/// Every member's weights under "member<i>." and their number under "members", so that
/// read_members gets back as many models, in order.
template <class Model>
void add_members(mtlm::io::SafetensorsWriter& writer, std::span<Model> models) {
  for (std::size_t m = 0; m < models.size(); ++m)
    mtlm::io::add_parameters(writer, models[m], "member" + std::to_string(m) + ".");
  writer.set_metadata("members", std::to_string(models.size()));
}

/// The metadata entry `key` of a model file; a file without it is not a model of `program`.
inline const std::string& model_entry(const mtlm::io::SafetensorsFile& file, const std::string& key,
                                      const std::string& program) {
  const auto it = file.metadata().find(key);
  if (it == file.metadata().end())
    throw mtlm::FormatError(file.source(), 0, "not an " + program + " model: no \"" + key + "\" entry");
  return it->second;
}

/// The members add_members wrote, each made by make() and then filled; `members` is the file's
/// "members" entry.
template <class MakeModel>
auto read_members(const mtlm::io::SafetensorsFile& file, const std::string& members, MakeModel make) {
  std::vector<decltype(make())> models;
  const int count = std::atoi(members.c_str());
  if (count < 1 || count > 64)
    throw mtlm::FormatError(file.source(), 0, "\"members\" must be between 1 and 64, got \"" + members + "\"");
  for (int m = 0; m < count; ++m)
    mtlm::io::read_parameters(file, models.emplace_back(make()), "member" + std::to_string(m) + ".");
  return models;
}

}  // namespace examples
