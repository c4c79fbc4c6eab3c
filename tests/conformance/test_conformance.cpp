// The conformance kit (tools/conformance) on every built-in plugin, each of which must pass every
// check, and on plugins that must fail: a model with a deliberate flaw (fixtures/broken_vae.cpp),
// failing exactly the check that names the flaw, and a plugin the registry refuses.
//
// Plugins that read inputs get them here: CIFAR-10 batches, .npy arrays, a folder of PNGs, a
// sample pool and TorchScript modules, all written by this test into its scratch folder.

#include <catch2/catch.hpp>

#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <vaelab/data_source.hpp>
#include <vaelab/io/image_grid.hpp>
#include <vaelab/io/pool.hpp>

#include "cli_runner.hpp"
#include "scripted_mlp.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path scratch() { return vaelab::testing::scratch_dir("vaelab-test-conformance"); }

struct Conformance {
  int code = -1;
  json report;
  std::string err;
  /// check name → "pass" | "fail" | "skip", over every descriptor of the file.
  std::map<std::string, std::string> results;

  std::set<std::string> with(const std::string& result) const {
    std::set<std::string> names;
    for (const auto& [name, r] : results) {
      if (r == result) names.insert(name);
    }
    return names;
  }
  /// The report's lines for checks that did not pass, for messages.
  std::string failures() const {
    std::string out;
    if (!report.is_object()) return err;
    for (const auto& p : report["plugins"]) {
      for (const auto& c : p["checks"]) {
        if (c["result"] != "pass") {
          out += c["name"].get<std::string>() + " " + c["result"].get<std::string>() + ": " +
                 c["detail"].get<std::string>() + "\n";
        }
      }
    }
    return out + err;
  }
};

/// Runs `vaelab-conformance FILE --json ARGS`.
Conformance conformance(const fs::path& file, const std::string& args = "") {
  const vaelab::testing::CliResult r =
      vaelab::testing::run_cli(scratch(), "'" + file.string() + "' --json " + args);
  Conformance c;
  c.code = r.code;
  c.err = r.err;
  try {
    c.report = json::parse(r.out);
  } catch (const json::exception&) {
    c.report = json();
    c.err = "stdout is not JSON: " + r.out + "\n" + r.err;
    return c;
  }
  for (const auto& p : c.report["plugins"]) {
    for (const auto& check : p["checks"]) c.results[check["name"]] = check["result"];
  }
  return c;
}

fs::path plugin(const std::string& file) { return fs::path(VAELAB_TEST_PLUGIN_DIR) / file; }

fs::path broken_plugin() {
  return fs::path(VAELAB_TEST_CONFORMANCE_FIXTURE_DIR) / "libvaelab-model-conformance-broken.so";
}

void write_file(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

/// Images with some structure: a bright square at a place that depends on i.
vaelab::ImageSet pattern_images(int64_t count, int64_t channels, int64_t side, int seed) {
  vaelab::ImageSet s;
  s.count = count;
  s.channels = channels;
  s.height = side;
  s.width = side;
  s.pixels.assign(static_cast<size_t>(count * channels * side * side), 16);
  s.labels.assign(static_cast<size_t>(count), -1);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t at = (i * 3 + seed) % (side - 2);
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t y = at; y < at + 3; ++y) {
        for (int64_t x = at; x < at + 3; ++x) {
          s.pixels[static_cast<size_t>(((i * channels + c) * side + y) * side + x)] =
              static_cast<uint8_t>(200 + (i + c) % 50);
        }
      }
    }
  }
  return s;
}

