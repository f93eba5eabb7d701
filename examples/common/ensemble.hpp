// @brief What the example programs share to train and use ensembles: members trained side by
// side on threads of their own, summed class probabilities, and BIO-valid decoding of summed
// per-token probabilities.
#pragma once

#include <mtlm/mtlm.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <exception>
#include <functional>
#include <mutex>
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

/// The most probable BIO-valid tag sequences under summed per-token probabilities (Tags x B*T):
/// a CRF whose scores are all zero decodes the log-probabilities under its constraints alone.
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

}  // namespace examples
