#include "gan_generator.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <vaelab/error.hpp>
#include <vaelab/gen/pixels.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/plugin.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/fused_adam.hpp>

namespace vaelab::plugins {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kFormat = "vaelab-gen-gan/1";
constexpr const char* kStateFile = "gan.json";
constexpr const char* kGeneratorFile = "generator.safetensors";
constexpr const char* kEmaFile = "generator_ema.safetensors";
constexpr const char* kDiscriminatorFile = "discriminator.safetensors";
constexpr const char* kOptimizerFile = "optimizers.pt";

/// SplitMix64's finalizer (Steele, Lea & Flood 2014): decorrelates nearby seeds.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// The seed of the draws of training step `step`; the initial weights use step = -1.
uint64_t step_seed(uint64_t seed, int64_t step) {
  return mix(mix(seed) ^ static_cast<uint64_t>(step + 1));
}

double positive(const ConfigTable& config, const char* key) {
  const double v = config.get_double(key);
  if (!(v > 0))
    throw ConfigError(config.key_path(key) + ": must be positive, got " + std::to_string(v));
  return v;
}

double in_unit_interval(const ConfigTable& config, const char* key) {
  const double v = config.get_double(key);
  if (!(v >= 0 && v < 1)) {
    throw ConfigError(config.key_path(key) + ": must be in [0, 1), got " + std::to_string(v));
  }
  return v;
}

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

nlohmann::json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("gen-gan: cannot read " + file.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error("gen-gan: " + file.string() + " is not valid JSON: " + e.what());
  }
}

}  // namespace

GanGenerator::GanGenerator(const ConfigTable& config) {
  Settings& s = settings_;
  s.latent = config.get_int_in("latent", 1, 1 << 16);
  s.generator_width = config.get_int_in("generator_width", 1, 1 << 12);
  s.discriminator_width = config.get_int_in("discriminator_width", 1, 1 << 12);
  s.steps = config.get_int_in("steps", 1, int64_t{1} << 40);
  s.batch_size = config.get_int_in("batch_size", 1, 1 << 16);
  s.lr_generator = positive(config, "lr_generator");
  s.lr_discriminator = positive(config, "lr_discriminator");
  s.beta1 = in_unit_interval(config, "beta1");
  s.beta2 = in_unit_interval(config, "beta2");
  s.regularizer = config.get_choice("regularizer", {"r1", "spectral-norm", "none"});
  s.r1_gamma = config.get_double("r1_gamma");
  if (!(s.r1_gamma >= 0)) {
    throw ConfigError(config.key_path("r1_gamma") + ": must not be negative, got " +
                      std::to_string(s.r1_gamma));
  }
  s.power_iterations = config.get_int_in("power_iterations", 1, 100);
  s.ema_decay = in_unit_interval(config, "ema_decay");
  s.seed = static_cast<uint64_t>(config.get_int("seed"));
  s.sample_batch = config.get_int_in("sample_batch", 1, 1 << 20);
}

void GanGenerator::attach(Backend& backend) {
  if (backend_ != nullptr) throw Error("gen-gan: attach() called twice");
  backend_ = &backend;
}

void GanGenerator::build(int64_t channels, int64_t height, int64_t width) {
  if (backend_ == nullptr) throw Error("gen-gan: attach(backend) must come before fit() or load()");
  DcganShape::stages_for(channels, height, width);
  shape_.channels = channels;
  shape_.side = height;
  shape_.latent = settings_.latent;
  shape_.generator_width = settings_.generator_width;
  shape_.discriminator_width = settings_.discriminator_width;

  at::Generator init = shim::make_cpu_generator(step_seed(settings_.seed, -1));
  const bool spectral = settings_.regularizer == "spectral-norm";
  generator_ = std::make_shared<DcganGenerator>(shape_, *backend_);
  generator_->initialize(init);
  discriminator_ = std::make_shared<DcganDiscriminator>(shape_, *backend_, spectral,
                                                        settings_.power_iterations, init);
  discriminator_->initialize(init);
  const torch::Device device = backend_->device();
  generator_->to(device);
  discriminator_->to(device);
  if (settings_.ema_decay > 0) {
    ema_ = std::make_shared<DcganGenerator>(shape_, *backend_);
    ema_->to(device);
    torch::NoGradGuard no_grad;
    const auto from = generator_->named_parameters(true);
    for (auto& p : ema_->named_parameters(true)) {
      p.value().copy_(from[p.key()]);
      p.value().set_requires_grad(false);
    }
    ema_->eval();
  }
  const auto adam = [&](double lr) {
    return torch::optim::AdamOptions(lr).betas(std::make_tuple(settings_.beta1, settings_.beta2));
  };
  // The fused Adam on the CPU (torch's elsewhere); its state saves and loads as torch's does.
  generator_optimizer_ = make_adam(generator_->parameters(), adam(settings_.lr_generator), true);
  discriminator_optimizer_ = make_adam(discriminator_->parameters(), adam(settings_.lr_discriminator), true);
  built_ = true;
}

