// @brief Export of any parameter or activation to NumPy's .npy format (through xtensor), for
// inspection in Python: a (rows x cols) matrix becomes an array of shape (rows, cols).
#pragma once

#include "mtlm/core/matrix.hpp"
#include "mtlm/core/atomic_file.hpp"

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

#include <filesystem>
#include <vector>

namespace mtlm::io {

template <class S, class B>
void export_npy(const Matrix<S, B>& m, const std::filesystem::path& path) {
  std::vector<S> host(static_cast<std::size_t>(m.size()));
  B::download(m.view(), host.data());
  // Column-major memory read as C order is the transpose; say so to xtensor explicitly.
  const std::vector<std::size_t> shape{static_cast<std::size_t>(m.rows()),
                                       static_cast<std::size_t>(m.cols())};
  auto array = xt::adapt<xt::layout_type::column_major>(host.data(), host.size(),
                                                          xt::no_ownership(), shape);
  const xt::xarray<S, xt::layout_type::row_major> row_major = array;
  write_atomically(path, [&](std::ostream& out) { out << xt::dump_npy(row_major); });
}

}  // namespace mtlm::io
