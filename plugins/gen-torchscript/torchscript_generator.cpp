#include "torchscript_generator.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <torch/torch.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include <vaelab/backend.hpp>
#include <vaelab/error.hpp>
#include <vaelab/gen/pixels.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/plugin.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab::plugins {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormat = "vaelab-gen-torchscript/1";
constexpr const char* kRecordFile = "torchscript.json";
constexpr uint64_t kMaxFileBytes = uint64_t{16} << 30;

std::string crc32_hex(const std::string& bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t at = 0; at < bytes.size();) {
    const size_t chunk = std::min<size_t>(bytes.size() - at, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + at), static_cast<uInt>(chunk));
    at += chunk;
  }
  char text[9];
  std::snprintf(text, sizeof text, "%08lx", static_cast<unsigned long>(crc));
  return text;
}

std::string shape_text(at::IntArrayRef shape) { return c10::str(shape); }

/// The first line of a LibTorch message (its later lines are a C++ or TorchScript traceback).
std::string first_line(const std::string& message) {
  const size_t end = message.find('\n');
  return end == std::string::npos ? message : message.substr(0, end);
}

}  // namespace

TorchScriptGenerator::TorchScriptGenerator(const ConfigTable& config)
    : configured_path_(config.get_string("path")),
      kind_(config.get_choice("kind", {"denoiser", "generator"})),
      latent_shape_(config.get_int_array("latent_shape")),
      unit_range_(config.get_choice("output_range", {"[-1, 1]", "[0, 1]"}) == "[0, 1]"),
      batch_size_(config.get_int_in("batch_size", 1, 1 << 20)) {
  if (kind_ == "generator") {
    if (latent_shape_.empty())
      throw ConfigError(config.key_path("latent_shape") + ": needs at least one dimension");
    for (size_t i = 0; i < latent_shape_.size(); ++i) {
      if (latent_shape_[i] < 1 || latent_shape_[i] > (1 << 20)) {
        throw ConfigError(config.key_path("latent_shape") + "[" + std::to_string(i) +
                          "]: must be in [1, 1048576], got " + std::to_string(latent_shape_[i]));
      }
    }
  }
  sampler_.steps = config.get_int_in("steps", 1, 100000);
  sampler_.sigma_min = config.get_double("sigma_min");
  sampler_.sigma_max = config.get_double("sigma_max");
  sampler_.rho = config.get_double("rho");
  sampler_.s_churn = config.get_double("churn");
  sampler_.s_tmin = config.get_double("churn_sigma_min");
  sampler_.s_tmax = config.get_double("churn_sigma_max");
  sampler_.s_noise = config.get_double("churn_noise");
  if (!(sampler_.sigma_min > 0 && sampler_.sigma_max > sampler_.sigma_min)) {
    throw ConfigError(config.key_path("sigma_max") + ": need 0 < sigma_min < sigma_max, got " +
                      std::to_string(sampler_.sigma_min) + " and " +
                      std::to_string(sampler_.sigma_max));
  }
  if (!(sampler_.rho > 0)) throw ConfigError(config.key_path("rho") + ": must be positive");
  if (!(sampler_.s_churn >= 0))
    throw ConfigError(config.key_path("churn") + ": must not be negative");
  if (!(sampler_.s_noise >= 0))
    throw ConfigError(config.key_path("churn_noise") + ": must not be negative");
}

void TorchScriptGenerator::attach(Backend& backend) {
  if (backend_ != nullptr) throw Error("gen-torchscript: attach() called twice");
  backend_ = &backend;
}