double GanGenerator::train_step(const torch::Tensor& real_batch, const torch::Tensor& z) {
  const bool r1 = settings_.regularizer == "r1" && settings_.r1_gamma > 0;
  const torch::Tensor fake = generator_->forward(z);

  // Discriminator: softplus(-D(x)) + softplus(D(G(z))) is -log σ(D(x)) - log(1 - σ(D(G(z)))).
  for (auto& p : discriminator_->parameters()) p.set_requires_grad(true);
  torch::Tensor real = real_batch;
  if (r1) real = real_batch.detach().requires_grad_(true);
  const torch::Tensor d_real = discriminator_->forward(real);
  const torch::Tensor d_fake = discriminator_->forward(fake.detach());
  const torch::Tensor loss_d = torch::softplus(-d_real).mean() + torch::softplus(d_fake).mean();
  torch::Tensor total_d = loss_d;
  if (r1) {
    const torch::Tensor grad =
        torch::autograd::grad({d_real.sum()}, {real}, {}, /*retain_graph=*/true,
                              /*create_graph=*/true)[0];
    total_d = total_d + 0.5 * settings_.r1_gamma * grad.pow(2).sum({1, 2, 3}).mean();
  }
  discriminator_optimizer_->zero_grad();
  total_d.backward();
  discriminator_optimizer_->step();

  // Generator, non-saturating: -log σ(D(G(z))) = softplus(-D(G(z))).
  for (auto& p : discriminator_->parameters()) p.set_requires_grad(false);
  const torch::Tensor loss_g = torch::softplus(-discriminator_->forward(fake)).mean();
  generator_optimizer_->zero_grad();
  loss_g.backward();
  generator_optimizer_->step();
  for (auto& p : discriminator_->parameters()) p.set_requires_grad(true);

  return loss_d.item<double>();
}

void GanGenerator::update_ema() {
  if (!ema_) return;
  const double t = static_cast<double>(step_);
  const double decay = std::min(settings_.ema_decay, (1 + t) / (10 + t));
  torch::NoGradGuard no_grad;
  const auto params = generator_->named_parameters(true);
  for (auto& p : ema_->named_parameters(true))
    p.value().mul_(decay).add_(params[p.key()], 1 - decay);
  // Batch-norm statistics are not averaged: the EMA network takes the live network's.
  const auto buffers = generator_->named_buffers(true);
  for (auto& b : ema_->named_buffers(true)) b.value().copy_(buffers[b.key()]);
}

