// gen-diffusion through the plugin boundary, as the host drives it: created by the registry,
// attached to the torch-cpu backend, fitted on tiny images, saved, loaded, resumed and sampled.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <vaelab/backend.hpp>
#include <vaelab/error.hpp>
#include <vaelab/generator.hpp>
#include <vaelab/registry.hpp>

#include "plugin_registry.hpp"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

const vaelab::Registry& registry() { return vaelab::testing::build_registry(); }

/// A small, fast configuration; the `extra` lines replace the keys they name.
std::string tiny_config(const std::string& extra = "") {
  const std::vector<std::string> base{
      "steps = 60",        "batch_size = 16",   "mlp_width = 48",       "mlp_blocks = 1",
      "embedding_dims = 16", "sampler_steps = 6", "lr = 2e-3",          "lr_warmup_steps = 5",
      "ema_decay = 0.9",   "pca_dims = 12"};
  std::string text = extra;
  for (const std::string& line : base) {
    const std::string key = line.substr(0, line.find(' '));
    if (extra.find(key + " =") == std::string::npos) text += line + "\n";
  }
  return text;
}

/// 24 images of 1×8×8: a bright horizontal or vertical bar at a random place on black, with
/// random brightness.
vaelab::ImageSet bars() {
  vaelab::ImageSet set;
  set.count = 24;
  set.channels = 1;
  set.height = 8;
  set.width = 8;
  set.pixels.assign(24 * 64, 0);
  set.labels.assign(24, 0);
  uint32_t state = 12345;
  const auto next = [&] { return (state = state * 1664525u + 1013904223u) >> 16; };
  for (int64_t i = 0; i < set.count; ++i) {
    const int64_t at = 1 + static_cast<int64_t>(next() % 6);
    const auto value = static_cast<uint8_t>(180 + next() % 76);
    for (int64_t k = 0; k < 8; ++k) {
      const int64_t pixel = (i % 2 == 0) ? at * 8 + k : k * 8 + at;
      set.pixels[static_cast<size_t>(i * 64 + pixel)] = value;
    }
    set.labels[static_cast<size_t>(i)] = i % 2;
  }
  return set;
}

struct Fitted {
  vaelab::PluginPtr<vaelab::Backend> backend;
  vaelab::PluginPtr<vaelab::Generator> generator;
};

Fitted make(const std::string& config) {
  Fitted f{vaelab::testing::single_thread_cpu(), registry().create<vaelab::Generator>("gen-diffusion", config)};
  f.generator->attach(*f.backend);
  return f;
}

Fitted fitted(const std::string& config, int64_t steps, std::vector<double>* losses = nullptr) {
  Fitted f = make(config);
  vaelab::FitBudget budget;
  budget.steps = steps;
  f.generator->fit(bars(), budget, [&](int64_t, int64_t, double loss) {
    if (losses != nullptr) losses->push_back(loss);
    return true;
  });
  return f;
}

nlohmann::json describe(vaelab::Generator& g) { return nlohmann::json::parse(g.describe()); }

double window_mean(const std::vector<double>& v, size_t from, size_t count) {
  double sum = 0;
  for (size_t i = from; i < from + count; ++i) sum += v.at(i);
  return sum / static_cast<double>(count);
}

int max_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, size_t a0, size_t b0,
                   size_t n) {
  int worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(int{a.at(a0 + i)} - int{b.at(b0 + i)}));
  return worst;
}

/// A fresh, empty folder under the system's temporary directory.
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("vaelab-gen-diffusion-test-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("gen-diffusion fitting lowers the EDM loss", "[gen-diffusion]") {
  for (const std::string space : {"pixel", "pca"}) {
    INFO("space = " << space);
    std::vector<double> losses;
    Fitted f = fitted(tiny_config("space = \"" + space + "\"\n"), 400, &losses);
    REQUIRE(losses.size() == 400);
    // The output layer starts at zero, so the first losses are those of D = c_skip·x (≈ 1).
    const double first = window_mean(losses, 0, 50), last = window_mean(losses, 350, 50);
    INFO("mean loss over the first 50 steps " << first << ", over the last 50 " << last);
    CHECK(last < 0.8 * first);
    const auto d = describe(*f.generator);
    CHECK(d["fit_steps"] == 400);
    CHECK(d["space"] == space);
    CHECK(d["parameters"].get<int64_t>() > 0);
    CHECK(d["fit_seconds"].get<double>() > 0);
  }
}

TEST_CASE("gen-diffusion fits with the U-Net denoiser", "[gen-diffusion]") {
  std::vector<double> losses;
  Fitted f = fitted(tiny_config("space = \"pixel\"\nnetwork = \"unet\"\nunet_channels = 8\n"
                                "unet_multipliers = [1, 2]\nunet_attention = [1]\nbatch_size = 8\n"),
                    60, &losses);
  CHECK(window_mean(losses, 40, 20) < 0.8 * window_mean(losses, 0, 20));
  const vaelab::ImageSet s = f.generator->sample(2, 0);
  CHECK(s.count == 2);
  CHECK(s.pixels.size() == 2 * 64);
}

