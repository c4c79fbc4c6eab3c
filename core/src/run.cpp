#include <vaelab/clock.hpp>
#include <vaelab/train/run.hpp>
#include <vaelab/train/session.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <sstream>
#include <ctime>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/build_info.h>
#include <vaelab/data_source.hpp>
#include <vaelab/generator.hpp>
#include <vaelab/io/image_grid.hpp>
#include <vaelab/io/pool.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/log.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/metrics/iwae.hpp>
#include <vaelab/model.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/checkpoint.hpp>
#include <vaelab/train/distributed.hpp>
#include <vaelab/train/trainer.hpp>
#include <vaelab/train/training_stream.hpp>
#include <vaelab_core_defaults.h>

namespace fs = std::filesystem;

namespace vaelab {
namespace {

struct PluginSection {
  const char* section;
  vl_plugin_kind kind;
};
constexpr PluginSection kPluginSections[] = {
    {"data", VL_PLUGIN_KIND_DATA_SOURCE},
    {"model", VL_PLUGIN_KIND_MODEL},
    {"backend", VL_PLUGIN_KIND_BACKEND},
    {"generator", VL_PLUGIN_KIND_GENERATOR},  // optional: plugin = "" means none
};

bool is_plugin_key(const std::string& key) {
  for (const auto& s : kPluginSections) {
    if (key.rfind(std::string(s.section) + ".config.", 0) == 0) return true;
  }
  return false;
}

/// uint8 images → float [N, C, H, W] in [0, 1] (or {0, 1} when binarized): the Preprocess step.
/// Continuous images (ImageSet::values) are taken as they are.
/// `count` 8-bit images at `pixels` (C×H×W each, not copied) → float, as to_float_images.
torch::Tensor bytes_to_float(const uint8_t* pixels, int64_t count, int64_t channels, int64_t height,
                             int64_t width, const std::string& binarize) {
  const torch::Tensor bytes = torch::from_blob(const_cast<uint8_t*>(pixels),
                                               {count, channels, height, width}, torch::kUInt8);
  if (binarize == "threshold") return bytes.ge(128).to(torch::kFloat32);
  return bytes.to(torch::kFloat32).div_(255.0);
}

/// Images [first, first + count) of `images`, preprocessed (a copy).
torch::Tensor to_float_range(const ImageSet& images, int64_t first, int64_t count,
                             const std::string& binarize) {
  const int64_t size = images.image_bytes();
  if (images.continuous()) {
    return torch::from_blob(const_cast<float*>(images.values.data() + first * size),
                            {count, images.channels, images.height, images.width},
                            torch::kFloat32)
        .clone();
  }
  return bytes_to_float(images.pixels.data() + first * size, count, images.channels,
                        images.height, images.width, binarize);
}

torch::Tensor to_float_images(const ImageSet& images, const std::string& binarize) {
  return to_float_range(images, 0, images.count, binarize);
}

/// `backend.plugin = "auto"`: the accepted backend with the highest probe preference (torch-cuda,
/// then onednn-cpu, then torch-cpu) that can be created here with its defaults. The choice is
/// written into the resolved config (the run's config.toml names the backend that ran).
std::string choose_backend(const Registry& registry) {
  std::vector<const PluginRecord*> candidates;
  for (const auto& r : registry.records()) {
    if (r.ok() && r.kind == VL_PLUGIN_KIND_BACKEND) candidates.push_back(&r);
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const PluginRecord* a, const PluginRecord* b) { return a->preference > b->preference; });
  std::string passed_over;
  for (const PluginRecord* r : candidates) {
    try {
      registry.create<Backend>(r->name, r->defaults_toml);
      logger().info("backend plugin = \"auto\": {}{}", r->name,
                    passed_over.empty() ? "" : " (passed over: " + passed_over + ")");
      return r->name;
    } catch (const Error& e) {
      passed_over += (passed_over.empty() ? "" : "; ") + r->name + ": " + e.what();
    }
  }
  throw ConfigError("backend.plugin = \"auto\": no backend can run here" +
                    (passed_over.empty() ? std::string(" (none was found)") : ": " + passed_over));
}

}  // namespace

OpenedData open_dataset(const RunConfig& config) {
  const ConfigTable data_cfg = config.section("data");
  OpenedData d;
  d.source = config.registry().create<DataSource>(config.plugin("data"), config.plugin_config("data"));
  d.dataset = d.source->open();
  const int64_t holdout = data_cfg.get_int_in("holdout_label", -1, INT64_MAX);
  if (holdout >= 0) {
    const ImageSet held_train = take_label(d.dataset.train, holdout);
    d.anomalies = take_label(d.dataset.test, holdout);
    if (held_train.count == 0 && d.anomalies.count == 0) {
      throw ConfigError("data.holdout_label = " + std::to_string(holdout) + ": no image of " + d.dataset.name +
                        " has this label");
    }
    logger().info("data.holdout_label {}: {} training images held out; {} test images are the anomalies",
                  holdout, held_train.count, d.anomalies.count);
  }
  const auto subset_seed = static_cast<uint64_t>(data_cfg.get_int("subset_seed"));
  select_subset(d.dataset.train, data_cfg.get_int_in("train_size", 0, INT64_MAX), subset_seed);
  select_subset(d.dataset.test, data_cfg.get_int_in("test_size", 0, INT64_MAX), subset_seed + 1);
  return d;
}

