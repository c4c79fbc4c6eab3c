// Generators: the Fréchet distance of `vaelab generator check` (gen/frechet.hpp): a feature
// network trained once per dataset and cached, and the distance between two fitted Gaussians.
#include <vaelab/gen/frechet.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/io/file_lock.hpp>
#include <vaelab/log.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/session.hpp>

#include "mlp_classifier.hpp"

namespace fs = std::filesystem;

namespace vaelab {
namespace {

/// Bumped whenever the network, its training or the file layout changes: old cache files are
/// then neither found nor read.
constexpr int kFormat = 1;
constexpr const char* kKind = "vaelab feature network";
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ULL;

/// One FNV-1a step: the hash of the cache keys.
uint64_t fnv_step(uint64_t hash, uint64_t value) { return (hash ^ value) * 0x100000001b3ULL; }

/// Images pushed through the network at once when computing features.
constexpr int64_t kFeatureBatch = 4096;

std::string shape_text(const ImageSet& s) {
  return std::to_string(s.channels) + "x" + std::to_string(s.height) + "x" +
         std::to_string(s.width);
}

std::string hex16(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

/// The images labelled 0..classes-1; throws when there are not at least two classes.
int64_t class_count(const ImageSet& train, const std::string& dataset) {
  if (train.continuous()) {
    throw Error("the Fréchet distance's feature network needs 8-bit images; " + dataset +
                " is continuous");
  }
  int64_t classes = 0;
  for (const int64_t label : train.labels) {
    if (label < 0) {
      throw Error("the Fréchet distance's feature network needs labelled training images; " +
                  dataset + " has images without a label");
    }
    classes = std::max(classes, label + 1);
  }
  if (classes < 2 || static_cast<int64_t>(train.labels.size()) != train.count) {
    throw Error("the Fréchet distance's feature network needs at least two classes of labelled "
                "training images; " + dataset + " has " + std::to_string(classes));
  }
  return classes;
}

torch::Tensor to_double_matrix(const std::vector<double>& v, int64_t rows, int64_t cols) {
  return torch::from_blob(const_cast<double*>(v.data()), {rows, cols}, torch::kFloat64).clone();
}

/// The symmetric positive semi-definite square root of a symmetric matrix (negative eigenvalues
/// from rounding are taken as 0).
torch::Tensor psd_sqrt(const torch::Tensor& m) {
  const auto [values, vectors] = torch::linalg::eigh((m + m.t()) / 2, "L");
  return vectors.mm(torch::diag(values.clamp_min(0).sqrt())).mm(vectors.t());
}

double frechet_of(const torch::Tensor& mean_a, const torch::Tensor& cov_a,
                  const torch::Tensor& mean_b, const torch::Tensor& cov_b) {
  const torch::Tensor root_a = psd_sqrt(cov_a);
  const torch::Tensor inner = root_a.mm(cov_b).mm(root_a);
  const torch::Tensor eig = torch::linalg::eigvalsh((inner + inner.t()) / 2, "L");
  const double cross = eig.clamp_min(0).sqrt().sum().item<double>();
  const double d = (mean_a - mean_b).square().sum().item<double>() +
                   cov_a.trace().item<double>() + cov_b.trace().item<double>() - 2 * cross;
  return std::max(d, 0.0);
}

/// Mean and unbiased covariance of the rows of `x` [n × d], double.
std::pair<torch::Tensor, torch::Tensor> moments(const torch::Tensor& x) {
  const torch::Tensor mean = x.mean(0);
  const torch::Tensor centred = x - mean;
  return {mean, centred.t().mm(centred) / static_cast<double>(x.size(0) - 1)};
}

}  // namespace

struct FeatureNet::Impl {
  torch::nn::Sequential trunk{nullptr};  ///< D → hidden → ReLU → features
  torch::nn::Sequential head{nullptr};   ///< features → classes
  nlohmann::json info;
  int64_t channels = 0, height = 0, width = 0;

