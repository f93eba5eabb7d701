// @brief Task<"name", Head, std::ratio<w>>: one task of a multi-task model, declared at compile
// time with its name and static loss weight, so a model's task list is part of its type and a
// head is reached by name without any run-time lookup.
#pragma once

#include <algorithm>
#include <cstddef>
#include <ratio>
#include <string_view>

namespace mtlm {

/// A string usable as a template argument: Task<"intent", ...>, model.head<"intent">().
template <std::size_t N>
struct FixedString {
  char chars[N]{};

  constexpr FixedString(const char (&s)[N]) { std::copy_n(s, N, chars); }
  constexpr std::string_view view() const { return {chars, N - 1}; }
  constexpr operator std::string_view() const { return view(); }

  template <std::size_t M>
  constexpr bool operator==(const FixedString<M>& other) const {
    return view() == other.view();
  }
};

template <class R>
concept Ratio = requires {
  { R::num } -> std::convertible_to<std::intmax_t>;
  { R::den } -> std::convertible_to<std::intmax_t>;
};

template <FixedString Name, class Head, Ratio Weight = std::ratio<1>>
struct Task {
  static_assert(Name.view().size() > 0, "mtlm: a task needs a non-empty name");
  static_assert(Weight::num >= 0, "mtlm: a task's loss weight must not be negative");

  static constexpr auto name = Name;
  using HeadType = Head;
  using weight = Weight;
  /// alpha_i in L = sum_i alpha_i L_i.
  static constexpr double alpha = static_cast<double>(Weight::num) / static_cast<double>(Weight::den);
};

}  // namespace mtlm
