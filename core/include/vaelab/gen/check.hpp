#pragma once
// Checks of a generator's samples against the data it was fitted to, for `vaelab generator check`
// and for study reports: (a) memorization, by nearest-neighbour distances to the training set,
// measured against held-out test images; (b) a classifier two-sample test (C2ST): can a small
// classifier tell real training images from samples? (c) the Fréchet distance between samples
// and held-out images in a feature network's features (gen/frechet.hpp). Part of vaelab::core.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <vaelab/data_source.hpp>
#include <vaelab/gen/frechet.hpp>

namespace vaelab {

/// Settings of check_generator(); the defaults are what `vaelab generator check` uses.
struct GeneratorCheckOptions {
  uint64_t seed = 0;  ///< test-image subset, C2ST split, classifier initialisation and batch order
  int64_t test_images = 1000;  ///< held-out images measured against the training set (0 = all)
  /// The copy threshold is this quantile of the test-to-train distances: by construction this
  /// fraction of held-out real images is that close to a training image.
  double copy_quantile = 0.01;
  /// Memorization is suspected when samples fall within the threshold more often than held-out
  /// images do: at least this many times their rate, and significantly so (next option).
  double memorization_excess = 2.0;
  /// ... with a one-sided p-value (copy_excess_p_value()) below this.
  double memorization_p_value = 0.01;
  int64_t c2st_hidden = 256;  ///< width of the C2ST classifier's two hidden layers
  int64_t c2st_epochs = 30;   ///< passes over the classifier's training half
  int64_t c2st_batch = 128;
  double c2st_lr = 1e-3;  ///< Adam learning rate
};

/// Order statistics of distances (L2 over all pixels, pixels scaled to [0, 1]).
struct DistanceSummary {
  int64_t count = 0;
  double min = 0, q01 = 0, q05 = 0, median = 0, q95 = 0, max = 0, mean = 0;
};

/// (a) How close samples are to training images, against how close unseen real images are.
struct MemorizationCheck {
  DistanceSummary sample_to_train;
  DistanceSummary test_to_train;
  double threshold_l2 = 0;             ///< options.copy_quantile of the test-to-train distances
  double samples_within_fraction = 0;  ///< samples at most threshold_l2 from a training image
  double test_within_fraction = 0;  ///< held-out images that close (options.copy_quantile, or more on ties)
  /// One-sided p-value of at least that many samples within the threshold, were samples as close
  /// to the training set as held-out images are (copy_excess_p_value()).
  double samples_within_p_value = 1;
  int64_t exact_copies = 0;       ///< samples equal to a training image, byte for byte
  int64_t test_exact_copies = 0;  ///< held-out images equal to a training image (duplicates in the data)
  /// Samples fall within the threshold more often than held-out images do:
  /// samples_within_fraction >= options.memorization_excess × test_within_fraction and
  /// samples_within_p_value < options.memorization_p_value.
  bool suspected = false;
};

/// The exact one-sided test of the memorization check. `held_within` of `held_out` held-out images
/// lie within the copy threshold, which is their own quantile. Were the `samples` exchangeable with
/// them (as close to the training set), the number J of samples closer than the
/// (held_within + 1)-th nearest held-out image would follow
///   P(J = j) = C(j + m − 1, j) · C(samples − j + held_out − m, samples − j) / C(samples + held_out, samples),
/// m = held_within + 1 (the interleavings of the two sorted lists). Returns P(J >= within), summed
/// in log space. Unlike a binomial test at the held-out rate, it counts the threshold's own noise.
double copy_excess_p_value(int64_t within, int64_t samples, int64_t held_within, int64_t held_out);

/// (b) The classifier two-sample test.
struct C2stResult {
  double accuracy = 0;  ///< on the held-out halves, balanced classes: 0.5 = indistinguishable
  double accuracy_stderr = 0;   ///< binomial standard error of `accuracy`
  double p_value = 0;           ///< one-sided, H0: accuracy = 0.5 (normal approximation)
  int64_t train_per_class = 0;  ///< images of each class the classifier was trained on
  int64_t test_per_class = 0;   ///< images of each class it was scored on
  std::string classifier;       ///< e.g. "MLP 1024-256-256-1, 30 epochs of Adam (lr 0.001)"
};

/// (c) The Fréchet distance in a feature network's features.
struct FrechetCheck {
  bool measured = false;
  std::string missing;  ///< why it was not measured (no feature network, unlabelled data, ...)
  double distance = 0;  ///< samples against held-out test images
  /// Training images (as many as samples, at most all) against the same held-out images: what
  /// real images score at this sample size, the floor a perfect generator would reach.
  double real_reference = 0;
  int64_t samples = 0, held_out = 0, reference_images = 0, dims = 0;
  nlohmann::json feature_net;  ///< FeatureNet::info()
};

struct GeneratorCheck {
  int64_t samples = 0;
  int64_t train_images = 0;
  int64_t channels = 0, height = 0, width = 0;
  MemorizationCheck memorization;
  C2stResult c2st;
  FrechetCheck frechet;
  GeneratorCheckOptions options;
  double seconds = 0;
};

/// For each image of `queries`, the exact L2 distance to its nearest image in `reference` (same
/// shape; pixels scaled to [0, 1]). Candidates are found by a float matrix product in blocks and
/// the best few re-measured exactly on the bytes, so an exact copy measures 0. Runs on the CPU
/// with torch's intra-op threads.
std::vector<double> nearest_neighbour_l2(const ImageSet& queries, const ImageSet& reference);

/// Sorted order statistics of `distances` (linear interpolation between ranks).
DistanceSummary summarize_distances(std::vector<double> distances);

/// (a) over `samples`, the training set and up to options.test_images held-out images.
MemorizationCheck memorization_check(const ImageSet& samples, const ImageSet& train,
                                     const ImageSet& test, const GeneratorCheckOptions& options);

/// (b) Trains a small MLP from scratch to tell `real` (label 0) from `synthetic` (label 1) on half
/// of min(real, synthetic) images of each, chosen at random, and scores it on the other half.
/// Seeded by options.seed (its own random generator; torch's global one is not touched).
C2stResult classifier_two_sample_test(const ImageSet& real, const ImageSet& synthetic,
                                      const GeneratorCheckOptions& options);

/// (c) over `samples`, up to options.test_images held-out images (the memorization check's) and as
/// many training images as samples.
FrechetCheck frechet_check(const ImageSet& samples, const ImageSet& train, const ImageSet& test,
                           const FeatureNet& features, const GeneratorCheckOptions& options);

/// All checks; (c) only with a feature network (else frechet.missing says so). The shapes of
/// samples, train and test must agree; at least 4 samples and 4 training images are needed.
/// Throws vaelab::Error otherwise.
GeneratorCheck check_generator(const ImageSet& samples, const ImageSet& train, const ImageSet& test,
                               const GeneratorCheckOptions& options = {},
                               const FeatureNet* features = nullptr);

/// The numbers as one JSON object (the keys of check.json, documented in `vaelab generator check`).
nlohmann::json to_json(const GeneratorCheck& check);

/// A short Markdown report: `title` as heading, `context` lines (what was checked, against what)
/// as a list, the numbers, what they mean, and `grid_png` as an image when not empty.
std::string to_markdown(const GeneratorCheck& check, const std::string& title,
                        const std::vector<std::string>& context, const std::string& grid_png);

}  // namespace vaelab