Session open_session(const RunConfig& config, bool preprocess) {
  const Registry& registry = config.registry();
  const ConfigTable data_cfg = config.section("data");
  const ConfigTable train_cfg = config.section("train");
  const ConfigTable eval_cfg = config.section("eval");
  Session s;

  // Backend: device and threads, before any compute.
  s.backend = registry.create<Backend>(config.plugin("backend"), config.plugin_config("backend"));
  s.backend->apply_threads();
  logger().info("backend {}: {}", config.plugin("backend"), s.backend->describe());

  // Likelihood and preprocessing settings are checked before the data is read.
  s.likelihood = make_likelihood(config.section("likelihood"));
  const std::string binarize = data_cfg.get_choice("binarize", {"none", "threshold"});
  if (s.likelihood->needs_binary_data() && binarize == "none") {
    throw ConfigError("likelihood.name = \"" + s.likelihood->name() +
                      "\" needs binary data: set data.binarize = \"threshold\"");
  }

  // Data source → Dataset → subsets → Preprocess.
  OpenedData data = open_dataset(config);
  s.source = std::move(data.source);
  s.dataset = std::move(data.dataset);
  const ImageSet anomalies = std::move(data.anomalies);
  const auto subset_seed = static_cast<uint64_t>(data_cfg.get_int("subset_seed"));
  if (s.dataset.train.continuous() || s.dataset.test.continuous()) {
    // Continuous images have no 8-bit grid: only a density on the reals fits them.
    if (s.likelihood->discrete() || s.likelihood->needs_binary_data() || binarize != "none") {
      throw ConfigError("data.plugin = \"" + config.plugin("data") +
                        "\" gives continuous images: use likelihood.name = \"gaussian\" and "
                        "data.binarize = \"none\"");
    }
  }
  s.test_exact_log_likelihood = s.source->exact_log_likelihood(s.dataset.test);
  s.test_labels = s.dataset.test.labels;
  const int64_t train_subset = eval_cfg.get_int_in("train_subset", 0, INT64_MAX);
  // Without preprocessing the caller converts what it needs, batch by batch (vaelab score).
  if (preprocess) {
    s.train = to_float_images(s.dataset.train, binarize);
    s.test = to_float_images(s.dataset.test, binarize);
    if (anomalies.count > 0) s.anomalies = to_float_images(anomalies, binarize);
    s.train_eval = s.train;
    if (train_subset > 0 && train_subset < s.dataset.train.count) {
      ImageSet subset = s.dataset.train;
      select_subset(subset, train_subset, subset_seed + 2);
      s.train_eval = to_float_images(subset, binarize);
    }
  }
  logger().info("data {}: {} train / {} test images of {}x{}x{}", s.dataset.name,
                s.dataset.train.count, s.dataset.test.count, s.dataset.train.channels,
                s.dataset.train.height, s.dataset.train.width);

  // Model, built through the backend's layer factory after seeding.
  torch::manual_seed(static_cast<uint64_t>(train_cfg.get_int("seed")));
  s.model = registry.create<Model>(config.plugin("model"), config.plugin_config("model"));
  ModelSpec spec;
  spec.channels = s.dataset.train.channels;
  spec.height = s.dataset.train.height;
  spec.width = s.dataset.train.width;
  spec.param_channels = s.likelihood->param_channels(spec.channels);
  s.model->build(spec, *s.backend);
  s.model->module().to(s.backend->device());

  // Exact parameter counts: Θ_z (layers touching z) and the rest.
  std::map<std::string, int64_t> sizes;
  for (const auto& p : s.model->module().named_parameters(true)) {
    sizes[p.key()] = p.value().numel();
    s.params_total += p.value().numel();
  }
  for (const auto& name : s.model->latent_adjacent_parameters()) {
    const auto it = sizes.find(name);
    if (it == sizes.end()) {
      throw Error("model plugin '" + config.plugin("model") + "' names Θ_z parameter '" + name +
                  "', which the model does not have");
    }
    s.params_latent_adjacent += it->second;
  }
  return s;
}

