// `vaelab compress` and `vaelab decompress` (docs/compression.md) on small runs trained here on
// Fashion-MNIST: byte-exact round trips of binary and 8-bit images, --compare's numbers, and the
// refusals — another checkpoint, a corrupt or truncated file, a Gaussian run — each one line, with
// nothing already written lost.
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_runner.hpp"

namespace fs = std::filesystem;
using Catch::Contains;
using vaelab::testing::CliResult;
using vaelab::testing::slurp;

namespace {

fs::path work_dir() { return vaelab::testing::scratch_dir("vaelab-e2e-compress"); }
CliResult run_vaelab(const std::string& args) { return vaelab::testing::run_cli(work_dir(), args); }
std::string q(const fs::path& p) { return "'" + p.string() + "'"; }
const std::string kExamples = VAELAB_TEST_EXAMPLES;

/// A small run of an example config, trained once per test process.
fs::path trained(const std::string& name, const std::string& config, const std::string& sets) {
  const fs::path dir = work_dir() / name;
  if (!fs::exists(dir / "summary.json")) {
    const CliResult r = run_vaelab("train " + q(kExamples + "/" + config) +
                                   " --set data.train_size=300 --set data.test_size=50 --set train.epochs=2"
                                   " --set eval.every_epochs=2 --set eval.train_subset=0 " +
                                   sets + " --out " + q(dir));
    INFO(r.err);
    REQUIRE(r.code == 0);
  }
  return dir;
}

/// uint8 images [n, 1, h, w] as a .npy file.
std::string npy_bytes(const std::vector<uint8_t>& data, int64_t n, int64_t h, int64_t w) {
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': (" + std::to_string(n) + ", 1, " +
                       std::to_string(h) + ", " + std::to_string(w) + "), }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string b = "\x93NUMPY";
  b.push_back(1);
  b.push_back(0);
  b.push_back(static_cast<char>(header.size() & 0xff));
  b.push_back(static_cast<char>(header.size() >> 8));
  return b + header + std::string(data.begin(), data.end());
}

fs::path write_file(const std::string& name, const std::string& bytes) {
  const fs::path p = work_dir() / name;
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  return p;
}

std::string data_table(int64_t test_size) {
  return "[data]\nplugin = \"idx\"\ntest_size = " + std::to_string(test_size) + "\n[data.config]\npad_to = 32\n";
}

}  // namespace