void TorchScriptGenerator::open(const std::string& path) {
  if (backend_ == nullptr)
    throw Error("gen-torchscript: attach(backend) must come before fit() or load()");
  if (path.empty()) throw Error("gen-torchscript: no file given (config key `path`)");
  std::error_code ec;
  const fs::path file = fs::absolute(path, ec);
  path_ = ec ? path : file.lexically_normal().string();
  if (!fs::is_regular_file(path_, ec)) throw Error(what_file() + ": no such file");
  const uint64_t size = fs::file_size(path_, ec);
  if (ec || size > kMaxFileBytes)
    throw Error(what_file() + ": cannot read its size, or larger than 16 GiB");

  // The checksum and the module come from the same bytes, read once.
  std::string bytes(size, '\0');
  {
    std::ifstream in(path_, std::ios::binary);
    if (!in.read(bytes.data(), static_cast<std::streamsize>(size)))
      throw Error(what_file() + ": cannot read it");
  }
  bytes_ = size;
  crc32_ = crc32_hex(bytes);
  try {
    std::istringstream stream(bytes);
    module_ = std::make_unique<torch::jit::Module>(torch::jit::load(stream, backend_->device()));
  } catch (const std::exception& e) {
    module_.reset();
    throw Error(what_file() + ": not a TorchScript file (torch.jit.save): " + first_line(e.what()));
  }
  module_->eval();

  const auto forward = module_->find_method("forward");
  if (!forward) throw Error(what_file() + ": the module has no forward method");
  const size_t expected = kind_ == "denoiser" ? 3 : 2;  // with self
  const size_t got = forward->function().getSchema().arguments().size();
  if (got != expected) {
    throw Error(what_file() + ": forward takes " + std::to_string(got - 1) + " argument(s); a " +
                kind_ + "'s takes " + (kind_ == "denoiser" ? "(x, sigma)" : "(z)"));
  }
}

torch::Tensor TorchScriptGenerator::call(std::vector<torch::jit::IValue> inputs) {
  torch::jit::IValue out;
  try {
    out = module_->forward(std::move(inputs));
  } catch (const std::exception& e) {
    throw Error(what_file() + ": forward failed: " + first_line(e.what()));
  }
  if (!out.isTensor())
    throw Error(what_file() + ": forward returned a " + out.tagKind() + ", not a tensor");
  return out.toTensor();
}

void TorchScriptGenerator::check(const torch::Tensor& example_images) {
  torch::NoGradGuard no_grad;
  const int64_t b = example_images.size(0);
  torch::Tensor out;
  std::vector<int64_t> expected{b};
  expected.insert(expected.end(), image_shape_.begin(), image_shape_.end());
  if (kind_ == "denoiser") {
    const torch::Tensor sigma = torch::ones({b}, example_images.options());
    out = call({example_images, sigma});
  } else {
    std::vector<int64_t> z_shape{b};
    z_shape.insert(z_shape.end(), latent_shape_.begin(), latent_shape_.end());
    out = call({torch::zeros(z_shape, example_images.options())});
  }
  if (out.sizes() != at::IntArrayRef(expected)) {
    throw Error(what_file() + ": forward returned shape " + shape_text(out.sizes()) +
                ", the data needs " + shape_text(expected) +
                (kind_ == "generator" ? " (check latent_shape)" : ""));
  }
  if (!out.is_floating_point()) {
    throw Error(what_file() + ": forward returned " +
                std::string(c10::toString(out.scalar_type())) + ", not floating-point values");
  }
  if (!torch::isfinite(out).all().item<bool>())
    throw Error(what_file() + ": forward returned NaN or infinite values");
}

