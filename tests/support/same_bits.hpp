// Exact comparison of two matrices, for the tests that require the same bits (one thread against
// two, inference against training).
#pragma once

#include <mtlm/backend/cpu.hpp>
#include <mtlm/core/matrix.hpp>

#include <doctest/doctest.h>

namespace mtlm::test {

/// How many entries of a and b differ in value (so -0 equals 0, and NaN never equals itself);
/// their shapes must match.
template <class S>
Index differing_entries(const Matrix<S, Cpu>& a, const Matrix<S, Cpu>& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  Index count = 0;
  for (Index i = 0; i < a.size(); ++i) count += a.data()[i] != b.data()[i];
  return count;
}

}  // namespace mtlm::test