/// A .npy file as NumPy writes it (version 1.0).
std::vector<uint8_t> npy(const std::string& descr, const std::string& shape, const std::vector<uint8_t>& data) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string text("\x93NUMPY\x01\x00", 8);
  text += static_cast<char>(header.size() & 0xff);
  text += static_cast<char>(header.size() >> 8);
  text += header;
  std::vector<uint8_t> out(text.begin(), text.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// The extra arguments a built-in plugin needs to have something to check; inputs written here.
std::string inputs_for(const std::string& name) {
  const fs::path dir = scratch() / "inputs";
  if (name == "cifar10") {
    // The six default batch files, each a few 3073-byte records (label, then R, G, B planes).
    const fs::path folder = dir / "cifar10";
    const std::vector<std::string> files = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                            "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    for (size_t f = 0; f < files.size(); ++f) {
      const vaelab::ImageSet images = pattern_images(4, 3, 32, static_cast<int>(f));
      std::vector<uint8_t> bytes;
      for (int64_t i = 0; i < images.count; ++i) {
        bytes.push_back(static_cast<uint8_t>((i + static_cast<int64_t>(f)) % 10));
        bytes.insert(bytes.end(), images.pixels.begin() + i * 3072, images.pixels.begin() + (i + 1) * 3072);
      }
      write_file(folder / files[f], bytes);
    }
    return "--set folder=" + folder.string();
  }
  if (name == "npy") {
    const vaelab::ImageSet train = pattern_images(12, 1, 8, 0);
    const vaelab::ImageSet test = pattern_images(5, 1, 8, 1);
    write_file(dir / "npy/train.npy", npy("|u1", "(12, 8, 8)", train.pixels));
    write_file(dir / "npy/test.npy", npy("|u1", "(5, 8, 8)", test.pixels));
    return "--set train=" + (dir / "npy/train.npy").string() + " --set test=" + (dir / "npy/test.npy").string();
  }
  if (name == "image-folder") {
    // root/{train,test}/{a,b}/N.png, 8x8 grey images brought to the default 3x32x32.
    vaelab::ImageGridOptions one;
    one.columns = 1;
    one.max_images = 1;
    one.padding_px = 0;
    for (const std::string split : {"train", "test"}) {
      for (const std::string cls : {"a", "b"}) {
        const vaelab::ImageSet images = pattern_images(3, 1, 8, cls == "a" ? 0 : 2);
        for (int64_t i = 0; i < images.count; ++i) {
          vaelab::ImageSet single = images;
          vaelab::keep_images(single, {i});
          fs::create_directories(dir / "images" / split / cls);
          vaelab::write_image_grid(dir / "images" / split / cls / (std::to_string(i) + ".png"), single, one);
        }
      }
    }
    return "--set root=" + (dir / "images").string();
  }
  if (name == "gen-pool") {
    const std::string pool = (dir / "pool.vlpool").string();
    if (!fs::exists(pool)) {
      fs::create_directories(dir);
      vaelab::PoolHeader header;
      header.generator = "test";
      header.generator_version = "0";
      header.config_hash = vaelab::pool_config_hash("");
      header.provenance = "{}";
      header.channels = 1;
      header.height = 8;
      header.width = 8;
      vaelab::PoolWriter writer(pool, header);
      const vaelab::ImageSet images = pattern_images(20, 1, 8, 0);
      std::vector<uint64_t> seeds(20);
      for (size_t i = 0; i < seeds.size(); ++i) seeds[i] = i;
      writer.append(images, seeds);
      writer.commit();
    }
    // A pool is not fitted: gen-pool refuses fit() by design.
    return "--set path=" + pool + " --skip generator.fit";
  }
  if (name == "gen-torchscript") {
    // A "generator" module: z [B, 256] → images [B, 1, 16, 16] in [-1, 1], each from its own z.
    const fs::path file = dir / "generator.pt";
    if (!fs::exists(file)) {
      fs::create_directories(dir);
      torch::jit::Module m("Generator");
      m.define("def forward(self, z):\n    return torch.tanh(z.reshape(z.size(0), 1, 16, 16))\n");
      m.save(file.string());
    }
    write_text(dir / "torchscript.toml",
               "path = \"" + file.string() + "\"\nkind = \"generator\"\nlatent_shape = [256]\n");
    return "--config " + (dir / "torchscript.toml").string();
  }
  if (name == "vae-torchscript") {
    // The paper's MLP as TorchScript, with one hidden layer, for the kit's 1x32x32 images and
    // Gaussian likelihood (1 parameter channel); it refuses another likelihood's channels.
    const fs::path file = dir / "vae.pt";
    if (!fs::exists(file)) {
      fs::create_directories(dir);
      vaelab::testing::scripted_mlp({{64}, 8, 1, 32, 32, 1}).save(file.string());
    }
    return "--set path=" + file.string();
  }
  return "";
}

