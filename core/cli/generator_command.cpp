// `vaelab generator fit | sample | check`: fit a synthetic-data generator to a run config's
// training split (resumable), sample it into a pool file, and check samples against the data.

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <vaelab/build_info.h>
#include <nlohmann/json.hpp>
#include <vaelab/clock.hpp>
#include <vaelab/backend.hpp>
#include <vaelab/error.hpp>
#include <vaelab/data_source.hpp>
#include <vaelab/gen/check.hpp>
#include <vaelab/gen/frechet.hpp>
#include <vaelab/generator.hpp>
#include <vaelab/io/image_grid.hpp>
#include <vaelab/io/pool.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/log.hpp>
#include <vaelab/train/run.hpp>
#include <vaelab/train/backend_choice.hpp>
#include <vaelab/train/session.hpp>

#include "commands.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace vaelab::cli {
namespace {

// The files `generator fit` itself writes in GEN_DIR; everything else there is the plugin's.
constexpr const char* kConfigFile = "config.toml";
constexpr const char* kInfoFile = "generator.json";
constexpr const char* kLogFile = "fit.log";
constexpr double kLogEverySeconds = 10.0;

volatile std::sig_atomic_t g_interrupted = 0;
void on_interrupt(int /*signal*/) { g_interrupted = 1; }

/// SIGINT and SIGTERM ask a running fit to stop at its next step (the plugin then checkpoints);
/// the previous handlers come back when this goes out of scope.
class StopOnSignal {
 public:
  StopOnSignal() {
    g_interrupted = 0;
    previous_int_ = std::signal(SIGINT, on_interrupt);
    previous_term_ = std::signal(SIGTERM, on_interrupt);
  }
  ~StopOnSignal() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;
  bool stopped() const { return g_interrupted != 0; }

 private:
  void (*previous_int_)(int) = nullptr;
  void (*previous_term_)(int) = nullptr;
};

/// Removes the log file sinks on every way out of a command.
struct LogFileScope {
  explicit LogFileScope(const fs::path& file) { add_log_file(file); }
  ~LogFileScope() { remove_log_files(); }
  LogFileScope(const LogFileScope&) = delete;
  LogFileScope& operator=(const LogFileScope&) = delete;
};

std::string shape_text(const ImageSet& s) {
  return std::to_string(s.channels) + "x" + std::to_string(s.height) + "x" +
         std::to_string(s.width);
}

/// describe() of a plugin as JSON; a plugin that breaks the contract is named.
json describe_json(const Generator& generator, const std::string& name) {
  const std::string text = generator.describe();
  try {
    json d = json::parse(text);
    if (!d.is_object()) throw Error("not an object");
    return d;
  } catch (const std::exception&) {
    throw Error("generator plugin '" + name +
                "': describe() did not return one JSON object: " + text.substr(0, 200));
  }
}

json read_json_file(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error(file.string() + ": cannot read");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(file.string() + ": not valid JSON: " + e.what());
  }
}

/// The backend and the generator of a resolved config, in the host's life-cycle order.
struct LiveGenerator {
  PluginPtr<Backend> backend;
  PluginPtr<Generator> generator;
  std::string name;
  std::string version;
};

LiveGenerator make_generator(const RunConfig& config, const std::string& where) {
  LiveGenerator g;
  g.name = config.plugin("generator");
  if (g.name.empty()) {
    throw ConfigError(where +
                      ": generator.plugin is empty: name the generator (e.g. --set "
                      "generator.plugin=gen-diffusion)");
  }
  g.version = config.registry().find(VL_PLUGIN_KIND_GENERATOR, g.name).version;
  g.backend =
      config.registry().create<Backend>(config.plugin("backend"), config.plugin_config("backend"));
  g.backend->apply_threads();
  g.generator = config.registry().create<Generator>(g.name, config.plugin_config("generator"));
  g.generator->attach(*g.backend);
  return g;
}

