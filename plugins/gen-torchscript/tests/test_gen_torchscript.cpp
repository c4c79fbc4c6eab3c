// gen-torchscript through the plugin boundary. The TorchScript files are made here in C++
// (torch::jit::Module::define, then save), the way torch.jit.save writes them from Python.

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <vaelab/config.hpp>
#include <vaelab/generator.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/torch_shim.hpp>

#include "plugin_registry.hpp"
#include "scratch_folder.hpp"

using Catch::Contains;

namespace {

namespace fs = std::filesystem;

fs::path scratch() { return vaelab::testing::scratch_folder("vaelab-test-gen-torchscript"); }

/// The plugin's defaults with `overrides` (TOML) on top, as the host resolves a config.
std::string config(const std::string& overrides) {
  const auto& record =
      vaelab::testing::build_registry().find(VL_PLUGIN_KIND_GENERATOR, "gen-torchscript");
  const toml::table merged = vaelab::merge_tables(
      vaelab::parse_toml(record.defaults_toml, "defaults"), vaelab::parse_toml(overrides, "test"));
  return vaelab::format_toml(merged);
}

std::string toml_path(const fs::path& file) { return "path = \"" + file.string() + "\"\n"; }

struct Plugin {
  vaelab::PluginPtr<vaelab::Backend> backend = vaelab::testing::single_thread_cpu();
  vaelab::PluginPtr<vaelab::Generator> gen;
  explicit Plugin(const std::string& overrides) {
    gen = vaelab::testing::build_registry().create<vaelab::Generator>("gen-torchscript",
                                                                      config(overrides));
    gen->attach(*backend);
  }
};

/// The exact denoiser of data whose pixels are independent N(mean, std²):
/// E[x0 | x0 + σ n = x] = (std² x + σ² mean) / (std² + σ²).
fs::path gaussian_denoiser(double mean, double std) {
  const fs::path file = scratch() / "gaussian_denoiser.pt";
  torch::jit::Module m("GaussianDenoiser");
  m.register_buffer("mean", torch::tensor(mean, torch::kFloat32));
  m.register_buffer("var", torch::tensor(std * std, torch::kFloat32));
  m.define(R"(
def forward(self, x, sigma):
    s2 = (sigma * sigma).view(-1, 1, 1, 1)
    return (self.var * x + s2 * self.mean) / (self.var + s2)
)");
  m.save(file.string());
  return file;
}

/// z [B, 4] → tanh(z W) as [B, 1, 4, 4] images in [-1, 1] (or sigmoid, in [0, 1]).
fs::path linear_generator(const torch::Tensor& w, const std::string& squash,
                          const std::string& name) {
  const fs::path file = scratch() / name;
  torch::jit::Module m("LinearGenerator");
  m.register_parameter("w", w, false);
  m.define("def forward(self, z):\n    return torch." + squash +
           "(torch.matmul(z, self.w)).view(z.size(0), 1, 4, 4)\n");
  m.save(file.string());
  return file;
}

vaelab::ImageSet data(int64_t count, int64_t channels, int64_t side) {
  vaelab::ImageSet set;
  set.count = count;
  set.channels = channels;
  set.height = side;
  set.width = side;
  set.pixels.assign(static_cast<size_t>(count * channels * side * side), 128);
  set.labels.assign(static_cast<size_t>(count), -1);
  return set;
}

torch::Tensor as_unit(const vaelab::ImageSet& set) {
  return torch::from_blob(const_cast<uint8_t*>(set.pixels.data()),
                          {set.count, set.channels, set.height, set.width}, torch::kUInt8)
      .to(torch::kFloat64)
      .div(127.5)
      .sub(1.0);
}

std::vector<uint8_t> image(const vaelab::ImageSet& s, int64_t i) {
  const int64_t bytes = s.image_bytes();
  return std::vector<uint8_t>(s.pixels.begin() + i * bytes, s.pixels.begin() + (i + 1) * bytes);
}

}  // namespace

/// The standard deviation the deterministic Heun sampler (Karras et al. 2022, Algorithm 1, with
/// their σ schedule) gives for N(mean, std²) data and its exact denoiser. Along the ODE
/// dx/dσ = (x − D(x, σ))/σ = σ (x − mean)/(std² + σ²), y = x − mean scales linearly, so one number
/// follows it from y_0 = σ_max·n (std σ_max) to the end. The ODE itself ends at exactly `std`;
/// Heun's steps end a few per cent above it.
double heun_gaussian_std(double std, int64_t steps, double sigma_min, double sigma_max,
                         double rho) {
  std::vector<double> t;
  for (int64_t i = 0; i < steps; ++i) {
    const double a = std::pow(sigma_max, 1 / rho), b = std::pow(sigma_min, 1 / rho);
    t.push_back(
        std::pow(a + static_cast<double>(i) / static_cast<double>(steps - 1) * (b - a), rho));
  }
  t.push_back(0);
  const auto slope = [&](double y, double sigma) {
    return sigma * y / (std * std + sigma * sigma);
  };
  double y = sigma_max;
  for (int64_t i = 0; i < steps; ++i) {
    const double d = slope(y, t[i]), h = t[i + 1] - t[i];
    double next = y + h * d;
    if (t[i + 1] > 0) next = y + h * 0.5 * (d + slope(next, t[i + 1]));
    y = next;
  }
  return y;
}

