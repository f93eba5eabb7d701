// Must not compile: a task's own BiLSTM gives 16 features (8 per direction), its head takes 32.
#include <mtlm/mtlm.hpp>

int main() {
  mtlm::StackedHead<mtlm::Sequential<mtlm::BiLstm<32, 8>>, mtlm::TokenTagger<32, 5>> head;
  (void)head;
}
