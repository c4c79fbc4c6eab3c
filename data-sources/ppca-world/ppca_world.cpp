#include "ppca_world.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <vaelab/error.hpp>

namespace vaelab::plugins {
namespace {

constexpr int64_t kMaxSide = 4096;
constexpr int64_t kMaxChannels = 64;
constexpr int64_t kMaxImages = int64_t{1} << 31;
constexpr uint64_t kWorldStream = 2;  // splits 0 and 1 are train and test
constexpr double kLog2Pi = 1.8378770664093454836;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// A small, fully specified normal generator (splitmix64 + Box–Muller), so a world and its
/// images are the same with every compiler and standard library.
class Normal {
 public:
  Normal(uint64_t seed, uint64_t stream, uint64_t index)
      : state_(splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ index)) {}
  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(bits() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(bits() >> 11) * 0x1.0p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t bits() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return splitmix64(state_);
  }
  uint64_t state_;
  double spare_ = 0;
  bool has_spare_ = false;
};

/// Separable Gaussian blur of one channel plane (zero outside the image).
void blur_plane(double* plane, int64_t height, int64_t width, double sigma) {
  if (sigma <= 0) return;
  const auto radius = static_cast<int64_t>(std::ceil(3 * sigma));
  std::vector<double> kernel(static_cast<size_t>(2 * radius + 1));
  for (int64_t k = -radius; k <= radius; ++k) {
    kernel[static_cast<size_t>(k + radius)] = std::exp(-0.5 * static_cast<double>(k * k) / (sigma * sigma));
  }
  std::vector<double> tmp(static_cast<size_t>(height * width), 0.0);
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      double acc = 0;
      for (int64_t k = -radius; k <= radius; ++k) {
        const int64_t xx = x + k;
        if (xx >= 0 && xx < width) acc += kernel[static_cast<size_t>(k + radius)] * plane[y * width + xx];
      }
      tmp[static_cast<size_t>(y * width + x)] = acc;
    }
  }
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      double acc = 0;
      for (int64_t k = -radius; k <= radius; ++k) {
        const int64_t yy = y + k;
        if (yy >= 0 && yy < height) acc += kernel[static_cast<size_t>(k + radius)] * tmp[static_cast<size_t>(yy * width + x)];
      }
      plane[y * width + x] = acc;
    }
  }
}

}  // namespace

PpcaSettings PpcaSettings::from_config(const ConfigTable& config) {
  PpcaSettings s;
  s.channels = config.get_int_in("channels", 1, kMaxChannels);
  s.height = config.get_int_in("height", 1, kMaxSide);
  s.width = config.get_int_in("width", 1, kMaxSide);
  s.latent = config.get_int_in("latent", 1, s.channels * s.height * s.width);
  const auto positive = [&](const char* key) {
    const double v = config.get_double(key);
    if (!(v > 0) || !std::isfinite(v)) throw ConfigError(config.key_path(key) + ": must be a finite number > 0");
    return v;
  };
  s.noise = positive("noise");
  s.signal = positive("signal");
  s.decay = positive("decay");
  if (s.decay > 1) throw ConfigError(config.key_path("decay") + ": must be in (0, 1]");
  s.smoothness = config.get_double("smoothness");
  if (!(s.smoothness >= 0) || s.smoothness > static_cast<double>(kMaxSide)) {
    throw ConfigError(config.key_path("smoothness") + ": must be between 0 and " + std::to_string(kMaxSide));
  }
  s.mean = config.get_double("mean");
  if (!std::isfinite(s.mean)) throw ConfigError(config.key_path("mean") + ": must be finite");
  s.seed = static_cast<uint64_t>(config.get_int("seed"));
  return s;
}

PpcaWorld::PpcaWorld(const PpcaSettings& settings)
    : settings_(settings), dims_(settings.channels * settings.height * settings.width) {
  const int64_t d = settings_.latent;
  const int64_t plane = settings_.height * settings_.width;
  // Random directions, smoothed per channel plane, then orthonormalized (modified Gram–Schmidt,
  // twice, for orthogonality to rounding error). Column j is stored contiguously while built.
  std::vector<double> columns(static_cast<size_t>(dims_ * d));
  for (int64_t j = 0; j < d; ++j) {
    Normal normal(settings_.seed, kWorldStream, static_cast<uint64_t>(j));
    double* col = columns.data() + j * dims_;
    for (int64_t i = 0; i < dims_; ++i) col[i] = normal.next();
    for (int64_t c = 0; c < settings_.channels; ++c) {
      blur_plane(col + c * plane, settings_.height, settings_.width, settings_.smoothness);
    }
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t k = 0; k < j; ++k) {
        const double* prev = columns.data() + k * dims_;
        double dot = 0;
        for (int64_t i = 0; i < dims_; ++i) dot += prev[i] * col[i];
        for (int64_t i = 0; i < dims_; ++i) col[i] -= dot * prev[i];
      }
      double norm = 0;
      for (int64_t i = 0; i < dims_; ++i) norm += col[i] * col[i];
      norm = std::sqrt(norm);
      if (!(norm > 1e-12)) {
        throw ConfigError("ppca-world: direction " + std::to_string(j + 1) + " of " +
                          std::to_string(d) +
                          " is degenerate; lower `latent` or `smoothness` for this image size");
      }
      for (int64_t i = 0; i < dims_; ++i) col[i] /= norm;
    }
  }
  basis_.assign(static_cast<size_t>(dims_ * d), 0.0);
  for (int64_t j = 0; j < d; ++j) {
    for (int64_t i = 0; i < dims_; ++i) basis_[static_cast<size_t>(i * d + j)] = columns[static_cast<size_t>(j * dims_ + i)];
  }
  // s_j ∝ decay^j with Σ s_j² = D · signal²: the average per-pixel variance of W z is signal².
  double sum = 0;
  for (int64_t j = 0; j < d; ++j) sum += std::pow(settings_.decay, 2.0 * static_cast<double>(j));
  const double c = settings_.signal * std::sqrt(static_cast<double>(dims_) / sum);
  for (int64_t j = 0; j < d; ++j) scales_.push_back(c * std::pow(settings_.decay, static_cast<double>(j)));
}

