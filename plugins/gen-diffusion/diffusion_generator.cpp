#include "diffusion_generator.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/error.hpp>
#include <vaelab/gen/pixels.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/plugin.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/fused_adam.hpp>
#include <vaelab_plugin_defaults.h>

namespace vaelab::plugins {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr const char* kFormat = "vaelab-gen-diffusion/1";
constexpr double kAdamEpsilon = 1e-8;

/// The plugin's defaults with the given table on top, checked against the defaults' keys.
ConfigTable resolve(const ConfigTable& config) {
  const toml::table defaults = parse_toml(VAELAB_PLUGIN_DEFAULTS_TOML, "gen-diffusion defaults.toml");
  validate_against_schema(config.table(), defaults, config.path());
  return ConfigTable(merge_tables(defaults, config.table()), config.path());
}

double positive(const ConfigTable& c, const char* key) {
  const double v = c.get_double(key);
  if (!(v > 0) || !std::isfinite(v)) {
    throw ConfigError(c.key_path(key) + ": must be a positive number, got " + std::to_string(v));
  }
  return v;
}

double in_unit_interval(const ConfigTable& c, const char* key) {
  const double v = c.get_double(key);
  if (!(v >= 0 && v < 1)) throw ConfigError(c.key_path(key) + ": must be in [0, 1), got " + std::to_string(v));
  return v;
}

/// A per-step seed: step s of a fit draws from (seed, s) alone, so a resumed fit is exact.
uint64_t step_seed(uint64_t seed, int64_t step) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Seeds the global CPU generator for the scope (layers initialise from it) and restores it after.
class ScopedGlobalSeed {
 public:
  explicit ScopedGlobalSeed(uint64_t seed)
      : gen_(at::detail::getDefaultCPUGenerator()), saved_(gen_.get_state()) {
    gen_.set_current_seed(seed);
  }
  ~ScopedGlobalSeed() { gen_.set_state(saved_); }
  ScopedGlobalSeed(const ScopedGlobalSeed&) = delete;
  ScopedGlobalSeed& operator=(const ScopedGlobalSeed&) = delete;

