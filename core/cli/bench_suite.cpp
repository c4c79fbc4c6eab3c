// `vaelab bench [--json]`: throughput of every backend that can run here, each figure a median of
// interleaved repeats measured in this one process, against two references measured alongside:
// the machine's matrix-product peak (oneDNN matmul) and the torch-cpu f32 backend.
//
// Lines: vae-mlp-train (the paper's Fashion-MNIST MLP, 1024-512-512-16 and mirrored, Gaussian
// likelihood, batch 128; achieved GFLOP/s from its exact matmul FLOPs),
// vae-conv-train (n_c = 64, CIFAR-sized), iwae-eval (K = 1000), diffusion-sample (Heun, 18 steps),
// and on torch-cpu f32 only bbans-compress / bbans-decompress (vaelab compress's coder with the
// paper MLP and a Bernoulli likelihood on binary 32×32 images, one thread as the command runs it).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/compress/run_codec.hpp>
#include <vaelab/config.hpp>
#include <vaelab/cpu.hpp>
#include <vaelab/data_source.hpp>
#include <vaelab/generator.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/log.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/metrics/iwae.hpp>
#include <vaelab/model.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/threads.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/fused_adam.hpp>
#include <vaelab/train/run.hpp>

#include "commands.hpp"
#include "gemm_peak.hpp"

