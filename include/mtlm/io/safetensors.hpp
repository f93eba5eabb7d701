// @brief safetensors files (8-byte little-endian header length, a JSON header of
// name -> {dtype, shape, data_offsets} plus "__metadata__", then raw little-endian data), the
// format other tools read. Reading validates everything before a byte reaches a model: a
// truncated or corrupted file is a FormatError, never a crash or silently wrong weights.
//
// A (rows x cols) parameter is stored with shape [rows, cols] in row-major (C) order, as
// PyTorch stores a tensor; a column vector (rows x 1) with shape [rows].
#pragma once

#include "mtlm/core/error.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/core/atomic_file.hpp"
#include "mtlm/io/json.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

namespace mtlm::io {

static_assert(std::endian::native == std::endian::little,
              "mtlm: safetensors I/O assumes a little-endian host");

template <class S>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<S, float>) return "F32";
  else if constexpr (std::is_same_v<S, double>) return "F64";
  else if constexpr (std::is_same_v<S, std::int64_t>) return "I64";
  else if constexpr (std::is_same_v<S, std::int32_t>) return "I32";
  else static_assert(sizeof(S) == 0, "mtlm: no safetensors dtype for this type");
}

inline std::size_t dtype_size(std::string_view dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return 0;
}

struct TensorInfo {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  ///< byte offsets into the data section

  std::int64_t elements() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

/// Collects tensors and metadata, then writes them in one atomic step.
class SafetensorsWriter {
 public:
  template <class S>
  void add(const std::string& name, std::vector<std::int64_t> shape, const S* values,
           std::size_t count) {
    if (tensors_.contains(name)) throw Error("mtlm: safetensors: duplicate tensor " + name);
    Entry e{dtype_name<S>(), std::move(shape), std::string(count * sizeof(S), '\0')};
    std::memcpy(e.bytes.data(), values, e.bytes.size());
    tensors_.emplace(name, std::move(e));
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  void write(const std::filesystem::path& path) const {
    std::string header = "{";
    bool first_entry = true;
    auto begin_entry = [&] {
      if (!first_entry) header += ",";
      first_entry = false;
    };
    if (!metadata_.empty()) {
      begin_entry();
      header += "\"__metadata__\":{";
      bool first_key = true;
      for (const auto& [k, v] : metadata_) {
        if (!first_key) header += ",";
        first_key = false;
        header += json::quote(k) + ":" + json::quote(v);
      }
      header += "}";
    }
    std::uint64_t offset = 0;
    for (const auto& [name, e] : tensors_) {
      begin_entry();
      header += json::quote(name) + ":{\"dtype\":\"" + e.dtype + "\",\"shape\":[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) {
        if (i) header += ',';
        header += std::to_string(e.shape[i]);
      }
      header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
                std::to_string(offset + e.bytes.size()) + "]}";
      offset += e.bytes.size();
    }
    header += "}";
    while (header.size() % 8) header += ' ';  // keeps the data section 8-byte aligned
    write_atomically(path, [&](std::ostream& out) {
      const std::uint64_t n = header.size();
      out.write(reinterpret_cast<const char*>(&n), sizeof n);
      out.write(header.data(), static_cast<std::streamsize>(header.size()));
      for (const auto& [name, e] : tensors_)
        out.write(e.bytes.data(), static_cast<std::streamsize>(e.bytes.size()));
    });
  }

 private:
  struct Entry {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Entry> tensors_;  // sorted names: the same model gives the same bytes
  std::map<std::string, std::string> metadata_;
};

/// A whole safetensors file read into memory and validated.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path) : source_(path.string()) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FormatError(source_, 0, "cannot open file");
    in.seekg(0, std::ios::end);
    const auto size = static_cast<std::uint64_t>(in.tellg());
    in.seekg(0);
    if (size < 8) fail("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
    std::uint64_t header_size = 0;
    in.read(reinterpret_cast<char*>(&header_size), 8);
    if (header_size < 2 || header_size > size - 8)
      fail("header length " + std::to_string(header_size) + " does not fit in a file of " +
           std::to_string(size) + " bytes (truncated or not a safetensors file)");
    std::string header(header_size, '\0');
    in.read(header.data(), static_cast<std::streamsize>(header_size));
    data_.resize(size - 8 - header_size);
    in.read(data_.data(), static_cast<std::streamsize>(data_.size()));
    if (!in) fail("could not read the whole file");
    parse_header(header);
  }

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }
  bool contains(const std::string& name) const { return tensors_.contains(name); }

