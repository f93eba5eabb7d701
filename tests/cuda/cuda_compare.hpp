// Helpers for the CUDA tests: copies between backends and the tolerance check used to compare
// a layer, loss or model run on Cpu with the same thing run on Cuda.
#pragma once

#include <doctest/doctest.h>

#include <mtlm/backend/cuda.hpp>
#include <mtlm/mtlm.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace mtlm::cuda_test {

/// Float results of the two backends agree when |gpu - cpu| <= atol + rtol |cpu| everywhere:
/// cuBLAS and Eigen sum products in different orders, and device exp/tanh differ in the last
/// bits, so outputs differ by rounding; the gradients of a few layers deep stay within 1e-4.
struct Tolerance {
  double rtol = 1e-4;
  double atol = 1e-5;
};

inline std::vector<float> to_host(ConstView<float> device) {
  std::vector<float> host(static_cast<std::size_t>(device.size()));
  Cuda::download(device, host.data());
  return host;
}
inline std::vector<float> to_host(ConstView<float> host_view, Cpu) {
  std::vector<float> host(static_cast<std::size_t>(host_view.size()));
  Cpu::download(host_view, host.data());
  return host;
}

inline Matrix<float, Cuda> to_device(const Matrix<float, Cpu>& host) {
  Matrix<float, Cuda> device(host.rows(), host.cols());
  Cuda::upload(host.data(), device.view());
  return device;
}

inline Matrix<float, Cpu> random_matrix(Index rows, Index cols, Rng& rng) {
  Matrix<float, Cpu> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.normal(0.0, 1.0));
  return m;
}

/// Largest violation of the tolerance, as a multiple of it (<= 1 passes), with where it was.
inline void check_close(ConstView<float> cpu, ConstView<float> gpu, const std::string& what,
                        Tolerance tol = {}) {
  REQUIRE_MESSAGE(cpu.rows == gpu.rows, what);
  REQUIRE_MESSAGE(cpu.cols == gpu.cols, what);
  const auto c = to_host(cpu, Cpu{});
  const auto g = to_host(gpu);
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    const double allowed = tol.atol + tol.rtol * std::abs(static_cast<double>(c[i]));
    const double ratio = std::abs(static_cast<double>(g[i]) - c[i]) / allowed;
    if (!(ratio <= worst)) {  // also catches NaN
      worst = ratio;
      at = i;
    }
  }
  INFO(what << ": worst at " << at << ": cpu " << (c.empty() ? 0.f : c[at]) << " vs gpu "
            << (g.empty() ? 0.f : g[at]) << " (" << worst << " x tolerance)");
  CHECK(worst <= 1.0);
}

/// Compares every parameter gradient (and optionally value) of two models visited in the same
/// order.
template <class CpuModel, class GpuModel>
void check_params_close(CpuModel& cpu, GpuModel& gpu, bool values, Tolerance tol = {}) {
  std::vector<std::pair<std::string, ConstView<float>>> cpu_params;
  cpu.for_each_param([&](std::string_view name, auto& p) {
    cpu_params.emplace_back(std::string(name), values ? p.value.view() : p.grad.view());
  });
  std::size_t k = 0;
  gpu.for_each_param([&](std::string_view name, auto& p) {
    REQUIRE(k < cpu_params.size());
    CHECK(cpu_params[k].first == std::string(name));
    check_close(cpu_params[k].second, values ? p.value.view() : p.grad.view(),
                std::string(values ? "value " : "gradient ") + std::string(name), tol);
    ++k;
  });
  CHECK(k == cpu_params.size());
}

}  // namespace mtlm::cuda_test
