// @brief The Backend concept: the small vocabulary of storage and kernels that layers are
// written against, so one layer source serves the CPU (Eigen) and the optional CUDA policy.
//
// A backend is a stateless type with static functions. Views are column-major (matrix_view.hpp)
// and may be strided. Kernels that only one layer needs (LSTM gates, layer norm, ...) are free
// functions overloaded on the backend tag next to that layer, so adding a layer does not grow
// this concept; a backend implements them for its own tag.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/matrix_view.hpp"

#include <concepts>
#include <string_view>
#include <type_traits>

namespace mtlm {

enum class Transpose { no, yes };

namespace backend {
/// A const view parameter that does not take part in deducing S, so a mutable view or a
/// Matrix converts to it; S comes from the output view or the scalar arguments.
template <class S>
using In = std::type_identity_t<ConstView<S>>;

/// Runs two independent pieces of one layer's work (they touch disjoint outputs). A backend may
/// run them concurrently (the CPU does, on two threads); by default they run one after the other.
template <class B, class F, class G>
void run_side_by_side(B, F&& first, G&& second) {
  first();
  second();
}

/// y = a + b. By default a copy and an accumulation; a backend may do it in one pass (the CPU
/// does).
template <class B, class S>
void add(B, In<S> a, In<S> b, MatrixView<S> y) {
  B::copy(a, y);
  B::axpy(S(1), b, y);
}

/// y = s x. By default a copy and a scaling; a backend may do it in one pass (the CPU does).
template <class B, class S>
void copy_scaled(B, S s, In<S> x, MatrixView<S> y) {
  B::copy(x, y);
  B::scale(y, s);
}

/// y = op(w) x + bias in every column, the product behind every biased projection. By default a
/// product and a bias pass; a backend may fuse the two (the CPU does).
template <class B, class S>
void affine(B, Transpose tw, In<S> w, In<S> x, In<S> bias, MatrixView<S> y) {
  B::gemm(tw, Transpose::no, S(1), w, x, S(0), y);
  B::add_bias(bias, y);
}
}  // namespace backend

/// Point-wise non-linearities with analytic derivatives. GELU is the exact (erf) form.
enum class Activation { identity, relu, gelu, tanh, sigmoid };

template <class B>
concept Backend = requires {
  { B::name } -> std::convertible_to<std::string_view>;
  { B::is_host } -> std::convertible_to<bool>;
} && requires(float* p, const float* cp, MatrixView<float> y, ConstView<float> x, float s) {
  // storage
  { B::template allocate<float>(Index{}) } -> std::same_as<float*>;
  B::deallocate(p, Index{});
  B::upload(cp, y);
  B::download(x, p);
  // level 1: y = s, y = x, y *= s, y += s * x, y = x .* y, sums
  B::fill(y, s);
  B::copy(x, y);
  B::scale(y, s);
  B::axpy(s, x, y);
  B::multiply(x, x, y);
  { B::dot(x, x) } -> std::same_as<float>;
  // level 3: C = alpha op(A) op(B) + beta C
  B::gemm(Transpose::no, Transpose::no, s, x, x, s, y);
  // bias: every column of y += x (a column vector); y = s * y + row sums of x
  B::add_bias(x, y);
  B::sum_columns(x, s, y);
  // activations: y = f(x); dx = dy .* f'(x) given x and y = f(x)
  B::template activate<Activation::relu>(x, y);
  B::template activate_backward<Activation::relu>(x, x, x, y);
};

}  // namespace mtlm