TEST_CASE("gen-torchscript: an exact Gaussian denoiser samples the Gaussian", "[gen-torchscript]") {
  // With the optimal denoiser of N(0.1, 0.2²) pixels, the sampler's images must have that mean and
  // the spread Heun's discretization predicts (7.3% above 0.2 with 18 steps, 0.5% with 60); a wrong
  // noise scale, schedule or step shows up in one or the other. 400 images of 16 pixels: the
  // standard error of the std is 0.9%; the tails are 4.5σ from the clipping at ±1.
  const fs::path file = gaussian_denoiser(0.1, 0.2);
  for (const int64_t steps : {18, 60}) {
    Plugin p(toml_path(file) +
             "kind = \"denoiser\"\nbatch_size = 128\nsteps = " + std::to_string(steps) + "\n");
    p.gen->fit(data(3, 1, 4), {}, {});
    const vaelab::ImageSet s = p.gen->sample(400, 0);
    REQUIRE(s.count == 400);
    REQUIRE(s.channels == 1);
    REQUIRE(s.height == 4);
    REQUIRE(s.width == 4);
    REQUIRE(s.labels == std::vector<int64_t>(400, -1));
    const torch::Tensor x = as_unit(s);
    const double expected_std = heun_gaussian_std(0.2, steps, 0.002, 80.0, 7.0);
    INFO(steps << " steps: mean " << x.mean().item<double>() << ", std " << x.std().item<double>()
               << ", Heun's std " << expected_std);
    REQUIRE(x.mean().item<double>() == Approx(0.1).margin(0.01));
    REQUIRE(x.std().item<double>() == Approx(expected_std).epsilon(0.03));
    const auto d = nlohmann::json::parse(p.gen->describe());
    REQUIRE(d["kind"] == "denoiser");
    REQUIRE(d["network_evaluations_per_image"] == 2 * steps - 1);
    REQUIRE(d["image_shape"] == nlohmann::json({1, 4, 4}));
  }
}

TEST_CASE("gen-torchscript: a denoiser's image i depends on seed first_seed + i alone",
          "[gen-torchscript]") {
  for (const char* churn : {"0.0", "5.0"}) {
    Plugin p(toml_path(gaussian_denoiser(0.0, 0.5)) +
             "batch_size = 2\nsteps = 6\nchurn = " + churn + "\n");
    p.gen->fit(data(2, 3, 4), {}, {});
    const vaelab::ImageSet all = p.gen->sample(5, 10);  // batches of 2, 2 and 1
    REQUIRE(all.channels == 3);
    REQUIRE(image(p.gen->sample(1, 13), 0) == image(all, 3));
    const vaelab::ImageSet pair = p.gen->sample(2, 11);
    REQUIRE(image(pair, 0) == image(all, 1));
    REQUIRE(image(pair, 1) == image(all, 2));
    REQUIRE(image(all, 0) != image(all, 1));
  }
}

TEST_CASE("gen-torchscript: a generator maps each seed's latent to its image",
          "[gen-torchscript]") {
  const torch::Tensor w = torch::linspace(-1, 1, 64).view({4, 16});
  for (const std::string range : {"[-1, 1]", "[0, 1]"}) {
    const bool unit = range == "[0, 1]";
    const fs::path file =
        linear_generator(w, unit ? "sigmoid" : "tanh", unit ? "sig.pt" : "tanh.pt");
    Plugin p(toml_path(file) +
             "kind = \"generator\"\nlatent_shape = [4]\nbatch_size = 3\noutput_range = \"" + range +
             "\"\n");
    p.gen->fit(data(5, 1, 4), {}, {});
    const vaelab::ImageSet s = p.gen->sample(7, 40);
    REQUIRE(s.count == 7);
    REQUIRE(s.pixels.size() == 7 * 16);
    for (int64_t i = 0; i < 7; ++i) {
      at::Generator gen = vaelab::shim::make_cpu_generator(40 + static_cast<uint64_t>(i));
      const torch::Tensor z = at::randn({4}, gen);
      const torch::Tensor y =
          unit ? torch::sigmoid(torch::matmul(z, w)) : (torch::tanh(torch::matmul(z, w)) + 1) / 2;
      const torch::Tensor expected = y.mul(255).round().to(torch::kInt32);
      const torch::Tensor got = torch::tensor(image(s, i)).to(torch::kInt32);
      REQUIRE((got - expected).abs().max().item<int>() <= 1);
    }
    REQUIRE(image(p.gen->sample(1, 45), 0) == image(s, 5));
    const auto d = nlohmann::json::parse(p.gen->describe());
    REQUIRE(d["parameters"] == 64);
    REQUIRE(d["output_range"] == range);
  }
}

