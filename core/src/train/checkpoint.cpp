// Training checkpoints (docs/checkpoints.md): reading and checking a checkpoint file, Adam's
// state as named tensors, and the non-finite checks the trainer runs before it writes one.
#include <vaelab/train/checkpoint.hpp>

#include <algorithm>
#include <filesystem>
#include <memory>

#include <c10/util/StringUtil.h>
#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/train/fused_adam.hpp>

namespace vaelab {
namespace fs = std::filesystem;

std::string parameter_layer(const std::string& parameter) {
  const auto dot = parameter.rfind('.');
  return dot == std::string::npos ? parameter : parameter.substr(0, dot);
}

namespace {

/// The key optimizers use for a parameter's state (torch/optim/optimizer.h: the address of its
/// TensorImpl as text, in LibTorch 1.13 and 2.x alike).

std::string first_nonfinite(const torch::nn::Module& module, bool gradients) {
  std::vector<std::pair<std::string, torch::Tensor>> checked;
  for (const auto& p : module.named_parameters(true)) {
    const torch::Tensor t = gradients ? p.value().grad() : p.value();
    if (t.defined()) checked.emplace_back(p.key(), t);
  }
  if (checked.empty()) return "";
  // Float tensors on the CPU: one vectorized read each, no allocation (this runs every step).
  const auto plain = [](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous();
  };
  if (std::all_of(checked.begin(), checked.end(), [&](const auto& c) { return plain(c.second); })) {
    for (const auto& [name, t] : checked) {
      if (!all_finite(t.data_ptr<float>(), t.numel())) return name;
    }
    return "";
  }
  std::vector<torch::Tensor> flags;
  flags.reserve(checked.size());
  {
    torch::NoGradGuard no_grad;
    for (const auto& [name, t] : checked) flags.push_back(torch::isfinite(t).all());
    if (torch::stack(flags).all().item<bool>()) return "";
  }
  for (size_t i = 0; i < checked.size(); ++i) {
    if (!flags[i].item<bool>()) return checked[i].first;
  }
  return "";
}

}  // namespace

const nlohmann::json& require_json_key(const nlohmann::json& object, const std::string& key,
                                       const std::string& where) {
  if (!object.is_object() || !object.contains(key)) throw Error(where + "missing key '" + key + "'");
  return object[key];
}

std::string first_nonfinite_gradient(const torch::nn::Module& module) {
  return first_nonfinite(module, true);
}

std::string first_nonfinite_parameter(const torch::nn::Module& module) {
  return first_nonfinite(module, false);
}

void save_adam_state(const torch::optim::Adam& optimizer, const torch::nn::Module& module,
                     std::map<std::string, torch::Tensor>& tensors, nlohmann::json& info) {
  if (optimizer.param_groups().size() != 1) throw Error("checkpoint: Adam with several parameter groups");
  const auto& params = optimizer.param_groups()[0].params();
  const auto named = module.named_parameters(true);
  if (named.size() != params.size()) throw Error("checkpoint: the optimizer does not hold the model's parameters");
  nlohmann::json names = nlohmann::json::array();
  for (size_t i = 0; i < params.size(); ++i) {
    names.push_back(named[i].key());
    const auto it = optimizer.state().find(adam_state_key(params[i]));
    if (it == optimizer.state().end()) continue;  // no step taken yet
    const auto& st = static_cast<const torch::optim::AdamParamState&>(*it->second);
    const std::string prefix = "optim." + std::to_string(i) + ".";
    tensors[prefix + "step"] = torch::full({1}, st.step(), torch::kInt64);
    tensors[prefix + "exp_avg"] = st.exp_avg();
    tensors[prefix + "exp_avg_sq"] = st.exp_avg_sq();
    if (st.max_exp_avg_sq().defined()) tensors[prefix + "max_exp_avg_sq"] = st.max_exp_avg_sq();
  }
  info["params"] = names;
}

void load_adam_state(torch::optim::Adam& optimizer, const torch::nn::Module& module,
                     const std::map<std::string, torch::Tensor>& tensors, const nlohmann::json& info,
                     const std::string& source) {
  const std::string where = source + ": ";
  auto& params = optimizer.param_groups().at(0).params();
  const auto named = module.named_parameters(true);
  const nlohmann::json& names = require_json_key(info, "params", where + "training_state.optimizer: ");
  if (!names.is_array() || names.size() != params.size() || named.size() != params.size()) {
    throw Error(where + "the optimizer state is for " + std::to_string(names.size()) +
                " parameters; the model has " + std::to_string(params.size()));
  }
  optimizer.state().clear();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& p = params[i];
    if (!names[i].is_string() || names[i].get<std::string>() != named[i].key()) {
      throw Error(where + "optimizer parameter " + std::to_string(i) + " is '" +
                  (names[i].is_string() ? names[i].get<std::string>() : names[i].dump()) +
                  "', the model's is '" + named[i].key() + "'");
    }
    const std::string prefix = "optim." + std::to_string(i) + ".";
    const auto step = tensors.find(prefix + "step");
    if (step == tensors.end()) continue;  // this parameter had no state yet
    const auto get = [&](const std::string& field) -> torch::Tensor {
      const auto it = tensors.find(prefix + field);
      if (it == tensors.end()) throw Error(where + "missing tensor '" + kTrainingStatePrefix + prefix + field + "'");
      if (it->second.sizes() != p.sizes()) {
        throw Error(where + "tensor '" + kTrainingStatePrefix + prefix + field + "' has shape " +
                    c10::str(it->second.sizes()) + ", parameter " + named[i].key() + " has " +
                    c10::str(p.sizes()));
      }
      return it->second.to(p.options()).clone();
    };
    auto st = std::make_unique<torch::optim::AdamParamState>();
    st->step(step->second.to(torch::kInt64).reshape({-1})[0].item<int64_t>());
    st->exp_avg(get("exp_avg"));
    st->exp_avg_sq(get("exp_avg_sq"));
    if (tensors.count(prefix + "max_exp_avg_sq") > 0) st->max_exp_avg_sq(get("max_exp_avg_sq"));
    optimizer.state()[adam_state_key(p)] = std::move(st);
  }
}

