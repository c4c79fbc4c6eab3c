#pragma once
// Training checkpoints (docs/checkpoints.md): one safetensors file holding the model's parameters
// and buffers under their own names, and everything else a run needs to continue exactly —
// optimizer state, random states, stream positions — under names starting with "_train.".

#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/optim/adam.h>
#include <torch/types.h>

#include <vaelab/io/safetensors.hpp>

namespace vaelab {

/// The checkpoint format this vaelab writes and the only one it resumes from. Written as the
/// metadata key "vaelab_checkpoint_version"; a file without it (model weights only) or with
/// another value is refused, never guessed at.
inline constexpr int kCheckpointVersion = 1;

/// Prefix of the training-state tensors in a checkpoint. load_module_state skips these names, so
/// `vaelab eval` and `vaelab score` read a training checkpoint as a model checkpoint.
inline constexpr const char* kTrainingStatePrefix = "_train.";

/// A training checkpoint, read back and checked.
struct TrainingCheckpoint {
  std::filesystem::path file;
  NamedTensors model;  ///< parameters and buffers, by their module names
  /// Training-state tensors, by their names without kTrainingStatePrefix ("optim.0.exp_avg",
  /// "rng.cpu", "stream.real.order", ...).
  std::map<std::string, torch::Tensor> state;
  /// The metadata key "training_state": counters, positions, the metrics records so far.
  nlohmann::json info;
};

/// Reads `file` and checks its format version and that every key a resume needs is there.
/// Throws vaelab::Error naming the file and the missing or unknown key.
TrainingCheckpoint read_training_checkpoint(const std::filesystem::path& file);

/// The keys read_training_checkpoint requires in "training_state".
const std::vector<std::string>& training_state_keys();

/// Adam's per-parameter state (exp_avg, exp_avg_sq, max_exp_avg_sq when amsgrad, step) as tensors
/// "optim.<i>.<field>" for parameter i of the optimizer's first group, and the parameter names
/// in `info` ("params") so a load can check it has the same parameters.
void save_adam_state(const torch::optim::Adam& optimizer, const torch::nn::Module& module,
                     std::map<std::string, torch::Tensor>& tensors, nlohmann::json& info);
/// Restores it into an optimizer over the same module's parameters. Throws vaelab::Error naming
/// `source` and the parameter that does not match.
void load_adam_state(torch::optim::Adam& optimizer, const torch::nn::Module& module,
                     const std::map<std::string, torch::Tensor>& tensors, const nlohmann::json& info,
                     const std::string& source);

/// "encoder.fc1.weight" → "encoder.fc1": the layer a parameter belongs to.
std::string parameter_layer(const std::string& parameter);

/// object[key]; throws vaelab::Error "<where>missing key '<key>'" when it is not there.
const nlohmann::json& require_json_key(const nlohmann::json& object, const std::string& key,
                                       const std::string& where);

/// The first parameter, in module registration order, whose gradient holds a NaN or an infinity;
/// "" when every gradient is finite (parameters without a gradient are skipped).
std::string first_nonfinite_gradient(const torch::nn::Module& module);
/// The same for the parameters' values.
std::string first_nonfinite_parameter(const torch::nn::Module& module);

}  // namespace vaelab
