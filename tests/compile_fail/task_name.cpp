// Must not compile: the model has no task called "slot" (it is "slots").
#include <mtlm/heads/token_tagger.hpp>
#include <mtlm/layers/embedding.hpp>
#include <mtlm/model/multitask.hpp>
#include <mtlm/mtlm.hpp>

int main() {
  using Trunk = mtlm::Sequential<mtlm::Embedding<mtlm::Dynamic, 16>>;
  mtlm::MultiTask<Trunk, mtlm::Task<"slots", mtlm::TokenTagger<16, 5>>> model;
  model.head<"slot">();
}