/// Decides what GEN_DIR is: new (false) or a fit of the same generator, config and data that has
/// a checkpoint to resume (true). Anything else is refused, so nothing there is overwritten.
bool prepare_generator_dir(const fs::path& dir, const RunConfig& config) {
  if (!fs::exists(dir)) {
    fs::create_directories(dir);
    return false;
  }
  if (!fs::is_directory(dir)) throw Error(dir.string() + ": exists and is not a folder");
  if (fs::is_empty(dir)) return false;
  const fs::path previous_file = dir / kConfigFile;
  if (!fs::exists(previous_file)) {
    throw Error(dir.string() + ": the folder is not empty and holds no generator fit (no " +
                kConfigFile + "); choose another --out");
  }
  const toml::table previous = read_toml_file(previous_file);
  const toml::table& current = config.table();
  const auto differs = [&](const char* section, const char* key) {
    return previous[section][key] != current[section][key];
  };
  for (const auto& [section, key] :
       {std::pair{"generator", "plugin"}, std::pair{"generator", "config"},
        std::pair{"data", "plugin"}, std::pair{"data", "config"}, std::pair{"data", "train_size"},
        std::pair{"data", "subset_seed"}}) {
    if (differs(section, key)) {
      throw Error(dir.string() + ": already holds a fit with another " + section + "." + key +
                  " (see its " + kConfigFile +
                  "); choose another --out, or resume with the same config");
    }
  }
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    if (file != kConfigFile && file != kInfoFile && file != kLogFile &&
        entry.path().extension() != ".tmp") {
      return true;
    }
  }
  return false;
}

}  // namespace

int generator_fit(const std::string& config_file, const std::vector<std::string>& overrides,
                  const std::string& out_dir) {
  const RunConfig config = RunConfig::load(config_file, overrides);
  const fs::path dir(out_dir);
  if (config.plugin("generator").empty()) {
    throw ConfigError(config_file +
                      ": generator.plugin is empty: name the generator to fit (e.g. --set "
                      "generator.plugin=gen-diffusion)");
  }
  const ConfigTable fit_cfg = config.section("generator").sub("fit");
  FitBudget budget;
  budget.steps = fit_cfg.get_int_in("steps", 0, INT64_MAX);
  budget.seconds = fit_cfg.get_double("seconds");
  const double checkpoint_minutes = fit_cfg.get_double("checkpoint_minutes");
  if (budget.seconds < 0 || checkpoint_minutes < 0) {
    throw ConfigError(
        "generator.fit.seconds and generator.fit.checkpoint_minutes must not be negative");
  }
  budget.checkpoint_directory = dir.string();
  budget.checkpoint_every_seconds = checkpoint_minutes * 60.0;

  const bool resume = prepare_generator_dir(dir, config);
  LogFileScope log_file(dir / kLogFile);
  OpenedData data = open_dataset(config);
  const ImageSet& train = data.dataset.train;
  logger().info("data {}: {} train images of {} (test {})", data.dataset.name, train.count,
                shape_text(train), data.dataset.test.count);
  LiveGenerator g = make_generator(config, config_file);
  logger().info("backend {}: {}", config.plugin("backend"), g.backend->describe());
  if (resume) {
    logger().info("{}: resuming the fit from its checkpoint", dir.string());
    g.generator->load(dir.string());
  }
  write_file_atomic(dir / kConfigFile, config.to_toml());

  double previous_seconds = 0;
  if (resume && fs::exists(dir / kInfoFile)) {
    previous_seconds = read_json_file(dir / kInfoFile).value("fit_wall_seconds_total", 0.0);
  }

  StopOnSignal stop;
  const auto start = std::chrono::steady_clock::now();
  int64_t first_step = -1;
  int64_t last_step = 0;
  int64_t total_steps = budget.steps;
  double last_loss = 0;
  double last_log = -kLogEverySeconds;
  const FitProgress progress = [&](int64_t step, int64_t total, double loss) {
    if (first_step < 0) first_step = step - 1;
    last_step = step;
    total_steps = total;
    last_loss = loss;
    const double elapsed = seconds_since(start);
    if (elapsed - last_log >= kLogEverySeconds || step == total || step == first_step + 1) {
      const double rate = static_cast<double>(step - first_step) / std::max(elapsed, 1e-9);
      const double eta = rate > 0 ? static_cast<double>(total - step) / rate : 0;
      logger().info("fit step {}/{} loss {:.5g} ({:.1f} steps/s, ETA {})", step, total, loss, rate,
                    duration_text(eta));
      last_log = elapsed;
    }
    if (stop.stopped()) {
      logger().warn("interrupted at step {}: checkpointing and stopping", step);
      return false;
    }
    return true;
  };
  g.generator->fit(train, budget, progress);
  const double seconds = seconds_since(start);
  g.generator->save(dir.string());

  json info = describe_json(*g.generator, g.name);
  info["plugin"] = g.name;
  info["plugin_version"] = g.version;
  info["config_hash"] = pool_config_hash(config.plugin_config("generator"));
  info["fit_wall_seconds"] = seconds;
  info["fit_wall_seconds_total"] = previous_seconds + seconds;
  info["steps"] = last_step;
  info["total_steps"] = total_steps;
  info["last_loss"] = last_loss;
  info["stopped_early"] = stop.stopped() || (total_steps > 0 && last_step < total_steps);
  info["resumed"] = resume;
  info["dataset"] = data.dataset.name;
  info["train_images"] = train.count;
  info["test_images"] = data.dataset.test.count;
  info["image_shape"] = {train.channels, train.height, train.width};
  info["vaelab_version"] = VAELAB_VERSION;
  info["finished_utc"] = utc_now();
  write_file_atomic(dir / kInfoFile, info.dump(2) + "\n");
  logger().info("fit of {} done: step {}/{} in {}", g.name, last_step, total_steps,
                duration_text(seconds));
  std::printf("%s\n", dir.string().c_str());
  return 0;
}