void TorchScriptGenerator::fit(const ImageSet& train, const FitBudget& budget,
                               const FitProgress& progress) {
  (void)budget;  // nothing is trained
  const auto start = std::chrono::steady_clock::now();
  if (train.count < 1) throw Error("gen-torchscript: the training set is empty");
  if (static_cast<int64_t>(train.pixels.size()) != train.count * train.image_bytes()) {
    throw Error("gen-torchscript: the training set holds " + std::to_string(train.pixels.size()) +
                " bytes, its shape needs " + std::to_string(train.count * train.image_bytes()));
  }
  const std::vector<int64_t> shape{train.channels, train.height, train.width};
  if (!image_shape_.empty() && image_shape_ != shape) {
    throw Error(what_file() + ": checked for images " + shape_text(image_shape_) +
                ", the data's are " + shape_text(shape));
  }
  if (!module_) open(configured_path_);
  image_shape_ = shape;
  const int64_t b = std::min<int64_t>(train.count, 2);
  const torch::Tensor examples =
      bytes_to_signed_unit(pixel_tensor(train).slice(0, 0, b)).to(backend_->device());
  try {
    check(examples);
  } catch (...) {
    image_shape_.clear();
    throw;
  }
  fit_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  sdk::log().info("gen-torchscript: {} ({} bytes, crc32 {}) checked on {} images", path_, bytes_,
                  crc32_, shape_text(shape));
  if (progress) progress(0, 0, 0.0);
}

void TorchScriptGenerator::save(const std::string& directory) const {
  if (image_shape_.empty()) throw Error("gen-torchscript: save() needs fit() or load() first");
  nlohmann::json record = {
      {"format", kFormat}, {"path", path_}, {"bytes", bytes_},
      {"crc32", crc32_},   {"kind", kind_}, {"image_shape", image_shape_},
  };
  if (kind_ == "generator") record["latent_shape"] = latent_shape_;
  write_file_atomic(fs::path(directory) / kRecordFile, record.dump(2) + "\n");
}

void TorchScriptGenerator::load(const std::string& directory) {
  if (module_) throw Error("gen-torchscript: load() after fit() or load()");
  const fs::path file = fs::path(directory) / kRecordFile;
  std::ifstream in(file);
  if (!in) throw Error("gen-torchscript: cannot read " + file.string());
  std::string recorded_path, recorded_crc;
  uint64_t recorded_bytes = 0;
  std::vector<int64_t> shape;
  try {
    const nlohmann::json record = nlohmann::json::parse(in);
    if (record.at("format").get<std::string>() != kFormat) {
      throw Error("gen-torchscript: " + file.string() + " has format " +
                  record.at("format").dump() + ", expected \"" + kFormat + "\"");
    }
    if (record.at("kind").get<std::string>() != kind_) {
      throw Error("gen-torchscript: " + file.string() + " records a " +
                  record.at("kind").get<std::string>() + ", the config says kind = \"" + kind_ +
                  "\"");
    }
    if (kind_ == "generator" &&
        record.at("latent_shape").get<std::vector<int64_t>>() != latent_shape_) {
      throw Error("gen-torchscript: " + file.string() + " records latent_shape " +
                  record.at("latent_shape").dump() + ", the config says " +
                  shape_text(latent_shape_));
    }
    recorded_path = record.at("path").get<std::string>();
    recorded_bytes = record.at("bytes").get<uint64_t>();
    recorded_crc = record.at("crc32").get<std::string>();
    shape = record.at("image_shape").get<std::vector<int64_t>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("gen-torchscript: " + file.string() + " is not a valid record: " + e.what());
  }
  if (shape.size() != 3 || shape[0] < 1 || shape[1] < 1 || shape[2] < 1) {
    throw Error("gen-torchscript: " + file.string() + ": image_shape must be 3 positive numbers");
  }
  open(configured_path_.empty() ? recorded_path : configured_path_);
  if (bytes_ != recorded_bytes || crc32_ != recorded_crc) {
    const std::string now = std::to_string(bytes_) + " bytes, crc32 " + crc32_;
    module_.reset();
    throw Error(what_file() + " changed since it was checked: " + file.string() + " records " +
                std::to_string(recorded_bytes) + " bytes, crc32 " + recorded_crc +
                "; the file has " + now);
  }
  image_shape_ = shape;
  check(torch::zeros({1, shape[0], shape[1], shape[2]},
                     torch::TensorOptions().device(backend_->device())));
}

