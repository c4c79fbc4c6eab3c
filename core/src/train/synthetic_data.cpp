// Stage 3 of a run, synthetic data (docs/architecture.md): the synthetic and mixed regimes' images
// from a sample pool (generator.pool) or a fitted generator (generator.directory), sampled once
// (k × |D_train| images) or fresh every effective epoch, preprocessed like the real images. The
// training stream (train/training_stream.cpp) mixes them with the real ones.
#include <vaelab/train/synthetic_data.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <vector>

#include <torch/torch.h>

#include <vaelab/clock.hpp>
#include <vaelab/error.hpp>
#include <vaelab/io/pool.hpp>
#include <vaelab/log.hpp>

namespace fs = std::filesystem;

namespace vaelab {
namespace {

/// Synthetic images must have the training images' shape.
void check_image_shape(const ImageSet& real, int64_t c, int64_t h, int64_t w, const std::string& what) {
  if (c != real.channels || h != real.height || w != real.width) {
    throw Error(what + " holds " + std::to_string(c) + "x" + std::to_string(h) + "x" +
                std::to_string(w) + " images but the training images are " +
                std::to_string(real.channels) + "x" + std::to_string(real.height) + "x" +
                std::to_string(real.width));
  }
}

/// `n` images sampled with seeds first_seed, ..., preprocessed like the real ones, which they
/// must match in shape.
torch::Tensor sample_preprocessed(Generator& generator, uint64_t first_seed, int64_t n,
                                  const std::string& binarize, const ImageSet& real) {
  std::vector<torch::Tensor> parts;
  constexpr int64_t kChunk = 1000;
  for (int64_t done = 0; done < n; done += kChunk) {
    const int64_t m = std::min(kChunk, n - done);
    const ImageSet images = generator.sample(m, first_seed + static_cast<uint64_t>(done));
    check_image_shape(real, images.channels, images.height, images.width, "the generator's sample");
    if (images.count != m) throw Error("the generator returned " + std::to_string(images.count) +
                                       " images for " + std::to_string(m));
    parts.push_back(to_float_images(images, binarize));
  }
  return parts.empty() ? torch::Tensor() : torch::cat(parts);
}

void require_8bit(const RunConfig& config, const Session& s) {
  if (s.dataset.train.continuous()) {
    throw ConfigError("the synthetic and mixed regimes need 8-bit images; data.plugin = \"" +
                      config.plugin("data") + "\" gives continuous ones");
  }
}

/// Takes k × |D_train| images ([train.synthetic] k) from generator.pool (a pool file) or samples
/// them from generator.directory (a fitted generator) with seeds first_seed, first_seed + 1, ...
SyntheticData load_synthetic(const RunConfig& config, Session& s) {
  const ConfigTable gen_cfg = config.section("generator");
  const ConfigTable syn_cfg = config.section("train").sub("synthetic");
  const std::string pool = gen_cfg.get_string("pool");
  const std::string directory = gen_cfg.get_string("directory");
  if (pool.empty() == directory.empty()) {
    throw ConfigError("train.regime = \"" + config.section("train").get_string("regime") +
                      "\" needs exactly one of generator.pool (a sample pool file) and "
                      "generator.directory (a fitted generator)");
  }
  const int64_t k = syn_cfg.get_int_in("k", 1, 1000000);
  const auto first_seed = static_cast<uint64_t>(syn_cfg.get_int_in("first_seed", 0, INT64_MAX));
  const int64_t needed = k * s.dataset.train.count;
  const std::string binarize = config.section("data").get_string("binarize");
  const ImageSet& real = s.dataset.train;

  require_8bit(config, s);
  const auto start = std::chrono::steady_clock::now();
  SyntheticData out;
  if (!pool.empty()) {
    const PoolReader reader(pool);
    const PoolHeader& h = reader.header();
    check_image_shape(real, h.channels, h.height, h.width, "pool " + pool);
    if (reader.count() < needed) {
      throw ConfigError("pool " + pool + " holds " + std::to_string(reader.count()) +
                        " images; train.synthetic.k = " + std::to_string(k) + " needs k x " +
                        std::to_string(real.count) + " = " + std::to_string(needed));
    }
    const int64_t first = static_cast<int64_t>(first_seed % static_cast<uint64_t>(reader.count()));
    if (first + needed > reader.count()) {
      throw ConfigError("pool " + pool + ": train.synthetic.first_seed = " + std::to_string(first) +
                        " leaves fewer than the " + std::to_string(needed) + " images needed");
    }
    out.images = to_float_images(reader.read(first, needed), binarize);
    out.source = pool;
    logger().info("synthetic: {} images from pool {} ({} {})", needed, pool, h.generator,
                  h.generator_version);
  } else {
    std::string name;
    PluginPtr<Generator> generator = open_generator(directory, *s.backend, name);
    out.images = sample_preprocessed(*generator, first_seed, needed, binarize, real);
    out.source = directory;
    logger().info("synthetic: sampled {} images from {} ({}) in {:.1f} s", needed, directory, name,
                  seconds_since(start));
  }
  out.count = needed;
  out.seconds = seconds_since(start);
  return out;
}

/// A fitted generator sampled anew every effective epoch, in the background.
SyntheticData fresh_synthetic(const RunConfig& config, Session& s, int64_t epochs) {
  const ConfigTable train_cfg = config.section("train");
  const std::string regime = train_cfg.get_string("regime");
  const std::string directory = config.section("generator").get_string("directory");
  if (directory.empty()) {
    throw ConfigError("train.synthetic.fresh = true samples a fitted generator every epoch: set "
                      "generator.directory (a pool file cannot make new images)");
  }
  require_8bit(config, s);
  SyntheticData out;
  std::string name;
  out.generator = open_generator(directory, *s.backend, name);
  const std::string binarize = config.section("data").get_string("binarize");
  const ImageSet& real = s.dataset.train;
  Generator* gen = out.generator.get();
  out.producer = [gen, binarize, &real](uint64_t first, int64_t n) {
    return sample_preprocessed(*gen, first, n, binarize, real);
  };
  out.first_seed = static_cast<uint64_t>(train_cfg.sub("synthetic").get_int_in("first_seed", 0, INT64_MAX));
  out.source = directory + " (fresh every epoch)";
  const double real_fraction =
      regime == "mixed" ? train_cfg.sub("mixed").get_double("real_fraction") : 0.0;
  const int64_t per_epoch =
      s.train.size(0) - static_cast<int64_t>(std::llround(real_fraction * static_cast<double>(s.train.size(0))));
  out.count = per_epoch * epochs;
  logger().info("synthetic: fresh samples from {} ({}) every epoch, made in the background", directory, name);
  return out;
}

}  // namespace

PluginPtr<Generator> open_generator(const std::string& directory, Backend& backend,
                                    std::string& name) {
  const fs::path gen_config_file = fs::path(directory) / "config.toml";
  if (!fs::is_regular_file(gen_config_file)) {
    throw ConfigError("generator.directory = \"" + directory + "\": " + gen_config_file.string() +
                      " not found (make one with vaelab generator fit)");
  }
  const RunConfig gen_run = RunConfig::load(gen_config_file, {});
  name = gen_run.plugin("generator");
  PluginPtr<Generator> generator =
      gen_run.registry().create<Generator>(name, gen_run.plugin_config("generator"));
  generator->attach(backend);
  generator->load(directory);
  return generator;
}

SyntheticData open_synthetic_data(const RunConfig& config, Session& s, int64_t epochs) {
  const ConfigTable train_cfg = config.section("train");
  if (!regime_needs_synthetic(train_cfg.get_string("regime"))) return {};
  if (train_cfg.sub("synthetic").get_bool("fresh")) return fresh_synthetic(config, s, epochs);
  return load_synthetic(config, s);
}

}  // namespace vaelab
