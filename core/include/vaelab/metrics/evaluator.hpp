#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <torch/types.h>

#include <vaelab/config.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/metric_names.hpp>
#include <vaelab/model.hpp>

namespace vaelab {

/// What an evaluation point measures, float [N, C, H, W] on the CPU.
struct EvalData {
  torch::Tensor train;  ///< the real training set (or its fixed subset): the "train" of Eq. 3
  torch::Tensor test;
  std::vector<int64_t> test_labels;  ///< for the probe; -1 = unlabelled
  /// Images of a class held out of training (data.holdout_label), or undefined: the elbo metric
  /// then adds anomaly_auroc, −ELBO as the score, these against the test set.
  torch::Tensor anomalies;
  /// log p(x) per test image under the true distribution (a synthetic world), else empty.
  std::vector<double> test_exact_log_likelihood;
  bool continuous = false;  ///< the images are continuous, not on the 1/255 grid
};

/// Runs the measurements of docs/architecture.md (stage "evaluation") with the settings of the run config's
/// [eval] table, and returns them as JSON under the keys summary.json and metrics.jsonl use:
/// elbo_train_nats, elbo_test_nats, generalization_gap_nats, log_likelihood_*_nats, kl_*_nats,
/// bits_per_dim_{train,test} (discrete likelihoods only), iwae_test_nats, iwae_bits_per_dim_test,
/// elbo_star_test_nats, amortization_gap_nats, robustness_gap, msssim_inputs,
/// msssim_reconstructions, probe_accuracy, knn_accuracy, anomaly_auroc (with anomalies), and <metric>_seconds for each. On a
/// dataset that knows its true density: exact_log_likelihood_test_nats (with elbo) and
/// iwae_exact_gap_nats = exact − IWAE on the same images (with iwae).
class Evaluator {
 public:
  /// `seed` fixes every evaluation's noise, so the same weights always give the same numbers.
  Evaluator(Model& model, const Likelihood& likelihood, torch::Device device,
            ConfigTable eval_config, uint64_t seed);

  /// The metrics due after `epoch` (1-based) of a run of `last_epoch` epochs: "elbo" at every
  /// evaluation point, the others every their own every_epochs and after the last epoch.
  std::vector<std::string> due(int64_t epoch, int64_t last_epoch) const;

  nlohmann::json run(const std::vector<std::string>& metrics, const EvalData& data) const;

 private:
  Model& model_;
  const Likelihood& likelihood_;
  torch::Device device_;
  ConfigTable config_;
  uint64_t seed_;
};

}  // namespace vaelab