EvalData eval_data(const Session& s) {
  EvalData d;
  d.train = s.train_eval;
  d.test = s.test;
  d.test_labels = s.test_labels;
  d.anomalies = s.anomalies;
  d.test_exact_log_likelihood = s.test_exact_log_likelihood;
  d.continuous = s.dataset.test.continuous();
  return d;
}

namespace {

TrainOptions train_options(const RunConfig& config) {
  const ConfigTable train = config.section("train");
  TrainOptions o;
  o.epochs = train.get_int_in("epochs", 1, 1000000);
  o.lr = train.get_double("lr");
  o.eval_every_epochs = config.section("eval").get_int_in("every_epochs", 1, 1000000);
  const ConfigTable checkpoint = train.sub("checkpoint");
  o.checkpoint.every_epochs = checkpoint.get_int_in("every_epochs", 0, 1000000);
  o.checkpoint.every_steps = checkpoint.get_int_in("every_steps", 0, INT64_MAX);
  o.checkpoint.every_minutes = checkpoint.get_double("every_minutes");
  if (!(o.checkpoint.every_minutes >= 0)) {
    throw ConfigError(checkpoint.key_path("every_minutes") + ": must be 0 (off) or more");
  }
  const ConfigTable nonfinite = train.sub("nonfinite");
  o.nonfinite = nonfinite.get_choice("policy", {"stop", "skip"}) == "skip" ? NonfinitePolicy::skip
                                                                            : NonfinitePolicy::stop;
  o.max_skips_in_row = nonfinite.get_int_in("max_skips_in_row", 1, 1000000);
  return o;
}

Evaluator make_evaluator(const RunConfig& config, Session& s) {
  return Evaluator(*s.model, *s.likelihood, s.backend->device(), config.section("eval"),
                   static_cast<uint64_t>(config.section("train").get_int("seed")));
}

/// What augmented images are brought back to: the grid the likelihood needs.
PixelGrid pixel_grid(const RunConfig& config, const Likelihood& likelihood) {
  if (config.section("data").get_string("binarize") == "threshold") return PixelGrid::binary;
  return likelihood.discrete() ? PixelGrid::bytes : PixelGrid::continuous;
}

/// The synthetic images of the synthetic and mixed regimes, preprocessed like the real ones.
struct SyntheticImages {
  torch::Tensor images;
  std::string source;   ///< the pool file or generator folder
  int64_t count = 0;    ///< distinct synthetic images the run trains on
  double seconds = 0;   ///< reading or sampling them
};

/// Synthetic images must have the training images' shape.
void check_image_shape(const ImageSet& real, int64_t c, int64_t h, int64_t w, const std::string& what) {
  if (c != real.channels || h != real.height || w != real.width) {
    throw Error(what + " holds " + std::to_string(c) + "x" + std::to_string(h) + "x" +
                std::to_string(w) + " images but the training images are " +
                std::to_string(real.channels) + "x" + std::to_string(real.height) + "x" +
                std::to_string(real.width));
  }
}

/// The fitted generator in `directory` (vaelab generator fit), attached to `backend`.
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

/// `n` images sampled with seeds first_seed, ..., preprocessed like the real ones.
torch::Tensor sample_preprocessed(
    Generator& generator, uint64_t first_seed, int64_t n, const std::string& binarize,
    const std::function<void(int64_t, int64_t, int64_t, const std::string&)>& check_shape) {
  std::vector<torch::Tensor> parts;
  constexpr int64_t kChunk = 1000;
  for (int64_t done = 0; done < n; done += kChunk) {
    const int64_t m = std::min(kChunk, n - done);
    const ImageSet images = generator.sample(m, first_seed + static_cast<uint64_t>(done));
    check_shape(images.channels, images.height, images.width, "the generator's sample");
    if (images.count != m) throw Error("the generator returned " + std::to_string(images.count) +
                                       " images for " + std::to_string(m));
    parts.push_back(to_float_images(images, binarize));
  }
  return parts.empty() ? torch::Tensor() : torch::cat(parts);
}

/// Takes k × |D_train| images ([train.synthetic] k) from generator.pool (a pool file) or samples
/// them from generator.directory (a fitted generator) with seeds first_seed, first_seed + 1, ...
SyntheticImages load_synthetic(const RunConfig& config, Session& s) {
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
  const auto check_shape = [&real](int64_t c, int64_t h, int64_t w, const std::string& what) {
    check_image_shape(real, c, h, w, what);
  };

  if (real.continuous()) {
    throw ConfigError("the synthetic and mixed regimes need 8-bit images; data.plugin = \"" +
                      config.plugin("data") + "\" gives continuous ones");
  }
  const auto start = std::chrono::steady_clock::now();
  SyntheticImages out;
  if (!pool.empty()) {
    const PoolReader reader(pool);
    const PoolHeader& h = reader.header();
    check_shape(h.channels, h.height, h.width, "pool " + pool);
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
    out.images = sample_preprocessed(*generator, first_seed, needed, binarize, check_shape);
    out.source = directory;
    logger().info("synthetic: sampled {} images from {} ({}) in {:.1f} s", needed, directory, name,
                  seconds_since(start));
  }
  out.count = needed;
  out.seconds = seconds_since(start);
  return out;
}

/// [0, 1] images [B, C, H, W] → 8-bit images (clamped: a continuous world may leave [0, 1]).
ImageSet to_image_set(const torch::Tensor& images) {
  const torch::Tensor bytes =
      (images.detach().to(torch::kCPU).clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
  ImageSet out;
  out.count = bytes.size(0);
  out.channels = bytes.size(1);
  out.height = bytes.size(2);
  out.width = bytes.size(3);
  out.pixels.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  return out;
}

/// samples.png (64 decodes of z ~ N(0, I), the likelihood's mean) and reconstructions.png (rows
/// of 8 test images, each followed by a row of their reconstructions from the posterior mean):
/// what a person looks at first, and what a study's report shows.
void write_run_grids(Session& s, const fs::path& dir, uint64_t seed) {
  if (s.test.size(1) != 1 && s.test.size(1) != 3) return;  // no picture of other channel counts
  torch::nn::Module& module = s.model->module();
  const bool was_training = module.is_training();
  module.eval();
  torch::NoGradGuard no_grad;
  at::Generator generator = shim::make_cpu_generator(seed);
  std::vector<int64_t> shape = {64};
  for (int64_t d : s.model->latent_shape()) shape.push_back(d);
  const torch::Tensor z =
      shim::randn(shape, torch::TensorOptions().device(s.backend->device()), &generator);
  write_image_grid(dir / "samples.png", to_image_set(s.likelihood->mean(s.model->decode(z))));

  const int64_t n = std::min<int64_t>(32, s.test.size(0));
  const torch::Tensor x = s.test.slice(0, 0, n).to(s.backend->device());
  const torch::Tensor recon = s.likelihood->mean(s.model->decode(s.model->encode(x).mean)).to(torch::kCPU);
  std::vector<torch::Tensor> rows;
  for (int64_t start = 0; start < n; start += 8) {
    const int64_t end = std::min(n, start + 8);
    rows.push_back(x.slice(0, start, end).to(torch::kCPU));
    rows.push_back(recon.slice(0, start, end));
  }
  write_image_grid(dir / "reconstructions.png", to_image_set(torch::cat(rows)));
  if (was_training) module.train();
}

fs::path default_run_dir(const fs::path& config_file) {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &utc);
  const fs::path base = fs::path("runs") / (config_file.stem().string() + "-" + stamp);
  fs::path dir = base;
  for (int i = 2; fs::exists(dir); ++i) dir = base.string() + "-" + std::to_string(i);
  return dir;
}

}  // namespace

