// Uses the installed CUDA component: one training step of a small model on the GPU, or a note
// that there is no device.
#include <mtlm/backend/cuda.hpp>
#include <mtlm/mtlm.hpp>

#include <cstdio>
#include <vector>

using Model = mtlm::MultiTask<
    mtlm::Sequential<mtlm::Embedding<50, 16, float, mtlm::Cuda>, mtlm::BiGru<16, 8, float, mtlm::Cuda>>,
    mtlm::Task<"tags", mtlm::TokenTagger<16, 4, float, mtlm::Cuda>>>;

int main() {
  if (mtlm::cuda::device_count() == 0) {
    std::printf("consumer_cuda: built; no CUDA device to run on\n");
    return 0;
  }
  Model model;
  mtlm::Rng rng(1);
  model.initialize(rng);
  const std::vector<std::vector<mtlm::TokenId>> ids{{1, 2, 3}, {4, 5}};
  const auto batch = mtlm::Batch::from_sequences(ids);
  Model::Targets targets;
  targets.set<"tags">({{0, 1, 2}, {3, 0}});
  mtlm::Adam<float, mtlm::Cuda> optimizer;
  const double loss = model.forward_backward(batch, targets).total;
  optimizer.step(model);
  std::printf("consumer_cuda: loss %.4f on the GPU\n", loss);
  return loss > 0 ? 0 : 1;
}
