// Must not compile: a 64-wide layer feeds a BiLSTM that expects 32 inputs.
#include <mtlm/mtlm.hpp>

int main() {
  mtlm::Sequential<mtlm::Linear<16, 64>, mtlm::BiLstm<32, 8>> trunk;
  (void)trunk;
}
