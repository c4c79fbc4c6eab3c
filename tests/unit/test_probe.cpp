#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/metrics/probe.hpp>
#include <vaelab/model.hpp>
#include <vaelab/torch_shim.hpp>

namespace {

/// An encoder whose posterior mean is the flattened image (times `scale`), so the probes see the
/// pixels themselves. The decoder is never used by the probes.
class FlattenModel final : public vaelab::Model {
 public:
  explicit FlattenModel(int64_t features, double scale = 1.0)
      : features_(features), scale_(scale), net_(std::make_shared<torch::nn::Module>()) {
    dummy_ = net_->register_parameter("dummy", torch::zeros({1}));
  }
  void build(const vaelab::ModelSpec&, vaelab::Backend&) override {}
  vaelab::Posterior encode(const torch::Tensor& x) override {
    ++encode_calls;
    max_batch = std::max(max_batch, x.size(0));
    saw_training = saw_training || net_->is_training();
    saw_grad_mode = saw_grad_mode || torch::GradMode::is_enabled();
    const torch::Tensor flat = x.flatten(1) * scale_;
    return {flat, torch::zeros_like(flat)};
  }
  torch::Tensor decode(const torch::Tensor& z) override { return z; }
  torch::nn::Module& module() override { return *net_; }
  std::vector<std::string> latent_adjacent_parameters() const override { return {}; }
  std::vector<int64_t> latent_shape() const override { return {features_}; }

  int64_t encode_calls = 0;
  int64_t max_batch = 0;
  bool saw_training = false;
  bool saw_grad_mode = false;

 private:
  int64_t features_;
  double scale_;
  std::shared_ptr<torch::nn::Module> net_;
  torch::Tensor dummy_;
};

/// `per_class` images [1, 4, 4] per class around well-separated class means, with small noise.
/// Returns the images (class-major, then shuffled by a fixed permutation) and their labels.
std::pair<torch::Tensor, std::vector<int64_t>> clustered(int64_t classes, int64_t per_class,
                                                         double noise, uint64_t seed) {
  at::Generator gen = vaelab::shim::make_cpu_generator(seed);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat);
  at::Generator centre_gen = vaelab::shim::make_cpu_generator(1234);  // same centres for every set
  const torch::Tensor centres = 0.2 + 0.6 * at::rand({classes, 16}, centre_gen, opts);
  std::vector<torch::Tensor> images;
  std::vector<int64_t> labels;
  for (int64_t c = 0; c < classes; ++c) {
    images.push_back(centres[c].unsqueeze(0) + noise * at::randn({per_class, 16}, gen, opts));
    labels.insert(labels.end(), static_cast<size_t>(per_class), c);
  }
  const torch::Tensor all = torch::cat(images, 0);
  const torch::Tensor perm = vaelab::shim::randperm(all.size(0), gen);
  std::vector<int64_t> shuffled(labels.size());
  for (int64_t i = 0; i < perm.size(0); ++i)
    shuffled[static_cast<size_t>(i)] = labels[static_cast<size_t>(perm[i].item<int64_t>())];
  return {all.index_select(0, perm).view({-1, 1, 4, 4}), shuffled};
}

torch::Tensor column(const std::vector<double>& v) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kDouble)).view({-1, 1});
}

torch::Tensor longs(const std::vector<int64_t>& v) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kLong));
}

}  // namespace

TEST_CASE("kNN on a hand-made set gives the hand answer", "[probe][knn]") {
  // 1-D points 0, 1, 2 | 10, 11 with labels 0 0 1 | 1 1.
  const torch::Tensor train = column({0, 1, 2, 10, 11});
  const torch::Tensor labels = longs({0, 0, 1, 1, 1});
  const torch::Tensor test = column({0.4, 1.6, 10.5, 1.4, 6.2});
  vaelab::ProbeOptions opts;
  opts.k = 3;
  // 0.4: 0, 1, 2 → 0 0 1 → 0.  1.6: 2, 1, 0 → 1 0 0 → 0.  10.5: 10, 11, 2 → 1.
  // 1.4: 1, 2, 0 → 0.  6.2: 2, 10, 11 → 1.
  REQUIRE(torch::equal(vaelab::knn_predict(train, labels, test, opts), longs({0, 0, 1, 0, 1})));
  // k = 2: a 1–1 tie goes to the nearest neighbour's label.
  opts.k = 2;  // 1.4: 1 (0.4, label 0), 2 (0.6, label 1) → 0; 1.6: 2 (0.4) then 1 (0.6) → 1
  REQUIRE(torch::equal(vaelab::knn_predict(train, labels, column({1.4, 1.6}), opts), longs({0, 1})));
  // k = 4: 0.4 → 0, 1, 2, 10 → two 0s, two 1s, nearest is 0 → 0; 9 → 10, 11, 2, 1 → 1.
  opts.k = 4;
  REQUIRE(torch::equal(vaelab::knn_predict(train, labels, column({0.4, 9.0}), opts), longs({0, 1})));
  // k larger than the training set: every point votes, majority 1.
  opts.k = 50;
  REQUIRE(torch::equal(vaelab::knn_predict(train, labels, column({0.0}), opts), longs({1})));
  // Two dimensions, default k = 5: the 5 nearest of (0.1, 0.1) are the four unit-square corners
  // labelled 2, 2, 3, 3 and (5, 5) labelled 3 → 3.
  const torch::Tensor train2 =
      torch::tensor({0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 5.0, 5.0, 9.0, 9.0}).view({6, 2});
  const torch::Tensor labels2 = longs({2, 2, 3, 3, 3, 2});
  REQUIRE(torch::equal(
      vaelab::knn_predict(train2, labels2, torch::tensor({0.1, 0.1}).view({1, 2}), {}), longs({3})));
}

