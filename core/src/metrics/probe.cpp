// Evaluation: the representation probes (logistic regression on the encoder's posterior means).
#include <vaelab/metrics/probe.hpp>

#include <algorithm>
#include <string>

#include <torch/torch.h>

#include <vaelab/error.hpp>

namespace vaelab {

namespace {

void check_features(const torch::Tensor& train, const torch::Tensor& labels,
                    const torch::Tensor& test, const char* what) {
  if (!train.defined() || !test.defined() || train.dim() != 2 || test.dim() != 2 ||
      train.size(0) < 1 || test.size(0) < 1 || train.size(1) != test.size(1))
    throw Error(std::string(what) + ": expected non-empty features [N, D] and [M, D]");
  if (!labels.defined() || labels.dim() != 1 || labels.size(0) != train.size(0))
    throw Error(std::string(what) + ": expected one label per training row");
}

/// Posterior means of every image, flattened: [N, D] on `device`. Eval mode (restored), no grad.
torch::Tensor encode_means(Model& model, const torch::Tensor& images, int64_t batch_size,
                           const torch::Device& device) {
  torch::nn::Module& module = model.module();
  const bool was_training = module.is_training();
  module.eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  const int64_t n = images.size(0);
  try {
    for (int64_t start = 0; start < n; start += batch_size) {
      const int64_t end = std::min(n, start + batch_size);
      parts.push_back(model.encode(images.slice(0, start, end).to(device)).mean.flatten(1));
    }
  } catch (...) {
    if (was_training) module.train();
    throw;
  }
  if (was_training) module.train();
  return torch::cat(parts, 0);
}

torch::Tensor labels_tensor(const std::vector<int64_t>& labels) {
  return torch::tensor(labels, torch::TensorOptions().dtype(torch::kLong));
}

}  // namespace

torch::Tensor logistic_regression_predict(const torch::Tensor& train, const torch::Tensor& labels,
                                          const torch::Tensor& test, int64_t classes,
                                          const ProbeOptions& options) {
  check_features(train, labels, test, "logistic regression");
  if (classes < 2) throw Error("logistic regression: needs at least 2 classes");
  if (options.steps < 1) throw Error("logistic regression: steps must be at least 1");
  if (!(options.weight_decay >= 0)) throw Error("logistic regression: weight_decay must be >= 0");
  torch::AutoGradMode grad_mode(true);
  const torch::Tensor x = train.detach();
  const torch::Tensor y = labels.to(x.device(), torch::kLong);
  torch::Tensor weight = torch::zeros({x.size(1), classes}, x.options()).requires_grad_(true);
  torch::Tensor bias = torch::zeros({classes}, x.options()).requires_grad_(true);
  torch::optim::LBFGS optimizer({weight, bias}, torch::optim::LBFGSOptions(options.lr)
                                                    .max_iter(options.steps)
                                                    .history_size(20)
                                                    .line_search_fn(std::string("strong_wolfe")));
  const double decay = options.weight_decay;
  auto closure = [&]() -> torch::Tensor {
    optimizer.zero_grad();
    const torch::Tensor logits = torch::addmm(bias, x, weight);
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
    if (decay > 0) loss = loss + 0.5 * decay * (weight * weight).sum();
    loss.backward();
    return loss;
  };
  optimizer.step(closure);
  torch::NoGradGuard no_grad;
  return torch::addmm(bias, test.detach(), weight).argmax(1);
}

torch::Tensor knn_predict(const torch::Tensor& train, const torch::Tensor& labels,
                          const torch::Tensor& test, const ProbeOptions& options) {
  check_features(train, labels, test, "kNN");
  if (options.k < 1) throw Error("kNN: k must be at least 1");
  torch::NoGradGuard no_grad;
  const int64_t n = train.size(0);
  const int64_t m = test.size(0);
  const int64_t k = std::min(options.k, n);
  const int64_t block = std::max<int64_t>(1, options.knn_block_elements / n);
  const torch::Tensor x = train.detach();
  const torch::Tensor x_sq = (x * x).sum(1).unsqueeze(0);  // [1, N]
  const torch::Tensor label_cpu = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* label_of = label_cpu.data_ptr<int64_t>();
  torch::Tensor predictions = torch::empty({m}, torch::TensorOptions().dtype(torch::kLong));
  int64_t* out = predictions.data_ptr<int64_t>();
  std::vector<int64_t> votes(static_cast<size_t>(k));
  for (int64_t start = 0; start < m; start += block) {
    const int64_t end = std::min(m, start + block);
    const torch::Tensor t = test.slice(0, start, end).detach().to(x.device());
    // Squared Euclidean distances [rows, N]; the ranking is all that matters.
    const torch::Tensor dist = (t * t).sum(1, true) + x_sq - 2.0 * t.mm(x.t());
    const torch::Tensor nearest =
        std::get<1>(dist.topk(k, 1, /*largest=*/false, /*sorted=*/true)).to(torch::kCPU).contiguous();
    const int64_t* idx = nearest.data_ptr<int64_t>();
    for (int64_t r = 0; r < end - start; ++r) {
      for (int64_t j = 0; j < k; ++j) votes[static_cast<size_t>(j)] = label_of[idx[r * k + j]];
      // Most frequent label; among equally frequent ones the first seen, i.e. the nearest.
      int64_t best = votes[0];
      int64_t best_count = 0;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t count = std::count(votes.begin(), votes.end(), votes[static_cast<size_t>(j)]);
        if (count > best_count) {
          best = votes[static_cast<size_t>(j)];
          best_count = count;
        }
      }
      out[start + r] = best;
    }
  }
  return predictions;
}

