// Must not compile: the head expects 32 features, the trunk produces 16.
#include <mtlm/heads/token_tagger.hpp>
#include <mtlm/layers/embedding.hpp>
#include <mtlm/model/multitask.hpp>
#include <mtlm/mtlm.hpp>

int main() {
  using Trunk = mtlm::Sequential<mtlm::Embedding<mtlm::Dynamic, 16>>;
  mtlm::MultiTask<Trunk, mtlm::Task<"tags", mtlm::TokenTagger<32, 5>>> model;
  (void)model;
}
