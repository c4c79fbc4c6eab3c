// Evaluation: the Evaluator runs the configured metrics at each evaluation point of a run.
#include <vaelab/clock.hpp>
#include <vaelab/metrics/evaluator.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/log.hpp>
#include <vaelab/metrics/amortization.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/metrics/iwae.hpp>
#include <vaelab/metrics/probe.hpp>
#include <vaelab/metrics/robustness.hpp>

namespace vaelab {
namespace {

/// nats per image → bits per dimension, for a likelihood that is a probability mass.
/// Mean of the first n values (all when n is 0).
double mean_of_first(const std::vector<double>& values, int64_t n) {
  const size_t count = n > 0 ? std::min(values.size(), static_cast<size_t>(n)) : values.size();
  double sum = 0;
  for (size_t i = 0; i < count; ++i) sum += values[i];
  return count > 0 ? sum / static_cast<double>(count) : 0.0;
}

double bits_per_dim(double nats, const torch::Tensor& data) {
  const double dims = static_cast<double>(data[0].numel());
  return -nats / (dims * std::log(2.0));
}

torch::Tensor first(const torch::Tensor& data, int64_t count) {
  return count > 0 && count < data.size(0) ? data.slice(0, 0, count) : data;
}

}  // namespace

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> names = {"elbo", "iwae", "amortization", "robustness",
                                                 "probe"};
  return names;
}

void check_metric_names(const std::vector<std::string>& names) {
  for (const auto& name : names) {
    if (std::find(metric_names().begin(), metric_names().end(), name) == metric_names().end()) {
      const std::string best = closest_match(name, metric_names());
      throw ConfigError("unknown metric '" + name + "'" +
                        (best.empty() ? "" : "; did you mean '" + best + "'?") +
                        " (known: elbo, iwae, amortization, robustness, probe)");
    }
  }
}

Evaluator::Evaluator(Model& model, const Likelihood& likelihood, torch::Device device,
                     ConfigTable eval_config, uint64_t seed)
    : model_(model),
      likelihood_(likelihood),
      device_(device),
      config_(std::move(eval_config)),
      seed_(seed) {}

std::vector<std::string> Evaluator::due(int64_t epoch, int64_t last_epoch) const {
  std::vector<std::string> metrics = {"elbo"};
  for (const auto& name : metric_names()) {
    if (name == "elbo") continue;
    const int64_t every = config_.sub(name).get_int_in("every_epochs", 0, INT64_MAX);
    if (every > 0 && (epoch % every == 0 || epoch == last_epoch)) metrics.push_back(name);
  }
  return metrics;
}