int generator_sample(const std::string& gen_dir, int64_t n, uint64_t seed, const std::string& out,
                     int64_t batch, const std::vector<std::string>& overrides) {
  if (n < 1) throw Error("--n must be at least 1, got " + std::to_string(n));
  if (batch < 1) throw Error("--batch must be at least 1, got " + std::to_string(batch));
  const fs::path dir(gen_dir);
  if (!fs::is_directory(dir)) throw Error(gen_dir + ": no such generator folder");
  if (!fs::exists(dir / kConfigFile)) {
    throw Error(gen_dir + ": not a generator folder (no " + kConfigFile +
                "; make one with `vaelab generator fit`)");
  }
  if (fs::exists(out)) throw Error(out + ": already exists; remove it or choose another --out");
  // Only the generator's own settings: the data, model and fit behind the folder stay as fitted.
  for (const std::string& o : overrides) {
    if (o.rfind("generator.config.", 0) != 0) {
      throw ConfigError("--set " + o + ": generator sample takes generator.config.KEY=VALUE only (how the fitted " +
                        "generator samples); the rest of " + (dir / kConfigFile).string() + " is the fit's");
    }
  }
  const RunConfig config = RunConfig::load(dir / kConfigFile, overrides);
  LiveGenerator g = make_generator(config, (dir / kConfigFile).string());
  g.generator->load(dir.string());

  json provenance = {
      {"command", "vaelab generator sample"},
      {"generator_dir", fs::absolute(dir).lexically_normal().string()},
      {"n", n},
      {"first_seed", seed},
      {"batch", batch},
      {"created_utc", utc_now()},
      {"vaelab_version", VAELAB_VERSION},
      {"generator", describe_json(*g.generator, g.name)},
  };
  if (fs::exists(dir / kInfoFile)) provenance["fit"] = read_json_file(dir / kInfoFile);
  if (!overrides.empty()) {
    provenance["set"] = overrides;
    std::string what;
    for (const std::string& o : overrides) what += (what.empty() ? "" : ", ") + o;
    logger().info("sampling {} with {}", dir.string(), what);
  }

  std::unique_ptr<PoolWriter> writer;
  const auto start = std::chrono::steady_clock::now();
  double last_log = 0;
  for (int64_t done = 0; done < n;) {
    const int64_t b = std::min(batch, n - done);
    const uint64_t first = seed + static_cast<uint64_t>(done);
    const ImageSet images = g.generator->sample(b, first);
    if (images.count != b ||
        images.pixels.size() != static_cast<size_t>(b * images.image_bytes())) {
      throw Error("generator plugin '" + g.name + "': sample(" + std::to_string(b) + ") returned " +
                  std::to_string(images.count) + " images in " +
                  std::to_string(images.pixels.size()) + " bytes");
    }
    if (writer == nullptr) {
      PoolHeader header;
      header.generator = g.name;
      header.generator_version = g.version;
      header.config_hash = pool_config_hash(config.plugin_config("generator"));
      header.provenance = provenance.dump();
      header.channels = images.channels;
      header.height = images.height;
      header.width = images.width;
      writer = std::make_unique<PoolWriter>(out, header);
    }
    std::vector<uint64_t> seeds(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i)
      seeds[static_cast<size_t>(i)] = first + static_cast<uint64_t>(i);
    writer->append(images, seeds);
    done += b;
    const double elapsed = seconds_since(start);
    if (elapsed - last_log >= kLogEverySeconds && done < n) {
      const double rate = static_cast<double>(done) / elapsed;
      logger().info("sampled {}/{} ({:.0f} images/s, ETA {})", done, n, rate,
                    duration_text(static_cast<double>(n - done) / rate));
      last_log = elapsed;
    }
  }
  writer->commit();
  const double seconds = seconds_since(start);
  std::printf("%s: %ld images from %s %s in %.2f s (%.0f images/s)\n", out.c_str(),
              static_cast<long>(n), g.name.c_str(), g.version.c_str(), seconds,
              static_cast<double>(n) / std::max(seconds, 1e-9));
  return 0;
}