void GanGenerator::fit(const ImageSet& train, const FitBudget& budget,
                       const FitProgress& progress) {
  if (train.count < 1) throw Error("gen-gan: the training set is empty");
  if (static_cast<int64_t>(train.pixels.size()) != train.count * train.image_bytes()) {
    throw Error("gen-gan: the training set holds " + std::to_string(train.pixels.size()) +
                " bytes, its shape needs " + std::to_string(train.count * train.image_bytes()));
  }
  if (!built_) {
    build(train.channels, train.height, train.width);
  } else if (train.channels != shape_.channels || train.height != shape_.side ||
             train.width != shape_.side) {
    throw Error("gen-gan: fitted to " + std::to_string(shape_.channels) + "x" +
                std::to_string(shape_.side) + "x" + std::to_string(shape_.side) +
                " images, cannot continue on " + std::to_string(train.channels) + "x" +
                std::to_string(train.height) + "x" + std::to_string(train.width));
  }
  const int64_t total = budget.steps > 0 ? budget.steps : settings_.steps;
  if (step_ >= total) {
    sdk::log().info("gen-gan: already at step {} of {}; nothing to fit", step_, total);
    return;
  }
  const bool checkpoints = !budget.checkpoint_directory.empty();
  if (checkpoints) fs::create_directories(budget.checkpoint_directory);

  // The images stay uint8 on the CPU; each batch is converted and moved on its own.
  const torch::Tensor images = pixel_tensor(train);
  const torch::Device device = backend_->device();
  generator_->train();
  discriminator_->train();

  const auto start = Clock::now();
  auto last_checkpoint = start;
  const double seconds_before = fit_seconds_;
  const auto elapsed = [](Clock::time_point since) {
    return std::chrono::duration<double>(Clock::now() - since).count();
  };
  const int64_t first_step = step_;
  while (step_ < total) {
    at::Generator gen = shim::make_cpu_generator(step_seed(settings_.seed, step_));
    const torch::Tensor index = at::randint(train.count, {settings_.batch_size}, gen,
                                            torch::TensorOptions().dtype(torch::kLong));
    const torch::Tensor real =
        bytes_to_signed_unit(images.index_select(0, index)).to(device);
    const torch::Tensor z = shim::randn({settings_.batch_size, settings_.latent},
                                        torch::TensorOptions().device(device), &gen);
    const double loss = train_step(real, z);
    ++step_;
    update_ema();
    fit_seconds_ = seconds_before + elapsed(start);

    const bool go_on = !progress || progress(step_, total, loss);
    const bool out_of_time = budget.seconds > 0 && elapsed(start) >= budget.seconds;
    if (!go_on || out_of_time) {
      sdk::log().info("gen-gan: stopped at step {} of {} ({})", step_, total,
                      go_on ? "time budget spent" : "asked to stop");
      break;
    }
    if (checkpoints && budget.checkpoint_every_seconds > 0 && step_ < total &&
        elapsed(last_checkpoint) >= budget.checkpoint_every_seconds) {
      save(budget.checkpoint_directory);
      last_checkpoint = Clock::now();
    }
  }
  const double seconds = elapsed(start);
  sdk::log().info("gen-gan: {} steps in {:.1f} s ({:.2f} steps/s)", step_ - first_step, seconds,
                  static_cast<double>(step_ - first_step) / std::max(seconds, 1e-9));
  if (checkpoints) save(budget.checkpoint_directory);
}

DcganGenerator& GanGenerator::sampling_network() { return ema_ ? *ema_ : *generator_; }

ImageSet GanGenerator::sample(int64_t n, uint64_t first_seed) {
  if (!built_) throw Error("gen-gan: sample() needs fit() or load() first");
  if (n < 0) throw Error("gen-gan: cannot sample " + std::to_string(n) + " images");
  ImageSet out;
  out.count = n;
  out.channels = shape_.channels;
  out.height = shape_.side;
  out.width = shape_.side;
  out.pixels.resize(static_cast<size_t>(n * out.image_bytes()));
  out.labels.assign(static_cast<size_t>(n), -1);

  DcganGenerator& net = sampling_network();
  net.eval();  // batch norm with its running statistics: an image does not depend on its batch
  torch::NoGradGuard no_grad;
  const torch::Device device = backend_->device();
  for (int64_t begin = 0; begin < n; begin += settings_.sample_batch) {
    const int64_t count = std::min(settings_.sample_batch, n - begin);
    torch::Tensor z = torch::empty({count, settings_.latent}, torch::kFloat32);
    for (int64_t i = 0; i < count; ++i) {
      at::Generator gen = shim::make_cpu_generator(first_seed + static_cast<uint64_t>(begin + i));
      z[i].copy_(at::randn({settings_.latent}, gen, torch::TensorOptions().dtype(torch::kFloat32)));
    }
    const torch::Tensor x = net.forward(z.to(device)).to(torch::kCPU);
    const torch::Tensor bytes = signed_unit_to_bytes(x);
    std::memcpy(out.pixels.data() + begin * out.image_bytes(), bytes.data_ptr<uint8_t>(),
                static_cast<size_t>(count * out.image_bytes()));
  }
  return out;
}