std::string_view core_defaults_toml() { return VAELAB_CORE_DEFAULTS_TOML; }

RunConfig RunConfig::load(const fs::path& file, const std::vector<std::string>& overrides) {
  return resolve(read_toml_file(file), overrides);
}

RunConfig RunConfig::resolve(const toml::table& user, const std::vector<std::string>& overrides) {
  const toml::table schema = parse_toml(core_defaults_toml(), "core/defaults.toml");
  std::vector<std::string> open_tables;
  for (const auto& s : kPluginSections) open_tables.push_back(std::string(s.section) + ".config");
  validate_against_schema(user, schema, "", open_tables);

  std::vector<Override> framework_overrides;
  std::vector<Override> plugin_overrides;
  for (const auto& o : overrides) {
    Override parsed = parse_override(o);
    (is_plugin_key(parsed.key) ? plugin_overrides : framework_overrides).push_back(parsed);
  }

  RunConfig config;
  config.table_ = merge_tables(schema, user);
  for (const auto& o : framework_overrides) apply_override(config.table_, schema, o);

  const ConfigTable plugins(*config.table_["plugins"].as_table(), "plugins");
  config.registry_ =
      std::make_shared<Registry>(Registry::search_path(plugins.get_string_array("paths")));

  // Each plugin's table: checked against and merged with the plugin's own defaults.toml.
  toml::table full_schema = schema;
  for (const auto& s : kPluginSections) {
    toml::table& section = *config.table_[s.section].as_table();
    std::string name = *section["plugin"].value<std::string>();
    if (name == "auto" && s.kind == VL_PLUGIN_KIND_BACKEND) {
      name = choose_backend(*config.registry_);
      section.insert_or_assign("plugin", name);
    }
    if (name.empty() && s.kind == VL_PLUGIN_KIND_GENERATOR) {
      const toml::table* given = section["config"].as_table();
      if (given != nullptr && !given->empty()) {
        throw ConfigError(source_of(*given) + ": generator.config is set but generator.plugin is empty");
      }
      continue;
    }
    const PluginRecord& record = config.registry_->find(s.kind, name);
    const toml::table plugin_schema =
        parse_toml(record.defaults_toml, name + "/defaults.toml");
    const toml::table* user_table = section["config"].as_table();
    const toml::table empty;
    const toml::table& given = user_table != nullptr ? *user_table : empty;
    try {
      validate_against_schema(given, plugin_schema, std::string(s.section) + ".config");
    } catch (const ConfigError& e) {
      throw ConfigError(std::string(e.what()) + " (plugin " + name + "; its keys: vaelab plugins show " + name + ")");
    }
    section.insert_or_assign("config", merge_tables(plugin_schema, given));
    full_schema[s.section].as_table()->insert_or_assign("config", plugin_schema);
  }
  for (const auto& o : plugin_overrides) apply_override(config.table_, full_schema, o);
  return config;
}

