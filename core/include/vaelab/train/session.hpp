#pragma once
// Stage 2 of a run, the session (docs/architecture.md): data source → dataset → subsets →
// preprocessing, and the model built on a backend.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include <vaelab/backend.hpp>
#include <vaelab/data_source.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/evaluator.hpp>
#include <vaelab/model.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/train/run_config.hpp>

namespace vaelab {

/// Everything a run needs, made from a resolved config in the order of docs/architecture.md: backend
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

/// The same for a dataset already read from `source` (so a caller that also needs the whole
/// splits reads the files once).
OpenedData select_dataset(const RunConfig& config, PluginPtr<DataSource> source, Dataset dataset);

/// What an evaluation point measures in this session.
EvalData eval_data(const Session& session);

/// The run's evaluator: the session's model and likelihood with the [eval] settings, seeded by
/// train.seed.
Evaluator make_evaluator(const RunConfig& config, Session& session);

/// The Preprocess step: stored 8-bit images → float [N, C, H, W] in [0, 1] ({0, 1} with
/// binarize = "threshold"); continuous images (ImageSet::values) are taken as they are. A copy.
torch::Tensor to_float_images(const ImageSet& images, const std::string& binarize);

/// The same for images [first, first + count) of `images`.
torch::Tensor to_float_range(const ImageSet& images, int64_t first, int64_t count,
                             const std::string& binarize);

/// The same for `count` 8-bit images at `pixels` (C×H×W bytes each, read, not kept).
torch::Tensor bytes_to_float(const uint8_t* pixels, int64_t count, int64_t channels, int64_t height,
                             int64_t width, const std::string& binarize);

}  // namespace vaelab
