// @brief CrfTagger: one tag per token (slots, NER, chunks) from a linear projection of the trunk's
// features followed by a linear-chain CRF, in place of TokenTagger's per-token softmax: the loss
// and the decoding see whole tag sequences, so tags that depend on the previous tag are learned
// and invalid BIO or BIOES sequences can be excluded (set_bio_constraints).
//
// Target: for each sequence of the batch, one tag id per real token; an empty vector or all
// ignore_index marks a sequence without tags (no loss). Unlike TokenTagger, a sequence cannot be
// partly tagged. forward returns the emissions (Tags x B*T); loss is the CRF's negative
// log-likelihood, by default averaged over the sequences with tags (CrfOptions); backward returns
// d features (In x B*T, 0 at padding); predict is Viterbi decoding of the last forward.
#pragma once

#include "mtlm/layers/crf.hpp"
#include "mtlm/layers/linear.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace mtlm {

template <Index In, Index Tags, class S = float, class B = Cpu>
  requires Dimension<In> && Dimension<Tags> && Backend<B>
class CrfTagger {
 public:
  using Scalar = S;
  using BackendType = B;
  using Target = std::vector<std::vector<std::int32_t>>;
  static constexpr Index input_dim = In;
  static constexpr Index output_dim = Tags;

  explicit CrfTagger(Index tags = Tags, Index in = In, CrfOptions options = {})
      : projection_(resolve_dim(In, in, "CrfTagger input dimension"),
                    resolve_dim(Tags, tags, "CrfTagger tag count")),
        crf_(projection_.out_features(), options) {}

  void initialize(Rng& rng) {
    projection_.initialize(rng);
    crf_.initialize(rng);
  }

  /// Emission scores (tags x B*T).
  const Matrix<S, B>& forward(ConstView<S> features, const Batch& batch, Mode mode = Mode::eval) {
    emissions_ = &projection_.forward(features, batch, mode);
    return *emissions_;
  }

  double loss(const Target& target, const Batch& batch) {
    return crf_.forward(emissions_->view(), batch, target);
  }

  const Matrix<S, B>& backward(S scale, const Batch& batch) {
    return projection_.backward(crf_.backward(scale, batch).view(), batch);
  }

  /// The most likely tag sequence of every sequence of the last forward (Viterbi, honouring the
  /// constraints), one tag per real token.
  Target predict(const Batch& batch) { return crf_.decode(emissions_->view(), batch); }
  /// p(y_t = i | input) per token of the last forward (tags x B*T, 0 at padding); call it after
  /// backward, not between loss and backward.
  const Matrix<S, B>& marginals(const Batch& batch) {
    return crf_.marginals(emissions_->view(), batch);
  }

  /// BIO: I-X may only follow B-X or I-X and may not start a sequence; BIOES (any E-/S- name)
  /// also closes every entity with E-X. tag_names[i] names tag i (LinearChainCrf has the rules).
  void set_bio_constraints(const std::vector<std::string>& tag_names) {
    crf_.set_bio_constraints(tag_names);
  }

  const Matrix<S, B>& emissions() const { return *emissions_; }
  Index tags() const { return crf_.tags(); }
  LinearChainCrf<Tags, S, B>& crf() { return crf_; }

  template <class F>
  void for_each_param(F&& f) {
    projection_.for_each_param(prefixed("output", f));
    crf_.for_each_param(prefixed("crf", f));
  }

 private:
  Linear<In, Tags, S, B> projection_;
  LinearChainCrf<Tags, S, B> crf_;
  const Matrix<S, B>* emissions_ = nullptr;
};

}  // namespace mtlm