TEST_CASE("kNN gives the same answer in small distance blocks", "[probe][knn]") {
  const auto [train_x, train_y] = clustered(3, 40, 0.3, 1);
  const auto [test_x, test_y] = clustered(3, 20, 0.3, 2);
  const torch::Tensor train = train_x.flatten(1);
  const torch::Tensor test = test_x.flatten(1);
  vaelab::ProbeOptions whole;
  vaelab::ProbeOptions blocks;
  blocks.knn_block_elements = 7;  // one test row (120 distances) at a time
  const torch::Tensor a = vaelab::knn_predict(train, longs(train_y), test, whole);
  const torch::Tensor b = vaelab::knn_predict(train, longs(train_y), test, blocks);
  REQUIRE(a.size(0) == 60);
  REQUIRE(torch::equal(a, b));
}

TEST_CASE("logistic regression separates a 1-D problem by hand", "[probe][logistic]") {
  const torch::Tensor train = column({-2, -1.5, -1, 1, 1.5, 2});
  const torch::Tensor labels = longs({0, 0, 0, 1, 1, 1});
  const torch::Tensor pred =
      vaelab::logistic_regression_predict(train, labels, column({-3, -0.5, 0.5, 3}), 2);
  REQUIRE(torch::equal(pred, longs({0, 0, 1, 1})));
  // Three classes on a line need the biases: −∞..−1 | −1..1 | 1..∞ with centres −2, 0, 2.
  const torch::Tensor train3 = column({-2.5, -2, -1.5, -0.5, 0, 0.5, 1.5, 2, 2.5});
  const torch::Tensor labels3 = longs({0, 0, 0, 1, 1, 1, 2, 2, 2});
  vaelab::ProbeOptions opts;
  opts.weight_decay = 0;
  const torch::Tensor pred3 =
      vaelab::logistic_regression_predict(train3, labels3, column({-3, -1.8, 0.1, 1.9, 4}), 3, opts);
  REQUIRE(torch::equal(pred3, longs({0, 0, 1, 2, 2})));
}

TEST_CASE("probes on separable classes are accurate", "[probe]") {
  const auto [train_x, train_y] = clustered(3, 100, 0.05, 3);
  const auto [test_x, test_y] = clustered(3, 50, 0.05, 4);
  FlattenModel model(16, /*scale=*/100.0);  // standardization removes the scale
  model.module().train();
  vaelab::ProbeOptions opts;
  opts.batch_size = 64;
  const vaelab::ProbeResult r =
      vaelab::probe_accuracy(model, train_x, train_y, test_x, test_y, opts, 0, torch::kCPU);
  REQUIRE(r.train_images == 300);
  REQUIRE(r.test_images == 150);
  REQUIRE(r.probe_accuracy >= 0.95);
  REQUIRE(r.knn_accuracy >= 0.95);
  REQUIRE(r.probe_accuracy <= 1.0);
  REQUIRE(r.knn_accuracy <= 1.0);
  // Encoded in batches of at most 64, in eval mode, without gradients; mode restored.
  REQUIRE(model.max_batch == 64);
  REQUIRE(model.encode_calls == 5 + 3);
  REQUIRE_FALSE(model.saw_training);
  REQUIRE_FALSE(model.saw_grad_mode);
  REQUIRE(model.module().is_training());
}

