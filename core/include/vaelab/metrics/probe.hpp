#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include <vaelab/model.hpp>

namespace vaelab {

/// Settings of the representation probes (Xiao, Zenn & Bamler 2024, App. F, Table 11).
struct ProbeOptions {
  /// L-BFGS iterations of the logistic regression (full batch, strong-Wolfe line search).
  /// Default 200: enough for the convex problem to converge on a few thousand 10–1000-d features.
  int64_t steps = 200;
  /// L-BFGS step length (its line search scales it). Default 1, L-BFGS's natural step.
  double lr = 1.0;
  /// L2 penalty λ on the weights (not the biases): loss = mean cross-entropy + ½·λ·‖W‖².
  /// Default 1e-3, a weak ridge that keeps separable classes from driving ‖W‖ to infinity;
  /// scikit-learn's default C = 1 corresponds to λ = 1/N.
  double weight_decay = 1e-3;
  /// Neighbours of the kNN classifier. Default 5 (Table 11).
  int64_t k = 5;
  /// Images per encoder call. Default 256.
  int64_t batch_size = 256;
  /// Upper bound on the test × train distance entries held at once by the kNN (its memory is
  /// 4 bytes each for float features). Default 2^24 (64 MiB).
  int64_t knn_block_elements = int64_t{1} << 24;
};

/// Test accuracies of the two probes, fractions in [0, 1].
struct ProbeResult {
  double probe_accuracy = 0;  ///< multinomial logistic regression
  double knn_accuracy = 0;    ///< k nearest neighbours
  int64_t train_images = 0;
  int64_t test_images = 0;
};

/// Multinomial logistic regression on `train` features [N, D] with labels in 0..classes−1:
/// returns the predicted class of each row of `test` [M, D] (int64 [M], on test's device).
/// Weights start at zero; L-BFGS as in ProbeOptions (steps, lr, weight_decay). Features are used as
/// given (probe_accuracy standardizes them first). Deterministic.
torch::Tensor logistic_regression_predict(const torch::Tensor& train, const torch::Tensor& labels,
                                          const torch::Tensor& test, int64_t classes,
                                          const ProbeOptions& options = {});

/// k-nearest-neighbour predictions (Euclidean) for each row of `test` [M, D] from `train` [N, D]
/// with int64 `labels` [N]: int64 [M] on the CPU. Majority vote among the min(k, N) nearest; a
/// tie between labels goes to the label whose nearest member is closest. Distances are computed
/// in blocks of at most options.knn_block_elements entries. Neighbours at exactly equal distance
/// are ordered by torch::topk.
torch::Tensor knn_predict(const torch::Tensor& train, const torch::Tensor& labels,
                          const torch::Tensor& test, const ProbeOptions& options = {});

/// Representation quality of `model`'s encoder: both image sets (float [N, C, H, W] in [0, 1] on
/// the CPU, moved to `device` batch by batch) are encoded to the posterior means (eval mode, no
/// gradients, mode restored), flattened and standardized with the training set's per-feature mean
/// and standard deviation (features constant on the training set are only centred). Then
/// logistic_regression_predict and knn_predict (k = options.k) are trained on the train set and
/// scored on the test set. Labels are class indices ≥ 0; the class count is the largest label + 1.
/// Both classifiers are deterministic; `seed` is accepted for symmetry with the other metrics and
/// does not change the result. Throws vaelab::Error on empty sets or label counts that differ from
/// the image counts.
ProbeResult probe_accuracy(Model& model, const torch::Tensor& train_x,
                           const std::vector<int64_t>& train_labels, const torch::Tensor& test_x,
                           const std::vector<int64_t>& test_labels, const ProbeOptions& options,
                           uint64_t seed, const torch::Device& device);

}  // namespace vaelab
