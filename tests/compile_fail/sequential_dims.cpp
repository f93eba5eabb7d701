// Must not compile: a 64-wide layer feeds a layer that expects 32 inputs.
#include <mtlm/mtlm.hpp>

int main() {
  mtlm::Sequential<mtlm::Linear<16, 64>, mtlm::Relu<>, mtlm::Linear<32, 8>> trunk;
  (void)trunk;
}
