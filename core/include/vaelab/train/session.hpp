#pragma once

#include <cstdint>
#include <memory>

#include <torch/types.h>

#include <vaelab/backend.hpp>
#include <vaelab/data_source.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/evaluator.hpp>
#include <vaelab/model.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/train/run.hpp>

namespace vaelab {

/// Everything a run needs, made from a resolved config in the order of DESIGN.md §1: backend
/// (threads applied), likelihood, data source → Dataset → subsets → preprocessed tensors, model
/// (seeded, built through the backend's layer factory, on the backend's device).
struct Session {
  PluginPtr<Backend> backend;
  PluginPtr<DataSource> source;
  PluginPtr<Model> model;
  std::unique_ptr<Likelihood> likelihood;
  Dataset dataset;
  torch::Tensor train;       ///< the training split (or its subset), preprocessed, CPU
  torch::Tensor train_eval;  ///< what the train ELBO is measured on
  torch::Tensor test;
  torch::Tensor anomalies;  ///< test images of data.holdout_label (undefined without one)
  std::vector<int64_t> test_labels;  ///< -1 where unlabelled
  /// log p(x) of each test image under the true distribution, when the data source knows it.
  std::vector<double> test_exact_log_likelihood;
  int64_t params_total = 0;
  int64_t params_latent_adjacent = 0;  ///< |Θ_z|
};

/// With preprocess = false, `train`, `train_eval` and `test` stay undefined: the caller converts
/// the stored images itself (vaelab score, batch by batch).
Session open_session(const RunConfig& config, bool preprocess = true);

/// The [data] section's data source and its Dataset with the configured train/test subsets
/// applied (data.train_size, data.test_size, data.subset_seed), as stored: not preprocessed. With
/// data.holdout_label, that class is taken out of both splits first (the subsets count the rest).
struct OpenedData {
  PluginPtr<DataSource> source;
  Dataset dataset;
  ImageSet anomalies;  ///< the test split's images of data.holdout_label (count 0 without one)
};
OpenedData open_dataset(const RunConfig& config);

/// What an evaluation point measures in this session.
EvalData eval_data(const Session& session);

}  // namespace vaelab
