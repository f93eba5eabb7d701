// @brief Finite-difference gradient checks for layers, heads, losses and whole models.
// Used by mtlm's own tests and offered to users who write their own layers: a hand-written
// backward is only trusted once it matches central differences in double precision.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/core/random.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace mtlm::testing {

struct GradientReport {
  /// max over checked entries of |analytic - numeric| / max(|analytic|, |numeric|, floor).
  /// The floor (1e-3) keeps round-off on gradients that are nearly zero from reading as a large
  /// relative error; gradients here are O(1) because the upstream gradient is N(0, 1).
  double max_error = 0.0;
  std::string worst;  ///< "name[index]: analytic vs numeric" for the worst entry
  Index checked = 0;

  void merge(const GradientReport& other) {
    if (other.max_error > max_error) {
      max_error = other.max_error;
      worst = other.worst;
    }
    checked += other.checked;
  }
};

inline constexpr double relative_error_floor = 1e-3;

/// Compares `analytic` with central differences of `loss` with respect to `values`.
/// `values` is perturbed in place and restored.
template <class Loss>
GradientReport compare_gradient(std::span<double> values, std::span<const double> analytic,
                                Loss&& loss, const std::string& name, double h = 1e-6) {
  GradientReport report;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double saved = values[i];
    values[i] = saved + h;
    const double plus = loss();
    values[i] = saved - h;
    const double minus = loss();
    values[i] = saved;
    const double numeric = (plus - minus) / (2 * h);
    const double scale =
        std::max({std::abs(analytic[i]), std::abs(numeric), relative_error_floor});
    const double err = std::abs(analytic[i] - numeric) / scale;
    ++report.checked;
    if (report.worst.empty() || err > report.max_error) {
      report.max_error = err;
      report.worst = name + "[" + std::to_string(i) + "]: analytic " +
                     std::to_string(analytic[i]) + " vs numeric " + std::to_string(numeric);
    }
  }
  return report;
}

using HostMatrix = Matrix<double, Cpu>;

inline HostMatrix random_matrix(Index rows, Index cols, Rng& rng, double stddev = 1.0) {
  HostMatrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.normal(0.0, stddev);
  return m;
}

/// Zeroes the padding columns of a (features x B*T) matrix.
inline void zero_padding(HostMatrix& m, const Batch& batch) {
  if (m.cols() != batch.columns()) return;
  for (Index c = 0; c < m.cols(); ++c)
    if (!batch.is_real(c))
      for (Index r = 0; r < m.rows(); ++r) m(r, c) = 0.0;
}

struct LayerReport {
  GradientReport gradients;        ///< parameters and input
  double padding_gradient = 0.0;   ///< max |dx| at padding columns (must be 0)
  double padding_leak = 0.0;       ///< max change of real outputs when padding inputs change
};

/// Checks a matrix-input layer: with loss = sum(G .* forward(x)) for a random upstream G
/// (zero at padding columns, as heads produce), every parameter gradient and the input gradient
/// against central differences; the input gradient at padding columns; and that changing the
/// inputs at padding columns leaves the outputs at real positions unchanged.
/// `before_forward` runs before every forward (e.g. to reseed dropout).
template <class L>
LayerReport check_layer(L& layer, HostMatrix x, const Batch& batch, Rng& rng,
                        Mode mode = Mode::train,
                        const std::function<void()>& before_forward = [] {}) {
  LayerReport out;
  auto run = [&](ConstView<double> input) -> const HostMatrix& {
    before_forward();
    return layer.forward(input, batch, mode);
  };

  const HostMatrix y0 = run(x.view());
  HostMatrix g = random_matrix(y0.rows(), y0.cols(), rng);
  zero_padding(g, batch);
  auto loss = [&] { return Cpu::dot(run(x.view()).view(), g.view()); };

  zero_gradients(layer);
  run(x.view());
  const HostMatrix dx = layer.backward(g.view(), batch);

  std::vector<std::pair<std::string, HostMatrix>> grads;
  layer.for_each_param([&](std::string_view name, auto& p) {
    grads.emplace_back(std::string(name), p.grad);
  });
  std::size_t k = 0;
  layer.for_each_param([&](std::string_view, auto& p) {
    const auto& [name, grad] = grads[k++];
    out.gradients.merge(compare_gradient(std::span<double>(p.value.data(), p.value.size()),
                                         std::span<const double>(grad.data(), grad.size()),
                                         loss, name));
  });
  out.gradients.merge(compare_gradient(std::span<double>(x.data(), x.size()),
                                       std::span<const double>(dx.data(), dx.size()), loss,
                                       "input"));

  if (dx.cols() == batch.columns())
    for (Index c = 0; c < dx.cols(); ++c)
      if (!batch.is_real(c))
        for (Index r = 0; r < dx.rows(); ++r)
          out.padding_gradient = std::max(out.padding_gradient, std::abs(dx(r, c)));

  if (x.cols() == batch.columns()) {
    const HostMatrix reference = run(x.view());
    HostMatrix shaken = x;
    for (Index c = 0; c < shaken.cols(); ++c)
      if (!batch.is_real(c))
        for (Index r = 0; r < shaken.rows(); ++r) shaken(r, c) += rng.normal(0.0, 3.0);
    const HostMatrix& y = run(shaken.view());
    const bool per_token = y.cols() == batch.columns();
    for (Index c = 0; c < y.cols(); ++c)
      if (!per_token || batch.is_real(c))
        for (Index r = 0; r < y.rows(); ++r)
          out.padding_leak = std::max(out.padding_leak, std::abs(y(r, c) - reference(r, c)));
  }
  return out;
}

}  // namespace mtlm::testing