  std::vector<torch::Tensor> parameters() const {
    std::vector<torch::Tensor> p = trunk->parameters();
    for (const torch::Tensor& t : head->parameters()) p.push_back(t);
    return p;
  }
  // Sequential::forward is not const; the modules are not changed by it.
  torch::Tensor features(const torch::Tensor& x) const {
    return torch::relu(const_cast<torch::nn::SequentialImpl&>(*trunk).forward(x));
  }
};

FeatureNet::FeatureNet() = default;
FeatureNet::~FeatureNet() = default;
FeatureNet::FeatureNet(FeatureNet&&) noexcept = default;
FeatureNet& FeatureNet::operator=(FeatureNet&&) noexcept = default;

FeatureNet FeatureNet::train(const std::string& dataset, const ImageSet& train_images,
                             const ImageSet& test_images, const FeatureNetOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t classes = class_count(train_images, dataset);
  if (options.hidden < 1 || options.features < 1 || options.epochs < 1 || options.batch < 1) {
    throw Error("the feature network needs hidden, features, epochs and batch >= 1");
  }
  ImageSet train = train_images;
  select_subset(train, options.max_train_images, options.seed);
  ImageSet test = test_images;
  select_subset(test, options.max_test_images, options.seed + 1);

  at::Generator gen = shim::make_cpu_generator(options.seed);
  auto impl = std::make_unique<Impl>();
  const int64_t d = train.image_bytes();
  impl->trunk = gen_detail::make_mlp({d, options.hidden, options.features}, gen);
  impl->head = gen_detail::make_mlp({options.features, classes}, gen);
  impl->channels = train.channels;
  impl->height = train.height;
  impl->width = train.width;
  const torch::Tensor x = gen_detail::to_rows(train);
  const torch::Tensor y = torch::tensor(train.labels, torch::kInt64);
  Impl& net = *impl;
  gen_detail::fit_classifier(net.parameters(), x, y, options.epochs, options.batch, options.lr,
                             gen, [&](const torch::Tensor& xb, const torch::Tensor& yb) {
                               return torch::cross_entropy_loss(net.head->forward(net.features(xb)),
                                                                yb);
                             });

  double accuracy = std::nan("");
  int64_t scored = 0;
  if (test.count > 0 && !test.continuous()) {
    torch::NoGradGuard no_grad;
    int64_t right = 0;
    for (int64_t i = 0; i < test.count; ++i) {
      if (test.labels[static_cast<size_t>(i)] >= 0) ++scored;
    }
    const torch::Tensor predicted =
        net.head->forward(net.features(gen_detail::to_rows(test))).argmax(1).contiguous();
    for (int64_t i = 0; i < test.count; ++i) {
      right += predicted.data_ptr<int64_t>()[i] == test.labels[static_cast<size_t>(i)] ? 1 : 0;
    }
    if (scored > 0) accuracy = static_cast<double>(right) / static_cast<double>(scored);
  }
  std::ostringstream what;
  what << "MLP " << d << "-" << options.hidden << "-" << options.features << "-" << classes
       << ", features after the second layer's ReLU; " << options.epochs << " epochs of Adam (lr "
       << options.lr << ", batch " << options.batch << ")";
  impl->info = {
      {"kind", kKind},
      {"format", kFormat},
      {"network", what.str()},
      {"dataset", dataset},
      {"data_hash", hex16(image_set_hash(train_images))},
      {"image_shape", {train.channels, train.height, train.width}},
      {"classes", classes},
      {"features", options.features},
      {"train_images", train.count},
      {"test_images", scored},
      {"test_accuracy", std::isnan(accuracy) ? nlohmann::json(nullptr) : nlohmann::json(accuracy)},
      {"train_seconds",
       std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
      {"options",
       {{"seed", options.seed},
        {"hidden", options.hidden},
        {"epochs", options.epochs},
        {"batch", options.batch},
        {"lr", options.lr},
        {"max_train_images", options.max_train_images},
        {"max_test_images", options.max_test_images}}},
  };
  FeatureNet out;
  out.impl_ = std::move(impl);
  return out;
}

void FeatureNet::save(const fs::path& file) const {
  if (!impl_) throw Error(file.string() + ": no feature network to save");
  torch::serialize::OutputArchive archive;
  archive.write("info", c10::IValue(impl_->info.dump()));
  const std::vector<torch::Tensor> params = impl_->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    archive.write("param." + std::to_string(i), params[i].detach());
  }
  const fs::path tmp = file.string() + ".tmp";
  try {
    archive.save_to(tmp.string());
  } catch (const c10::Error& e) {
    throw Error(tmp.string() + ": cannot write the feature network: " + e.what_without_backtrace());
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) throw Error(file.string() + ": cannot write the feature network: " + ec.message());
}

FeatureNet FeatureNet::load(const fs::path& file) {
  const auto fail = [&](const std::string& why) {
    return Error(file.string() + ": not a feature network this vaelab can read: " + why);
  };
  torch::serialize::InputArchive archive;
  c10::IValue text;
  try {
    archive.load_from(file.string());
    archive.read("info", text);
  } catch (const c10::Error& e) {
    throw fail(e.what_without_backtrace());
  }
  if (!text.isString()) throw fail("its info is not text");
  auto impl = std::make_unique<Impl>();
  try {
    impl->info = nlohmann::json::parse(text.toStringRef());
    if (impl->info.value("kind", "") != kKind || impl->info.value("format", 0) != kFormat) {
      throw fail("kind " + impl->info.value("kind", std::string("?")) + ", format " +
                 std::to_string(impl->info.value("format", 0)) + " (this vaelab writes format " +
                 std::to_string(kFormat) + ")");
    }
    const auto shape = impl->info.at("image_shape").get<std::vector<int64_t>>();
    if (shape.size() != 3) throw fail("image_shape has " + std::to_string(shape.size()) + " entries");
    impl->channels = shape[0];
    impl->height = shape[1];
    impl->width = shape[2];
    const int64_t hidden = impl->info.at("options").at("hidden").get<int64_t>();
    const int64_t features = impl->info.at("features").get<int64_t>();
    const int64_t classes = impl->info.at("classes").get<int64_t>();
    at::Generator gen = shim::make_cpu_generator(0);
    impl->trunk = gen_detail::make_mlp({shape[0] * shape[1] * shape[2], hidden, features}, gen);
    impl->head = gen_detail::make_mlp({features, classes}, gen);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("its info: ") + e.what());
  }
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> params = impl->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor stored;
    try {
      archive.read("param." + std::to_string(i), stored);
    } catch (const c10::Error& e) {
      throw fail(e.what_without_backtrace());
    }
    if (!stored.sizes().equals(params[i].sizes()) || stored.scalar_type() != torch::kFloat32) {
      throw fail("parameter " + std::to_string(i) + " has the wrong shape or type");
    }
    params[i].copy_(stored);
  }
  FeatureNet out;
  out.impl_ = std::move(impl);
  return out;
}