/// The dataset's feature network for the Fréchet distance, trained on the source's whole
/// training split `full` (not the run's subset); empty, with the reason in `missing`, when it
/// cannot be had (unlabelled or continuous data).
FeatureNet feature_net_for(const Dataset& full, const GeneratorCheckArgs& args, std::string& missing) {
  if (args.no_frechet) {
    missing = "skipped (--no-frechet)";
    return {};
  }
  fs::path cache = args.features_cache;
  if (cache.empty()) {
    const fs::path user = vaelab_cache_dir();
    if (!user.empty()) cache = user / "feature-nets";
  }
  try {
    bool trained = false;
    FeatureNet net = cached_feature_net(cache, full.name, full.train, full.test, {}, &trained);
    const nlohmann::json& info = net.info();
    logger().info("feature network {} ({}): {}; test accuracy {}", trained ? "trained" : "read",
                  cache.empty() ? std::string("not cached") : cache.string(),
                  info.value("network", std::string("?")), info["test_accuracy"].dump());
    return net;
  } catch (const Error& e) {
    missing = e.what();
    logger().warn("no Fréchet distance: {}", missing);
    return {};
  }
}

int generator_check(const GeneratorCheckArgs& args) {
  const std::string& target = args.target;
  const std::string& data_config = args.data_config;
  const int64_t n = args.n;
  const uint64_t seed = args.seed;
  const std::string& out_dir = args.out_dir;
  if (n < 4) throw Error("--n must be at least 4, got " + std::to_string(n));
  const auto start = std::chrono::steady_clock::now();
  const RunConfig data_run = RunConfig::load(data_config, {});
  const fs::path t(target);
  ImageSet samples;
  std::vector<std::string> context;
  json source;
  PluginPtr<Backend> backend;
  LiveGenerator g;
  fs::path out;
  if (fs::is_regular_file(t)) {
    const PoolReader pool(target);
    const int64_t take = std::min(n, pool.count());
    if (take < 4)
      throw Error(target + ": the pool holds " + std::to_string(pool.count()) +
                  " images; the check needs at least 4");
    samples = pool.read(0, take);
    const PoolHeader& h = pool.header();
    context.push_back("pool `" + target + "`: " + std::to_string(pool.count()) + " images from " +
                      h.generator + " " + h.generator_version + " (config hash " + h.config_hash +
                      ", checksum " + pool.checksum() + "); the first " + std::to_string(take) +
                      " checked");
    source = {{"kind", "pool"},
              {"path", target},
              {"count", pool.count()},
              {"generator", h.generator},
              {"generator_version", h.generator_version},
              {"config_hash", h.config_hash},
              {"checksum", pool.checksum()}};
    backend = data_run.registry().create<Backend>(data_run.plugin("backend"),
                                                  data_run.plugin_config("backend"));
    backend->apply_threads();
    out = out_dir.empty() ? fs::path(target + ".check") : fs::path(out_dir);
  } else if (fs::is_directory(t)) {
    if (!fs::exists(t / kConfigFile)) {
      throw Error(target + ": not a generator folder (no " + kConfigFile + ") and not a pool file");
    }
    const RunConfig config = RunConfig::load(t / kConfigFile, {});
    g = make_generator(config, (t / kConfigFile).string());
    g.generator->load(target);
    samples = g.generator->sample(n, seed);
    context.push_back("generator `" + target + "`: " + g.name + " " + g.version + ", " +
                      std::to_string(n) + " samples from seed " + std::to_string(seed));
    source = {{"kind", "generator"},
              {"path", target},
              {"generator", g.name},
              {"generator_version", g.version},
              {"first_seed", seed}};
    out = out_dir.empty() ? t / "check" : fs::path(out_dir);
  } else {
    throw Error(target + ": no such pool file or generator folder");
  }

  // The data is read once: the whole splits train the feature network, the configured subsets
  // are what the samples are checked against.
  PluginPtr<DataSource> data_source =
      data_run.registry().create<DataSource>(data_run.plugin("data"), data_run.plugin_config("data"));
  Dataset full = data_source->open();
  std::string frechet_missing;
  const FeatureNet features = feature_net_for(full, args, frechet_missing);
  OpenedData data = select_dataset(data_run, std::move(data_source), std::move(full));
  context.push_back("data `" + data_config + "`: " + data.dataset.name + ", " +
                    std::to_string(data.dataset.train.count) + " training and " +
                    std::to_string(data.dataset.test.count) + " test images of " +
                    shape_text(data.dataset.train));
  GeneratorCheckOptions options;
  options.seed = seed;
  GeneratorCheck check =
      check_generator(samples, data.dataset.train, data.dataset.test, options, &features);
  if (!check.frechet.measured && !frechet_missing.empty()) check.frechet.missing = frechet_missing;

  fs::create_directories(out);
  std::string grid;
  if (samples.channels == 1 || samples.channels == 3) {
    write_image_grid(out / "samples.png", samples);
    grid = "samples.png";
  } else {
    logger().warn("no samples.png: {} channels are neither gray nor RGB", samples.channels);
  }
  json result = to_json(check);
  result["source"] = source;
  result["data"] = {{"config", data_config},
                    {"name", data.dataset.name},
                    {"train_images", data.dataset.train.count},
                    {"test_images", data.dataset.test.count}};
  result["total_seconds"] = seconds_since(start);
  write_file_atomic(out / "check.json", result.dump(2) + "\n");
  write_file_atomic(out / "check.md",
                    to_markdown(check, "Generator check: " + target, context, grid));

  const MemorizationCheck& m = check.memorization;
  std::printf("C2ST accuracy %.3f (+- %.3f; 0.5 = indistinguishable from real training images)\n",
              check.c2st.accuracy, check.c2st.accuracy_stderr);
  std::printf(
      "nearest training image: median L2 %.3f for samples, %.3f for held-out test images; "
      "%.1f %% of samples within %.3f (the %.0f %% test quantile), %ld exact copies%s\n",
      m.sample_to_train.median, m.test_to_train.median, 100 * m.samples_within_fraction,
      m.threshold_l2, 100 * options.copy_quantile, static_cast<long>(m.exact_copies),
      m.suspected ? ": MEMORIZATION SUSPECTED" : "");
  if (check.frechet.measured) {
    std::printf("Frechet distance %.3f to held-out test images (real training images: %.3f)\n",
                check.frechet.distance, check.frechet.real_reference);
  } else {
    std::printf("no Frechet distance: %s\n", check.frechet.missing.c_str());
  }
  std::printf("%s (%.1f s)\n", out.string().c_str(), seconds_since(start));
  return 0;
}

}  // namespace vaelab::cli
