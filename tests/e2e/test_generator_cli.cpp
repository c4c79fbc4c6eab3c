// End-to-end tests of `vaelab generator sample | check | fit` through the command, with gen-pool
// serving pools this test writes from Fashion-MNIST (package dataset-fashion-mnist).

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "cli_runner.hpp"

#include <vaelab/io/pool.hpp>

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::json;

namespace {

using Result = vaelab::testing::CliResult;
using vaelab::testing::slurp;

fs::path work_dir() { return vaelab::testing::scratch_dir("vaelab-e2e-gen"); }

/// Runs the vaelab command with `args` (shell words); captures both streams.
Result run_vaelab(const std::string& args) { return vaelab::testing::run_cli(work_dir(), args); }

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

fs::path write_file(const std::string& name, const std::string& text) {
  const fs::path p = work_dir() / name;
  std::ofstream(p) << text;
  return p;
}

const char* kFashionTrain = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
const char* kFashionLabels = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz";
constexpr int64_t kTrain = 2000;  // the small dataset: the first 2000 training images train,
constexpr int64_t kTest = 200;    // the next 200 test

std::vector<uint8_t> gz_head(const char* file, size_t bytes) {
  gzFile f = gzopen(file, "rb");
  REQUIRE(f != nullptr);
  std::vector<uint8_t> raw(bytes);
  const int got = gzread(f, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(f);
  REQUIRE(got == static_cast<int>(raw.size()));
  return raw;
}

/// Fashion-MNIST training images [first, first + n), zero-padded 28→32 as the idx source does.
vaelab::ImageSet fashion_train(int64_t first, int64_t n) {
  const std::vector<uint8_t> raw =
      gz_head(kFashionTrain, static_cast<size_t>(16 + (first + n) * 784));
  vaelab::ImageSet s;
  s.count = n;
  s.channels = 1;
  s.height = 32;
  s.width = 32;
  s.pixels.assign(static_cast<size_t>(n * 1024), 0);
  s.labels.assign(static_cast<size_t>(n), -1);
  for (int64_t i = 0; i < n; ++i) {
    for (int y = 0; y < 28; ++y) {
      std::copy_n(raw.begin() + 16 + (first + i) * 784 + y * 28, 28,
                  s.pixels.begin() + i * 1024 + (y + 2) * 32 + 2);
    }
  }
  return s;
}

/// A raw IDX file: magic 0x0000080<dims>, big-endian sizes, then `data`.
void write_idx(const fs::path& path, const std::vector<uint32_t>& dims, const uint8_t* data,
               size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  const uint8_t magic[4] = {0, 0, 8, static_cast<uint8_t>(dims.size())};
  out.write(reinterpret_cast<const char*>(magic), 4);
  for (const uint32_t d : dims) {
    const uint8_t be[4] = {static_cast<uint8_t>(d >> 24), static_cast<uint8_t>(d >> 16),
                           static_cast<uint8_t>(d >> 8), static_cast<uint8_t>(d)};
    out.write(reinterpret_cast<const char*>(be), 4);
  }
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(bytes));
}

/// A [data] table for a small Fashion-MNIST: training images 0..1999 train, 2000..2199 test, as
/// IDX files written once; the check then takes seconds.
std::string small_data() {
  static const std::string table = [] {
    const std::vector<uint8_t> images =
        gz_head(kFashionTrain, static_cast<size_t>(16 + (kTrain + kTest) * 784));
    const std::vector<uint8_t> labels =
        gz_head(kFashionLabels, static_cast<size_t>(8 + kTrain + kTest));
    const fs::path dir = work_dir() / "idx";
    fs::create_directories(dir);
    write_idx(dir / "train-images", {kTrain, 28, 28}, images.data() + 16, kTrain * 784);
    write_idx(dir / "train-labels", {kTrain}, labels.data() + 8, kTrain);
    write_idx(dir / "test-images", {kTest, 28, 28}, images.data() + 16 + kTrain * 784, kTest * 784);
    write_idx(dir / "test-labels", {kTest}, labels.data() + 8 + kTrain, kTest);
    return "[data]\nplugin = \"idx\"\n[data.config]\nname = \"fashion-head\"\n"
           "train_images = \"" +
           (dir / "train-images").string() +
           "\"\n"
           "train_labels = \"" +
           (dir / "train-labels").string() +
           "\"\n"
           "test_images = \"" +
           (dir / "test-images").string() +
           "\"\n"
           "test_labels = \"" +
           (dir / "test-labels").string() + "\"\n";
  }();
  return table;
}

fs::path write_pool(const std::string& name, const vaelab::ImageSet& images) {
  const fs::path path = work_dir() / name;
  vaelab::PoolHeader h;
  h.generator = "e2e-test";
  h.generator_version = "1.0";
  h.config_hash = vaelab::pool_config_hash("");
  h.provenance = "{}";
  h.channels = images.channels;
  h.height = images.height;
  h.width = images.width;
  vaelab::PoolWriter writer(path.string(), h);
  std::vector<uint64_t> seeds(static_cast<size_t>(images.count));
  for (size_t i = 0; i < seeds.size(); ++i) seeds[i] = i;
  writer.append(images, seeds);
  writer.commit();
  return path;
}

/// A generator folder serving `pool` with gen-pool, as `generator fit` would leave it.
fs::path gen_pool_dir(const std::string& name, const fs::path& pool) {
  const fs::path dir = work_dir() / name;
  fs::create_directories(dir);
  std::ofstream(dir / "config.toml")
      << "[generator]\nplugin = \"gen-pool\"\n[generator.config]\npath = \"" << pool.string()
      << "\"\n";
  const json saved = {{"path", pool.string()},
                      {"checksum", vaelab::PoolReader(pool.string()).checksum()}};
  std::ofstream(dir / "gen-pool.json") << saved.dump();
  return dir;
}

void require_one_line_error(const Result& r, const std::string& what) {
  INFO(r.err);
  REQUIRE(r.code != 0);
  REQUIRE_THAT(r.err, Contains(what));
  REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}

}  // namespace

