// safetensors checkpoints (round trips, files written by the reference implementation,
// corrupted and mismatched files), .npy export and atomic writes.
#include <doctest/doctest.h>

#include <mtlm/io/npy.hpp>
#include <mtlm/io/safetensors.hpp>
#include <mtlm/mtlm.hpp>
#include <mtlm/testing/gradient_check.hpp>

#include <xtensor/xnpy.hpp>

#include <filesystem>
#include <fstream>
#include <string>

using namespace mtlm;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("mtlm-test-io-" + std::to_string(Rng(std::random_device{}()).next()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path operator/(const std::string& name) const { return path / name; }
};

using Mlp = Sequential<Linear<4, 6>, Tanh<>, Linear<6, 3>>;

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST_CASE("safetensors: save and load give the same outputs bit for bit") {
  TempDir dir;
  Rng rng(1);
  Mlp a, b;
  a.initialize(rng);
  b.initialize(rng);
  io::save_parameters(a, dir / "mlp.safetensors", {{"epoch", "3"}});
  io::load_parameters(b, dir / "mlp.safetensors");

  const auto batch = Batch::dense(2, 3);
  Matrix<float, Cpu> x(4, batch.columns());
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  const Matrix<float, Cpu> ya = a.forward(x.view(), batch);
  const Matrix<float, Cpu> yb = b.forward(x.view(), batch);
  CHECK(std::memcmp(ya.data(), yb.data(), sizeof(float) * std::size_t(ya.size())) == 0);

  const io::SafetensorsFile file(dir / "mlp.safetensors");
  CHECK(file.metadata().at("epoch") == "3");
  CHECK(file.info("0.weight").shape == std::vector<std::int64_t>{6, 4});
  CHECK(file.info("2.bias").shape == std::vector<std::int64_t>{3});
  CHECK(file.info("0.weight").dtype == "F32");

  // Saving twice gives identical bytes (deterministic header), and no temporary is left.
  io::save_parameters(a, dir / "again.safetensors", {{"epoch", "3"}});
  CHECK(read_bytes(dir / "mlp.safetensors") == read_bytes(dir / "again.safetensors"));
  for (const auto& entry : fs::directory_iterator(dir.path))
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
}

TEST_CASE("safetensors: reads a file written by the reference implementation") {
  const io::SafetensorsFile file(std::string(MTLM_TEST_FIXTURES) + "/io/reference.safetensors");
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.metadata().at("note") == "\xc3\xbc" "n\xc3\xaf" "code");
  Linear<3, 2> layer;
  io::read_parameters(file, layer, "layer.");
  // Row-major [2, 3] in the file: weight(i, j) = 10 i + j.
  for (Index i = 0; i < 2; ++i)
    for (Index j = 0; j < 3; ++j) CHECK(layer.weight().value(i, j) == float(10 * i + j));
  CHECK(layer.bias().value(1, 0) == -0.5f);
}

TEST_CASE("safetensors: a checkpoint for another model is rejected, naming the mismatch") {
  TempDir dir;
  Rng rng(2);
  Mlp mlp;
  mlp.initialize(rng);
  io::save_parameters(mlp, dir / "mlp.safetensors");

  SUBCASE("different shape") {
    Sequential<Linear<4, 5>, Tanh<>, Linear<5, 3>> other;
    try {
      io::load_parameters(other, dir / "mlp.safetensors");
      FAIL("loading should have failed");
    } catch (const FormatError& e) {
      CHECK(std::string(e.what()).find("\"0.weight\" has shape [6, 4], the model expects [5, 4]") !=
            std::string::npos);
    }
  }
  SUBCASE("missing parameter") {
    Sequential<Linear<4, 6>, Tanh<>, Linear<6, 3>, Linear<3, 3>> deeper;
    CHECK_THROWS_WITH_AS(io::load_parameters(deeper, dir / "mlp.safetensors"),
                         doctest::Contains("\"3.weight\" is missing"), FormatError);
  }
  SUBCASE("unexpected parameter") {
    Sequential<Linear<4, 6>, Tanh<>, LinearNoBias<6, 3>> no_bias;
    CHECK_THROWS_WITH_AS(io::load_parameters(no_bias, dir / "mlp.safetensors"),
                         doctest::Contains("\"2.bias\" is not a parameter"), FormatError);
  }
  SUBCASE("different dtype") {
    Sequential<Linear<4, 6, double>, Tanh<Dynamic, double>, Linear<6, 3, double>> wide;
    CHECK_THROWS_WITH_AS(io::load_parameters(wide, dir / "mlp.safetensors"),
                         doctest::Contains("has dtype F32, the model expects F64"), FormatError);
  }
  SUBCASE("a failed load leaves the model unchanged") {
    Sequential<Linear<4, 6>, Tanh<>, Linear<6, 3>, Linear<3, 3>> deeper;
    deeper.initialize(rng);
    const float before = deeper.layer<0>().weight().value(0, 0);
    CHECK_THROWS(io::load_parameters(deeper, dir / "mlp.safetensors"));
    CHECK(deeper.layer<0>().weight().value(0, 0) == before);
  }
}