ConfigTable RunConfig::section(std::string_view key) const {
  const toml::table* t = table_[key].as_table();
  if (t == nullptr) throw ConfigError(std::string(key) + ": missing section");
  return ConfigTable(*t, std::string(key));
}

std::string RunConfig::plugin(std::string_view section_name) const {
  return section(section_name).get_string("plugin");
}

std::string RunConfig::plugin_config(std::string_view section_name) const {
  return section(section_name).sub("config").to_toml();
}

std::string RunConfig::to_toml() const {
  std::ostringstream out;
  out << "# Resolved by vaelab " << VAELAB_VERSION << ": defaults merged, overrides applied.\n"
      << format_toml(table_) << "\n";
  return out.str();
}

namespace {

/// `vaelab train` and `vaelab train --resume`: builds the session and the stream from `config`,
/// then makes the run folder `dir` (new) or reopens it (`resume`), and trains.
fs::path run_training(const RunConfig& config, const fs::path& dir, const TrainingCheckpoint* resume) {
  const TrainOptions options = train_options(config);
  const ConfigTable train_cfg = config.section("train");
  const std::string regime = train_cfg.get_string("regime");
  const int64_t batch_size = train_cfg.get_int_in("batch_size", 1, 1 << 20);
  const DistributedEnv env = DistributedEnv::from_environment();
  const DistributedOptions dist_options = DistributedOptions::from_config(train_cfg.sub("distributed"));
  if (batch_size % env.world_size != 0) {
    throw ConfigError("train.batch_size = " + std::to_string(batch_size) + " is the batch of all " +
                      std::to_string(env.world_size) + " processes together and must divide evenly among them "
                      "(each takes batch_size / world size images)");
  }

  Session s = open_session(config);

  // ---- data-parallel: join the group (docs/distributed.md); rank 0 alone writes the run folder --
  std::unique_ptr<Distributed> dist;
  if (env.world_size > 1) {
    dist = std::make_unique<Distributed>(env, dist_options, s.backend->device());
    dist->check_same("resolved config", config.to_toml());
  }
  const bool writes = dist == nullptr || dist->writes_results();
  // Data-parallel: a rank that fails while setting up tells the others at the agreement point, so
  // none waits for it; one that fails while training leaves its error for the others' messages.
  bool setup_agreed = false;
  try {
    StreamInputs inputs;
    inputs.regime = regime;
    inputs.train = s.train;
    inputs.batch_size = batch_size;
    inputs.seed = static_cast<uint64_t>(train_cfg.get_int("seed"));
    inputs.grid = pixel_grid(config, *s.likelihood);
    SyntheticImages synthetic;
    PluginPtr<Generator> fresh_generator;  // outlives the stream that samples it
    if (regime_needs_synthetic(regime) && train_cfg.sub("synthetic").get_bool("fresh")) {
      const std::string directory = config.section("generator").get_string("directory");
      if (directory.empty()) {
        throw ConfigError("train.synthetic.fresh = true samples a fitted generator every epoch: set "
                          "generator.directory (a pool file cannot make new images)");
      }
      if (s.dataset.train.continuous()) {
        throw ConfigError("the synthetic and mixed regimes need 8-bit images; data.plugin = \"" +
                          config.plugin("data") + "\" gives continuous ones");
      }
      std::string name;
      fresh_generator = open_generator(directory, *s.backend, name);
      const std::string binarize = config.section("data").get_string("binarize");
      const ImageSet& real = s.dataset.train;
      const auto check_shape = [&real](int64_t c, int64_t h, int64_t w, const std::string& what) {
        check_image_shape(real, c, h, w, what);
      };
      Generator* gen = fresh_generator.get();
      inputs.producer = [gen, binarize, check_shape](uint64_t first, int64_t n) {
        return sample_preprocessed(*gen, first, n, binarize, check_shape);
      };
      inputs.first_seed = static_cast<uint64_t>(train_cfg.sub("synthetic").get_int_in("first_seed", 0, INT64_MAX));
      synthetic.source = directory + " (fresh every epoch)";
      const double real_fraction =
          regime == "mixed" ? train_cfg.sub("mixed").get_double("real_fraction") : 0.0;
      const int64_t per_epoch =
          s.train.size(0) - static_cast<int64_t>(std::llround(real_fraction * static_cast<double>(s.train.size(0))));
      synthetic.count = per_epoch * options.epochs;
      logger().info("synthetic: fresh samples from {} ({}) every epoch, made in the background", directory, name);
    } else if (regime_needs_synthetic(regime)) {
      synthetic = load_synthetic(config, s);
      inputs.synthetic = synthetic.images;
    }
    auto stream = make_training_stream(inputs, train_cfg);
    if (dist) stream->set_shard(dist->rank(), dist->world_size());
    const Evaluator evaluator = make_evaluator(config, s);

    // Only now, with everything checked, the run folder is made (or reopened: its metrics.jsonl is
    // cut back to the checkpoint's records).
    std::unique_ptr<RunStore> store;
    if (writes) {
      store = std::make_unique<RunStore>(resume != nullptr ? RunStore::resume(dir, resume->info["metrics"])
                                                           : RunStore::create(dir));
      if (resume == nullptr) store->write_config(config.to_toml());
      add_log_file(store->log_path());
    }
    setup_agreed = true;
    if (dist) dist->agree("setting up the run", "");
    logger().info("{} {}", resume != nullptr ? "resuming run" : "run folder", dir.string());
    logger().info("model {}: {} parameters ({} in the layers touching z)", config.plugin("model"),
                  s.params_total, s.params_latent_adjacent);
    if (dist) {
      logger().info("data-parallel: {} processes, {} images per process of each batch of {}", dist->world_size(),
                    batch_size / dist->world_size(), batch_size);
    }

    Trainer trainer(*s.model, *s.likelihood, *s.backend, options, dist.get());
    TrainResult r;
    try {
      r = trainer.fit(*stream, evaluator, eval_data(s), store.get(), resume);
    } catch (...) {
      remove_log_files();
      throw;
    }
    if (!writes) return dir;  // data-parallel: rank 0 writes the results

    // The last evaluation's metrics, then what describes the run.
    nlohmann::json summary = r.last_eval;
    for (const char* per_point : {"epoch", "seconds", "train_seconds", "images_seen", "regime"}) {
      summary.erase(per_point);
    }
    if (dist) {  // data-parallel: processes that trained it, and rank 0's time in the all-reduce
      summary["world_size"] = dist->world_size();
      summary["allreduce_seconds"] = dist->gradient_seconds();
    }
    summary.update({
        {"elbo_trained_on_nats", r.elbo_trained_on_nats},
        {"params_total", s.params_total},
        {"params_latent_adjacent", s.params_latent_adjacent},
        {"params_other", s.params_total - s.params_latent_adjacent},
        {"epochs", r.epochs},
        {"images_seen", r.images_seen},
        {"train_seconds", r.train_seconds},
        {"eval_seconds", r.eval_seconds},
        {"train_images_per_second", static_cast<double>(r.images_seen) / std::max(r.train_seconds, 1e-9)},
        {"nonfinite_skipped_steps", r.nonfinite_skipped_steps},
        {"checkpoint_seconds", r.checkpoint_seconds},
        {"checkpoints_written", r.checkpoints_written},
        {"checkpoint_bytes", r.checkpoint_bytes},
        {"regime", regime},
        {"synthetic_images", synthetic.count},
        {"synthetic_source", synthetic.source},
        {"synthetic_seconds", synthetic.seconds},
        {"model", config.plugin("model")},
        {"likelihood", s.likelihood->name()},
        {"dataset", s.dataset.name},
        {"train_size", s.dataset.train.count},
        {"test_size", s.dataset.test.count},
        {"backend", config.plugin("backend")},
        {"threads", s.backend->threads()},
        {"vaelab_version", VAELAB_VERSION},
        {"torch_version", shim::torch_version()},
    });
    store->write_summary(summary);
    write_run_grids(s, dir, static_cast<uint64_t>(train_cfg.get_int("seed")) + 7);
    logger().info("done: ELBO train {:.2f}, test {:.2f} nats; {:.0f} images/s; results in {}",
                  summary["elbo_train_nats"].get<double>(), summary["elbo_test_nats"].get<double>(),
                  summary["train_images_per_second"].get<double>(), dir.string());
    remove_log_files();
    return dir;
  } catch (const std::exception& e) {
    if (dist && !setup_agreed) dist->agree("setting up the run", e.what());
    if (dist && setup_agreed) dist->report_failure(e.what());
    throw;
  }
}

/// The first line where two TOML texts differ, with the [table] it is in.
std::string first_difference(const std::string& a, const std::string& b) {
  std::istringstream in_a(a), in_b(b);
  std::string line_a, line_b, table;
  while (true) {
    const bool more_a = static_cast<bool>(std::getline(in_a, line_a));
    const bool more_b = static_cast<bool>(std::getline(in_b, line_b));
    if (!more_a && !more_b) return "";
    if (!more_a) line_a.clear();
    if (!more_b) line_b.clear();
    if (line_a != line_b) {
      return (table.empty() ? "" : "in " + table + ": ") + "the run has '" + line_a + "', the given config '" + line_b + "'";
    }
    if (!line_a.empty() && line_a[0] == '[') table = line_a;
  }
}

}  // namespace