nlohmann::json Evaluator::run(const std::vector<std::string>& metrics, const EvalData& data) const {
  check_metric_names(metrics);
  const auto wants = [&](const char* name) {
    return std::find(metrics.begin(), metrics.end(), name) != metrics.end();
  };
  nlohmann::json out = nlohmann::json::object();
  const int64_t batch = config_.get_int_in("batch_size", 1, INT64_MAX);

  if (wants("elbo")) {
    const auto start = std::chrono::steady_clock::now();
    const int64_t samples = config_.get_int_in("elbo_samples", 1, 1000000);
    const ElboSummary train =
        evaluate_elbo(model_, likelihood_, data.train, samples, batch, seed_ + 1, device_);
    const bool anomalies = data.anomalies.defined() && data.anomalies.size(0) > 0;
    const ElboSummary test =
        evaluate_elbo(model_, likelihood_, data.test, samples, batch, seed_ + 2, device_, anomalies);
    out["elbo_train_nats"] = train.elbo_nats;
    out["elbo_test_nats"] = test.elbo_nats;
    out["generalization_gap_nats"] = train.elbo_nats - test.elbo_nats;
    out["log_likelihood_train_nats"] = train.log_likelihood_nats;
    out["kl_train_nats"] = train.kl_nats;
    out["log_likelihood_test_nats"] = test.log_likelihood_nats;
    out["kl_test_nats"] = test.kl_nats;
    if (likelihood_.discrete()) {
      out["bits_per_dim_train"] = bits_per_dim(train.elbo_nats, data.train);
      out["bits_per_dim_test"] = bits_per_dim(test.elbo_nats, data.test);
    }
    if (!data.test_exact_log_likelihood.empty()) {
      out["exact_log_likelihood_test_nats"] = mean_of_first(data.test_exact_log_likelihood, 0);
    }
    if (anomalies) {
      // Anomaly detection: −ELBO scores the held-out class (positives) against the test set.
      const ElboSummary held =
          evaluate_elbo(model_, likelihood_, data.anomalies, samples, batch, seed_ + 3, device_, true);
      std::vector<double> held_scores;
      std::vector<double> test_scores;
      for (double v : held.per_image) held_scores.push_back(-v);
      for (double v : test.per_image) test_scores.push_back(-v);
      out["anomaly_auroc"] = auroc(held_scores, test_scores);
      out["elbo_anomalies_nats"] = held.elbo_nats;
    }
    out["elbo_seconds"] = seconds_since(start);
  }

  if (wants("iwae")) {
    const auto start = std::chrono::steady_clock::now();
    const ConfigTable c = config_.sub("iwae");
    const torch::Tensor test = first(data.test, c.get_int_in("images", 0, INT64_MAX));
    const int64_t chunk = c.get_int_in("chunk", 1, 10000000);
    // About `batch` decoded rows per call (images × chunk): larger calls only churn memory.
    const int64_t images_per_batch = std::max<int64_t>(1, batch / chunk);
    const IwaeSummary s = evaluate_iwae(model_, likelihood_, test,
                                        c.get_int_in("samples", 1, 10000000), images_per_batch,
                                        chunk, seed_ + 3, device_);
    out["iwae_test_nats"] = s.iwae_nats;
    out["iwae_samples"] = s.samples;
    out["iwae_images"] = s.images;
    if (likelihood_.discrete()) out["iwae_bits_per_dim_test"] = bits_per_dim(s.iwae_nats, test);
    if (!data.test_exact_log_likelihood.empty()) {
      out["iwae_exact_gap_nats"] =
          mean_of_first(data.test_exact_log_likelihood, test.size(0)) - s.iwae_nats;
    }
    out["iwae_seconds"] = seconds_since(start);
  }

  if (wants("amortization")) {
    const auto start = std::chrono::steady_clock::now();
    const ConfigTable c = config_.sub("amortization");
    AmortizationOptions o;
    o.images = c.get_int_in("images", 1, INT64_MAX);
    o.batch_size = c.get_int_in("batch_size", 1, INT64_MAX);
    o.steps = c.get_int_in("steps", 0, INT64_MAX);
    o.samples = c.get_int_in("samples", 1, 1000000);
    o.lr = c.get_double("lr");
    o.cosine = c.get_choice("lr_schedule", {"constant", "cosine"}) == "cosine";
    o.check_every = c.get_int_in("check_every", 1, INT64_MAX);
    o.patience = c.get_int_in("patience", 1, INT64_MAX);
    o.final_samples = c.get_int_in("final_samples", 1, 1000000);
    const AmortizationResult r =
        amortization_gap(model_, likelihood_, data.test, o, seed_ + 4, device_);
    out["elbo_star_test_nats"] = r.elbo_star_nats;
    out["amortization_elbo_test_nats"] = r.elbo_nats;
    out["amortization_gap_nats"] = r.amortization_gap_nats;
    out["amortization_images"] = r.images;
    out["amortization_steps"] = r.steps_run;
    out["amortization_seconds"] = seconds_since(start);
  }

  if (wants("robustness")) {
    if (data.continuous) {
      throw ConfigError("eval: the robustness gap keeps attacked images in [0, 1] and MS-SSIM "
                        "assumes that range; this dataset's images are continuous");
    }
    const auto start = std::chrono::steady_clock::now();
    const ConfigTable c = config_.sub("robustness");
    // 0 = the paper's Table 2 value for this kind of image.
    AttackOptions o = table2_attack_options(data.test.size(1));
    const auto pick = [&](const char* key, int64_t& value) {
      const int64_t v = c.get_int_in(key, 0, INT64_MAX);
      if (v > 0) value = v;
    };
    pick("images", o.images);
    pick("restarts", o.restarts);
    pick("steps", o.steps);
    o.lr = c.get_double("lr");
    const double radius = c.get_double("radius");
    if (radius < 0 || radius > 1) throw ConfigError(c.key_path("radius") + ": must be in [0, 1]");
    if (radius > 0) o.radius = radius;
    const RobustnessResult r =
        robustness_gap(model_, likelihood_, data.test, o, seed_ + 5, device_);
    out["robustness_gap"] = r.robustness_gap;
    out["msssim_inputs"] = r.msssim_inputs;
    out["msssim_reconstructions"] = r.msssim_reconstructions;
    out["attack_skl_nats"] = r.skl_mean;
    out["robustness_images"] = r.images;
    out["robustness_seconds"] = seconds_since(start);
  }

  if (wants("probe")) {
    const auto start = std::chrono::steady_clock::now();
    const ConfigTable c = config_.sub("probe");
    // The paper's protocol: encode the test set, train on one half, test on the other.
    int64_t n = c.get_int_in("images", 0, INT64_MAX);
    if (n == 0 || n > data.test.size(0)) n = data.test.size(0);
    const int64_t half = n / 2;
    for (int64_t i = 0; i < n; ++i) {
      if (static_cast<size_t>(i) >= data.test_labels.size() || data.test_labels[static_cast<size_t>(i)] < 0) {
        throw Error("metric probe: the test set has no labels");
      }
    }
    const std::vector<int64_t> train_labels(data.test_labels.begin(), data.test_labels.begin() + half);
    const std::vector<int64_t> test_labels(data.test_labels.begin() + half, data.test_labels.begin() + n);
    const ProbeResult r =
        probe_accuracy(model_, data.test.slice(0, 0, half), train_labels,
                       data.test.slice(0, half, n), test_labels, ProbeOptions{}, seed_ + 6, device_);
    out["probe_accuracy"] = r.probe_accuracy;
    out["knn_accuracy"] = r.knn_accuracy;
    out["probe_images"] = n;
    out["probe_seconds"] = seconds_since(start);
  }
  return out;
}

}  // namespace vaelab