const std::vector<std::string>& training_state_keys() {
  static const std::vector<std::string> keys = {
      "epochs_done", "in_epoch",  "global_step",   "images_seen", "train_seconds", "eval_seconds",
      "seconds",     "elbo_trained_on_nats", "nonfinite_skipped_steps", "skips_in_row", "metrics",
      "last_eval",   "regime",    "stream",        "optimizer",   "resumes"};
  return keys;
}

TrainingCheckpoint read_training_checkpoint(const fs::path& file) {
  const std::string where = file.string() + ": ";
  std::map<std::string, std::string> metadata;
  NamedTensors tensors = load_safetensors(file, &metadata);
  const auto version = metadata.find("vaelab_checkpoint_version");
  if (version == metadata.end()) {
    throw Error(where + "no metadata key 'vaelab_checkpoint_version': the file holds model weights "
                "only (written by a vaelab without training checkpoints), so the run cannot be resumed "
                "from it");
  }
  if (version->second != std::to_string(kCheckpointVersion)) {
    bool newer = false;
    try {
      newer = std::stoll(version->second) > kCheckpointVersion;
    } catch (const std::exception&) {
    }
    throw Error(where + "vaelab_checkpoint_version = \"" + version->second + "\" is " +
                (newer ? "newer than" : "not one") + " this vaelab reads (\"" +
                std::to_string(kCheckpointVersion) + "\")" + (newer ? "; resume it with the vaelab that wrote it" : ""));
  }
  const auto state = metadata.find("training_state");
  if (state == metadata.end()) throw Error(where + "no metadata key 'training_state'");
  TrainingCheckpoint c;
  c.file = file;
  try {
    c.info = nlohmann::json::parse(state->second);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + "metadata 'training_state' is not JSON: " + e.what());
  }
  if (!c.info.is_object()) throw Error(where + "metadata 'training_state' is not a JSON object");
  for (const auto& key : training_state_keys()) require_json_key(c.info, key, where + "training_state: ");
  const std::string prefix = kTrainingStatePrefix;
  for (auto& [name, tensor] : tensors) {
    if (name.rfind(prefix, 0) == 0) {
      c.state.emplace(name.substr(prefix.size()), std::move(tensor));
    } else {
      c.model.emplace_back(name, std::move(tensor));
    }
  }
  if (c.state.count("rng.cpu") == 0) throw Error(where + "missing tensor '" + prefix + "rng.cpu'");
  return c;
}

}  // namespace vaelab