void require_all_pass(const fs::path& file, const std::string& args) {
  INFO(file.string() << " " << args);
  const Conformance c = conformance(file, args);
  INFO(c.failures());
  REQUIRE(c.code == 0);
  REQUIRE(c.report["ok"] == true);
  REQUIRE(c.report["failed"] == 0);
  REQUIRE(c.with("fail").empty());
  REQUIRE(c.results.at("load") == "pass");
  REQUIRE(c.results.at("create.defaults") == "pass");
  // Nothing skipped except what was asked for.
  for (const auto& skipped : c.with("skip")) REQUIRE(args.find("--skip " + skipped) != std::string::npos);
  // The kind's own checks ran.
  bool kind_checks = false;
  for (const auto& [name, r] : c.results) {
    kind_checks = kind_checks || name.rfind("model.", 0) == 0 || name.rfind("backend.", 0) == 0 ||
                  name.rfind("data.", 0) == 0 || name.rfind("generator.", 0) == 0;
  }
  REQUIRE(kind_checks);
}

/// A backend that cannot run on this machine (torch-cuda without a CUDA LibTorch or a GPU) must
/// fail create.defaults saying why, and skip the checks that need an instance.
bool cannot_run_here(const std::string& kind, const std::string& name) {
  return kind == "backend" && name == "torch-cuda" &&
         !(at::globalContext().hasCUDA() && torch::cuda::device_count() > 0);
}

void require_refused_here(const fs::path& file) {
  const Conformance c = conformance(file, "");
  INFO(file.string() << "\n" << c.failures());
  REQUIRE(c.code == 1);
  REQUIRE(c.results.at("load") == "pass");
  REQUIRE(c.results.at("defaults.documented") == "pass");
  REQUIRE(c.with("fail") == std::set<std::string>{"create.defaults"});
  REQUIRE(c.results.at("backend.dense") == "skip");
  REQUIRE_THAT(c.report.dump(), Catch::Contains("without CUDA") || Catch::Contains("sees no GPU"));
}

/// The plugin files of one kind in the build's plugin folder, sorted.
std::vector<std::string> built_in(const std::string& kind) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(VAELAB_TEST_PLUGIN_DIR)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind("libvaelab-" + kind + "-", 0) == 0) files.push_back(file);
  }
  std::sort(files.begin(), files.end());
  return files;
}

/// "libvaelab-data-source-idx.so" → "idx".
std::string name_of(const std::string& file, const std::string& kind) {
  const size_t start = std::string("libvaelab-").size() + kind.size() + 1;
  return file.substr(start, file.size() - start - 3);
}

/// Runs the kit on every built-in plugin of `kind` (whatever the folder holds, so a new plugin is
/// covered the day it is built) and checks the expected ones were among them.
void require_kind_passes(const std::string& kind, const std::set<std::string>& expected) {
  std::set<std::string> seen;
  for (const std::string& file : built_in(kind)) {
    const std::string name = name_of(file, kind);
    seen.insert(name);
    if (cannot_run_here(kind, name)) {
      require_refused_here(plugin(file));
      continue;
    }
    require_all_pass(plugin(file), inputs_for(name));
  }
  for (const auto& name : expected) {
    INFO(kind << " " << name);
    REQUIRE(seen.count(name) == 1);
  }
}

}  // namespace

TEST_CASE("the conformance kit passes every built-in backend", "[conformance]") {
  require_kind_passes("backend", {"torch-cpu", "onednn-cpu", "torch-cuda"});
}

TEST_CASE("the conformance kit passes every built-in model and the plugin template", "[conformance]") {
  require_kind_passes("model", {"vae-mlp", "vae-conv", "vae-torchscript"});
  require_all_pass(fs::path(VAELAB_TEST_TEMPLATE_DIR) / "libvaelab-model-template-vae.so", "");
}

TEST_CASE("the conformance kit passes every built-in data source", "[conformance]") {
  require_kind_passes("data-source", {"idx", "ppca-world", "cifar10", "npy", "image-folder"});
}

TEST_CASE("the conformance kit passes every built-in generator", "[conformance]") {
  require_kind_passes("generator", {"gen-pool", "gen-torchscript", "gen-diffusion", "gen-gan"});
}

