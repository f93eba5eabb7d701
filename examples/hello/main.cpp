// Declares a small trunk as a type, checks its backward pass against finite differences and
// runs it on a padded batch: the smallest complete use of mtlm.
#include <mtlm/mtlm.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include <cstdio>
#include <vector>

template <class S>
using Trunk = mtlm::Sequential<mtlm::Linear<16, 32, S>, mtlm::Gelu<mtlm::Dynamic, S>,
                               mtlm::Linear<32, 8, S>, mtlm::Tanh<mtlm::Dynamic, S>>;

int main() {
  mtlm::Rng rng(2026);
  const std::vector<std::vector<mtlm::TokenId>> sentences{{4, 8, 15, 16}, {23, 42}, {7, 7, 7}};
  const auto batch = mtlm::Batch::from_sequences(sentences);

  Trunk<float> trunk;
  trunk.initialize(rng);
  mtlm::Matrix<float, mtlm::Cpu> x(16, batch.columns(), 0.25f);
  const auto& y = trunk.forward(x.view(), batch, mtlm::Mode::eval);
  std::printf("trunk: %ld parameters, output %ld x %ld for %ld sequences (%ld real tokens)\n",
              static_cast<long>(mtlm::count_parameters(trunk)), static_cast<long>(y.rows()),
              static_cast<long>(y.cols()), static_cast<long>(batch.batch_size),
              static_cast<long>(batch.token_count()));

  Trunk<double> checked;
  checked.initialize(rng);
  const auto report = mtlm::testing::check_layer(
      checked, mtlm::testing::random_matrix(16, batch.columns(), rng), batch, rng);
  std::printf("gradient check: %ld entries, max relative error %.2e (%s)\n",
              static_cast<long>(report.gradients.checked), report.gradients.max_error,
              report.gradients.max_error < 1e-6 ? "ok" : "FAILED");
  return report.gradients.max_error < 1e-6 ? 0 : 1;
}