TEST_CASE(
    "generator sample writes seeds S + i from gen-pool, and check flags copied training images",
    "[e2e]") {
  REQUIRE(fs::exists(kFashionTrain));
  const vaelab::ImageSet head = fashion_train(0, 300);
  const fs::path source = write_pool("copies.bin", head);
  const fs::path gen = gen_pool_dir("gen-copies", source);

  const fs::path sampled = work_dir() / "sampled.bin";
  const Result r = run_vaelab("generator sample " + q(gen) +
                              " --n 250 --seed 100 --batch 64 --out " + q(sampled));
  INFO(r.err);
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Contains("250 images from gen-pool 0.1.0") && Contains("images/s"));
  const vaelab::PoolReader pool(sampled.string());
  REQUIRE(pool.count() == 250);
  REQUIRE(pool.header().generator == "gen-pool");
  REQUIRE(pool.header().generator_version == "0.1.0");
  REQUIRE(pool.header().config_hash.size() == 16);
  const json provenance = json::parse(pool.header().provenance);
  REQUIRE(provenance["first_seed"] == 100);
  REQUIRE(provenance["n"] == 250);
  REQUIRE(provenance["generator"]["pool_count"] == 300);
  for (int64_t i = 0; i < 250; ++i) {
    REQUIRE(pool.seed(i) == static_cast<uint64_t>(100 + i));
    const int64_t k = (100 + i) % 300;  // gen-pool serves index (seed mod count)
    REQUIRE(std::equal(pool.image(i), pool.image(i) + 1024, head.pixels.begin() + k * 1024));
  }

  // The first 200 pool images are training images 100..299: memorized, and indistinguishable.
  const fs::path data = write_file("data.toml", small_data());
  const fs::path out = work_dir() / "check-copies";
  const Result c = run_vaelab("generator check " + q(sampled) + " --data " + q(data) +
                              " --n 200 --out " + q(out));
  INFO(c.err);
  REQUIRE(c.code == 0);
  REQUIRE_THAT(c.out, Contains("MEMORIZATION SUSPECTED"));
  const json check = json::parse(slurp(out / "check.json"));
  REQUIRE(check["samples"] == 200);
  REQUIRE(check["train_images"] == kTrain);
  REQUIRE(check["nn_l2_test_to_train"]["count"] == 200);
  REQUIRE(check["exact_copies"] == 200);
  REQUIRE(check["memorization_suspected"] == true);
  REQUIRE(check["c2st_accuracy"].get<double>() < 0.7);
  REQUIRE(check["source"]["kind"] == "pool");
  REQUIRE(check["source"]["generator"] == "gen-pool");
  REQUIRE(check["data"]["name"] == "fashion-head");
  // Training images are real images: their Fréchet distance is what real images score.
  INFO(check.dump(1));
  REQUIRE(check["frechet_distance"].get<double>() <
          2 * check["frechet_distance_real"].get<double>());
  REQUIRE(check["frechet_feature_net"]["dataset"] == "fashion-head");
  REQUIRE(check["frechet_feature_net"]["test_accuracy"].get<double>() > 0.5);
  REQUIRE_THAT(slurp(out / "check.md"),
               Contains("**Memorization suspected**") && Contains("![samples](samples.png)") &&
                   Contains("## Fréchet distance"));
  REQUIRE(slurp(out / "samples.png").substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
}

