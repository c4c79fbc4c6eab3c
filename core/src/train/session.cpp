// Stage 2 of a run, the session (docs/architecture.md): the backend (threads applied), the
// likelihood, the data source's Dataset with its subsets, the Preprocess step (8-bit → float),
// and the model built through the backend's layer factory with its parameter counts.
#include <vaelab/train/session.hpp>

#include <map>

#include <torch/torch.h>

#include <vaelab/cpu.hpp>
#include <vaelab/error.hpp>
#include <vaelab/log.hpp>

namespace vaelab {

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

OpenedData open_dataset(const RunConfig& config) {
  PluginPtr<DataSource> source =
      config.registry().create<DataSource>(config.plugin("data"), config.plugin_config("data"));
  Dataset dataset = source->open();
  return select_dataset(config, std::move(source), std::move(dataset));
}

OpenedData select_dataset(const RunConfig& config, PluginPtr<DataSource> source, Dataset dataset) {
  const ConfigTable data_cfg = config.section("data");
  OpenedData d;
  d.source = std::move(source);
  d.dataset = std::move(dataset);
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
  logger().info("CPU {}; {}", cpu_isa_name(cpu_features()), blas_kernels_report());

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

Evaluator make_evaluator(const RunConfig& config, Session& s) {
  return Evaluator(*s.model, *s.likelihood, s.backend->device(), config.section("eval"),
                   static_cast<uint64_t>(config.section("train").get_int("seed")));
}

}  // namespace vaelab