TEST_CASE("gen-diffusion samples have the training shape, uint8 pixels and no labels", "[gen-diffusion]") {
  Fitted f = fitted(tiny_config("space = \"pca\"\n"), 200);
  const vaelab::ImageSet s = f.generator->sample(7, 40);
  REQUIRE(s.count == 7);
  REQUIRE(s.channels == 1);
  REQUIRE(s.height == 8);
  REQUIRE(s.width == 8);
  REQUIRE(s.pixels.size() == 7 * 64);
  REQUIRE(s.labels == std::vector<int64_t>(7, -1));
  // Bars on black: the samples use both ends of the grey range, not one flat value.
  const auto [lo, hi] = std::minmax_element(s.pixels.begin(), s.pixels.end());
  CHECK(*lo < 40);
  CHECK(*hi > 150);
  const vaelab::ImageSet other = f.generator->sample(7, 41);
  CHECK(other.pixels != s.pixels);
  CHECK(f.generator->sample(0, 0).count == 0);
}

TEST_CASE("the same seed gives the same image whatever the batch", "[gen-diffusion]") {
  // Each image's noise comes from its own seed; only the network's matrix products see the batch,
  // and a BLAS may block them differently by batch size, so ±1 grey level is allowed.
  for (const std::string space : {"pixel", "pca"}) {
    INFO("space = " << space);
    Fitted f = fitted(tiny_config("space = \"" + space + "\"\n"), 30);
    const vaelab::ImageSet five = f.generator->sample(5, 100);
    const vaelab::ImageSet alone = f.generator->sample(1, 103);
    CHECK(max_difference(five.pixels, alone.pixels, 3 * 64, 0, 64) <= 1);
    CHECK(max_difference(five.pixels, five.pixels, 0, 64, 64) > 1);  // neighbours differ
    // sample_batch splits the work, not the results.
    Fitted split = fitted(tiny_config("space = \"" + space + "\"\nsample_batch = 2\n"), 30);
    const vaelab::ImageSet chunked = split.generator->sample(5, 100);
    CHECK(max_difference(five.pixels, chunked.pixels, 0, 0, 5 * 64) <= 1);
  }
}

TEST_CASE("gen-diffusion save and load reproduce the samples exactly", "[gen-diffusion]") {
  for (const std::string space : {"pixel", "pca"}) {
    INFO("space = " << space);
    const fs::path dir = scratch("roundtrip-" + space);
    Fitted f = fitted(tiny_config("space = \"" + space + "\"\n"), 40);
    f.generator->save(dir.string());
    REQUIRE(fs::exists(dir / "network.safetensors"));
    REQUIRE(fs::exists(dir / "training.safetensors"));
    REQUIRE(fs::exists(dir / "state.json"));
    REQUIRE(fs::exists(dir / "pca.safetensors") == (space == "pca"));
    for (const auto& entry : fs::directory_iterator(dir)) {
      CHECK(entry.path().filename().string().find("tmp") == std::string::npos);  // no leftovers
    }
    // Different architecture keys in the loading config: the folder's own network wins.
    Fitted g = make(tiny_config("mlp_width = 20\n"));
    g.generator->load(dir.string());
    CHECK(g.generator->sample(4, 9).pixels == f.generator->sample(4, 9).pixels);
    CHECK(describe(*g.generator)["fit_steps"] == 40);
    CHECK(describe(*g.generator)["parameters"] == describe(*f.generator)["parameters"]);
    fs::remove_all(dir);
  }
}

TEST_CASE("gen-diffusion load names a missing or mismatched file", "[gen-diffusion]") {
  const fs::path dir = scratch("broken");
  Fitted f = fitted(tiny_config(), 5);
  f.generator->save(dir.string());
  Fitted other = fitted(tiny_config(), 7);
  const fs::path other_dir = scratch("broken-other");
  other.generator->save(other_dir.string());
  // A file from another save (step 7) beside state.json of step 5.
  fs::copy_file(other_dir / "pca.safetensors", dir / "pca.safetensors", fs::copy_options::overwrite_existing);
  Fitted g = make(tiny_config());
  REQUIRE_THROWS_WITH(g.generator->load(dir.string()), Contains("pca.safetensors") && Contains("step 7"));
  fs::remove(dir / "training.safetensors");
  Fitted h = make(tiny_config());
  REQUIRE_THROWS_WITH(h.generator->load(dir.string()), Contains("training.safetensors"));
  std::ofstream(dir / "state.json") << "{ not json";
  Fitted k = make(tiny_config());
  REQUIRE_THROWS_WITH(k.generator->load(dir.string()), Contains("state.json"));
  fs::remove_all(dir);
  fs::remove_all(other_dir);
}