TEST_CASE("generator check tells inverted images apart and checks a generator folder", "[e2e]") {
  vaelab::ImageSet inverted = fashion_train(0, 200);
  for (auto& p : inverted.pixels) p = static_cast<uint8_t>(255 - p);
  const fs::path gen = gen_pool_dir("gen-inverted", write_pool("inverted.bin", inverted));
  const fs::path data = write_file("data.toml", small_data());
  const Result c =
      run_vaelab("generator check " + q(gen) + " --data " + q(data) + " --n 200 --seed 3");
  INFO(c.err);
  REQUIRE(c.code == 0);
  const json check = json::parse(slurp(gen / "check" / "check.json"));  // the default --out
  REQUIRE(check["c2st_accuracy"].get<double>() > 0.95);
  INFO(check.dump(1));
  REQUIRE(check["frechet_distance"].get<double>() >
          10 * check["frechet_distance_real"].get<double>());
  REQUIRE(check["memorization_suspected"] == false);
  REQUIRE(check["exact_copies"] == 0);
  REQUIRE(check["source"]["kind"] == "generator");
  REQUIRE(check["source"]["first_seed"] == 3);
  REQUIRE(fs::exists(gen / "check" / "samples.png"));
}

TEST_CASE("generator sample and check: user errors are one line on stderr and a non-zero exit",
          "[e2e]") {
  const fs::path data = write_file("data.toml", small_data());
  const fs::path pool = write_pool("small.bin", fashion_train(0, 8));
  const fs::path gen = gen_pool_dir("gen-small", pool);

  require_one_line_error(run_vaelab("generator sample " + q(work_dir() / "nope") + " --n 5 --out " +
                                    q(work_dir() / "x.bin")),
                         "nope: no such generator folder");
  require_one_line_error(
      run_vaelab("generator sample " + q(work_dir()) + " --n 5 --out " + q(work_dir() / "x.bin")),
      "not a generator folder (no config.toml");
  require_one_line_error(run_vaelab("generator sample " + q(gen) + " --n 5 --out " + q(pool)),
                         "small.bin: already exists");
  require_one_line_error(
      run_vaelab("generator sample " + q(gen) + " --n 0 --out " + q(work_dir() / "x.bin")),
      "--n must be at least 1");
  REQUIRE_FALSE(fs::exists(work_dir() / "x.bin"));

  // A truncated pool: the path and the byte offset where it ends.
  const std::string bytes = slurp(pool);
  const fs::path cut = work_dir() / "cut.bin";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, 5000);
  require_one_line_error(run_vaelab("generator check " + q(cut) + " --data " + q(data)),
                         cut.string() + ": byte 5000: file ends after 5000 bytes");
  require_one_line_error(
      run_vaelab("generator check " + q(work_dir() / "missing.bin") + " --data " + q(data)),
      "missing.bin: no such pool file or generator folder");
  require_one_line_error(run_vaelab("generator check " + q(pool) + " --data " + q(data) + " --n 2"),
                         "--n must be at least 4");
}