fs::path train_run(const fs::path& config_file, const std::vector<std::string>& overrides,
                   const fs::path& out_dir) {
  const RunConfig config = RunConfig::load(config_file, overrides);
  return run_training(config, out_dir.empty() ? default_run_dir(config_file) : out_dir, nullptr);
}

fs::path resume_run(const fs::path& run_dir, const fs::path& config_file,
                    const std::vector<std::string>& overrides) {
  const RunStore store = RunStore::open(run_dir);
  std::error_code ec;
  if (fs::exists(store.summary_path(), ec)) {
    throw Error(run_dir.string() + ": the run is finished (" + store.summary_path().string() +
                " exists); nothing to resume");
  }
  const fs::path checkpoint = store.checkpoint_path("last");
  if (!fs::exists(checkpoint, ec)) {
    throw Error(run_dir.string() + ": no checkpoint to resume from (" + checkpoint.string() +
                "): the run stopped before its first one; start it again");
  }
  const TrainingCheckpoint state = read_training_checkpoint(checkpoint);
  const RunConfig config = RunConfig::load(store.config_path(), {});
  if (!config_file.empty() || !overrides.empty()) {
    // The run continues with the config it started with; a config given again must resolve to it.
    const RunConfig given = RunConfig::load(config_file.empty() ? store.config_path() : config_file, overrides);
    const std::string difference = first_difference(format_toml(config.table()), format_toml(given.table()));
    if (!difference.empty()) {
      throw ConfigError("--resume " + run_dir.string() + ": the run continues with its own " +
                        store.config_path().string() + " and the config given differs (" + difference +
                        "); leave out the config and --set, or start a new run");
    }
  }
  return run_training(config, run_dir, &state);
}