TEST_CASE("a fit resumed after load continues the step counter and matches an unbroken fit", "[gen-diffusion]") {
  // With dropout too: its masks come from each step's own seed, not from the global generator.
  const std::string extra = GENERATE(std::string(), std::string("dropout = 0.2\n"));
  INFO("extra config: " << extra);
  const fs::path dir = scratch("resume");
  Fitted straight = fitted(tiny_config(extra), 30);

  Fitted first = fitted(tiny_config(extra), 12);
  first.generator->save(dir.string());
  Fitted resumed = make(tiny_config(extra));
  resumed.generator->load(dir.string());
  std::vector<int64_t> steps_seen;
  vaelab::FitBudget budget;
  budget.steps = 30;
  resumed.generator->fit(bars(), budget, [&](int64_t step, int64_t total, double) {
    steps_seen.push_back(step);
    CHECK(total == 30);
    return true;
  });
  REQUIRE(steps_seen.size() == 18);
  CHECK(steps_seen.front() == 13);
  CHECK(steps_seen.back() == 30);
  CHECK(describe(*resumed.generator)["fit_steps"] == 30);
  // Adam's moments, the EMA and the per-step noise all carry over: the same weights result.
  CHECK(resumed.generator->sample(3, 5).pixels == straight.generator->sample(3, 5).pixels);
  fs::remove_all(dir);
}

TEST_CASE("gen-diffusion dropout acts in training only, for both networks", "[gen-diffusion]") {
  const std::string unet =
      "space = \"pixel\"\nnetwork = \"unet\"\nunet_channels = 8\nunet_multipliers = [1, 2]\n"
      "unet_attention = []\nbatch_size = 8\n";
  for (const std::string& network : {std::string(), unet}) {
    INFO("network config: " << (network.empty() ? "mlp" : network));
    std::vector<double> plain_losses, dropped_losses;
    Fitted plain = fitted(tiny_config(network), 20, &plain_losses);
    Fitted dropped = fitted(tiny_config(network + "dropout = 0.5\n"), 20, &dropped_losses);
    Fitted again = fitted(tiny_config(network + "dropout = 0.5\n"), 20);
    // Step 1 starts from the same zero output layer, so its loss cannot tell; later steps can.
    CHECK(plain_losses.at(0) == dropped_losses.at(0));
    CHECK(plain_losses.back() != dropped_losses.back());
    // The same seed draws the same masks: two fits agree to the byte.
    CHECK(dropped.generator->sample(3, 1).pixels == again.generator->sample(3, 1).pixels);
    // Sampling is deterministic (no masks): the same seed twice gives the same images.
    CHECK(dropped.generator->sample(2, 4).pixels == dropped.generator->sample(2, 4).pixels);
  }
}

TEST_CASE("gen-diffusion fit stops when asked and checkpoints where it stopped", "[gen-diffusion]") {
  const fs::path dir = scratch("stop");
  Fitted f = make(tiny_config());
  vaelab::FitBudget budget;
  budget.steps = 50;
  budget.checkpoint_directory = dir.string();
  f.generator->fit(bars(), budget, [](int64_t step, int64_t, double) { return step < 8; });
  CHECK(describe(*f.generator)["fit_steps"] == 8);
  std::ifstream in(dir / "state.json");
  const auto state = nlohmann::json::parse(in);
  CHECK(state["step"] == 8);
  fs::remove_all(dir);
}

TEST_CASE("gen-diffusion refuses bad configs and out-of-order calls", "[gen-diffusion]") {
  REQUIRE_THROWS_WITH(registry().create<vaelab::Generator>("gen-diffusion", "stesp = 3\n"),
                      Contains("stesp"));
  REQUIRE_THROWS_WITH(registry().create<vaelab::Generator>("gen-diffusion", "network = \"unet\"\nspace = \"pca\"\n"),
                      Contains("network") && Contains("pixel"));
  REQUIRE_THROWS_WITH(registry().create<vaelab::Generator>("gen-diffusion", "unet_attention = [5]\n"),
                      Contains("unet_attention"));
  REQUIRE_THROWS_WITH(registry().create<vaelab::Generator>("gen-diffusion", "dropout = 1.0\n"),
                      Contains("dropout"));
  Fitted f = make(tiny_config("pca_dims = 100\n"));
  REQUIRE_THROWS_WITH(f.generator->sample(1, 0), Contains("fitted or loaded"));
  REQUIRE_THROWS_WITH(f.generator->fit(bars(), {}, {}), Contains("pca_dims"));  // 100 > 64 pixels
}