TEST_CASE("generator fit: user errors are one line on stderr, and nothing is overwritten",
          "[e2e]") {
  const fs::path data = write_file("data.toml", small_data());
  const fs::path gen =
      gen_pool_dir("gen-small-fit", write_pool("small-fit.bin", fashion_train(0, 8)));
  // gen-pool has nothing to fit; a config without a generator; folders that hold something else.
  const fs::path pool_fit =
      write_file("fit-pool.toml", small_data() + "[generator]\nplugin = \"gen-pool\"\n");
  require_one_line_error(run_vaelab("--log-level warn generator fit " + q(pool_fit) + " --out " +
                                    q(work_dir() / "fit-a")),
                         "not fitted");
  require_one_line_error(
      run_vaelab("--log-level warn generator fit " + q(data) + " --out " + q(work_dir() / "fit-b")),
      "generator.plugin is empty");
  const fs::path other = work_dir() / "other-dir";
  fs::create_directories(other);
  std::ofstream(other / "notes.txt") << "mine\n";
  require_one_line_error(
      run_vaelab("--log-level warn generator fit " + q(pool_fit) + " --out " + q(other)),
      "other-dir: the folder is not empty and holds no generator fit");
  require_one_line_error(
      run_vaelab("--log-level warn generator fit " + q(pool_fit) + " --out " + q(gen)),
      "gen-small-fit: already holds a fit with another generator.config");
  REQUIRE(slurp(other / "notes.txt") == "mine\n");
  REQUIRE_FALSE(fs::exists(gen / "generator.json"));
}

TEST_CASE("generator fit, resume and train on its samples: the [generator] table is all that changes",
          "[e2e]") {
  // A tiny EDM in a 16-dim PCA space of 2000 images: seconds to fit.
  const std::string config_text = small_data() + R"(
[model]
plugin = "vae-mlp"
[model.config]
hidden = [64]
[train]
epochs = 1
batch_size = 64
regime = "synthetic"
[train.synthetic]
k = 2
[generator]
plugin = "gen-diffusion"
[generator.config]
pca_dims = 16
mlp_width = 32
mlp_blocks = 1
embedding_dims = 16
batch_size = 64
sampler_steps = 4
[generator.fit]
steps = 40
)";
  const fs::path config = write_file("fit.toml", config_text);
  const fs::path gen = work_dir() / "gen-diffusion";
  const std::string subset = " --set data.train_size=256";
  const Result fit = run_vaelab("generator fit '" + config.string() + "'" + subset + " --out '" + gen.string() + "'");
  INFO(fit.err);
  REQUIRE(fit.code == 0);
  json info = json::parse(slurp(gen / "generator.json"));
  REQUIRE(info["fit_steps"] == 40);
  REQUIRE(fs::exists(gen / "config.toml"));

  // The same folder and config with more steps resumes from step 40.
  const Result more = run_vaelab("generator fit '" + config.string() + "'" + subset + " --set generator.fit.steps=60 --out '" +
                                 gen.string() + "'");
  INFO(more.err);
  REQUIRE(more.code == 0);
  REQUIRE_THAT(more.err + more.out, Contains("from step 40"));
  info = json::parse(slurp(gen / "generator.json"));
  REQUIRE(info["fit_steps"] == 60);

  // The same fit sampled with another sampler setting: other images, recorded as such; keys
  // outside generator.config are refused, naming the key, and write nothing.
  const fs::path as_fitted = work_dir() / "as-fitted.bin";
  const fs::path more_steps = work_dir() / "more-steps.bin";
  REQUIRE(run_vaelab("generator sample '" + gen.string() + "' --n 8 --out '" + as_fitted.string() + "'").code == 0);
  const Result resampled = run_vaelab("generator sample '" + gen.string() + "' --n 8 --out '" + more_steps.string() +
                                      "' --set generator.config.sampler_steps=9");
  INFO(resampled.err);
  REQUIRE(resampled.code == 0);
  const vaelab::PoolReader before(as_fitted.string()), after(more_steps.string());
  CHECK_FALSE(std::equal(before.image(0), before.image(0) + 1024, after.image(0)));
  CHECK(before.header().config_hash != after.header().config_hash);
  CHECK(json::parse(after.header().provenance)["set"] == json::array({"generator.config.sampler_steps=9"}));
  CHECK_FALSE(json::parse(before.header().provenance).contains("set"));
  const fs::path refused = work_dir() / "refused.bin";
  require_one_line_error(run_vaelab("generator sample '" + gen.string() + "' --n 8 --out '" + refused.string() +
                                    "' --set data.train_size=10"),
                         "--set data.train_size=10: generator sample takes generator.config.KEY=VALUE only");
  CHECK_FALSE(fs::exists(refused));

  // A run trains on its samples: k × |D_train| = 512 sampled at the start.
  const fs::path run = work_dir() / "run-on-diffusion";
  const Result train = run_vaelab("train '" + config.string() + "'" + subset + " --set generator.directory='" + gen.string() +
                                  "' --out '" + run.string() + "'");
  INFO(train.err);
  REQUIRE(train.code == 0);
  const json summary = json::parse(slurp(run / "summary.json"));
  REQUIRE(summary["regime"] == "synthetic");
  REQUIRE(summary["synthetic_images"] == 512);
  REQUIRE(summary["synthetic_source"] == gen.string());
  REQUIRE(std::isfinite(summary["elbo_test_nats"].get<double>()));

  // Fresh samples every effective epoch (train.synthetic.fresh): 256 new images per epoch, made in
  // the background; 2 epochs of the mixed regime with half real images need 2 × 128.
  const fs::path fresh = work_dir() / "run-on-fresh-samples";
  const Result fresh_train = run_vaelab("train '" + config.string() + "'" + subset + " --set generator.directory='" +
                                        gen.string() + "' --set train.synthetic.fresh=true --set train.regime=mixed" +
                                        " --set train.mixed.real_fraction=0.5 --set train.epochs=2 --out '" +
                                        fresh.string() + "'");
  INFO(fresh_train.err);
  REQUIRE(fresh_train.code == 0);
  const json fresh_summary = json::parse(slurp(fresh / "summary.json"));
  REQUIRE(fresh_summary["regime"] == "mixed");
  REQUIRE(fresh_summary["synthetic_images"] == 256);
  REQUIRE(fresh_summary["synthetic_source"] == gen.string() + " (fresh every epoch)");
  REQUIRE(std::isfinite(fresh_summary["elbo_test_nats"].get<double>()));
  REQUIRE_THAT(slurp(fresh / "train.log"), Contains("fresh samples from"));
}