TEST_CASE("binary images round trip byte for byte, from a .npy and from a data config", "[e2e][compress]") {
  const fs::path run = trained("binary", "fmnist-mlp-binary.toml", "");
  std::mt19937 rng(7);
  for (const int one : {1, 255}) {
    // Blobs of ones on zeros, as 0/1 or 0/255: they come back exactly as given.
    std::vector<uint8_t> pixels(37 * 32 * 32);
    for (size_t i = 0; i < pixels.size(); ++i) {
      const size_t y = (i / 32) % 32, x = i % 32;
      pixels[i] = static_cast<uint8_t>(((x - 16) * (x - 16) + (y - 16) * (y - 16) < 60 + rng() % 40) ? one : 0);
    }
    const std::string input = npy_bytes(pixels, 37, 32, 32);
    const fs::path npy = write_file("binary-" + std::to_string(one) + ".npy", input);
    const fs::path packed = work_dir() / ("binary-" + std::to_string(one) + ".vlz");
    const CliResult c = run_vaelab("compress " + q(run) + " --images " + q(npy) + " --out " + q(packed) + " --json");
    INFO(c.err);
    REQUIRE(c.code == 0);
    const nlohmann::json report = nlohmann::json::parse(c.out);
    CHECK(report["images"] == 37);
    CHECK(report["bytes"].get<uint64_t>() == fs::file_size(packed));
    CHECK(report["bytes"].get<uint64_t>() < 37 * 32 * 32 / 8);  // smaller than the bits themselves
    const fs::path back = work_dir() / ("back-" + std::to_string(one) + ".npy");
    const CliResult d = run_vaelab("decompress " + q(packed) + " --run " + q(run) + " --out " + q(back));
    INFO(d.err);
    REQUIRE(d.code == 0);
    CHECK(slurp(back) == input);
  }

  // The test split through the data source, with --compare.
  const fs::path data = write_file("data.toml", data_table(60));
  const fs::path packed = work_dir() / "test-split.vlz";
  const CliResult c =
      run_vaelab("compress " + q(run) + " --data " + q(data) + " --out " + q(packed) + " --compare --json");
  INFO(c.err);
  REQUIRE(c.code == 0);
  const nlohmann::json r = nlohmann::json::parse(c.out);
  CHECK(r["images"] == 60);
  CHECK(r["binary"] == true);
  CHECK(r["neg_elbo_bits_per_dim"].get<double>() > 0);
  CHECK(r["baselines"].size() == 6);
  CHECK(r["bits_per_dim"].get<double>() == Approx(8.0 * r["bytes"].get<double>() / (60 * 1024)));
  const fs::path back = work_dir() / "test-split.npy";
  REQUIRE(run_vaelab("decompress " + q(packed) + " --run " + q(run) + " --out " + q(back)).code == 0);
  // Compressing the decompressed images again gives the same file (the same pixels, 0/255).
  const fs::path again = work_dir() / "test-split-again.vlz";
  REQUIRE(run_vaelab("compress " + q(run) + " --images " + q(back) + " --out " + q(again)).code == 0);
  CHECK(slurp(again) == slurp(packed));

  SECTION("a corrupt, truncated or foreign file is refused with a byte offset; the output is kept") {
    const std::string good = slurp(packed);
    const fs::path out = write_file("kept.npy", "precious");
    for (size_t at : {size_t{3}, size_t{30}, good.size() / 2, good.size() - 1}) {
      std::string bad = good;
      bad[at] = static_cast<char>(bad[at] ^ 0x21);
      const fs::path f = write_file("bad.vlz", bad);
      const CliResult e = run_vaelab("decompress " + q(f) + " --run " + q(run) + " --out " + q(out));
      CHECK(e.code != 0);
      CHECK_THAT(e.err, Contains(f.string() + ": byte "));
      CHECK(std::count(e.err.begin(), e.err.end(), '\n') == 1);
    }
    const fs::path cut = write_file("cut.vlz", good.substr(0, good.size() - 3));
    const CliResult e = run_vaelab("decompress " + q(cut) + " --run " + q(run) + " --out " + q(out));
    CHECK(e.code != 0);
    CHECK_THAT(e.err, Contains("byte " + std::to_string(good.size() - 3)));
    CHECK(slurp(out) == "precious");
    CHECK_FALSE(fs::exists(out.string() + ".tmp"));
  }

  SECTION("another checkpoint is refused, naming the weights' hashes") {
    const fs::path other = trained("binary-other-seed", "fmnist-mlp-binary.toml", "--set train.seed=1");
    const CliResult e = run_vaelab("decompress " + q(packed) + " --run " + q(other) + " --out " + q(back));
    CHECK(e.code != 0);
    CHECK_THAT(e.err, Contains("weights hash to"));
  }
}

TEST_CASE("8-bit images round trip byte for byte with a mixture-of-logistics run", "[e2e][compress]") {
  const fs::path run = trained("mol", "fmnist-mlp-mol.toml", "--set train.epochs=1 --set eval.every_epochs=1");
  std::mt19937 rng(3);
  std::vector<uint8_t> pixels(9 * 32 * 32);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>((i % 32) * 8 + rng() % 8);
  const std::string input = npy_bytes(pixels, 9, 32, 32);
  const fs::path npy = write_file("gray.npy", input);
  const fs::path packed = work_dir() / "gray.vlz";
  const CliResult c = run_vaelab("compress " + q(run) + " --images " + q(npy) + " --out " + q(packed) +
                                 " --set compress.lanes=4 --json");
  INFO(c.err);
  REQUIRE(c.code == 0);
  CHECK(nlohmann::json::parse(c.out)["chains"] == 4);
  const fs::path back = work_dir() / "gray-back.npy";
  const CliResult d = run_vaelab("decompress " + q(packed) + " --run " + q(run) + " --out " + q(back));
  INFO(d.err);
  REQUIRE(d.code == 0);
  CHECK(slurp(back) == input);
}

TEST_CASE("a Gaussian run cannot code images, and says what to use instead", "[e2e][compress]") {
  const fs::path run = trained("gaussian", "fmnist-mlp.toml", "");
  const fs::path data = write_file("data-g.toml", data_table(10));
  const CliResult e = run_vaelab("compress " + q(run) + " --data " + q(data) + " --out " + q(work_dir() / "g.vlz"));
  CHECK(e.code != 0);
  CHECK_THAT(e.err, Contains("likelihood.name = \"gaussian\""));
  CHECK_THAT(e.err, Contains("\"mol\""));
  CHECK_THAT(e.err, Contains("\"bernoulli\""));
  CHECK_FALSE(fs::exists(work_dir() / "g.vlz"));
}