TEST_CASE("features are standardized with the training statistics", "[probe]") {
  // Pixel 0 carries the class (±1 + small noise); pixel 1 is label-free noise 1000 times larger;
  // the other 14 pixels are constant (zero spread: centred only, no division by 0). Unscaled, the
  // noise pixel would decide every distance and kNN would be at chance.
  at::Generator gen = vaelab::shim::make_cpu_generator(21);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat);
  auto make = [&](int64_t n) {
    const torch::Tensor label = at::rand({n}, gen, opts).gt(0.5);
    torch::Tensor x = torch::full({n, 16}, 0.25, opts);
    x.select(1, 0).copy_(label.to(torch::kFloat) * 2 - 1 + 0.1 * at::randn({n}, gen, opts));
    x.select(1, 1).copy_(1000.0 * at::randn({n}, gen, opts));
    std::vector<int64_t> y;
    for (int64_t i = 0; i < n; ++i) y.push_back(label[i].item<bool>() ? 1 : 0);
    return std::make_pair(x.view({n, 1, 4, 4}), y);
  };
  const auto [train_x, train_y] = make(300);
  const auto [test_x, test_y] = make(200);
  FlattenModel model(16);
  const vaelab::ProbeResult r =
      vaelab::probe_accuracy(model, train_x, train_y, test_x, test_y, {}, 0, torch::kCPU);
  REQUIRE(r.knn_accuracy >= 0.95);
  REQUIRE(r.probe_accuracy >= 0.95);
  // A test set of class 1 only is still scored with the training set's mean and spread (its own
  // mean would move it onto the class boundary).
  std::vector<int64_t> ones_idx;
  for (size_t i = 0; i < test_y.size(); ++i)
    if (test_y[i] == 1) ones_idx.push_back(static_cast<int64_t>(i));
  REQUIRE(ones_idx.size() > 50);
  const torch::Tensor ones_x = test_x.index_select(0, longs(ones_idx));
  const std::vector<int64_t> ones_y(ones_idx.size(), 1);
  const vaelab::ProbeResult r1 =
      vaelab::probe_accuracy(model, train_x, train_y, ones_x, ones_y, {}, 0, torch::kCPU);
  REQUIRE(r1.knn_accuracy >= 0.95);
  REQUIRE(r1.probe_accuracy >= 0.95);
  // The same features unscaled: kNN on the raw pixels is near chance.
  const torch::Tensor raw = vaelab::knn_predict(train_x.flatten(1), longs(train_y), test_x.flatten(1));
  REQUIRE(raw.eq(longs(test_y)).to(torch::kDouble).mean().item<double>() < 0.7);
}

TEST_CASE("probes on random labels are near chance", "[probe]") {
  at::Generator gen = vaelab::shim::make_cpu_generator(77);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat);
  const torch::Tensor train_x = at::rand({400, 1, 4, 4}, gen, opts);
  const torch::Tensor test_x = at::rand({400, 1, 4, 4}, gen, opts);
  auto coin = [&](int64_t n) {
    const torch::Tensor bits = at::rand({n}, gen, opts).gt(0.5);
    std::vector<int64_t> v;
    for (int64_t i = 0; i < n; ++i) v.push_back(bits[i].item<bool>() ? 1 : 0);
    return v;
  };
  const std::vector<int64_t> train_y = coin(400);
  const std::vector<int64_t> test_y = coin(400);
  FlattenModel model(16);
  const vaelab::ProbeResult r =
      vaelab::probe_accuracy(model, train_x, train_y, test_x, test_y, {}, 0, torch::kCPU);
  // Chance is 0.5 with a standard error of 0.025 for 400 test images: allow 4 of them.
  REQUIRE(r.probe_accuracy <= 0.6);
  REQUIRE(r.probe_accuracy >= 0.4);
  REQUIRE(r.knn_accuracy <= 0.6);
  REQUIRE(r.knn_accuracy >= 0.4);
}

TEST_CASE("probes check their inputs", "[probe]") {
  FlattenModel model(16);
  const torch::Tensor x = torch::rand({4, 1, 4, 4});
  const std::vector<int64_t> y = {0, 1, 0, 1};
  REQUIRE_THROWS_AS(vaelab::probe_accuracy(model, x, {0, 1}, x, y, {}, 0, torch::kCPU), vaelab::Error);
  REQUIRE_THROWS_AS(vaelab::probe_accuracy(model, x, y, x, {0, 1, 2}, {}, 0, torch::kCPU), vaelab::Error);
  REQUIRE_THROWS_AS(vaelab::probe_accuracy(model, x, {0, -1, 0, 1}, x, y, {}, 0, torch::kCPU),
                    vaelab::Error);
  vaelab::ProbeOptions bad;
  bad.k = 0;
  REQUIRE_THROWS_AS(vaelab::probe_accuracy(model, x, y, x, y, bad, 0, torch::kCPU), vaelab::Error);
}
