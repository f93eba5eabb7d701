// Must not compile: 10 features cannot be split evenly over 4 attention heads.
#include <mtlm/layers/attention.hpp>

int main() {
  mtlm::MultiHeadSelfAttention<10, 4> attention;
  (void)attention;
}
