#pragma once
// The Fréchet distance of the generator check: samples and held-out real images are mapped to
// the features of a small classifier trained once per dataset on its real training split, a
// Gaussian is fitted to each set of features, and the Fréchet (2-Wasserstein) distance between
// the two Gaussians is reported (Heusel et al. 2017 with a small MLP in place of Inception).
// Part of vaelab::core; torch stays in the source file.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <vaelab/data_source.hpp>

namespace vaelab {

/// The feature network and how it is trained.
struct FeatureNetOptions {
  uint64_t seed = 0;                 ///< training subset, initialisation and batch order
  int64_t hidden = 512;              ///< width of the first hidden layer
  int64_t features = 128;            ///< width of the second: the features
  int64_t epochs = 8;                ///< passes of Adam over the training images
  int64_t batch = 128;
  double lr = 1e-3;                  ///< Adam learning rate
  int64_t max_train_images = 60000;  ///< a seeded subset of a larger training split
  int64_t max_test_images = 10000;   ///< a seeded subset of the test split scores the accuracy
};

/// A classifier MLP D → hidden → features → classes (ReLU between), trained on labelled 8-bit
/// images; its features are the second hidden layer's activations (after the ReLU).
class FeatureNet {
 public:
  FeatureNet();
  ~FeatureNet();
  FeatureNet(FeatureNet&&) noexcept;
  FeatureNet& operator=(FeatureNet&&) noexcept;

  /// Trains on `train`'s labels (at least two classes) and scores the accuracy on `test`.
  /// `dataset` names the data in info(). Throws vaelab::Error for unlabelled or continuous images.
  static FeatureNet train(const std::string& dataset, const ImageSet& train, const ImageSet& test,
                          const FeatureNetOptions& options);
  /// Reads what save() wrote; a damaged or foreign file is a vaelab::Error naming it.
  static FeatureNet load(const std::filesystem::path& file);
  /// Writes the weights and info() to `file` (atomically: a temporary file, then a rename).
  void save(const std::filesystem::path& file) const;

  /// The features of every image, [images.count × dims()] row-major. The images must have the
  /// shape the network was trained on (vaelab::Error otherwise).
  std::vector<double> features(const ImageSet& images) const;
  int64_t dims() const;
  /// What it is and how good: "network", "dataset", "data_hash", "image_shape", "classes",
  /// "train_images", "test_images", "test_accuracy", "train_seconds", "options".
  const nlohmann::json& info() const;
  bool empty() const { return impl_ == nullptr; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// A 64-bit hash of the images' shape, pixels and labels (the cache key of a feature network).
uint64_t image_set_hash(const ImageSet& images);

/// The feature network of `train` from `cache_dir` when one is there for exactly these images and
/// options; else trained, and saved there (under a lock, so that concurrent checks train once).
/// An empty `cache_dir` trains without saving. `trained` (optional) says which happened.
FeatureNet cached_feature_net(const std::filesystem::path& cache_dir, const std::string& dataset,
                              const ImageSet& train, const ImageSet& test,
                              const FeatureNetOptions& options, bool* trained = nullptr);

/// The Fréchet distance between N(mean_a, cov_a) and N(mean_b, cov_b) in `dims` dimensions
/// (covariances row-major, symmetric positive semi-definite):
/// |mean_a − mean_b|² + tr(cov_a) + tr(cov_b) − 2 tr((cov_a^½ cov_b cov_a^½)^½), in double.
double frechet_distance_gaussians(const std::vector<double>& mean_a,
                                  const std::vector<double>& cov_a,
                                  const std::vector<double>& mean_b,
                                  const std::vector<double>& cov_b, int64_t dims);

/// The same between the Gaussians fitted (mean, unbiased covariance) to two sets of feature rows
/// ([n_a × dims] and [n_b × dims], row-major; at least 2 rows each).
double frechet_distance(const std::vector<double>& rows_a, int64_t n_a,
                        const std::vector<double>& rows_b, int64_t n_b, int64_t dims);

}  // namespace vaelab
