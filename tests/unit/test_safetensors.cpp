#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/io/safetensors.hpp>

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

fs::path temp_file(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / "vaelab-test-safetensors";
  fs::create_directories(dir);
  return dir / name;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_all(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

}  // namespace

TEST_CASE("safetensors round-trips every supported dtype and the metadata", "[safetensors]") {
  const fs::path file = temp_file("roundtrip.safetensors");
  const vaelab::NamedTensors tensors = {
      {"w", torch::randn({3, 4})},
      {"b", torch::arange(5, torch::kFloat64)},
      {"n", torch::tensor({1, -2, 3}, torch::kInt64)},
      {"u", torch::tensor({0, 255}, torch::kUInt8)},
      {"scalar", torch::tensor(2.5)},
      {"empty", torch::zeros({0, 3})},
      {"h", torch::randn({2}).to(torch::kBFloat16)},
  };
  vaelab::save_safetensors(file, tensors, {{"epoch", "3"}});
  std::map<std::string, std::string> meta;
  const vaelab::NamedTensors back = vaelab::load_safetensors(file, &meta);
  REQUIRE(meta.at("epoch") == "3");
  REQUIRE(back.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    const auto it = std::find_if(back.begin(), back.end(), [&](const auto& p) { return p.first == name; });
    REQUIRE(it != back.end());
    REQUIRE(it->second.scalar_type() == t.scalar_type());
    REQUIRE(it->second.sizes() == t.sizes());
    REQUIRE(torch::equal(it->second, t));
  }
  REQUIRE_FALSE(fs::exists(file.string() + ".tmp"));
}

TEST_CASE("safetensors files follow the format byte for byte", "[safetensors]") {
  const fs::path file = temp_file("format.safetensors");
  vaelab::save_safetensors(file, {{"x", torch::tensor({1.0f, 2.0f})}});
  const std::string bytes = read_all(file);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  REQUIRE(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  REQUIRE(header["x"]["dtype"] == "F32");
  REQUIRE(header["x"]["shape"] == nlohmann::json::array({2}));
  REQUIRE(header["x"]["data_offsets"] == nlohmann::json::array({0, 8}));
  float values[2];
  std::memcpy(values, bytes.data() + 8 + n, 8);
  REQUIRE(values[0] == 1.0f);
  REQUIRE(values[1] == 2.0f);
}

TEST_CASE("corrupt safetensors files are refused with the file and byte offset", "[safetensors]") {
  const fs::path good = temp_file("good.safetensors");
  vaelab::save_safetensors(good, {{"x", torch::ones({4})}});
  const std::string bytes = read_all(good);

  const fs::path tiny = temp_file("tiny.safetensors");
  write_all(tiny, "abc");
  REQUIRE_THROWS_WITH(vaelab::load_safetensors(tiny), Contains(tiny.string()) && Contains("byte 0"));

  const fs::path huge = temp_file("huge.safetensors");
  std::string h = bytes;
  h[6] = '\x7f';  // header length far beyond the file
  write_all(huge, h);
  REQUIRE_THROWS_WITH(vaelab::load_safetensors(huge), Contains("header length") && Contains("does not fit"));

  const fs::path truncated = temp_file("truncated.safetensors");
  write_all(truncated, bytes.substr(0, bytes.size() - 4));
  REQUIRE_THROWS_WITH(vaelab::load_safetensors(truncated),
                      Contains("tensor 'x'") && Contains("data_offsets [0, 16]"));

  const fs::path notjson = temp_file("notjson.safetensors");
  std::string j = bytes;
  j[8] = '!';
  write_all(notjson, j);
  REQUIRE_THROWS_WITH(vaelab::load_safetensors(notjson), Contains("byte 8") && Contains("not JSON"));
}

TEST_CASE("module state loads back by name and refuses mismatches", "[safetensors]") {
  torch::nn::Linear a(3, 2);
  torch::nn::Linear b(3, 2);
  const fs::path file = temp_file("module.safetensors");
  vaelab::save_safetensors(file, vaelab::module_state(*a));
  vaelab::load_module_state(*b, vaelab::load_safetensors(file), file.string());
  REQUIRE(torch::equal(a->weight, b->weight));
  REQUIRE(torch::equal(a->bias, b->bias));

  torch::nn::Linear wrong(4, 2);
  REQUIRE_THROWS_WITH(vaelab::load_module_state(*wrong, vaelab::load_safetensors(file), "ckpt"),
                      Contains("ckpt: tensor 'weight' has shape [2, 3]"));
}