std::vector<double> FeatureNet::features(const ImageSet& images) const {
  if (!impl_) throw Error("no feature network");
  if (images.continuous() || images.channels != impl_->channels ||
      images.height != impl_->height || images.width != impl_->width) {
    throw Error("the feature network of " + impl_->info.value("dataset", std::string("?")) +
                " takes 8-bit " + std::to_string(impl_->channels) + "x" +
                std::to_string(impl_->height) + "x" + std::to_string(impl_->width) +
                " images, not " + (images.continuous() ? "continuous " : "") + shape_text(images));
  }
  torch::NoGradGuard no_grad;
  const int64_t dims = this->dims();
  std::vector<double> out(static_cast<size_t>(images.count * dims));
  for (int64_t first = 0; first < images.count; first += kFeatureBatch) {
    const int64_t n = std::min(kFeatureBatch, images.count - first);
    const torch::Tensor x = to_float_range(images, first, n, "none").flatten(1);
    const torch::Tensor f = impl_->features(x).to(torch::kFloat64).contiguous();
    std::copy_n(f.data_ptr<double>(), n * dims, out.begin() + first * dims);
  }
  return out;
}

int64_t FeatureNet::dims() const {
  return impl_ ? impl_->info.at("features").get<int64_t>() : 0;
}

const nlohmann::json& FeatureNet::info() const {
  if (!impl_) throw Error("no feature network");
  return impl_->info;
}