ProbeResult probe_accuracy(Model& model, const torch::Tensor& train_x,
                           const std::vector<int64_t>& train_labels, const torch::Tensor& test_x,
                           const std::vector<int64_t>& test_labels, const ProbeOptions& options,
                           uint64_t seed, const torch::Device& device) {
  (void)seed;  // both classifiers are deterministic
  for (const torch::Tensor* images : {&train_x, &test_x})
    if (!images->defined() || images->dim() < 2 || images->size(0) < 1)
      throw Error("probe: expected non-empty image sets [N, C, H, W]");
  if (static_cast<int64_t>(train_labels.size()) != train_x.size(0) ||
      static_cast<int64_t>(test_labels.size()) != test_x.size(0))
    throw Error("probe: " + std::to_string(train_labels.size()) + " train and " +
                std::to_string(test_labels.size()) + " test labels for " +
                std::to_string(train_x.size(0)) + " and " + std::to_string(test_x.size(0)) +
                " images");
  if (options.batch_size < 1) throw Error("probe: batch_size must be at least 1");
  int64_t classes = 0;
  for (const auto* set : {&train_labels, &test_labels})
    for (int64_t label : *set) {
      if (label < 0) throw Error("probe: labels must be class indices >= 0, got " +
                                 std::to_string(label));
      classes = std::max(classes, label + 1);
    }
  classes = std::max<int64_t>(classes, 2);

  const torch::Tensor train_raw = encode_means(model, train_x, options.batch_size, device);
  const torch::Tensor test_raw = encode_means(model, test_x, options.batch_size, device);
  torch::Tensor train_f;
  torch::Tensor test_f;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor mean = train_raw.mean(0, true);
    torch::Tensor std_dev = (train_raw - mean).square().mean(0, true).sqrt();
    std_dev = torch::where(std_dev > 0, std_dev, torch::ones_like(std_dev));
    train_f = (train_raw - mean) / std_dev;
    test_f = (test_raw - mean) / std_dev;
  }
  const torch::Tensor y_train = labels_tensor(train_labels);
  const torch::Tensor y_test = labels_tensor(test_labels);
  const torch::Tensor logistic =
      logistic_regression_predict(train_f, y_train.to(device), test_f, classes, options).to(torch::kCPU);
  const torch::Tensor knn = knn_predict(train_f, y_train, test_f, options);

  ProbeResult result;
  result.train_images = train_x.size(0);
  result.test_images = test_x.size(0);
  const double m = static_cast<double>(result.test_images);
  result.probe_accuracy = logistic.eq(y_test).sum().item<double>() / m;
  result.knn_accuracy = knn.eq(y_test).sum().item<double>() / m;
  return result;
}

}  // namespace vaelab