 private:
  at::Generator gen_;
  torch::Tensor saved_;
};

Json architecture_json(const DiffusionArchitecture& a) {
  return {{"space", a.space},
          {"pca_dims", a.pca_dims},
          {"network", a.network},
          {"mlp_width", a.mlp_width},
          {"mlp_blocks", a.mlp_blocks},
          {"unet_channels", a.unet_channels},
          {"unet_multipliers", a.unet_multipliers},
          {"unet_blocks", a.unet_blocks},
          {"unet_attention", a.unet_attention},
          {"embedding_dims", a.embedding_dims},
          {"sigma_data", a.sigma_data}};
}

DiffusionArchitecture architecture_from_json(const Json& j) {
  DiffusionArchitecture a;
  a.space = j.at("space").get<std::string>();
  a.pca_dims = j.at("pca_dims").get<int64_t>();
  a.network = j.at("network").get<std::string>();
  a.mlp_width = j.at("mlp_width").get<int64_t>();
  a.mlp_blocks = j.at("mlp_blocks").get<int64_t>();
  a.unet_channels = j.at("unet_channels").get<int64_t>();
  a.unet_multipliers = j.at("unet_multipliers").get<std::vector<int64_t>>();
  a.unet_blocks = j.at("unet_blocks").get<int64_t>();
  a.unet_attention = j.at("unet_attention").get<std::vector<int64_t>>();
  a.embedding_dims = j.at("embedding_dims").get<int64_t>();
  a.sigma_data = j.at("sigma_data").get<double>();
  return a;
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error("gen-diffusion: cannot read " + file.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Loads a safetensors file of a save and checks it belongs to the save with step counter `step`.
NamedTensors load_part(const fs::path& file, int64_t step) {
  if (!fs::exists(file)) throw Error("gen-diffusion: missing " + file.string());
  std::map<std::string, std::string> metadata;
  NamedTensors tensors = load_safetensors(file, &metadata);
  const auto it = metadata.find("step");
  if (it == metadata.end() || it->second != std::to_string(step)) {
    throw Error("gen-diffusion: " + file.string() + " is from step " +
                (it == metadata.end() ? std::string("?") : it->second) + ", state.json from step " +
                std::to_string(step) + " (an interrupted save?)");
  }
  return tensors;
}

torch::Tensor take(std::map<std::string, torch::Tensor>& by_name, const std::string& name,
                   const fs::path& file) {
  const auto it = by_name.find(name);
  if (it == by_name.end()) throw Error("gen-diffusion: " + file.string() + " has no tensor '" + name + "'");
  return it->second;
}

}  // namespace

DiffusionGenerator::DiffusionGenerator(const ConfigTable& given) {
  const ConfigTable c = resolve(given);
  arch_.space = c.get_choice("space", {"pixel", "pca"});
  arch_.pca_dims = c.get_int_in("pca_dims", 1, 1 << 20);
  arch_.network = c.get_choice("network", {"mlp", "unet"});
  arch_.mlp_width = c.get_int_in("mlp_width", 1, 1 << 16);
  arch_.mlp_blocks = c.get_int_in("mlp_blocks", 0, 256);
  arch_.unet_channels = c.get_int_in("unet_channels", 1, 4096);
  arch_.unet_multipliers = c.get_int_array("unet_multipliers");
  arch_.unet_blocks = c.get_int_in("unet_blocks", 1, 16);
  arch_.unet_attention = c.get_int_array("unet_attention");
  arch_.embedding_dims = c.get_int_in("embedding_dims", 2, 1 << 16);
  if (arch_.embedding_dims % 2 != 0) throw ConfigError(c.key_path("embedding_dims") + ": must be even");
  arch_.sigma_data = positive(c, "sigma_data");
  if (arch_.unet_multipliers.empty() || arch_.unet_multipliers.size() > 8) {
    throw ConfigError(c.key_path("unet_multipliers") + ": needs 1 to 8 levels");
  }
  for (const int64_t m : arch_.unet_multipliers) {
    if (m < 1 || m > 64) throw ConfigError(c.key_path("unet_multipliers") + ": multipliers must be in [1, 64]");
  }
  for (const int64_t l : arch_.unet_attention) {
    if (l < 0 || l >= static_cast<int64_t>(arch_.unet_multipliers.size())) {
      throw ConfigError(c.key_path("unet_attention") + ": level " + std::to_string(l) +
                        " is not one of the unet_multipliers' levels");
    }
  }
  if (arch_.network == "unet" && arch_.space != "pixel") {
    throw ConfigError(c.key_path("network") + ": the U-Net needs space = \"pixel\"");
  }

  training_.steps = c.get_int_in("steps", 1, int64_t{1} << 40);
  training_.batch_size = c.get_int_in("batch_size", 1, 1 << 20);
  training_.lr = positive(c, "lr");
  training_.lr_warmup_steps = c.get_int_in("lr_warmup_steps", 0, int64_t{1} << 40);
  training_.beta1 = in_unit_interval(c, "adam_beta1");
  training_.beta2 = in_unit_interval(c, "adam_beta2");
  training_.ema_decay = in_unit_interval(c, "ema_decay");
  training_.p_mean = c.get_double("p_mean");
  training_.p_std = positive(c, "p_std");
  training_.dropout = c.get_double("dropout");
  if (!(training_.dropout >= 0 && training_.dropout < 1)) {
    throw ConfigError(c.key_path("dropout") + ": must be in [0, 1)");
  }
  training_.seed = static_cast<uint64_t>(c.get_int_in("seed", 0, INT64_MAX));
  training_.pca_whiten = c.get_bool("pca_whiten");

  sampler_.steps = c.get_int_in("sampler_steps", 1, 10000);
  sampler_.sigma_min = positive(c, "sigma_min");
  sampler_.sigma_max = positive(c, "sigma_max");
  if (!(sampler_.sigma_max > sampler_.sigma_min)) {
    throw ConfigError(c.key_path("sigma_max") + ": must be larger than sigma_min");
  }
  sampler_.rho = positive(c, "rho");
  sampler_.s_churn = c.get_double("s_churn");
  if (!(sampler_.s_churn >= 0)) throw ConfigError(c.key_path("s_churn") + ": must be >= 0");
  sampler_.s_tmin = c.get_double("s_tmin");
  sampler_.s_tmax = c.get_double("s_tmax");
  sampler_.s_noise = c.get_double("s_noise");
  if (!(sampler_.s_noise >= 0)) throw ConfigError(c.key_path("s_noise") + ": must be >= 0");
  sample_batch_ = c.get_int_in("sample_batch", 1, 1 << 24);
}

void DiffusionGenerator::attach(Backend& backend) { backend_ = &backend; }

torch::Device DiffusionGenerator::device() const {
  if (backend_ == nullptr) throw Error("gen-diffusion: attach(backend) must come before fit, load or sample");
  return backend_->device();
}

std::vector<int64_t> DiffusionGenerator::space_shape() const {
  if (arch_.space == "pca") return {arch_.pca_dims};
  return image_shape_;
}

std::shared_ptr<DenoiserNet> DiffusionGenerator::make_network() {
  if (arch_.network == "mlp") {
    int64_t dims = 1;
    for (const int64_t d : space_shape()) dims *= d;
    auto net = std::make_shared<MlpDenoiser>(*backend_, dims, arch_.mlp_width, arch_.mlp_blocks,
                                             arch_.embedding_dims);
    net->zero_output();
    return net;
  }
  const int64_t levels = static_cast<int64_t>(arch_.unet_multipliers.size());
  const int64_t factor = int64_t{1} << (levels - 1);
  if (image_shape_[1] % factor != 0 || image_shape_[2] % factor != 0) {
    throw Error("gen-diffusion: a U-Net with " + std::to_string(levels) + " levels needs height and width divisible by " +
                std::to_string(factor) + ", the images are " + std::to_string(image_shape_[1]) + "x" +
                std::to_string(image_shape_[2]));
  }
  UNetOptions o;
  o.image_channels = image_shape_[0];
  o.channels = arch_.unet_channels;
  o.multipliers = arch_.unet_multipliers;
  o.blocks = arch_.unet_blocks;
  o.attention = arch_.unet_attention;
  o.embedding_dims = arch_.embedding_dims;
  auto net = std::make_shared<UNetDenoiser>(*backend_, o);
  net->zero_output();
  return net;
}

void DiffusionGenerator::build_networks() {
  const torch::Device dev = device();
  {
    const ScopedGlobalSeed seeded(training_.seed);
    net_ = make_network();
  }
  ema_ = make_network();
  net_->to(dev);
  ema_->to(dev);
  torch::NoGradGuard no_grad;
  const auto from = net_->parameters();
  auto to = ema_->parameters();
  adam_m_.clear();
  adam_v_.clear();
  for (size_t i = 0; i < from.size(); ++i) {
    to[i].copy_(from[i]);
    adam_m_.push_back(torch::zeros_like(from[i]));
    adam_v_.push_back(torch::zeros_like(from[i]));
  }
  ema_->eval();
  for (auto& p : ema_->parameters()) p.set_requires_grad(false);
}

int64_t DiffusionGenerator::parameter_count() const {
  int64_t n = 0;
  if (net_) {
    for (const auto& p : net_->parameters()) n += p.numel();
  }
  return n;
}

void DiffusionGenerator::fit_pca(const torch::Tensor& pixels) {
  const int64_t n = pixels.size(0);
  const torch::Tensor x = pixels.reshape({n, -1}).to(torch::kCPU, torch::kFloat64);
  const int64_t d = x.size(1);
  if (arch_.pca_dims > d) {
    throw Error("gen-diffusion: pca_dims = " + std::to_string(arch_.pca_dims) + " but the images have only " +
                std::to_string(d) + " values each");
  }
  const torch::Tensor mean = x.mean(0);
  const torch::Tensor centred = x - mean;
  const torch::Tensor cov = centred.t().mm(centred) / std::max<int64_t>(n - 1, 1);
  const auto [values, vectors] = torch::linalg::eigh(cov, "L");  // ascending
  const torch::Tensor order = torch::arange(d - 1, d - 1 - arch_.pca_dims, -1, torch::kLong);
  torch::Tensor components = vectors.index_select(1, order).t().contiguous();  // [k, D]
  // A deterministic sign: each component's largest entry is positive.
  const torch::Tensor peak = components.gather(1, components.abs().argmax(1, true));
  components = components * peak.sign().clamp_min(0).mul(2).sub(1);
  const torch::Tensor std_dev = values.index_select(0, order).clamp_min(0).sqrt();
  const double top = std_dev[0].item<double>();
  if (!(top > 0)) throw Error("gen-diffusion: the training images are all the same; nothing to fit");
  torch::Tensor scale;
  if (training_.pca_whiten) {
    scale = std_dev.clamp_min(1e-3 * top) / arch_.sigma_data;
  } else {
    scale = torch::full_like(std_dev, std_dev.square().mean().sqrt().item<double>() / arch_.sigma_data);
  }
  const torch::Device dev = device();
  pca_mean_ = mean.to(dev, torch::kFloat32);
  pca_components_ = components.to(dev, torch::kFloat32);
  pca_scale_ = scale.to(dev, torch::kFloat32);
}

torch::Tensor DiffusionGenerator::to_space(const ImageSet& images) const {
  const torch::Tensor x = bytes_to_signed_unit(pixel_tensor(images)).to(device());
  if (arch_.space == "pixel") return x;
  return (x.reshape({images.count, -1}) - pca_mean_).mm(pca_components_.t()) / pca_scale_;
}

std::vector<uint8_t> DiffusionGenerator::to_pixels(const torch::Tensor& z) const {
  torch::Tensor x = z;
  if (arch_.space == "pca") x = (z * pca_scale_).mm(pca_components_) + pca_mean_;
  const torch::Tensor bytes = signed_unit_to_bytes(x);
  return std::vector<uint8_t>(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
}

double DiffusionGenerator::train_step(const torch::Tensor& data) {
  at::Generator gen = shim::make_cpu_generator(step_seed(training_.seed, step_));
  const int64_t n = data.size(0), b = training_.batch_size;
  std::vector<torch::Tensor> perms;
  for (int64_t have = 0; have < b; have += n) perms.push_back(shim::randperm(n, gen));
  const torch::Tensor index = torch::cat(perms).slice(0, 0, b).to(data.device());
  const torch::Tensor y = data.index_select(0, index);
  const torch::Tensor sigma =
      edm::sample_training_sigma(b, training_.p_mean, training_.p_std, gen).to(data.device());
  std::vector<int64_t> row(static_cast<size_t>(y.dim()), 1);
  row[0] = b;
  const torch::Tensor noise = shim::randn_like(y, &gen) * sigma.reshape(row);

  net_->train();
  net_->set_dropout_generator(&gen);
  struct ClearGenerator {
    DenoiserNet& net;
    ~ClearGenerator() { net.set_dropout_generator(nullptr); }
  } clear{*net_};
  const edm::Denoiser d = edm::precondition(
      [this](const torch::Tensor& x, const torch::Tensor& c) { return net_->forward(x, c); }, arch_.sigma_data);
  const torch::Tensor weight = edm::loss_weight(sigma, arch_.sigma_data).reshape(row);
  const torch::Tensor loss = (weight * (d(y + noise, sigma) - y).square()).mean();
  auto params = net_->parameters();
  for (auto& p : params) p.mutable_grad() = torch::Tensor();
  loss.backward();

  torch::NoGradGuard no_grad;
  const double t = static_cast<double>(step_ + 1);
  const double warm = training_.lr_warmup_steps > 0
                          ? std::min(1.0, t / static_cast<double>(training_.lr_warmup_steps))
                          : 1.0;
  const double lr = training_.lr * warm;
  const double b1 = training_.beta1, b2 = training_.beta2;
  const AdamStepConstants adam = adam_step_constants(lr, b1, b2, kAdamEpsilon, step_ + 1);
  const double ema = std::min(training_.ema_decay, t / (9 + t));  // (1 + s) / (10 + s), s = step_
  auto ema_params = ema_->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor g = params[i].grad();
    if (g.defined()) {
      adam_update(params[i], g, adam_m_[i], adam_v_[i], adam);  // the fused loop on the CPU
    }
    ema_params[i].mul_(ema).add_(params[i], 1 - ema);
  }
  ++step_;
  return loss.item<double>();
}

void DiffusionGenerator::fit(const ImageSet& train, const FitBudget& budget, const FitProgress& progress) {
  const auto started = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  if (train.count < 1) throw Error("gen-diffusion: fit() needs at least one training image");
  if (train.channels < 1 || train.height < 1 || train.width < 1 ||
      train.pixels.size() != static_cast<size_t>(train.count * train.image_bytes())) {
    throw Error("gen-diffusion: the training set's pixel buffer does not match its shape");
  }
  const std::vector<int64_t> shape{train.channels, train.height, train.width};
  if (!net_) {
    image_shape_ = shape;
    if (arch_.space == "pca") {
      fit_pca(bytes_to_signed_unit(pixel_tensor(train)).reshape({train.count, train.image_bytes()}));
    }
    build_networks();
  } else if (image_shape_ != shape) {
    throw Error("gen-diffusion: the generator was fitted to " + std::to_string(image_shape_[0]) + "x" +
                std::to_string(image_shape_[1]) + "x" + std::to_string(image_shape_[2]) +
                " images; these are " + std::to_string(shape[0]) + "x" + std::to_string(shape[1]) + "x" +
                std::to_string(shape[2]));
  }
  const torch::Tensor data = to_space(train);
  net_->set_dropout(training_.dropout);  // a training setting: this fit's config, also on a resumed fit
  const int64_t total = budget.steps > 0 ? budget.steps : training_.steps;
  if (step_ >= total) {
    sdk::log().info("gen-diffusion: already at step {} of {}; nothing to fit", step_, total);
    return;
  }
  sdk::log().info("gen-diffusion: fitting {} images from step {} to {} ({} parameters, {} {})", train.count,
                  step_, total, parameter_count(), arch_.network, arch_.space);
  double last_checkpoint = 0;
  double accounted = 0;  // part of elapsed() already added to fit_seconds_
  const auto checkpoint = [&] {
    fit_seconds_ += elapsed() - accounted;
    accounted = elapsed();
    fs::create_directories(budget.checkpoint_directory);
    save(budget.checkpoint_directory);
    last_checkpoint = elapsed();
  };
  bool stopped = false;
  while (step_ < total) {
    last_loss_ = train_step(data);
    if (!std::isfinite(last_loss_)) {
      throw Error("gen-diffusion: the training loss is " + std::to_string(last_loss_) + " at step " +
                  std::to_string(step_) + "; try a lower lr");
    }
    if (progress && !progress(step_, total, last_loss_)) {
      stopped = true;
      break;
    }
    if (budget.seconds > 0 && elapsed() >= budget.seconds) {
      stopped = true;
      break;
    }
    if (!budget.checkpoint_directory.empty() && budget.checkpoint_every_seconds > 0 &&
        elapsed() - last_checkpoint >= budget.checkpoint_every_seconds && step_ < total) {
      checkpoint();
    }
  }
  if (stopped) sdk::log().info("gen-diffusion: stopped at step {} of {}", step_, total);
  if (!budget.checkpoint_directory.empty()) {
    checkpoint();
  } else {
    fit_seconds_ += elapsed() - accounted;
  }
}

ImageSet DiffusionGenerator::sample(int64_t n, uint64_t first_seed) {
  if (!ema_) throw Error("gen-diffusion: sample() needs a fitted or loaded generator");
  if (n < 0) throw Error("gen-diffusion: cannot sample a negative number of images");
  ImageSet out;
  out.count = n;
  out.channels = image_shape_[0];
  out.height = image_shape_[1];
  out.width = image_shape_[2];
  out.pixels.reserve(static_cast<size_t>(n * out.image_bytes()));
  out.labels.assign(static_cast<size_t>(n), -1);
  const edm::Denoiser d = edm::precondition(
      [this](const torch::Tensor& x, const torch::Tensor& c) { return ema_->forward(x, c); }, arch_.sigma_data);
  torch::NoGradGuard no_grad;
  for (int64_t start = 0; start < n; start += sample_batch_) {
    std::vector<uint64_t> seeds;
    for (int64_t i = start; i < std::min(n, start + sample_batch_); ++i) {
      seeds.push_back(first_seed + static_cast<uint64_t>(i));
    }
    const std::vector<uint8_t> pixels = to_pixels(edm::heun_sample(d, space_shape(), seeds, sampler_, device()));
    out.pixels.insert(out.pixels.end(), pixels.begin(), pixels.end());
  }
  return out;
}

void DiffusionGenerator::save(const std::string& directory) const {
  if (!net_) throw Error("gen-diffusion: nothing to save before fit() or load()");
  const fs::path dir(directory);
  const std::map<std::string, std::string> meta{{"step", std::to_string(step_)}, {"format", kFormat}};
  save_safetensors(dir / "network.safetensors", module_state(*ema_), meta);
  NamedTensors training;
  for (const auto& [name, t] : module_state(*net_)) training.emplace_back("net." + name, t);
  const auto named = net_->named_parameters(true);
  for (size_t i = 0; i < named.size(); ++i) {
    training.emplace_back("adam_m." + named[i].key(), adam_m_[i]);
    training.emplace_back("adam_v." + named[i].key(), adam_v_[i]);
  }
  save_safetensors(dir / "training.safetensors", training, meta);
  if (arch_.space == "pca") {
    save_safetensors(dir / "pca.safetensors",
                     {{"mean", pca_mean_}, {"components", pca_components_}, {"scale", pca_scale_}}, meta);
  }
  const Json state = {{"format", kFormat},
                      {"step", step_},
                      {"fit_seconds", fit_seconds_},
                      {"last_loss", last_loss_},
                      {"image_shape", image_shape_},
                      {"parameters", parameter_count()},
                      {"architecture", architecture_json(arch_)}};
  write_file_atomic(dir / "state.json", state.dump(2) + "\n");
}

void DiffusionGenerator::load(const std::string& directory) {
  const fs::path dir(directory);
  const fs::path state_file = dir / "state.json";
  if (!fs::exists(state_file)) throw Error("gen-diffusion: missing " + state_file.string());
  Json state;
  DiffusionArchitecture saved;
  int64_t step = 0;
  std::vector<int64_t> shape;
  try {
    state = Json::parse(read_text(state_file));
    if (state.at("format").get<std::string>() != kFormat) {
      throw Error("format " + state.at("format").dump() + " is not " + kFormat);
    }
    saved = architecture_from_json(state.at("architecture"));
    step = state.at("step").get<int64_t>();
    shape = state.at("image_shape").get<std::vector<int64_t>>();
    fit_seconds_ = state.at("fit_seconds").get<double>();
    last_loss_ = state.at("last_loss").is_number() ? state.at("last_loss").get<double>() : 0.0;
  } catch (const Json::exception& e) {
    throw Error("gen-diffusion: " + state_file.string() + ": " + e.what());
  } catch (const Error& e) {
    throw Error("gen-diffusion: " + state_file.string() + ": " + e.what());
  }
  if (shape.size() != 3 || step < 0) throw Error("gen-diffusion: " + state_file.string() + ": bad image_shape or step");
  if (architecture_json(saved) != architecture_json(arch_)) {
    sdk::log().warn("gen-diffusion: {} holds a network with {}; the config's architecture keys are ignored",
                    directory, architecture_json(saved).dump());
  }
  arch_ = saved;
  image_shape_ = shape;
  build_networks();

  const fs::path network_file = dir / "network.safetensors";
  load_module_state(*ema_, load_part(network_file, step), network_file.string());
  const fs::path training_file = dir / "training.safetensors";
  std::map<std::string, torch::Tensor> by_name;
  for (auto& [name, t] : load_part(training_file, step)) by_name.emplace(name, t);
  NamedTensors weights;
  for (const auto& [name, t] : by_name) {
    if (name.rfind("net.", 0) == 0) weights.emplace_back(name.substr(4), t);
  }
  load_module_state(*net_, weights, training_file.string());
  const auto named = net_->named_parameters(true);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < named.size(); ++i) {
    for (auto* moments : {&adam_m_, &adam_v_}) {
      const std::string name = (moments == &adam_m_ ? "adam_m." : "adam_v.") + named[i].key();
      const torch::Tensor t = take(by_name, name, training_file);
      if (t.sizes() != (*moments)[i].sizes()) {
        throw Error("gen-diffusion: " + training_file.string() + ": '" + name + "' has the wrong shape");
      }
      (*moments)[i].copy_(t);
    }
  }
  if (arch_.space == "pca") {
    const fs::path pca_file = dir / "pca.safetensors";
    std::map<std::string, torch::Tensor> pca;
    for (auto& [name, t] : load_part(pca_file, step)) pca.emplace(name, t);
    const int64_t d = image_shape_[0] * image_shape_[1] * image_shape_[2];
    pca_mean_ = take(pca, "mean", pca_file).to(device(), torch::kFloat32);
    pca_components_ = take(pca, "components", pca_file).to(device(), torch::kFloat32);
    pca_scale_ = take(pca, "scale", pca_file).to(device(), torch::kFloat32);
    if (pca_mean_.sizes() != torch::IntArrayRef({d}) ||
        pca_components_.sizes() != torch::IntArrayRef({arch_.pca_dims, d}) ||
        pca_scale_.sizes() != torch::IntArrayRef({arch_.pca_dims})) {
      throw Error("gen-diffusion: " + pca_file.string() + ": shapes do not match " + std::to_string(arch_.pca_dims) +
                  " components of " + std::to_string(d) + " values");
    }
  }
  step_ = step;
}

std::string DiffusionGenerator::describe() const {
  std::string what = "EDM diffusion (Karras et al. 2022), " + arch_.network + " denoiser ";
  what += arch_.space == "pca" ? "in a " + std::to_string(arch_.pca_dims) + "-dim PCA space" : "on pixels";
  const Json j = {{"what", what},
                  {"parameters", parameter_count()},
                  {"fit_steps", step_},
                  {"fit_seconds", fit_seconds_},
                  {"last_loss", last_loss_},
                  {"space", arch_.space},
                  {"pca_dims", arch_.space == "pca" ? arch_.pca_dims : 0},
                  {"network", arch_.network},
                  {"sampler_steps", sampler_.steps},
                  {"denoiser_evaluations_per_image", 2 * sampler_.steps - 1},
                  {"s_churn", sampler_.s_churn}};
  return j.dump();
}

}  // namespace vaelab::plugins