void GanGenerator::save(const std::string& directory) const {
  if (!built_) throw Error("gen-gan: save() needs fit() or load() first");
  const fs::path dir(directory);
  save_safetensors(dir / kGeneratorFile, module_state(*generator_));
  save_safetensors(dir / kDiscriminatorFile, module_state(*discriminator_));
  if (ema_) save_safetensors(dir / kEmaFile, module_state(*ema_));

  torch::serialize::OutputArchive generator_archive, discriminator_archive, archive;
  generator_optimizer_->save(generator_archive);
  discriminator_optimizer_->save(discriminator_archive);
  archive.write("generator", generator_archive);
  archive.write("discriminator", discriminator_archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(dir / kOptimizerFile, bytes.str());

  // The state file goes last: a folder with a gan.json holds every file it refers to.
  const nlohmann::json state = {
      {"format", kFormat},
      {"step", step_},
      {"fit_seconds", fit_seconds_},
      {"image_shape", {shape_.channels, shape_.side, shape_.side}},
      {"architecture",
       {{"latent", settings_.latent},
        {"generator_width", settings_.generator_width},
        {"discriminator_width", settings_.discriminator_width},
        {"regularizer", settings_.regularizer},
        {"ema", static_cast<bool>(ema_)}}},
  };
  write_file_atomic(dir / kStateFile, state.dump(2) + "\n");
}

void GanGenerator::load(const std::string& directory) {
  if (built_) throw Error("gen-gan: load() after fit() or load()");
  const fs::path dir(directory);
  const fs::path state_file = dir / kStateFile;
  const nlohmann::json state = read_json(state_file);
  try {
    if (state.at("format").get<std::string>() != kFormat) {
      throw Error("gen-gan: " + state_file.string() + " has format '" +
                  state.at("format").get<std::string>() + "', expected '" + kFormat + "'");
    }
    const nlohmann::json& arch = state.at("architecture");
    const nlohmann::json expected = {{"latent", settings_.latent},
                                     {"generator_width", settings_.generator_width},
                                     {"discriminator_width", settings_.discriminator_width},
                                     {"regularizer", settings_.regularizer},
                                     {"ema", settings_.ema_decay > 0}};
    for (const auto& [key, value] : expected.items()) {
      if (arch.at(key) != value) {
        throw Error("gen-gan: " + state_file.string() + " was saved with " + key + " = " +
                    arch.at(key).dump() + ", the config says " + value.dump());
      }
    }
    const auto shape = state.at("image_shape").get<std::vector<int64_t>>();
    if (shape.size() != 3)
      throw Error("gen-gan: " + state_file.string() + ": image_shape needs 3 numbers");
    build(shape[0], shape[1], shape[2]);
    step_ = state.at("step").get<int64_t>();
    fit_seconds_ = state.at("fit_seconds").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("gen-gan: " + state_file.string() + ": " + e.what());
  }
  const auto load_into = [&](torch::nn::Module& module, const char* name) {
    const fs::path file = dir / name;
    load_module_state(module, load_safetensors(file), file.string());
  };
  load_into(*generator_, kGeneratorFile);
  load_into(*discriminator_, kDiscriminatorFile);
  if (ema_) load_into(*ema_, kEmaFile);

  const fs::path optimizer_file = dir / kOptimizerFile;
  try {
    std::ifstream in(optimizer_file, std::ios::binary);
    if (!in) throw Error("gen-gan: cannot read " + optimizer_file.string());
    torch::serialize::InputArchive archive, generator_archive, discriminator_archive;
    archive.load_from(in);
    archive.read("generator", generator_archive);
    archive.read("discriminator", discriminator_archive);
    generator_optimizer_->load(generator_archive);
    discriminator_optimizer_->load(discriminator_archive);
  } catch (const c10::Error& e) {
    throw Error("gen-gan: " + optimizer_file.string() +
                " is not a readable optimizer state: " + e.what_without_backtrace());
  }
}

std::string GanGenerator::describe() const {
  nlohmann::json d = {
      {"what",
       "DCGAN (Radford et al. 2016), non-saturating loss, regularizer " + settings_.regularizer},
      {"parameters", built_ ? parameter_count(*generator_) : 0},
      {"discriminator_parameters", built_ ? parameter_count(*discriminator_) : 0},
      {"fit_steps", step_},
      {"fit_seconds", fit_seconds_},
      {"latent", settings_.latent},
      {"regularizer", settings_.regularizer},
      {"ema_decay", settings_.ema_decay},
      {"samples_from", ema_ || (!built_ && settings_.ema_decay > 0) ? "ema" : "generator"},
  };
  if (settings_.regularizer == "r1") d["r1_gamma"] = settings_.r1_gamma;
  if (built_) {
    d["image_shape"] = {shape_.channels, shape_.side, shape_.side};
  } else {
    d["image_shape"] = nullptr;
  }
  return d.dump();
}

}  // namespace vaelab::plugins