namespace vaelab::cli {
namespace {

using Clock = std::chrono::steady_clock;

/// A plugin's defaults with some keys replaced (values given as TOML literals).
std::string plugin_config(const Registry& registry, vl_plugin_kind kind, const std::string& name,
                          const std::map<std::string, std::string>& set) {
  const PluginRecord& record = registry.find(kind, name);
  toml::table table = parse_toml(record.defaults_toml, name + "/defaults.toml");
  for (const auto& [key, literal] : set) {
    const toml::table value = parse_toml("v = " + literal, "bench setting " + key);
    table.insert_or_assign(key, *value.get("v"));
  }
  return format_toml(table);
}

struct Target {
  std::string backend;
  std::string precision;
  PluginPtr<Backend> instance;
};

/// Seconds per training step spent in each phase, summed over the measured steps.
struct Phases {
  double forward = 0;    ///< encode, sample, decode, likelihood, KL
  double backward = 0;   ///< autograd through all of it
  double optimizer = 0;  ///< dropping the gradients (clear_gradients) and Adam's update (the fused Adam where it can run)
  double torch_adam = 0; ///< torch::optim::Adam's update of copies of the weights with the same gradients
  int64_t steps = 0;
};

/// One benchmark line for one backend: `run()` does a fixed amount of work and returns the
/// images it processed.
struct Workload {
  std::string benchmark;
  Target* target = nullptr;
  std::function<int64_t()> run;
  double flops_per_image = 0;  ///< 0 when not counted
  std::vector<double> rates;
  std::shared_ptr<Phases> phases;  ///< training lines: where a step's time goes (a separate pass)
  std::function<void()> profile;   ///< runs the workload once more with `phases` timing on
  /// Bytes Adam must move per image trained: 28 per parameter per step (f32 Adam reads the
  /// parameter, its gradient and both moments and writes back three) over the batch. 0 = no limit.
  double optimizer_bytes_per_image = 0;
  std::string optimizer_name = {};  ///< of a training line
};

/// Bytes f32 Adam moves per parameter per step.
constexpr double kAdamBytesPerParameter = 28;

int64_t parameter_count(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

/// Exact matrix-product FLOPs of one training step per image of an MLP VAE: each dense layer
/// [out, in] costs 2·in·out forward, 2·in·out for its weight gradient and 2·in·out for its input
/// gradient, except the first encoder layer, whose input (the data) needs no gradient.
double mlp_training_flops(torch::nn::Module& module, int64_t pixels) {
  double flops = 0;
  bool data_layer_seen = false;
  for (const auto& p : module.named_parameters(true)) {
    if (p.value().dim() != 2) continue;
    const double in = static_cast<double>(p.value().size(1));
    const double out = static_cast<double>(p.value().size(0));
    flops += 6 * in * out;
    if (in == static_cast<double>(pixels) && !data_layer_seen) {
      flops -= 2 * in * out;
      data_layer_seen = true;
    }
  }
  return flops;
}

std::unique_ptr<Likelihood> likelihood_named(const std::string& name) {
  return make_likelihood(ConfigTable::parse("name = \"" + name + "\"\nsigma = 0.1\nmixtures = 10\n", "likelihood"));
}

struct ModelSetup {
  PluginPtr<Model> model;
  std::unique_ptr<Likelihood> likelihood;
  std::unique_ptr<torch::optim::Adam> optimizer;  ///< what training uses (make_adam, fused where it can)
  std::string optimizer_name;
  /// torch's Adam on copies of the weights that share the model's gradients: the reference the
  /// phases compare the optimizer with.
  std::vector<torch::Tensor> shadow;
  std::unique_ptr<torch::optim::Adam> torch_adam;
  torch::Tensor batch;
};

ModelSetup make_model(const Registry& registry, const std::string& model_name,
                      const std::map<std::string, std::string>& model_set, Backend& backend,
                      const std::string& likelihood, int64_t channels, int64_t side, int64_t batch) {
  ModelSetup m;
  m.likelihood = likelihood_named(likelihood);
  torch::manual_seed(0);
  m.model = registry.create<Model>(model_name, plugin_config(registry, VL_PLUGIN_KIND_MODEL, model_name, model_set));
  ModelSpec spec{channels, side, side, m.likelihood->param_channels(channels)};
  m.model->build(spec, backend);
  m.model->module().to(backend.device());
  const auto params = m.model->module().parameters();
  m.optimizer = make_adam(params, torch::optim::AdamOptions(1e-4), true, &m.optimizer_name);
  for (const auto& p : params) m.shadow.push_back(p.detach().clone().requires_grad_());
  m.torch_adam = std::make_unique<torch::optim::Adam>(m.shadow, torch::optim::AdamOptions(1e-4));
  at::Generator gen = shim::make_cpu_generator(1);
  torch::Tensor x = shim::rand({batch, channels, side, side}, torch::TensorOptions(), gen);
  if (likelihood == "bernoulli") x = x.gt(0.5).to(torch::kFloat32);
  if (likelihood == "mol") x = x.mul(255).round().div(255);
  m.batch = x.to(backend.device());
  return m;
}

/// The BB-ANS coder of `vaelab compress` with the paper MLP (random weights: coding costs the same
/// whatever they are) on binary 32×32 images, one thread as the command runs it.
struct BbansBench {
  ModelSetup setup;
  compress::CodecSettings settings;
  std::unique_ptr<compress::TorchCodingModel> coding;
  std::vector<uint8_t> images;
  std::vector<compress::LaneStream> lanes;

  static void one_thread() {
    at::set_num_threads(1);
    set_blas_threads(1);
  }
  int64_t compress() {
    one_thread();
    lanes = compress::bbans_encode(settings, *coding, images.data(), count(), 1);
    return count();
  }
  int64_t decompress() {
    one_thread();
    std::vector<uint8_t> back(images.size());
    compress::bbans_decode(settings, *coding, lanes, count(), 1, back.data());
    if (back != images) throw Error("bench bbans-decompress: the images did not come back");
    return count();
  }
  int64_t count() const { return static_cast<int64_t>(images.size()) / settings.image_symbols(); }
};

BbansBench make_bbans_bench(const Registry& registry, Backend& backend, int64_t count) {
  BbansBench b;
  b.setup = make_model(registry, "vae-mlp", {{"hidden", "[512, 512]"}, {"latent", "16"}}, backend, "bernoulli", 1,
                       32, 1);
  b.setup.model->module().eval();
  b.settings.likelihood = compress::LikelihoodKind::bernoulli;
  b.settings.channels = 1;
  b.settings.height = 32;
  b.settings.width = 32;
  b.settings.latent_dims = 16;
  const ConfigTable defaults = ConfigTable::parse(std::string(core_defaults_toml()), "core/defaults.toml").sub("compress");
  b.settings.latent_precision = static_cast<int>(defaults.get_int("latent_precision"));
  b.settings.posterior_precision = static_cast<int>(defaults.get_int("posterior_precision"));
  b.settings.likelihood_precision = static_cast<int>(defaults.get_int("likelihood_precision"));
  b.settings.lanes = defaults.get_int("lanes");
  b.coding = std::make_unique<compress::TorchCodingModel>(*b.setup.model, b.settings, true);
  // Discs of varying radius on a blank background, like binarized objects.
  b.images.resize(static_cast<size_t>(count * 1024));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t r2 = 20 + (i * 37) % 120;
    for (int64_t p = 0; p < 1024; ++p) {
      const int64_t y = p / 32 - 16, x = p % 32 - 16;
      b.images[static_cast<size_t>(i * 1024 + p)] = static_cast<uint8_t>(x * x + y * y < r2 ? 1 : 0);
    }
  }
  b.compress();
  return b;
}

/// `steps` Adam steps on the negative ELBO of one fixed batch; returns the images trained on.
/// With `phases`, each phase is timed (after a device synchronize) and added to it.
int64_t train_steps(ModelSetup& m, int steps, Backend& backend, Phases* phases = nullptr) {
  m.model->module().train();
  const auto lap = [&backend](Clock::time_point& since) {
    backend.synchronize();
    const auto now = Clock::now();
    const double s = std::chrono::duration<double>(now - since).count();
    since = now;
    return s;
  };
  for (int k = 0; k < steps; ++k) {
    auto t = Clock::now();
    clear_gradients(*m.optimizer);
    const torch::Tensor loss = -elbo_terms(*m.model, *m.likelihood, m.batch, 1).elbo.mean();
    const double forward = phases != nullptr ? lap(t) : 0;
    loss.backward();
    const double backward = phases != nullptr ? lap(t) : 0;
    m.optimizer->step();
    if (phases != nullptr) {
      phases->forward += forward;
      phases->backward += backward;
      phases->optimizer += lap(t);
      const auto params = m.model->module().parameters();
      for (size_t i = 0; i < params.size(); ++i) m.shadow[i].mutable_grad() = params[i].grad();
      lap(t);
      m.torch_adam->step();
      phases->torch_adam += lap(t);
      ++phases->steps;
    }
  }
  return steps * m.batch.size(0);
}

}  // namespace

int bench_suite(const BenchOptions& options) {
  const Registry registry(Registry::search_path({}));
  const int repeats = std::max(1, options.repeats);
  const bool quick = options.quick;
  // Other work on the machine before this one starts: a shared machine's figures come out lower
  // than it can do, and the ratios (measured in the same run) are what to compare.
  const double load_before = load_average();

  // ---- The references: the GEMM peak per precision, on every CPU this process may use ------------
  at::set_num_threads(available_cpus());
  nlohmann::json peak = nlohmann::json::object();
  std::map<std::string, double> peak_gflops;
  for (const std::string precision : {"f32", "bf16"}) {
    std::string why;
    const std::optional<GemmPeak> p = measure_gemm_peak(precision, repeats, quick, why);
    if (p) {
      peak[precision] = p->gflops;
      peak_gflops[precision] = p->gflops;
    } else {
      peak[precision] = nullptr;
      logger().warn("{}", why);
    }
  }

  // The second: the same products on the paper MLP's own shapes (batch 128), where small matrices
  // (and, in bf16, AMX tiles) behave unlike large square ones.
  const std::vector<DenseShape> mlp_layers = {{1024, 512}, {512, 512}, {512, 32}, {16, 512}, {512, 512}, {512, 1024}};
  nlohmann::json shape_peak = nlohmann::json::object();
  std::map<std::string, double> shape_gflops;
  for (const std::string precision : {"f32", "bf16"}) {
    std::string why;
    const std::optional<double> g = measure_layer_shapes_gflops(precision, mlp_layers, 128, repeats, quick, why);
    shape_peak[precision] = g ? nlohmann::json(*g) : nlohmann::json(nullptr);
    if (g) shape_gflops[precision] = *g;
  }

  // The third reference: how fast memory moves, for the optimizer's share of a training step.
  const double bandwidth_gb_per_s = measure_triad_bandwidth(available_cpus(), repeats, quick);

  // ---- The backends that can run here, each in each precision it offers -------------------------
  std::vector<std::unique_ptr<Target>> targets;
  for (const std::string name : {"torch-cpu", "onednn-cpu", "torch-cuda"}) {
    if (name != "torch-cpu" && !options.backends.empty() &&
        std::find(options.backends.begin(), options.backends.end(), name) == options.backends.end()) {
      continue;
    }
    bool has_precision = false;
    try {
      has_precision = registry.find(VL_PLUGIN_KIND_BACKEND, name).defaults_toml.find("\nprecision") != std::string::npos;
    } catch (const Error& e) {
      logger().info("bench: {}", e.what());
      continue;
    }
    for (const std::string precision : {"f32", "bf16"}) {
      if (precision == "bf16" && !has_precision) continue;
      auto t = std::make_unique<Target>();
      t->backend = name;
      t->precision = precision;
      try {
        std::map<std::string, std::string> set;
        if (has_precision) set["precision"] = "\"" + precision + "\"";
        for (const std::string& word : options.sets) {
          const size_t dot = word.find('.');
          const size_t eq = word.find('=');
          if (dot == std::string::npos || eq == std::string::npos || eq < dot) {
            throw ConfigError("bench --set " + word + ": expected BACKEND.KEY=VALUE, e.g. onednn-cpu.threads=2");
          }
          if (word.substr(0, dot) == name) set[word.substr(dot + 1, eq - dot - 1)] = word.substr(eq + 1);
        }
        t->instance = registry.create<Backend>(name, plugin_config(registry, VL_PLUGIN_KIND_BACKEND, name, set));
      } catch (const Error& e) {
        logger().info("bench: {} {} cannot run here: {}", name, precision, e.what());
        continue;
      }
      targets.push_back(std::move(t));
    }
  }
  if (targets.empty() || targets.front()->backend != "torch-cpu") {
    throw Error("bench: the reference backend torch-cpu is not available (`vaelab plugins` says why)");
  }

  // ---- The workloads --------------------------------------------------------------------------
  const int mlp_steps = quick ? 2 : 20;
  const int conv_steps = quick ? 1 : 3;
  const int64_t conv_batch = quick ? 8 : 32;
  const int64_t iwae_batch = quick ? 2 : 8;
  const int64_t diffusion_images = quick ? 8 : 64;
  std::vector<std::shared_ptr<ModelSetup>> keep_alive;
  std::vector<PluginPtr<Generator>> generators;
  std::vector<Workload> work;
  for (auto& tp : targets) {
    Target& t = *tp;
    Backend& backend = *t.instance;
    backend.apply_threads();

    auto mlp = std::make_shared<ModelSetup>(make_model(registry, "vae-mlp", {{"hidden", "[512, 512]"}, {"latent", "16"}},
                                                       backend, "gaussian", 1, 32, 128));
    keep_alive.push_back(mlp);
    auto mlp_phases = std::make_shared<Phases>();
    work.push_back({"vae-mlp-train", &t, [mlp, mlp_steps, &backend] { return train_steps(*mlp, mlp_steps, backend); },
                    mlp_training_flops(mlp->model->module(), 32 * 32), {}, mlp_phases,
                    [mlp, mlp_steps, &backend, mlp_phases] { train_steps(*mlp, mlp_steps, backend, mlp_phases.get()); }});
    work.back().optimizer_name = mlp->optimizer_name;
    work.back().optimizer_bytes_per_image = kAdamBytesPerParameter *
                                            static_cast<double>(parameter_count(mlp->model->module())) /
                                            static_cast<double>(mlp->batch.size(0));

    auto conv = std::make_shared<ModelSetup>(make_model(registry, "vae-conv", {{"n_c", "64"}}, backend, "mol", 3,
                                                        32, conv_batch));
    keep_alive.push_back(conv);
    auto conv_phases = std::make_shared<Phases>();
    work.push_back({"vae-conv-train", &t, [conv, conv_steps, &backend] { return train_steps(*conv, conv_steps, backend); },
                    0, {}, conv_phases,
                    [conv, conv_steps, &backend, conv_phases] {
                      train_steps(*conv, conv_steps, backend, conv_phases.get());
                    }});
    work.back().optimizer_name = conv->optimizer_name;

    work.push_back({"iwae-eval", &t, [mlp, iwae_batch] {
                      torch::NoGradGuard no_grad;
                      mlp->model->module().eval();
                      at::Generator noise = shim::make_cpu_generator(2);
                      const torch::Tensor x = mlp->batch.slice(0, 0, iwae_batch);
                      iwae_bound(*mlp->model, *mlp->likelihood, x, 1000, 250, &noise);
                      return iwae_batch;
                    }, 0, {}, nullptr, nullptr});

    // A diffusion model fitted for a few steps on random images: sampling costs the same whatever
    // the weights are.
    PluginPtr<Generator> gen = registry.create<Generator>(
        "gen-diffusion", plugin_config(registry, VL_PLUGIN_KIND_GENERATOR, "gen-diffusion",
                                       {{"steps", "2"}, {"batch_size", "64"}, {"sample_batch", "64"}}));
    gen->attach(backend);
    ImageSet train;
    train.count = 256;
    train.channels = 1;
    train.height = 28;
    train.width = 28;
    train.pixels.resize(static_cast<size_t>(train.count * train.image_bytes()));
    for (size_t i = 0; i < train.pixels.size(); ++i) train.pixels[i] = static_cast<uint8_t>((i * 2654435761u) >> 24);
    FitBudget budget;
    budget.steps = 2;
    gen->fit(train, budget, [](int64_t, int64_t, double) { return true; });
    Generator* g = gen.get();
    generators.push_back(std::move(gen));
    work.push_back({"diffusion-sample", &t, [g, diffusion_images] {
                      return g->sample(diffusion_images, 0).count;
                    }, 0, {}, nullptr, nullptr});
  }

  // vaelab compress's coder (docs/compression.md), on the backend and thread count it always uses.
  for (auto& tp : targets) {
    Target& t = *tp;
    if (t.backend != "torch-cpu" || t.precision != "f32") continue;
    const int64_t images = quick ? 32 : 512;
    auto coder = std::make_shared<BbansBench>(make_bbans_bench(registry, *t.instance, images));
    work.push_back({"bbans-compress", &t, [coder] { return coder->compress(); }, 0, {}, nullptr, nullptr});
    work.push_back({"bbans-decompress", &t, [coder] { return coder->decompress(); }, 0, {}, nullptr, nullptr});
  }

  // ---- Measure: every workload once per repeat, interleaved, after a warm-up ---------------------
  for (auto& w : work) {
    w.target->instance->apply_threads();
    w.run();
  }
  for (int r = 0; r < repeats; ++r) {
    for (auto& w : work) {
      Backend& backend = *w.target->instance;
      backend.apply_threads();
      backend.synchronize();
      const auto start = Clock::now();
      const int64_t images = w.run();
      backend.synchronize();
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      w.rates.push_back(static_cast<double>(images) / s);
    }
  }
  // The phase profile is a separate pass: the synchronizing laps must not slow the timed runs.
  for (auto& w : work) {
    if (!w.profile) continue;
    w.target->instance->apply_threads();
    w.profile();
  }

  // ---- Report -----------------------------------------------------------------------------------
  std::map<std::string, double> reference;  // benchmark → torch-cpu f32 images/s
  for (const auto& w : work) {
    if (w.target->backend == "torch-cpu" && w.target->precision == "f32") reference[w.benchmark] = median(w.rates);
  }
  nlohmann::json results = nlohmann::json::array();
  for (const auto& w : work) {
    const double ips = median(w.rates);
    nlohmann::json line = {{"benchmark", w.benchmark},
                           {"backend", w.target->backend},
                           {"precision", w.target->precision},
                           {"images_per_second", ips},
                           {"gflops", nullptr},
                           {"fraction_of_peak", nullptr},
                           {"fraction_of_limit", nullptr},
                           {"ratio_vs_torch_cpu", ips / reference.at(w.benchmark)}};
    if (w.phases && w.phases->steps > 0) {
      const double n = static_cast<double>(w.phases->steps);
      line["step_seconds"] = {{"forward", w.phases->forward / n},
                              {"backward", w.phases->backward / n},
                              {"optimizer", w.phases->optimizer / n},
                              {"torch_adam", w.phases->torch_adam / n}};
      line["optimizer"] = w.optimizer_name;
    }
    if (w.flops_per_image > 0) {
      const double gflops = ips * w.flops_per_image / 1e9;
      line["gflops"] = gflops;
      line["flops_per_image"] = w.flops_per_image;
      const auto p = peak_gflops.find(w.target->precision);
      if (p != peak_gflops.end() && w.target->instance->device().is_cpu()) {
        line["fraction_of_peak"] = gflops / p->second;
        const auto s = shape_gflops.find(w.target->precision);
        if (w.benchmark == "vae-mlp-train" && s != shape_gflops.end()) line["fraction_of_layer_shape_peak"] = gflops / s->second;
        // The memory-aware limit: the products at the GEMM peak plus the optimizer's bytes at the
        // triad bandwidth, one after the other.
        const double limit_seconds_per_image =
            w.flops_per_image / (p->second * 1e9) + w.optimizer_bytes_per_image / (bandwidth_gb_per_s * 1e9);
        line["limit_images_per_second"] = 1.0 / limit_seconds_per_image;
        line["fraction_of_limit"] = ips * limit_seconds_per_image;
      }
    }
    results.push_back(line);
  }
  nlohmann::json out = {{"gemm_peak_gflops", peak},
                        {"gemm_mlp_shapes_gflops", shape_peak},
                        {"results", results},
                        {"repeats", repeats},
                        {"quick", quick},
                        {"cpus", available_cpus()},
                        {"onednn", onednn_description()},
                        {"isa", onednn_isa()},
                        {"memory_bandwidth_gb_per_s", bandwidth_gb_per_s},
                        {"cpu_isa", cpu_isa_name(cpu_features())},
                        {"blas_core", blas_core_name()},
                        {"blas", blas_kernels_report()},
                        {"load_average_before", load_before < 0 ? nlohmann::json() : nlohmann::json(load_before)},
                        {"reference", "torch-cpu f32 on the same benchmark line"}};
  if (options.json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("GEMM peak (oneDNN matmul, median of %d): f32 %s GFLOP/s, bf16 %s GFLOP/s  [%s]\n", repeats,
              peak["f32"].is_null() ? "n/a" : std::to_string(static_cast<int>(peak["f32"].get<double>())).c_str(),
              peak["bf16"].is_null() ? "n/a" : std::to_string(static_cast<int>(peak["bf16"].get<double>())).c_str(),
              onednn_description().c_str());
  std::printf("GEMM on the paper MLP's shapes (one training step's products, batch 128): f32 %s GFLOP/s, bf16 %s GFLOP/s\n",
              shape_peak["f32"].is_null() ? "n/a" : std::to_string(static_cast<int>(shape_peak["f32"].get<double>())).c_str(),
              shape_peak["bf16"].is_null() ? "n/a" : std::to_string(static_cast<int>(shape_peak["bf16"].get<double>())).c_str());
  std::printf("memory bandwidth (triad, median): %.1f GB/s; CPU %s; %s\n", bandwidth_gb_per_s,
              cpu_isa_name(cpu_features()).c_str(), blas_kernels_report().c_str());
  if (load_before >= 0.5) {
    std::printf("load average %.2f on %d CPUs before this run: other work was running, so these figures are lower "
                "than this machine can do; compare the ratios, and repeat when it is idle\n",
                load_before, available_cpus());
  } else if (load_before >= 0) {
    std::printf("load average %.2f on %d CPUs before this run\n", load_before, available_cpus());
  }
  // "of peak": the products alone at the GEMM peak; "of limit": products and the optimizer's bytes.
  std::printf("%-17s %-11s %-5s %12s %9s %8s %9s %8s\n", "benchmark", "backend", "prec", "images/s", "GFLOP/s",
              "of peak", "of limit", "vs torch");
  for (const auto& line : results) {
    const auto fmt = [](const nlohmann::json& v, const char* f) {
      if (v.is_null()) return std::string("-");
      char buf[32];
      std::snprintf(buf, sizeof buf, f, v.get<double>());
      return std::string(buf);
    };
    const auto percent = [&fmt](const nlohmann::json& v) {
      return v.is_null() ? std::string("-") : fmt(v.get<double>() * 100, "%.0f%%");
    };
    std::printf("%-17s %-11s %-5s %12.1f %9s %8s %9s %7.2fx\n", line["benchmark"].get<std::string>().c_str(),
                line["backend"].get<std::string>().c_str(), line["precision"].get<std::string>().c_str(),
                line["images_per_second"].get<double>(), fmt(line["gflops"], "%.1f").c_str(),
                percent(line["fraction_of_peak"]).c_str(), percent(line["fraction_of_limit"]).c_str(),
                line["ratio_vs_torch_cpu"].get<double>());
  }
  std::printf("\nwhere a training step's time goes (ms per step: forward+loss / backward / the optimizer used;\n"
              "and torch::optim::Adam on the same gradients, for comparison):\n");
  for (const auto& line : results) {
    if (!line.contains("step_seconds")) continue;
    const auto& p = line["step_seconds"];
    std::printf("%-17s %-11s %-5s %8.2f %8.2f %8.2f  %-10s torch Adam %8.2f\n", line["benchmark"].get<std::string>().c_str(),
                line["backend"].get<std::string>().c_str(), line["precision"].get<std::string>().c_str(),
                p["forward"].get<double>() * 1e3, p["backward"].get<double>() * 1e3,
                p["optimizer"].get<double>() * 1e3, line.value("optimizer", std::string()).c_str(),
                p["torch_adam"].get<double>() * 1e3);
  }
  return 0;
}

}  // namespace vaelab::cli
