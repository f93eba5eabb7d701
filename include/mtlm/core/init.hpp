// @brief Deterministic parameter initialisers. Values are drawn on the host from mtlm::Rng (so a
// seed gives the same model on every platform and backend) and then copied to the backend.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/random.hpp"

#include <cmath>
#include <span>
#include <variant>

namespace mtlm::init {

/// U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
struct XavierUniform {
  double gain = 1.0;
};
/// N(0, s^2) with s = gain * sqrt(2 / (fan_in + fan_out)).
struct XavierNormal {
  double gain = 1.0;
};
/// U(-b, b) with b = sqrt(6 / fan_in) (He, for ReLU layers).
struct KaimingUniform {};
/// N(0, 2 / fan_in).
struct KaimingNormal {};
/// U(low, high).
struct Uniform {
  double low = -0.1;
  double high = 0.1;
};
/// N(mean, stddev^2).
struct Normal {
  double mean = 0.0;
  double stddev = 1.0;
};
/// Every value equal to `value` (zeros by default; ones for layer-norm gains).
struct Constant {
  double value = 0.0;
};

using Initializer =
    std::variant<XavierUniform, XavierNormal, KaimingUniform, KaimingNormal, Uniform, Normal, Constant>;

/// Fills `values` (host memory) for a parameter with the given fans.
template <class S>
void fill(std::span<S> values, const Initializer& how, Index fan_in, Index fan_out, Rng& rng) {
  const double in = static_cast<double>(fan_in > 0 ? fan_in : 1);
  const double out = static_cast<double>(fan_out > 0 ? fan_out : 1);
  auto uniform = [&](double a, double b) {
    for (auto& v : values) v = static_cast<S>(rng.uniform(a, b));
  };
  auto normal = [&](double mean, double stddev) {
    for (auto& v : values) v = static_cast<S>(rng.normal(mean, stddev));
  };
  std::visit(
      [&](const auto& h) {
        using H = std::decay_t<decltype(h)>;
        if constexpr (std::is_same_v<H, XavierUniform>) {
          const double a = h.gain * std::sqrt(6.0 / (in + out));
          uniform(-a, a);
        } else if constexpr (std::is_same_v<H, XavierNormal>) {
          normal(0.0, h.gain * std::sqrt(2.0 / (in + out)));
        } else if constexpr (std::is_same_v<H, KaimingUniform>) {
          const double b = std::sqrt(6.0 / in);
          uniform(-b, b);
        } else if constexpr (std::is_same_v<H, KaimingNormal>) {
          normal(0.0, std::sqrt(2.0 / in));
        } else if constexpr (std::is_same_v<H, Uniform>) {
          uniform(h.low, h.high);
        } else if constexpr (std::is_same_v<H, Normal>) {
          normal(h.mean, h.stddev);
        } else {
          for (auto& v : values) v = static_cast<S>(h.value);
        }
      },
      how);
}

}  // namespace mtlm::init