nlohmann::json eval_run(const fs::path& run_dir, const std::vector<std::string>& metrics) {
  check_metric_names(metrics);
  const RunStore store = RunStore::open(run_dir);
  const RunConfig config = RunConfig::load(store.config_path(), {});
  Session s = open_session(config);
  const fs::path checkpoint = store.checkpoint_path("last");
  if (!fs::exists(checkpoint)) throw Error(checkpoint.string() + ": no checkpoint to evaluate");
  load_module_state(s.model->module(), load_safetensors(checkpoint), checkpoint.string());
  nlohmann::json out = make_evaluator(config, s).run(metrics, eval_data(s));
  out["run"] = run_dir.string();
  out["params_total"] = s.params_total;
  out["params_latent_adjacent"] = s.params_latent_adjacent;
  return out;
}

int64_t score_run(const fs::path& run_dir, const fs::path& data_file, const ScoreOptions& options,
                  const fs::path& out_csv) {
  if (options.metric != "elbo" && options.metric != "iwae") {
    throw ConfigError("--metric: '" + options.metric + "' is not one of elbo, iwae");
  }
  if (options.split != "test" && options.split != "train" && options.split != "all") {
    throw ConfigError("--split: '" + options.split + "' is not one of test, train, all");
  }
  const RunStore store = RunStore::open(run_dir);
  toml::table table = read_toml_file(store.config_path());
  // --data names either a TOML file with a [data] table or a sample pool file.
  fs::path pool_file;
  if (!data_file.empty() && data_file.extension() != ".toml") {
    pool_file = data_file;
  } else if (!data_file.empty()) {
    const toml::table given = read_toml_file(data_file);
    for (const auto& [key, node] : given) {
      if (key.str() != "data") {
        throw ConfigError(data_file.string() + ": only a [data] table belongs here, found '" +
                          std::string(key.str()) + "'");
      }
    }
    const toml::table* data = given["data"].as_table();
    if (data == nullptr) throw ConfigError(data_file.string() + ": no [data] table");
    table.insert_or_assign("data", *data);
  }
  const RunConfig config = RunConfig::resolve(table, {});
  // The data stay as stored (8-bit, or a memory-mapped pool); each batch is converted to float
  // when it is scored, so float memory is bounded by eval.batch_size images.
  Session s = open_session(config, /*preprocess=*/false);
  const fs::path checkpoint = store.checkpoint_path("last");
  if (!fs::exists(checkpoint)) throw Error(checkpoint.string() + ": no checkpoint to score with");
  load_module_state(s.model->module(), load_safetensors(checkpoint), checkpoint.string());
  std::unique_ptr<PoolReader> pool;
  if (!pool_file.empty()) {
    const ImageSet& trained = s.dataset.train;
    if (trained.continuous()) {
      throw ConfigError(pool_file.string() + ": the run was trained on continuous images; an "
                        "8-bit pool cannot be scored with it");
    }
    pool = std::make_unique<PoolReader>(pool_file.string());
    const PoolHeader& h = pool->header();
    if (h.channels != trained.channels || h.height != trained.height || h.width != trained.width) {
      throw Error(pool_file.string() + ": pool images are " + std::to_string(h.channels) + "x" +
                  std::to_string(h.height) + "x" + std::to_string(h.width) + " but the run's model takes " +
                  std::to_string(trained.channels) + "x" + std::to_string(trained.height) + "x" +
                  std::to_string(trained.width));
    }
  }

  const ConfigTable eval = config.section("eval");
  const int64_t batch = eval.get_int_in("batch_size", 1, INT64_MAX);
  const int64_t samples = options.samples > 0 ? options.samples
                          : options.metric == "iwae"
                              ? eval.sub("iwae").get_int_in("samples", 1, INT64_MAX)
                              : eval.get_int_in("elbo_samples", 1, INT64_MAX);
  const int64_t chunk = eval.sub("iwae").get_int_in("chunk", 1, INT64_MAX);
  const std::string binarize = config.section("data").get_string("binarize");
  const torch::Device device = s.backend->device();
  s.model->module().eval();
  at::Generator generator =
      shim::make_cpu_generator(static_cast<uint64_t>(config.section("train").get_int("seed")) + 5);
  const double dims = static_cast<double>(s.dataset.train.image_bytes());
  const bool bits = s.likelihood->discrete();

  const fs::path tmp = out_csv.string() + ".tmp";
  std::ofstream out(tmp);
  if (!out) throw Error(tmp.string() + ": cannot write");
  out << "split,index,label,neg_" << options.metric << "_nats" << (bits ? ",bits_per_dim" : "")
      << "\n";
  out.precision(10);
  int64_t rows = 0;
  // Scores images [0, count) of one split; `load(start, n)` gives a float batch.
  const auto score_split = [&](const char* name, int64_t count,
                               const std::function<torch::Tensor(int64_t, int64_t)>& load,
                               const std::vector<int64_t>& labels) {
    for (int64_t start = 0; start < count; start += batch) {
      const int64_t end = std::min(count, start + batch);
      const torch::Tensor x = load(start, end - start).to(device);
      torch::NoGradGuard no_grad;
      const torch::Tensor score =
          options.metric == "iwae"
              ? -iwae_bound(*s.model, *s.likelihood, x, samples, chunk, &generator)
              : -elbo_terms(*s.model, *s.likelihood, x, samples, &generator).elbo;
      const torch::Tensor cpu = score.to(torch::kCPU, torch::kFloat64).contiguous();
      const double* v = cpu.data_ptr<double>();
      for (int64_t i = 0; i < end - start; ++i) {
        const int64_t index = start + i;
        out << name << "," << index << ","
            << (static_cast<size_t>(index) < labels.size() ? labels[static_cast<size_t>(index)] : -1)
            << "," << v[i];
        if (bits) out << "," << v[i] / (dims * std::log(2.0));
        out << "\n";
        ++rows;
      }
    }
  };
  const auto from_split = [&](const ImageSet& images) {
    return [&images, &binarize](int64_t start, int64_t n) {
      return to_float_range(images, start, n, binarize);
    };
  };
  if (pool) {
    const PoolReader& reader = *pool;
    score_split("pool", reader.count(),
                [&reader, &binarize](int64_t start, int64_t n) {
                  const PoolHeader& h = reader.header();
                  return bytes_to_float(reader.image(start), n, h.channels, h.height, h.width, binarize);
                },
                {});
  } else {
    if (options.split != "train") {
      score_split("test", s.dataset.test.count, from_split(s.dataset.test), s.test_labels);
    }
    if (options.split != "test") {
      score_split("train", s.dataset.train.count, from_split(s.dataset.train), s.dataset.train.labels);
    }
  }
  out.close();
  if (!out) throw Error(tmp.string() + ": write failed");
  std::error_code ec;
  fs::rename(tmp, out_csv, ec);
  if (ec) throw Error(out_csv.string() + ": cannot move the scores into place: " + ec.message());
  return rows;
}

}  // namespace vaelab