  const TensorInfo& info(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("no tensor named \"" + name + "\"");
    return it->second;
  }

  /// The tensor's values in file order; its dtype must be exactly S's.
  template <class S>
  std::vector<S> values(const std::string& name) const {
    const TensorInfo& t = info(name);
    if (t.dtype != dtype_name<S>())
      fail("tensor \"" + name + "\" has dtype " + t.dtype + ", expected " + dtype_name<S>());
    std::vector<S> out(static_cast<std::size_t>(t.elements()));
    std::memcpy(out.data(), data_.data() + t.begin, out.size() * sizeof(S));
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw FormatError(source_, 0, what); }

  void parse_header(const std::string& header) {
    const json::Value root = json::parse(header, source_);
    if (!root.is_object()) fail("header is not a JSON object");
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    for (const auto& [name, v] : root.object()) {
      if (name == "__metadata__") {
        if (!v.is_object()) fail("__metadata__ is not an object");
        for (const auto& [k, s] : v.object()) {
          if (!s.is_string()) fail("metadata \"" + k + "\" is not a string");
          metadata_[k] = s.string();
        }
        continue;
      }
      if (!v.is_object()) fail("entry \"" + name + "\" is not an object");
      const auto& o = v.object();
      auto field = [&](const char* key) -> const json::Value& {
        const auto it = o.find(key);
        if (it == o.end()) fail("tensor \"" + name + "\" has no " + key);
        return it->second;
      };
      TensorInfo t;
      const auto& dtype = field("dtype");
      if (!dtype.is_string() || dtype_size(dtype.string()) == 0)
        fail("tensor \"" + name + "\" has an unknown dtype");
      t.dtype = dtype.string();
      const auto& shape = field("shape");
      if (!shape.is_array()) fail("tensor \"" + name + "\": shape is not an array");
      std::uint64_t elements = 1;
      for (const auto& d : shape.array()) {
        if (!d.is_integer() || d.integer() < 0) fail("tensor \"" + name + "\": bad shape entry");
        const auto dim = static_cast<std::uint64_t>(d.integer());
        if (dim != 0 && elements > (std::uint64_t{1} << 48) / dim)
          fail("tensor \"" + name + "\": shape too large");
        elements *= dim;
        t.shape.push_back(d.integer());
      }
      const auto& offsets = field("data_offsets");
      if (!offsets.is_array() || offsets.array().size() != 2 || !offsets.array()[0].is_integer() ||
          !offsets.array()[1].is_integer())
        fail("tensor \"" + name + "\": data_offsets must be two integers");
      const auto begin = offsets.array()[0].integer(), end = offsets.array()[1].integer();
      if (begin < 0 || end < begin || static_cast<std::uint64_t>(end) > data_.size())
        fail("tensor \"" + name + "\": data_offsets [" + std::to_string(begin) + ", " +
             std::to_string(end) + "] outside the " + std::to_string(data_.size()) +
             "-byte data section (truncated file?)");
      t.begin = static_cast<std::uint64_t>(begin);
      t.end = static_cast<std::uint64_t>(end);
      if (t.end - t.begin != elements * dtype_size(t.dtype))
        fail("tensor \"" + name + "\": " + std::to_string(t.end - t.begin) + " bytes for " +
             std::to_string(elements) + " " + t.dtype + " values");
      ranges.emplace_back(t.begin, t.end);
      tensors_.emplace(name, std::move(t));
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
      if (ranges[i].first < ranges[i - 1].second) fail("tensor data ranges overlap");
  }

  std::string source_;
  std::string data_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

namespace detail {

inline std::vector<std::int64_t> param_shape(Index rows, Index cols) {
  if (cols == 1) return {rows};
  return {rows, cols};
}

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace detail

/// Adds a (rows x cols) backend matrix under `name` (row-major, as described above).
template <class S, class B>
void add_matrix(SafetensorsWriter& writer, const std::string& name, const Matrix<S, B>& m) {
  std::vector<S> host(static_cast<std::size_t>(m.size())), row_major(host.size());
  B::download(m.view(), host.data());
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      row_major[static_cast<std::size_t>(i * m.cols() + j)] = host[static_cast<std::size_t>(j * m.rows() + i)];
  writer.add(name, detail::param_shape(m.rows(), m.cols()), row_major.data(), row_major.size());
}

/// Reads tensor `name` into `m`, whose shape and scalar type must match exactly.
template <class S, class B>
void read_matrix(const SafetensorsFile& file, const std::string& name, Matrix<S, B>& m) {
  const TensorInfo& t = file.info(name);
  const auto expected = detail::param_shape(m.rows(), m.cols());
  if (t.shape != expected)
    throw FormatError(file.source(), 0,
                      "tensor \"" + name + "\" has shape " + detail::shape_string(t.shape) +
                          ", the model expects " + detail::shape_string(expected));
  const std::vector<S> row_major = file.values<S>(name);
  std::vector<S> host(row_major.size());
  for (Index i = 0; i < m.rows(); ++i)
    for (Index j = 0; j < m.cols(); ++j)
      host[static_cast<std::size_t>(j * m.rows() + i)] = row_major[static_cast<std::size_t>(i * m.cols() + j)];
  B::upload(host.data(), m.view());
}

/// Adds every parameter of `model` under its visiting name, with `prefix`.
template <HasParams M>
void add_parameters(SafetensorsWriter& writer, M& model, const std::string& prefix = "") {
  model.for_each_param([&](std::string_view name, auto& p) {
    add_matrix(writer, prefix + std::string(name), p.value);
  });
}

/// Loads every parameter of `model` from `file`. The file must hold exactly the model's
/// parameters under `prefix` (other prefixes are ignored): the first missing, unexpected,
/// misshapen or mistyped tensor is reported by name, before any parameter is changed.
template <HasParams M>
void read_parameters(const SafetensorsFile& file, M& model, const std::string& prefix = "") {
  std::map<std::string, bool> expected;
  model.for_each_param([&](std::string_view name, auto& p) {
    using S = typename std::decay_t<decltype(p)>::Scalar;
    const std::string full = prefix + std::string(name);
    if (!file.contains(full))
      throw FormatError(file.source(), 0, "the model's parameter \"" + full + "\" is missing");
    const TensorInfo& t = file.info(full);
    const auto shape = detail::param_shape(p.rows(), p.cols());
    if (t.shape != shape)
      throw FormatError(file.source(), 0,
                        "parameter \"" + full + "\" has shape " + detail::shape_string(t.shape) +
                            ", the model expects " + detail::shape_string(shape));
    if (t.dtype != dtype_name<S>())
      throw FormatError(file.source(), 0, "parameter \"" + full + "\" has dtype " + t.dtype +
                                              ", the model expects " + dtype_name<S>());
    expected[full] = true;
  });
  for (const auto& [name, info] : file.tensors())
    if (name.starts_with(prefix) && !expected.contains(name))
      throw FormatError(file.source(), 0,
                        "tensor \"" + name + "\" is not a parameter of this model");
  model.for_each_param([&](std::string_view name, auto& p) {
    read_matrix(file, prefix + std::string(name), p.value);
  });
}

/// Saves the parameters of `model` (and `metadata`) to a safetensors file, atomically.
template <HasParams M>
void save_parameters(M& model, const std::filesystem::path& path,
                     const std::map<std::string, std::string>& metadata = {}) {
  SafetensorsWriter writer;
  add_parameters(writer, model);
  for (const auto& [k, v] : metadata) writer.set_metadata(k, v);
  writer.write(path);
}

template <HasParams M>
void load_parameters(M& model, const std::filesystem::path& path) {
  read_parameters(SafetensorsFile(path), model);
}

}  // namespace mtlm::io
