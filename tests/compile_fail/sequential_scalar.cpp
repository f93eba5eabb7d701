// Must not compile: layers of one Sequential disagree on the scalar type.
#include <mtlm/mtlm.hpp>

int main() {
  mtlm::Sequential<mtlm::Linear<16, 64, float>, mtlm::Linear<64, 8, double>> trunk;
  (void)trunk;
}
