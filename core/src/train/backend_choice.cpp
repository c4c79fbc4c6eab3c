// Stage 1 of a run, `backend.plugin = "auto"` (train/backend_choice.hpp): which CPU backend is
// fastest on this machine, measured once and kept in the cache folder.
#include <vaelab/train/backend_choice.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/build_info.h>
#include <vaelab/cpu.hpp>
#include <vaelab/error.hpp>
#include <vaelab/io/file_lock.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/log.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/model.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/threads.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/fused_adam.hpp>

namespace fs = std::filesystem;

namespace vaelab {

namespace {

constexpr const char* kCacheFile = "backend-speed.json";
constexpr int64_t kBatch = 128;  // the paper's batch; 32 × 32 grayscale images, its MLP
constexpr int kWarmupSteps = 2;
constexpr int kMeasuredSteps = 7;

/// Images per second of training steps (forward, backward, the fused Adam) of the paper's MLP
/// VAE on `backend_name` with its default settings: the median of kMeasuredSteps step times.
double measure_training(const Registry& registry, const std::string& backend_name) {
  PluginPtr<Backend> backend = registry.create<Backend>(backend_name, registry.find(VL_PLUGIN_KIND_BACKEND, backend_name).defaults_toml);
  backend->apply_threads();
  const PluginRecord& mlp = registry.find(VL_PLUGIN_KIND_MODEL, "vae-mlp");
  torch::manual_seed(0);
  PluginPtr<Model> model = registry.create<Model>("vae-mlp", mlp.defaults_toml);
  const GaussianLikelihood likelihood(0.1);
  model->build(ModelSpec{1, 32, 32, 1}, *backend);
  model->module().to(backend->device());
  model->module().train();
  const auto optimizer = make_adam(model->module().parameters(), torch::optim::AdamOptions(1e-4), true);
  at::Generator gen = shim::make_cpu_generator(1);
  const torch::Tensor x = shim::rand({kBatch, 1, 32, 32}, torch::TensorOptions(), gen).to(backend->device());
  std::vector<double> seconds;
  for (int step = 0; step < kWarmupSteps + kMeasuredSteps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    clear_gradients(*optimizer);
    const torch::Tensor loss = -elbo_terms(*model, likelihood, x, 1).elbo.mean();
    loss.backward();
    optimizer->step();
    backend->synchronize();
    if (step >= kWarmupSteps) {
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  std::sort(seconds.begin(), seconds.end());
  return static_cast<double>(kBatch) / std::max(seconds[seconds.size() / 2], 1e-9);
}

/// The cache's entries; empty (with a warning naming the file) when it is there but unreadable.
nlohmann::json read_cache(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return nlohmann::json::object();
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    logger().warn("{}: not a backend-speed file (not a JSON object); measuring again and rewriting it", file.string());
    return nlohmann::json::object();
  }
  return j;
}

}  // namespace

std::string choose_fastest_backend(const std::map<std::string, double>& speeds,
                                   const std::vector<std::string>& preference_order, double tie) {
  if (speeds.empty()) throw Error("backend choice: no backend was measured");
  double best = 0;
  std::string fastest;
  for (const auto& [name, ips] : speeds) {
    if (ips > best || fastest.empty()) {
      best = ips;
      fastest = name;
    }
  }
  for (const std::string& name : preference_order) {
    if (name == fastest) break;
    const auto it = speeds.find(name);
    if (it != speeds.end() && it->second >= (1.0 - tie) * best) return name;
  }
  return fastest;
}

fs::path vaelab_cache_dir() {
  if (const char* dir = std::getenv("VAELAB_CACHE_DIR"); dir != nullptr && *dir != '\0') return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') return fs::path(xdg) / "vaelab";
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') return fs::path(home) / ".cache" / "vaelab";
  return {};
}

std::string machine_key(int threads) {
  const std::string model = cpu_model_name();
  const std::string core = blas_core_name();
  return (model.empty() ? std::string("unknown CPU") : model) + " | " + cpu_isa_name(cpu_features()) + " | OpenBLAS " +
         (core.empty() ? std::string("none") : core) + " | " + std::to_string(threads) + " thread" +
         (threads == 1 ? "" : "s") + " | vaelab " + VAELAB_VERSION;
}

BackendSpeeds cpu_backend_speeds(const Registry& registry, const std::vector<std::string>& candidates) {
  if (candidates.empty()) throw Error("backend choice: no CPU backend to measure");
  BackendSpeeds out;
  out.machine = machine_key(available_cpus());
  const fs::path dir = vaelab_cache_dir();
  std::error_code ec;
  if (!dir.empty()) fs::create_directories(dir, ec);
  const bool usable = !dir.empty() && !ec;
  if (!usable) {
    logger().warn("backend plugin = \"auto\": no cache folder ({}); measuring every time (set VAELAB_CACHE_DIR)",
                  dir.empty() ? "neither VAELAB_CACHE_DIR, XDG_CACHE_HOME nor HOME is set" : dir.string() + ": " + ec.message());
  }
  const fs::path file = usable ? dir / kCacheFile : fs::path();
  // Held while reading, measuring and writing: a study's runs starting together measure once, and
  // the others read what it wrote.
  std::optional<FileLock> lock;
  if (usable) lock.emplace(dir / (std::string(kCacheFile) + ".lock"));
  nlohmann::json cache = usable ? read_cache(file) : nlohmann::json::object();
  if (cache.contains(out.machine)) {
    const nlohmann::json& entry = cache[out.machine];
    bool complete = entry.is_object() && entry.contains("images_per_second") && entry["images_per_second"].is_object() &&
                    entry["images_per_second"].size() == candidates.size();
    for (const std::string& name : candidates) {
      complete = complete && entry["images_per_second"].contains(name) && entry["images_per_second"][name].is_number() &&
                 entry["images_per_second"][name].get<double>() > 0;
    }
    if (complete) {
      for (const std::string& name : candidates) out.images_per_second[name] = entry["images_per_second"][name].get<double>();
      out.fastest = choose_fastest_backend(out.images_per_second, candidates);
      out.file = file;
      out.from_file = true;
      return out;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const double load_before = load_average();
  for (const std::string& name : candidates) out.images_per_second[name] = measure_training(registry, name);
  out.fastest = choose_fastest_backend(out.images_per_second, candidates);
  logger().debug("backend plugin = \"auto\": measured {} backends in {:.1f} s", candidates.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (load_before > available_cpus()) {
    logger().warn("backend plugin = \"auto\": measured while the machine was busy (load average {:.1f} on {} CPUs); "
                  "delete {} to measure again when it is quiet",
                  load_before, available_cpus(), usable ? file.string() : std::string("nothing"));
  }
  if (usable) {
    nlohmann::json entry = {{"images_per_second", out.images_per_second},
                            {"fastest", out.fastest},
                            {"load_average_before", load_before},
                            {"cpus", available_cpus()},
                            {"workload", "vae-mlp defaults, Gaussian likelihood, batch 128 of 32x32, fused Adam; median of 7 steps"}};
    cache[out.machine] = entry;
    try {
      write_file_atomic(file, cache.dump(2) + "\n");
      out.file = file;
    } catch (const Error& e) {
      logger().warn("backend plugin = \"auto\": the measurement is not kept: {}", e.what());
    }
  }
  return out;
}

}  // namespace vaelab