TEST_CASE("a model whose decode() returns the wrong shape fails model.decode_shape", "[conformance]") {
  // Without the flaw the same plugin passes: the kit fails the flaw, not the fixture.
  require_all_pass(broken_plugin(), "");

  const Conformance c = conformance(broken_plugin(), "--set flaw=decode_shape");
  INFO(c.failures());
  REQUIRE(c.code == 1);
  REQUIRE(c.report["ok"] == false);
  REQUIRE(c.results.at("model.decode_shape") == "fail");
  REQUIRE(c.results.at("model.encode_shape") == "pass");
  REQUIRE(c.results.at("model.seeded_init") == "pass");
  REQUIRE(c.results.at("model.latent_adjacent") == "pass");
  REQUIRE_THAT(c.failures(), Catch::Contains("model.decode_shape fail: decode() returned [4, 1, 32, 31], "
                                             "expected [4, 1, 32, 32]"));
}

TEST_CASE("a model that ignores torch's seed fails model.seeded_init and nothing else", "[conformance]") {
  const Conformance c = conformance(broken_plugin(), "--set flaw=unseeded");
  INFO(c.failures());
  REQUIRE(c.code == 1);
  REQUIRE(c.with("fail") == std::set<std::string>{"model.seeded_init"});
  REQUIRE_THAT(c.failures(), Catch::Contains("built after torch::manual_seed(7) differ"));
}

TEST_CASE("the table names each check and the exit status says whether all passed", "[conformance]") {
  const vaelab::testing::CliResult table =
      vaelab::testing::run_cli(scratch(), "'" + broken_plugin().string() + "' --set flaw=decode_shape");
  REQUIRE(table.code == 1);
  REQUIRE_THAT(table.out, Catch::Contains("model conformance-broken 0.1.0 (ABI 2.0)") &&
                              Catch::Contains("model.decode_shape") && Catch::Contains("FAIL") &&
                              Catch::Contains(" failed, "));
  // A skipped check is reported as such and is not a failure; the checks that need it are skipped.
  const vaelab::testing::CliResult skipped = vaelab::testing::run_cli(
      scratch(), "'" + broken_plugin().string() + "' --set flaw=decode_shape --skip model.decode_shape");
  INFO(skipped.out);
  REQUIRE(skipped.code == 0);
  REQUIRE_THAT(skipped.out, Catch::Contains("skipped on the command line (--skip model.decode_shape)") &&
                                Catch::Contains("needs model.decode_shape, which did not pass"));
}

TEST_CASE("a plugin the registry refuses fails the load check with the refusal named", "[conformance]") {
  const Conformance c =
      conformance(fs::path(VAELAB_TEST_LOADER_FIXTURE_DIR) / "libvaelab-backend-foreign-fingerprint.so");
  INFO(c.failures());
  REQUIRE(c.code == 1);
  REQUIRE(c.results.at("load") == "fail");
  REQUIRE_THAT(c.failures(), Catch::Contains("fingerprint_mismatch"));
  REQUIRE(c.results.size() == 1);  // nothing else runs on a refused plugin
}

TEST_CASE("usage errors exit with status 2 and a message", "[conformance]") {
  const auto missing = vaelab::testing::run_cli(scratch(), "'" + (scratch() / "missing.so").string() + "'");
  REQUIRE(missing.code == 2);
  REQUIRE_THAT(missing.err, Catch::Contains("no such file"));
  write_text(scratch() / "not-named-right.so", "x");
  const auto misnamed = vaelab::testing::run_cli(scratch(), "'" + (scratch() / "not-named-right.so").string() + "'");
  REQUIRE(misnamed.code == 2);
  REQUIRE_THAT(misnamed.err, Catch::Contains("libvaelab-<kind>-<name>.so"));
  const auto unknown_key = vaelab::testing::run_cli(
      scratch(), "'" + plugin("libvaelab-model-vae-mlp.so").string() + "' --set no_such_key=1");
  REQUIRE(unknown_key.code == 2);
  REQUIRE_THAT(unknown_key.err, Catch::Contains("no_such_key"));
}