TEST_CASE("safetensors: truncated or corrupted files are errors, never crashes") {
  TempDir dir;
  Rng rng(3);
  Mlp mlp;
  mlp.initialize(rng);
  io::save_parameters(mlp, dir / "good.safetensors");
  const std::string good = read_bytes(dir / "good.safetensors");
  const fs::path bad = dir / "bad.safetensors";
  auto rejects = [&](const std::string& bytes, const std::string& message) {
    write_bytes(bad, bytes);
    Mlp target;
    CHECK_THROWS_WITH_AS(io::load_parameters(target, bad), doctest::Contains(message.c_str()),
                         FormatError);
  };

  rejects("", "shorter than the 8-byte header length");
  rejects(good.substr(0, good.size() - 5), "outside the");            // data cut short
  rejects(good.substr(0, 40), "does not fit");                        // header cut short
  std::string huge_header = good;
  huge_header[7] = '\x7f';
  rejects(huge_header, "does not fit");
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, good.data(), 8);
  std::string not_object = good;
  not_object.replace(8, header_size, "[]" + std::string(header_size - 2, ' '));
  rejects(not_object, "not a JSON object");
  std::string broken_json = good;
  broken_json[8] = '[';
  rejects(broken_json, "JSON at byte");
  std::string garbage = good;
  garbage[12] = '\x01';
  rejects(garbage, "JSON at byte");
  // Every single-byte corruption of the header is either rejected or loads cleanly.
  for (std::size_t i = 8; i < 8 + header_size; i += 3) {
    std::string mutated = good;
    mutated[i] = static_cast<char>(mutated[i] ^ 0x5a);
    write_bytes(bad, mutated);
    Mlp target;
    try {
      io::load_parameters(target, bad);
    } catch (const FormatError&) {
    }
  }
  CHECK_THROWS_AS(io::load_parameters(mlp, dir / "does-not-exist.safetensors"), FormatError);
}

TEST_CASE("npy export writes (rows, cols) arrays NumPy and xtensor read back") {
  TempDir dir;
  Matrix<float, Cpu> m(2, 3);
  for (Index i = 0; i < 2; ++i)
    for (Index j = 0; j < 3; ++j) m(i, j) = float(10 * i + j);
  io::export_npy(m, dir / "m.npy");
  const auto back = xt::load_npy<float>((dir / "m.npy").string());
  REQUIRE(back.dimension() == 2);
  CHECK(back.shape()[0] == 2);
  CHECK(back.shape()[1] == 3);
  CHECK(back(1, 2) == 12.0f);
  CHECK(back(0, 1) == 1.0f);
}

TEST_CASE("json: parser accepts what safetensors headers contain and rejects the rest") {
  const auto v = json::parse(R"({"a": [1, -2, 3], "b": {"s": "x\"\u00e9\ud83d\ude00"}})");
  CHECK(v.object().at("a").array()[1].integer() == -2);
  CHECK(v.object().at("b").object().at("s").string() == "x\"\xc3\xa9\xf0\x9f\x98\x80");
  CHECK_THROWS_AS(json::parse("{\"a\": 1.5}"), FormatError);
  CHECK_THROWS_AS(json::parse("{\"a\": 1, \"a\": 2}"), FormatError);
  CHECK_THROWS_AS(json::parse("[1, 2"), FormatError);
  CHECK_THROWS_AS(json::parse("\"\\ud800\""), FormatError);
  CHECK(json::quote("a\"b\n") == "\"a\\\"b\\n\"");
}