ImageSet TorchScriptGenerator::sample(int64_t n, uint64_t first_seed) {
  if (image_shape_.empty()) throw Error("gen-torchscript: sample() needs fit() or load() first");
  if (n < 0) throw Error("gen-torchscript: cannot sample " + std::to_string(n) + " images");
  ImageSet out;
  out.count = n;
  out.channels = image_shape_[0];
  out.height = image_shape_[1];
  out.width = image_shape_[2];
  out.pixels.resize(static_cast<size_t>(n * out.image_bytes()));
  out.labels.assign(static_cast<size_t>(n), -1);

  torch::NoGradGuard no_grad;
  const torch::Device device = backend_->device();
  const edm::Denoiser denoiser = [this](const torch::Tensor& x, const torch::Tensor& sigma) {
    const torch::Tensor y = call({x.to(torch::kFloat32), sigma.to(x.device(), torch::kFloat32)});
    if (y.sizes() != x.sizes()) {
      throw Error(what_file() + ": forward returned shape " + shape_text(y.sizes()) +
                  " for x of shape " + shape_text(x.sizes()));
    }
    return y.to(x.scalar_type());
  };
  for (int64_t begin = 0; begin < n; begin += batch_size_) {
    const int64_t count = std::min(batch_size_, n - begin);
    torch::Tensor images;
    if (kind_ == "denoiser") {
      std::vector<uint64_t> seeds(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i)
        seeds[static_cast<size_t>(i)] = first_seed + static_cast<uint64_t>(begin + i);
      images = edm::heun_sample(denoiser, image_shape_, seeds, sampler_, device);
    } else {
      std::vector<int64_t> z_shape{count};
      z_shape.insert(z_shape.end(), latent_shape_.begin(), latent_shape_.end());
      torch::Tensor z = torch::empty(z_shape, torch::kFloat32);
      for (int64_t i = 0; i < count; ++i) {
        at::Generator gen = shim::make_cpu_generator(first_seed + static_cast<uint64_t>(begin + i));
        z[i].copy_(at::randn(latent_shape_, gen, torch::TensorOptions().dtype(torch::kFloat32)));
      }
      images = call({z.to(device)});
      std::vector<int64_t> expected{count};
      expected.insert(expected.end(), image_shape_.begin(), image_shape_.end());
      if (images.sizes() != at::IntArrayRef(expected)) {
        throw Error(what_file() + ": forward returned shape " + shape_text(images.sizes()) +
                    ", expected " + shape_text(expected));
      }
      if (!unit_range_) images = images.add(1.0).div(2.0);
    }
    if (kind_ == "denoiser") images = images.add(1.0).div(2.0);
    const torch::Tensor bytes = unit_to_bytes(images);
    std::memcpy(out.pixels.data() + begin * out.image_bytes(), bytes.data_ptr<uint8_t>(),
                static_cast<size_t>(count * out.image_bytes()));
  }
  return out;
}

std::string TorchScriptGenerator::describe() const {
  int64_t parameters = 0;
  if (module_) {
    for (const auto& p : module_->parameters()) parameters += p.numel();
  }
  nlohmann::json d = {
      {"what", kind_ == "denoiser"
                   ? "TorchScript EDM denoiser sampled with Heun (Karras et al. 2022)"
                   : "TorchScript latent-to-image generator"},
      {"parameters", parameters},
      {"fit_steps", 0},
      {"fit_seconds", fit_seconds_},
      {"kind", kind_},
      {"path", path_},
      {"bytes", bytes_},
      {"crc32", crc32_},
  };
  d["image_shape"] = image_shape_.empty() ? nlohmann::json(nullptr) : nlohmann::json(image_shape_);
  if (kind_ == "denoiser") {
    d["sampler_steps"] = sampler_.steps;
    d["network_evaluations_per_image"] = 2 * sampler_.steps - 1;
    d["churn"] = sampler_.s_churn;
  } else {
    d["latent_shape"] = latent_shape_;
    d["output_range"] = unit_range_ ? "[0, 1]" : "[-1, 1]";
  }
  return d.dump();
}

}  // namespace vaelab::plugins