uint64_t image_set_hash(const ImageSet& images) {
  // FNV-1a over 8-byte words (then the tail), the shape and the labels.
  uint64_t h = kFnvBasis;
  for (const int64_t v : {images.count, images.channels, images.height, images.width}) {
    h = fnv_step(h, static_cast<uint64_t>(v));
  }
  const size_t words = images.pixels.size() / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, images.pixels.data() + 8 * i, 8);
    h = fnv_step(h, w);
  }
  for (size_t i = 8 * words; i < images.pixels.size(); ++i) h = fnv_step(h, images.pixels[i]);
  for (const int64_t label : images.labels) h = fnv_step(h, static_cast<uint64_t>(label));
  return h;
}

FeatureNet cached_feature_net(const fs::path& cache_dir, const std::string& dataset,
                              const ImageSet& train, const ImageSet& test,
                              const FeatureNetOptions& options, bool* trained) {
  if (trained) *trained = true;
  if (cache_dir.empty()) return FeatureNet::train(dataset, train, test, options);
  // The file name holds everything the network depends on.
  uint64_t key = image_set_hash(train);
  const std::string settings = std::to_string(kFormat) + " " + std::to_string(options.seed) + " " +
                               std::to_string(options.hidden) + " " +
                               std::to_string(options.features) + " " +
                               std::to_string(options.epochs) + " " +
                               std::to_string(options.batch) + " " + std::to_string(options.lr) +
                               " " + std::to_string(options.max_train_images) + " " +
                               std::to_string(options.max_test_images);
  for (const char c : settings) key = fnv_step(key, static_cast<uint8_t>(c));
  std::string safe = dataset;
  for (char& c : safe) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  }
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (ec) {
    logger().warn("feature network not cached: cannot create {}: {}", cache_dir.string(),
                  ec.message());
    return FeatureNet::train(dataset, train, test, options);
  }
  const fs::path file = cache_dir / ("feature-net-" + safe + "-" + hex16(key) + ".pt");
  const FileLock lock(file.string() + ".lock");
  if (fs::is_regular_file(file, ec)) {
    try {
      FeatureNet net = FeatureNet::load(file);
      if (trained) *trained = false;
      return net;
    } catch (const Error& e) {
      logger().warn("{}; training it again", e.what());
    }
  }
  FeatureNet net = FeatureNet::train(dataset, train, test, options);
  try {
    net.save(file);
  } catch (const Error& e) {
    logger().warn("feature network not cached: {}", e.what());
  }
  return net;
}

double frechet_distance_gaussians(const std::vector<double>& mean_a,
                                  const std::vector<double>& cov_a,
                                  const std::vector<double>& mean_b,
                                  const std::vector<double>& cov_b, int64_t dims) {
  const auto n = static_cast<size_t>(dims);
  if (dims < 1 || mean_a.size() != n || mean_b.size() != n || cov_a.size() != n * n ||
      cov_b.size() != n * n) {
    throw Error("the Fréchet distance needs two means of " + std::to_string(dims) +
                " entries and two " + std::to_string(dims) + "x" + std::to_string(dims) +
                " covariances");
  }
  torch::NoGradGuard no_grad;
  return frechet_of(to_double_matrix(mean_a, 1, dims).squeeze(0), to_double_matrix(cov_a, dims, dims),
                    to_double_matrix(mean_b, 1, dims).squeeze(0), to_double_matrix(cov_b, dims, dims));
}

double frechet_distance(const std::vector<double>& rows_a, int64_t n_a,
                        const std::vector<double>& rows_b, int64_t n_b, int64_t dims) {
  if (dims < 1 || n_a < 2 || n_b < 2 || rows_a.size() != static_cast<size_t>(n_a * dims) ||
      rows_b.size() != static_cast<size_t>(n_b * dims)) {
    throw Error("the Fréchet distance needs at least 2 rows of " + std::to_string(dims) +
                " features in each set, got " + std::to_string(n_a) + " and " + std::to_string(n_b));
  }
  torch::NoGradGuard no_grad;
  const auto [mean_a, cov_a] = moments(to_double_matrix(rows_a, n_a, dims));
  const auto [mean_b, cov_b] = moments(to_double_matrix(rows_b, n_b, dims));
  return frechet_of(mean_a, cov_a, mean_b, cov_b);
}

}  // namespace vaelab
