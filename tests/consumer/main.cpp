// Builds a small trunk from the installed headers and runs one forward and backward pass.
#include <mtlm/mtlm.hpp>

#include <cstdio>

int main() {
  using Trunk = mtlm::Sequential<mtlm::Linear<8, 16>, mtlm::Relu<>, mtlm::Linear<16, 4>>;
  mtlm::Rng rng(1);
  Trunk trunk;
  trunk.initialize(rng);
  const auto batch = mtlm::Batch::dense(2, 3);
  mtlm::Matrix<float, mtlm::Cpu> x(8, batch.columns(), 0.5f), dy(4, batch.columns(), 1.0f);
  const auto& y = trunk.forward(x.view(), batch);
  const auto& dx = trunk.backward(dy.view(), batch);
  std::printf("consumer: %ld parameters, y %ldx%ld, dx %ldx%ld\n",
              static_cast<long>(mtlm::count_parameters(trunk)), static_cast<long>(y.rows()),
              static_cast<long>(y.cols()), static_cast<long>(dx.rows()),
              static_cast<long>(dx.cols()));
  return y.rows() == 4 && dx.rows() == 8 ? 0 : 1;
}
