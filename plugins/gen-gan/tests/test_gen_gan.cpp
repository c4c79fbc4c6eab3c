// gen-gan through the plugin boundary, as the host drives it: created by the registry, attached
// to the single-threaded torch-cpu backend, fitted on a tiny synthetic dataset.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <vaelab/config.hpp>
#include <vaelab/generator.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/torch_shim.hpp>

#include "plugin_registry.hpp"
#include "spectral_norm.hpp"

using Catch::Contains;

namespace {

namespace fs = std::filesystem;

/// The plugin's defaults with `overrides` (TOML) on top, as the host resolves a config.
/// Small and fast: 16x16 images, narrow networks.
const std::string kTiny =
    "latent = 8\ngenerator_width = 8\ndiscriminator_width = 8\nbatch_size = 32\n"
    "lr_generator = 1e-3\nlr_discriminator = 1e-3\nsteps = 40\nsample_batch = 64\n";

/// The plugin's defaults, then kTiny, then `overrides` (TOML), as the host resolves a config.
std::string config(const std::string& overrides, const std::string& base = kTiny) {
  const auto& record = vaelab::testing::build_registry().find(VL_PLUGIN_KIND_GENERATOR, "gen-gan");
  toml::table merged = vaelab::parse_toml(record.defaults_toml, "defaults");
  merged = vaelab::merge_tables(merged, vaelab::parse_toml(base, "tiny"));
  merged = vaelab::merge_tables(merged, vaelab::parse_toml(overrides, "test"));
  return vaelab::format_toml(merged);
}

struct Gan {
  vaelab::PluginPtr<vaelab::Backend> backend = vaelab::testing::single_thread_cpu();
  vaelab::PluginPtr<vaelab::Generator> gen;
  explicit Gan(const std::string& overrides = "") {
    gen = vaelab::testing::build_registry().create<vaelab::Generator>("gen-gan", config(overrides));
    gen->attach(*backend);
  }
};

/// 64 grayscale 16x16 images: a bright disc (about 220) on a dark ground (about 30) whose radius
/// varies from image to image, plus pixel noise. Its mean image has a strong structure that an
/// untrained generator (uniform grey) does not have.
vaelab::ImageSet discs(int64_t count = 64, int64_t side = 16) {
  vaelab::ImageSet set;
  set.count = count;
  set.channels = 1;
  set.height = side;
  set.width = side;
  at::Generator gen = vaelab::shim::make_cpu_generator(7);
  const torch::Tensor noise = at::randn({count, 1, side, side}, gen) * 12;
  const torch::Tensor radius = at::rand({count, 1, 1, 1}, gen) * (side / 8.0) + side / 4.0;
  const torch::Tensor axis = torch::arange(side, torch::kFloat32) - (side - 1) / 2.0;
  const torch::Tensor dist = (axis.view({1, side}).pow(2) + axis.view({side, 1}).pow(2)).sqrt();
  const torch::Tensor inside = (dist.view({1, 1, side, side}) < radius).to(torch::kFloat32);
  const torch::Tensor x =
      (30 + 190 * inside + noise).round().clamp(0, 255).to(torch::kUInt8).contiguous();
  set.pixels.assign(x.data_ptr<uint8_t>(), x.data_ptr<uint8_t>() + x.numel());
  set.labels.assign(static_cast<size_t>(count), -1);
  return set;
}

torch::Tensor as_float(const vaelab::ImageSet& set) {
  return torch::from_blob(const_cast<uint8_t*>(set.pixels.data()),
                          {set.count, set.channels, set.height, set.width}, torch::kUInt8)
      .to(torch::kFloat32);
}

/// Mean squared difference between the per-pixel means of two sets, plus that between their
/// per-pixel standard deviations (grey levels squared).
double moment_distance(const vaelab::ImageSet& a, const vaelab::ImageSet& b) {
  const torch::Tensor x = as_float(a), y = as_float(b);
  return ((x.mean(0) - y.mean(0)).pow(2).mean() + (x.std(0) - y.std(0)).pow(2).mean())
      .item<double>();
}

vaelab::FitBudget steps(int64_t n) {
  vaelab::FitBudget budget;
  budget.steps = n;
  return budget;
}

/// A folder of this process's own (ctest runs the test cases as parallel processes), removed
/// when the process exits.
struct ScratchRoot {
  fs::path dir = fs::temp_directory_path() / ("vaelab-test-gen-gan-" + std::to_string(::getpid()));
  ~ScratchRoot() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
};

fs::path scratch(const std::string& name) {
  static const ScratchRoot root;
  const fs::path dir = root.dir / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

nlohmann::json describe(vaelab::Generator& gen) { return nlohmann::json::parse(gen.describe()); }

}  // namespace

TEST_CASE("gen-gan: fitting brings the samples' pixel means and spreads to the data's",
          "[gen-gan]") {
  // GAN losses are not monotone, so the test measures the samples instead: after one step the
  // generator is a near-uniform grey; a working fit reproduces the disc in the mean image and the
  // spread of the ground and of the disc's edge. With the defaults (spectral norm, EMA) the
  // distance falls about 12-fold in 200 steps and 40-fold in 400 (regularizer "none": 3-fold and
  // 10-fold, less steadily); a sign error in a loss or a broken update leaves it where it was.
  Gan gan;
  const vaelab::ImageSet data = discs();
  gan.gen->fit(data, steps(1), {});
  const double before = moment_distance(gan.gen->sample(256, 0), data);
  gan.gen->fit(data, steps(200), {});
  const double after = moment_distance(gan.gen->sample(256, 0), data);
  INFO("moment distance before " << before << ", after " << after);
  REQUIRE(after < 0.2 * before);
}

TEST_CASE("gen-gan: samples have the training shape, uint8 pixels and no labels", "[gen-gan]") {
  for (const char* regularizer : {"none", "r1", "spectral-norm"}) {
    Gan gan(std::string("regularizer = \"") + regularizer + "\"\n");
    const vaelab::ImageSet data = discs();
    std::vector<double> losses;
    gan.gen->fit(data, steps(5), [&](int64_t step, int64_t total, double loss) {
      REQUIRE(step == static_cast<int64_t>(losses.size()) + 1);
      REQUIRE(total == 5);
      losses.push_back(loss);
      return true;
    });
    REQUIRE(losses.size() == 5);
    for (double l : losses) REQUIRE(std::isfinite(l));
    const vaelab::ImageSet s = gan.gen->sample(9, 3);
    REQUIRE(s.count == 9);
    REQUIRE(s.channels == 1);
    REQUIRE(s.height == 16);
    REQUIRE(s.width == 16);
    REQUIRE(s.pixels.size() == 9 * 16 * 16);
    REQUIRE(s.labels == std::vector<int64_t>(9, -1));
    const auto [lo, hi] = std::minmax_element(s.pixels.begin(), s.pixels.end());
    REQUIRE(*lo < *hi);  // not a constant image
    REQUIRE(gan.gen->sample(0, 3).count == 0);
  }
}

TEST_CASE("gen-gan: three-channel images come back with three channels", "[gen-gan]") {
  Gan gan;
  vaelab::ImageSet data = discs(16, 8);
  data.channels = 3;  // 16 RGB images: the discs' bytes, then flat grey
  data.pixels.resize(data.pixels.size() * 3, 77);
  gan.gen->fit(data, steps(2), {});
  const vaelab::ImageSet s = gan.gen->sample(4, 0);
  REQUIRE(s.channels == 3);
  REQUIRE(s.height == 8);
  REQUIRE(s.pixels.size() == 4 * 3 * 8 * 8);
}

TEST_CASE("gen-gan: image i depends on seed first_seed + i alone, not on the batch", "[gen-gan]") {
  Gan gan("sample_batch = 3\n");  // 7 images are generated as batches of 3, 3 and 1
  gan.gen->fit(discs(), steps(30), {});
  const vaelab::ImageSet all = gan.gen->sample(7, 100);
  const int64_t bytes = all.image_bytes();
  const auto image = [&](const vaelab::ImageSet& s, int64_t i) {
    return std::vector<uint8_t>(s.pixels.begin() + i * bytes, s.pixels.begin() + (i + 1) * bytes);
  };
  const vaelab::ImageSet one = gan.gen->sample(1, 103);
  REQUIRE(image(one, 0) == image(all, 3));
  const vaelab::ImageSet tail = gan.gen->sample(3, 104);  // one batch of 3 holding images 4..6
  for (int64_t i = 0; i < 3; ++i) REQUIRE(image(tail, i) == image(all, 4 + i));
  REQUIRE(gan.gen->sample(7, 100).pixels == all.pixels);
  REQUIRE(image(all, 0) != image(all, 1));
  REQUIRE(gan.gen->sample(1, 101).pixels != one.pixels);
}

TEST_CASE("gen-gan: save and load reproduce the samples exactly", "[gen-gan]") {
  for (const char* regularizer : {"spectral-norm", "r1"}) {
    const fs::path dir = scratch(std::string("save-") + regularizer);
    const std::string overrides = std::string("regularizer = \"") + regularizer + "\"\n";
    Gan fitted(overrides);
    fitted.gen->fit(discs(), steps(12), {});
    fitted.gen->save(dir.string());
    for (const char* file : {"gan.json", "generator.safetensors", "generator_ema.safetensors",
                             "discriminator.safetensors", "optimizers.pt"}) {
      REQUIRE(fs::exists(dir / file));
    }
    Gan loaded(overrides);
    loaded.gen->load(dir.string());
    REQUIRE(loaded.gen->sample(20, 5).pixels == fitted.gen->sample(20, 5).pixels);
    REQUIRE(describe(*loaded.gen)["fit_steps"] == 12);
    REQUIRE(describe(*loaded.gen)["parameters"] == describe(*fitted.gen)["parameters"]);
  }
}

TEST_CASE("gen-gan: a resumed fit continues the step count and repeats an uninterrupted one",
          "[gen-gan]") {
  for (const char* regularizer : {"spectral-norm", "r1"}) {
    const std::string overrides = std::string("regularizer = \"") + regularizer + "\"\n";
    const vaelab::ImageSet data = discs();
    Gan straight(overrides);
    straight.gen->fit(data, steps(20), {});

    const fs::path dir = scratch(std::string("resume-") + regularizer);
    Gan first(overrides);
    first.gen->fit(data, steps(10), {});
    first.gen->save(dir.string());
    Gan second(overrides);
    second.gen->load(dir.string());
    std::vector<int64_t> seen;
    second.gen->fit(data, steps(20), [&](int64_t step, int64_t, double) {
      seen.push_back(step);
      return true;
    });
    REQUIRE(seen.front() == 11);
    REQUIRE(seen.back() == 20);
    REQUIRE(describe(*second.gen)["fit_steps"] == 20);
    // Weights, batch-norm statistics, spectral-norm vectors, Adam moments and the step's draws
    // all resume exactly, so the samples are bit for bit those of the uninterrupted fit.
    REQUIRE(second.gen->sample(16, 0).pixels == straight.gen->sample(16, 0).pixels);
    // A fit already at its total does nothing.
    seen.clear();
    second.gen->fit(data, steps(20), [&](int64_t step, int64_t, double) {
      seen.push_back(step);
      return true;
    });
    REQUIRE(seen.empty());
  }
}

TEST_CASE("gen-gan: the fit budget stops early and checkpoints", "[gen-gan]") {
  const vaelab::ImageSet data = discs();
  SECTION("the progress callback stops the fit, which then checkpoints") {
    const fs::path dir = scratch("stop");
    Gan gan;
    vaelab::FitBudget budget = steps(50);
    budget.checkpoint_directory = (dir / "ckpt").string();  // made by fit
    gan.gen->fit(data, budget, [](int64_t step, int64_t, double) { return step < 7; });
    REQUIRE(describe(*gan.gen)["fit_steps"] == 7);
    std::ifstream in(dir / "ckpt" / "gan.json");
    REQUIRE(nlohmann::json::parse(in)["step"] == 7);
  }
  SECTION("a wall-clock cap stops the fit") {
    Gan gan;
    vaelab::FitBudget budget = steps(100000);
    budget.seconds = 1e-6;
    gan.gen->fit(data, budget, {});
    REQUIRE(describe(*gan.gen)["fit_steps"] == 1);
  }
  SECTION("budget.steps = 0 takes the plugin's steps") {
    Gan gan("steps = 3\n");
    gan.gen->fit(data, vaelab::FitBudget{}, {});
    REQUIRE(describe(*gan.gen)["fit_steps"] == 3);
  }
}

TEST_CASE("gen-gan: describe() is one JSON object with the header's keys", "[gen-gan]") {
  Gan gan("latent = 5\nema_decay = 0.0\n");
  nlohmann::json d = describe(*gan.gen);
  REQUIRE(d["parameters"] == 0);
  REQUIRE(d["image_shape"].is_null());
  gan.gen->fit(discs(), steps(2), {});
  d = describe(*gan.gen);
  REQUIRE(d["what"].get<std::string>().find("DCGAN") != std::string::npos);
  // Generator of 16x16 images, g = 8, two stages: dense 5 -> 16*16 (with bias), BN(16),
  // transposed conv 16 -> 8 (no bias), BN(8), transposed conv 8 -> 1 (with bias).
  const int64_t expected = (5 * 256 + 256) + 2 * 16 + 16 * 8 * 16 + 2 * 8 + (8 * 1 * 16 + 1);
  REQUIRE(d["parameters"] == expected);
  REQUIRE(d["fit_steps"] == 2);
  REQUIRE(d["fit_seconds"].get<double>() > 0);
  REQUIRE(d["image_shape"] == nlohmann::json({1, 16, 16}));
  REQUIRE(d["samples_from"] == "generator");
}

TEST_CASE("gen-gan: bad configs, shapes and folders are refused with a clear message",
          "[gen-gan]") {
  const auto& registry = vaelab::testing::build_registry();
  REQUIRE_THROWS_WITH(
      registry.create<vaelab::Generator>("gen-gan", config("regularizer = \"wgan\"\n")),
      Contains("regularizer"));
  REQUIRE_THROWS_WITH(registry.create<vaelab::Generator>("gen-gan", config("ema_decay = 1.0\n")),
                      Contains("ema_decay"));
  REQUIRE_THROWS_WITH(registry.create<vaelab::Generator>("gen-gan", config("lr_generator = 0.0\n")),
                      Contains("lr_generator"));

  Gan gan;
  REQUIRE_THROWS_WITH(gan.gen->sample(1, 0), Contains("fit() or load()"));
  vaelab::ImageSet odd = discs(4, 16);
  odd.height = 8;
  odd.width = 32;
  REQUIRE_THROWS_WITH(gan.gen->fit(odd, steps(1), {}), Contains("8x32"));

  const fs::path empty = scratch("empty");
  REQUIRE_THROWS_WITH(Gan().gen->load(empty.string()), Contains("gan.json"));

  const fs::path dir = scratch("mismatch");
  gan.gen->fit(discs(), steps(1), {});
  gan.gen->save(dir.string());
  REQUIRE_THROWS_WITH(Gan("generator_width = 4\n").gen->load(dir.string()),
                      Contains("generator_width") && Contains("gan.json"));
  fs::remove(dir / "discriminator.safetensors");
  REQUIRE_THROWS_WITH(Gan().gen->load(dir.string()), Contains("discriminator.safetensors"));
}

TEST_CASE("gen-gan: spectral normalization divides by the largest singular value", "[gen-gan]") {
  at::Generator gen = vaelab::shim::make_cpu_generator(3);
  const torch::Tensor weight = at::randn({6, 3, 2, 2}, gen);
  torch::Tensor u = at::randn({6}, gen);
  u /= u.norm();
  torch::Tensor normalized;
  for (int i = 0; i < 30; ++i)
    normalized = vaelab::plugins::spectrally_normalized(weight, u, 1, true);
  const double top = torch::linalg_matrix_norm(normalized.reshape({6, -1}), 2).item<double>();
  REQUIRE(top == Approx(1.0).epsilon(1e-3));
  // Eval mode leaves u alone.
  const torch::Tensor kept = u.clone();
  vaelab::plugins::spectrally_normalized(weight * 2, u, 5, false);
  REQUIRE(torch::equal(u, kept));
  // The gradient flows through σ: scaling the weight does not change W / σ(W).
  const torch::Tensor w = weight.clone().requires_grad_(true);
  const torch::Tensor y = vaelab::plugins::spectrally_normalized(w * 3, u, 1, false).sum();
  y.backward();
  const torch::Tensor y0 = vaelab::plugins::spectrally_normalized(weight, u, 1, false).sum();
  REQUIRE(y.item<double>() == Approx(y0.item<double>()).epsilon(1e-5));
  REQUIRE(w.grad().abs().sum().item<double>() > 0);
}