TEST_CASE("gen-torchscript: save and load keep the record and refuse a changed file",
          "[gen-torchscript]") {
  const fs::path file = scratch() / "copy.pt";
  fs::copy_file(gaussian_denoiser(0.1, 0.4), file, fs::copy_options::overwrite_existing);
  const std::string overrides = toml_path(file) + "steps = 4\n";
  const fs::path dir = scratch() / "saved";
  fs::create_directories(dir);
  Plugin fitted(overrides);
  fitted.gen->fit(data(2, 1, 8), {}, {});
  fitted.gen->save(dir.string());

  std::ifstream in(dir / "torchscript.json");
  const auto record = nlohmann::json::parse(in);
  REQUIRE(record["path"] == fs::absolute(file).lexically_normal().string());
  REQUIRE(record["bytes"] == fs::file_size(file));
  REQUIRE(record["crc32"].get<std::string>().size() == 8);

  Plugin loaded(overrides);
  loaded.gen->load(dir.string());
  REQUIRE(loaded.gen->sample(6, 3).pixels == fitted.gen->sample(6, 3).pixels);
  // The recorded path serves when the config gives none.
  Plugin by_record("steps = 4\n");
  by_record.gen->load(dir.string());
  REQUIRE(by_record.gen->sample(2, 3).pixels == fitted.gen->sample(2, 3).pixels);

  fs::copy_file(gaussian_denoiser(0.1, 0.5), file, fs::copy_options::overwrite_existing);
  REQUIRE_THROWS_WITH(Plugin(overrides).gen->load(dir.string()),
                      Contains("copy.pt") && Contains("changed since it was checked"));
  REQUIRE_THROWS_WITH(Plugin(overrides + "kind = \"generator\"\n").gen->load(dir.string()),
                      Contains("torchscript.json") && Contains("kind"));
  REQUIRE_THROWS_WITH(Plugin(overrides).gen->load((scratch() / "nothing").string()),
                      Contains("torchscript.json"));
}

TEST_CASE("gen-torchscript: broken files are refused with the file named", "[gen-torchscript]") {
  const auto fit_with = [](const std::string& overrides, const vaelab::ImageSet& set) {
    Plugin p(overrides);
    p.gen->fit(set, {}, {});
  };
  const vaelab::ImageSet images = data(2, 1, 4);

  const fs::path missing = scratch() / "missing.pt";
  REQUIRE_THROWS_WITH(fit_with(toml_path(missing), images),
                      Contains("missing.pt") && Contains("no such file"));
  REQUIRE_THROWS_WITH(fit_with("", images), Contains("path"));

  const fs::path garbage = scratch() / "garbage.pt";
  std::ofstream(garbage) << "this is not a zip archive";
  REQUIRE_THROWS_WITH(fit_with(toml_path(garbage), images),
                      Contains("garbage.pt") && Contains("not a TorchScript file"));

  const fs::path no_forward = scratch() / "no_forward.pt";
  {
    torch::jit::Module m("NoForward");
    m.define("def other(self, x):\n    return x\n");
    m.save(no_forward.string());
  }
  REQUIRE_THROWS_WITH(fit_with(toml_path(no_forward), images),
                      Contains("no_forward.pt") && Contains("no forward method"));

  const fs::path one_argument = scratch() / "one_argument.pt";
  {
    torch::jit::Module m("OneArgument");
    m.define("def forward(self, x):\n    return x\n");
    m.save(one_argument.string());
  }
  REQUIRE_THROWS_WITH(fit_with(toml_path(one_argument), images),
                      Contains("one_argument.pt") && Contains("(x, sigma)"));

  const fs::path wrong_shape = scratch() / "wrong_shape.pt";
  {
    torch::jit::Module m("WrongShape");
    m.define("def forward(self, x, sigma):\n    return x[:, :, :, 1:]\n");
    m.save(wrong_shape.string());
  }
  REQUIRE_THROWS_WITH(fit_with(toml_path(wrong_shape), images), Contains("wrong_shape.pt") &&
                                                                    Contains("[2, 1, 4, 3]") &&
                                                                    Contains("[2, 1, 4, 4]"));

  // A generator whose latents do not fit its weights: forward itself fails.
  const fs::path gen = linear_generator(torch::zeros({4, 16}), "tanh", "gen.pt");
  REQUIRE_THROWS_WITH(
      fit_with(toml_path(gen) + "kind = \"generator\"\nlatent_shape = [5]\n", images),
      Contains("gen.pt") && Contains("forward failed"));
  // ... or its images are not the data's shape.
  REQUIRE_THROWS_WITH(
      fit_with(toml_path(gen) + "kind = \"generator\"\nlatent_shape = [4]\n", data(2, 1, 8)),
      Contains("gen.pt") && Contains("[2, 1, 4, 4]") && Contains("[2, 1, 8, 8]"));

  Plugin unfitted(toml_path(gen));
  REQUIRE_THROWS_WITH(unfitted.gen->sample(1, 0), Contains("fit() or load()"));
  REQUIRE_THROWS_WITH(vaelab::testing::build_registry().create<vaelab::Generator>(
                          "gen-torchscript", config("kind = \"gan\"\n")),
                      Contains("kind"));
}