std::vector<double> PpcaWorld::weights() const {
  std::vector<double> w = basis_;
  const int64_t d = settings_.latent;
  for (int64_t i = 0; i < dims_; ++i) {
    for (int64_t j = 0; j < d; ++j) w[static_cast<size_t>(i * d + j)] *= scales_[static_cast<size_t>(j)];
  }
  return w;
}

ImageSet PpcaWorld::sample(int64_t first, int64_t n, uint64_t split) const {
  if (first < 0 || n < 0 || n > kMaxImages) throw Error("ppca-world: cannot sample " + std::to_string(n) + " images");
  const int64_t d = settings_.latent;
  ImageSet out;
  out.count = n;
  out.channels = settings_.channels;
  out.height = settings_.height;
  out.width = settings_.width;
  out.values.resize(static_cast<size_t>(n * dims_));
  out.labels.assign(static_cast<size_t>(n), -1);
  std::vector<double> z(static_cast<size_t>(d));
  for (int64_t k = 0; k < n; ++k) {
    Normal normal(settings_.seed, split, static_cast<uint64_t>(first + k));
    for (int64_t j = 0; j < d; ++j) z[static_cast<size_t>(j)] = scales_[static_cast<size_t>(j)] * normal.next();
    float* x = out.values.data() + k * dims_;
    for (int64_t i = 0; i < dims_; ++i) {
      const double* q = basis_.data() + i * d;
      double v = settings_.mean;
      for (int64_t j = 0; j < d; ++j) v += q[j] * z[static_cast<size_t>(j)];
      x[i] = static_cast<float>(v + settings_.noise * normal.next());
    }
  }
  return out;
}

std::vector<double> PpcaWorld::log_likelihood(const ImageSet& images) const {
  if (images.channels != settings_.channels || images.height != settings_.height ||
      images.width != settings_.width) {
    throw Error("ppca-world: images of shape " + std::to_string(images.channels) + "x" +
                std::to_string(images.height) + "x" + std::to_string(images.width) +
                " do not come from this world (" + std::to_string(settings_.channels) + "x" +
                std::to_string(settings_.height) + "x" + std::to_string(settings_.width) + ")");
  }
  if (images.count > 0 && images.values.size() != static_cast<size_t>(images.count * dims_)) {
    throw Error("ppca-world: the exact log-likelihood needs continuous images (ImageSet::values)");
  }
  // With W = Q diag(s) and orthonormal Q, the covariance W Wᵀ + σ² I has eigenvalues s_j² + σ²
  // along q_j and σ² elsewhere:
  //   log p(x) = −½ [D log 2π + (D − d) log σ² + Σ_j log(s_j² + σ²)
  //                  + (‖r‖² − Σ_j p_j²) / σ² + Σ_j p_j² / (s_j² + σ²)],  r = x − mean, p = Qᵀ r.
  const int64_t d = settings_.latent;
  const double var = settings_.noise * settings_.noise;
  double log_det = static_cast<double>(dims_ - d) * std::log(var);
  for (double s : scales_) log_det += std::log(s * s + var);
  std::vector<double> out(static_cast<size_t>(images.count));
  std::vector<double> p(static_cast<size_t>(d));
  for (int64_t k = 0; k < images.count; ++k) {
    const float* x = images.values.data() + k * dims_;
    std::fill(p.begin(), p.end(), 0.0);
    double r2 = 0;
    for (int64_t i = 0; i < dims_; ++i) {
      const double r = static_cast<double>(x[i]) - settings_.mean;
      r2 += r * r;
      const double* q = basis_.data() + i * d;
      for (int64_t j = 0; j < d; ++j) p[static_cast<size_t>(j)] += q[j] * r;
    }
    double maha = r2 / var;
    for (int64_t j = 0; j < d; ++j) {
      const double pj = p[static_cast<size_t>(j)];
      const double sj = scales_[static_cast<size_t>(j)];
      maha += pj * pj * (1.0 / (sj * sj + var) - 1.0 / var);
    }
    out[static_cast<size_t>(k)] = -0.5 * (static_cast<double>(dims_) * kLog2Pi + log_det + maha);
  }
  return out;
}

PpcaWorldSource::PpcaWorldSource(const ConfigTable& config)
    : world_(PpcaSettings::from_config(config)),
      train_size_(config.get_int_in("train_size", 1, kMaxImages)),
      test_size_(config.get_int_in("test_size", 1, kMaxImages)),
      name_(config.get_string("name")) {
  if (name_.empty()) throw ConfigError(config.key_path("name") + ": must not be empty");
}

Dataset PpcaWorldSource::open() {
  Dataset d;
  d.name = name_;
  d.train = world_.sample(0, train_size_, 0);
  d.test = world_.sample(0, test_size_, 1);
  d.num_classes = 0;
  return d;
}

std::vector<double> PpcaWorldSource::exact_log_likelihood(const ImageSet& images) const {
  return world_.log_likelihood(images);
}

}  // namespace vaelab::plugins