TEST_CASE("a GAN and a TorchScript generator swap in by changing only the [generator] table", "[e2e]") {
  // A direct TorchScript generator z -> x, as a user would export from Python.
  const fs::path module_file = work_dir() / "generator.pt";
  {
    torch::jit::Module m("ExportedGenerator");
    torch::manual_seed(3);
    m.register_parameter("w", torch::randn({8, 1024}) * 0.5, false);
    m.define(R"(
def forward(self, z):
    return torch.tanh(torch.matmul(z, self.w)).view(-1, 1, 32, 32)
)");
    m.save(module_file.string());
  }
  const std::string common = small_data() + R"(
[model]
plugin = "vae-mlp"
[model.config]
hidden = [64]
[train]
epochs = 1
batch_size = 64
regime = "synthetic"
[train.synthetic]
k = 1
)";
  const std::map<std::string, std::string> generators = {
      {"gen-gan", "[generator]\nplugin = \"gen-gan\"\n[generator.config]\nlatent = 8\ngenerator_width = 8\n"
                  "discriminator_width = 8\nbatch_size = 16\n[generator.fit]\nsteps = 5\n"},
      {"gen-torchscript", "[generator]\nplugin = \"gen-torchscript\"\n[generator.config]\npath = \"" +
                              module_file.string() + "\"\nkind = \"generator\"\nlatent_shape = [8]\n"},
  };
  for (const auto& [name, table] : generators) {
    INFO(name);
    const fs::path config = write_file(name + ".toml", common + table);
    const fs::path gen = work_dir() / ("gen-" + name);
    const std::string subset = " --set data.train_size=128";
    const Result fit = run_vaelab("generator fit '" + config.string() + "'" + subset + " --out '" + gen.string() + "'");
    INFO(fit.err);
    REQUIRE(fit.code == 0);
    const fs::path run = work_dir() / ("run-on-" + name);
    const Result train = run_vaelab("train '" + config.string() + "'" + subset + " --set generator.directory='" +
                                    gen.string() + "' --out '" + run.string() + "'");
    INFO(train.err);
    REQUIRE(train.code == 0);
    const json summary = json::parse(slurp(run / "summary.json"));
    REQUIRE(summary["synthetic_images"] == 128);
    REQUIRE(std::isfinite(summary["elbo_test_nats"].get<double>()));
  }
}
