// Must not compile: zero is neither a positive size nor mtlm::Dynamic.
#include <mtlm/mtlm.hpp>

int main() {
  mtlm::Linear<0, 8> layer;
  (void)layer;
}
