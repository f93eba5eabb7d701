// @brief GradientColumns: which columns of a parameter's gradient can be non-zero since it was
// last zeroed. An embedding table of V words receives gradient only in the columns of the
// batch's tokens, a few hundred of tens of thousands; zeroing, clipping and (lazily) updating
// just those columns saves passes over the whole table on every step.
//
// Contract: tracking is off by default and then every column counts (dense()). After track(),
// the first clear() (the next zero_grad) still zeroes densely, because the gradient may hold
// anything; from then on only columns passed to mark() count, until mark_all() makes the
// gradient dense again up to the next clear(). Whoever writes into a tracked gradient must say
// where: Embedding marks its tokens, a language-model head tied to the table marks all.
#pragma once

#include "mtlm/core/config.hpp"

#include <cassert>
#include <span>
#include <vector>

namespace mtlm {

class GradientColumns {
 public:
  /// Starts tracking a gradient of `cols` columns (or stops, with enable false).
  void track(Index cols, bool enable = true) {
    tracking_ = enable;
    all_ = true;
    columns_.clear();
    marked_.assign(enable ? static_cast<std::size_t>(cols) : 0, 0);
  }
  bool tracking() const { return tracking_; }

  /// Every column may be non-zero: tracking is off, or something wrote the whole gradient.
  bool dense() const { return !tracking_ || all_; }

  /// The columns that may be non-zero, each once, in the order they were first marked; only
  /// meaningful when !dense().
  std::span<const Index> columns() const { return columns_; }

  void mark(Index column) {
    if (dense()) return;
    assert(column >= 0 && column < static_cast<Index>(marked_.size()));
    unsigned char& seen = marked_[static_cast<std::size_t>(column)];
    if (!seen) {
      seen = 1;
      columns_.push_back(column);
    }
  }
  void mark_all() { all_ = true; }

  /// The gradient is zero again (after zero_grad() zeroed what dense() / columns() said).
  void clear() {
    for (const Index c : columns_) marked_[static_cast<std::size_t>(c)] = 0;
    columns_.clear();
    all_ = false;
  }

 private:
  bool tracking_ = false;
  bool all_ = true;
  std::vector<Index> columns_;
  std::vector<unsigned char> marked_;
};

}  // namespace mtlm
