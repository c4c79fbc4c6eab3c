// Training checkpoints (docs/checkpoints.md): stream positions saved mid-epoch, Adam's state,
// the format version, and the non-finite policy of the trainer.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <functional>
#include <string>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>
#include <torch/torch.h>

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/evaluator.hpp>
#include <vaelab/train/checkpoint.hpp>
#include <vaelab/train/run.hpp>
#include <vaelab/train/trainer.hpp>
#include <vaelab/train/training_stream.hpp>

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

fs::path scratch() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("vaelab-checkpoint-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

/// [n, 1, 8, 8] images, image i filled with i / n and carrying its index in pixel 0.
torch::Tensor images(int64_t n, float offset = 0) {
  torch::Tensor t = (torch::arange(n).to(torch::kFloat32) / static_cast<double>(n) + offset)
                        .view({n, 1, 1, 1})
                        .expand({n, 1, 8, 8})
                        .contiguous();
  t.select(1, 0).select(1, 0).select(1, 0).copy_(torch::arange(n).to(torch::kFloat32));
  return t;
}

/// The state through a safetensors file and JSON text, as a checkpoint stores it.
vaelab::StreamState through_file(const vaelab::StreamState& state, const std::string& name) {
  vaelab::NamedTensors tensors(state.tensors.begin(), state.tensors.end());
  const fs::path file = scratch() / (name + ".safetensors");
  vaelab::save_safetensors(file, tensors, {{"values", state.values.dump()}});
  std::map<std::string, std::string> metadata;
  vaelab::StreamState back;
  for (auto& [key, t] : vaelab::load_safetensors(file, &metadata)) back.tensors[key] = t;
  back.values = nlohmann::json::parse(metadata.at("values"));
  return back;
}

/// Batches from the stream's current position to the end of epoch `last_epoch` (0-based),
/// calling begin_epoch for the epochs after `current_epoch`.
std::vector<torch::Tensor> drain(vaelab::TrainingStream& stream, int64_t current_epoch, int64_t last_epoch) {
  std::vector<torch::Tensor> out;
  torch::Tensor batch;
  for (int64_t epoch = current_epoch; epoch <= last_epoch; ++epoch) {
    if (epoch != current_epoch) stream.begin_epoch(epoch);
    while (stream.next_batch(batch)) out.push_back(batch.clone());
  }
  return out;
}

using MakeStream = std::function<std::unique_ptr<vaelab::TrainingStream>()>;

/// A stream saved after `steps` batches of epoch 1 continues, in a new stream, with exactly the
/// batches the first one serves (to the end of epoch 2, so the next epoch's order is checked too).
void check_continues(const std::string& what, const MakeStream& make, int64_t steps) {
  INFO(what);
  auto first = make();
  first->begin_epoch(0);
  torch::Tensor batch;
  while (first->next_batch(batch)) {
  }
  first->begin_epoch(1);
  for (int64_t i = 0; i < steps; ++i) REQUIRE(first->next_batch(batch));
  vaelab::StreamState saved;
  first->save_state(saved);
  const std::vector<torch::Tensor> expected = drain(*first, 1, 2);

  auto second = make();
  // The new stream has drawn something already: loading must replace that, not add to it.
  second->begin_epoch(0);
  REQUIRE(second->next_batch(batch));
  second->load_state(through_file(saved, "stream-" + std::to_string(std::hash<std::string>{}(what))));
  const std::vector<torch::Tensor> got = drain(*second, 1, 2);
  REQUIRE(got.size() == expected.size());
  REQUIRE(!got.empty());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("batch " << i);
    REQUIRE(torch::equal(got[i], expected[i]));
  }
}

// ---- a tiny VAE whose decoder makes a NaN gradient on chosen training steps -----------------

class NanVae final : public vaelab::Model {
 public:
  NanVae() {
    encoder = holder.register_module("encoder", torch::nn::Linear(16, 4));
    decoder = holder.register_module("decoder", std::make_shared<torch::nn::Module>());
    fc = decoder->register_module("fc", torch::nn::Linear(2, 16));
    // A parameter at 0 whose gradient is 0 · ∞ = NaN when `poisoned`: the loss stays finite and
    // only this gradient is non-finite (it is not the first parameter).
    gate = decoder->register_parameter("gate", torch::zeros({1}));
  }
  void build(const vaelab::ModelSpec&, vaelab::Backend&) override {}
  vaelab::Posterior encode(const torch::Tensor& x) override {
    if (holder.is_training()) ++training_calls;
    const torch::Tensor h = encoder->forward(x.flatten(1));
    return {h.slice(1, 0, 2), h.slice(1, 2, 4)};
  }
  torch::Tensor decode(const torch::Tensor& z) override {
    torch::Tensor out = fc->forward(z).view({z.size(0), 1, 4, 4});
    if (holder.is_training() && poisoned(training_calls)) out = out + 0.0 * gate.sqrt();
    return out;
  }
  torch::nn::Module& module() override { return holder; }
  std::vector<std::string> latent_adjacent_parameters() const override { return {}; }
  std::vector<int64_t> latent_shape() const override { return {2}; }

  std::function<bool(int64_t)> poisoned = [](int64_t) { return false; };  ///< by 1-based training step
  int64_t training_calls = 0;
  torch::nn::Module holder;
  torch::nn::Linear encoder{nullptr};
  std::shared_ptr<torch::nn::Module> decoder;
  torch::nn::Linear fc{nullptr};
  torch::Tensor gate;
};

class CpuBackend final : public vaelab::Backend {
 public:
  torch::Device device() const override { return torch::kCPU; }
  void apply_threads() override {}
  int threads() const override { return 1; }
  void synchronize() override {}
  std::shared_ptr<vaelab::Layer> dense(const vaelab::DenseOptions&) override { return nullptr; }
  std::shared_ptr<vaelab::Layer> conv2d(const vaelab::Conv2dOptions&) override { return nullptr; }
  std::shared_ptr<vaelab::Layer> conv_transpose2d(const vaelab::Conv2dOptions&) override { return nullptr; }
  std::shared_ptr<vaelab::Layer> batch_norm2d(const vaelab::BatchNormOptions&) override { return nullptr; }
  std::string describe() const override { return "test cpu"; }
};

struct TrainWorld {
  NanVae model;
  vaelab::GaussianLikelihood likelihood{0.1};
  CpuBackend backend;
  torch::Tensor data = torch::rand({16, 1, 4, 4});
  vaelab::EvalData eval;
  vaelab::ConfigTable eval_config;
  TrainWorld() {
    torch::manual_seed(5);
    data = torch::rand({16, 1, 4, 4});
    eval.train = data;
    eval.test = data;
    eval.continuous = true;
    const toml::table defaults = vaelab::parse_toml(vaelab::core_defaults_toml(), "core/defaults.toml");
    eval_config = vaelab::ConfigTable(*defaults["eval"].as_table(), "eval");
  }
  /// 4 steps per epoch (batch 4), evaluated (and checkpointed) after every epoch.
  vaelab::TrainResult fit(const vaelab::TrainOptions& options, const fs::path& dir) {
    vaelab::RealDataStream stream(data, 4, 11);
    return fit(options, dir, stream);
  }
  vaelab::TrainResult fit(const vaelab::TrainOptions& options, const fs::path& dir,
                          vaelab::TrainingStream& stream, const vaelab::TrainingCheckpoint* resume = nullptr) {
    const vaelab::Evaluator evaluator(model, likelihood, torch::kCPU, eval_config, 3);
    vaelab::RunStore store = resume != nullptr ? vaelab::RunStore::resume(dir, resume->info["metrics"])
                                               : vaelab::RunStore::create(dir);
    if (resume == nullptr) store.write_config("# a test run\n");
    vaelab::Trainer trainer(model, likelihood, backend, options);
    return trainer.fit(stream, evaluator, eval, store, resume);
  }
};

vaelab::TrainOptions options(int64_t epochs) {
  vaelab::TrainOptions o;
  o.epochs = epochs;
  o.lr = 1e-2;
  o.eval_every_epochs = 1;
  return o;
}

bool all_finite(torch::nn::Module& module) {
  for (const auto& p : module.parameters()) {
    if (!torch::isfinite(p).all().item<bool>()) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("every regime's stream, saved mid-epoch, continues with the same batches", "[checkpoint]") {
  const torch::Tensor real = images(50);
  const torch::Tensor pool = images(120, 10.0f);
  check_continues("normal", [&] { return std::make_unique<vaelab::RealDataStream>(real, 8, 3); }, 2);
  vaelab::AugmentSettings augment;
  augment.p = 0.5;
  augment.xflip = true;
  augment.translate_px = 2;
  augment.brightness_std = 0.2;
  check_continues("augment", [&] {
    return std::make_unique<vaelab::AugmentedStream>("augment-naive", real, 8, 3, augment,
                                                     vaelab::PixelGrid::continuous);
  }, 3);
  check_continues("synthetic pool", [&] {
    return std::make_unique<vaelab::SyntheticStream>("synthetic", real, pool, 0.0, 8, 3);
  }, 4);
  check_continues("mixed pool", [&] {
    return std::make_unique<vaelab::SyntheticStream>("mixed", real, pool, 0.3, 8, 3);
  }, 1);
  // Fresh samples: image with seed s is filled with -s.
  const vaelab::SyntheticStream::Producer producer = [](uint64_t first, int64_t n) {
    return torch::arange(static_cast<int64_t>(first), static_cast<int64_t>(first) + n)
        .to(torch::kFloat32)
        .neg()
        .view({n, 1, 1, 1})
        .expand({n, 1, 8, 8})
        .contiguous();
  };
  check_continues("mixed fresh", [&] {
    return std::make_unique<vaelab::SyntheticStream>("mixed", real, producer, 1000, 0.4, 8, 3);
  }, 3);
}

TEST_CASE("a stream state from another dataset is refused, naming the key", "[checkpoint]") {
  vaelab::RealDataStream a(images(50), 8, 3);
  a.begin_epoch(0);
  vaelab::StreamState state;
  a.save_state(state);
  vaelab::RealDataStream b(images(40), 8, 3);
  REQUIRE_THROWS_WITH(b.load_state(state), Contains("real.order") && Contains("40"));
  state.values.erase("real.position");
  vaelab::RealDataStream c(images(50), 8, 3);
  REQUIRE_THROWS_WITH(c.load_state(state), Contains("missing integer 'real.position'"));
}

TEST_CASE("Adam's state round-trips: training continues bit for bit", "[checkpoint]") {
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({32, 6});
  const torch::Tensor y = torch::randn({32, 2});
  const auto make = [] {
    auto net = std::make_shared<torch::nn::Module>();
    net->register_module("a", torch::nn::Linear(6, 5));
    net->register_module("b", torch::nn::Linear(5, 2));
    return net;
  };
  const auto step = [&](torch::nn::Module& net, torch::optim::Adam& adam, int64_t i) {
    adam.zero_grad();
    const torch::Tensor xb = x.slice(0, (i % 4) * 8, (i % 4) * 8 + 8);
    const torch::Tensor h = net.named_children()["a"]->as<torch::nn::Linear>()->forward(xb).tanh();
    const torch::Tensor out = net.named_children()["b"]->as<torch::nn::Linear>()->forward(h);
    (out - y.slice(0, (i % 4) * 8, (i % 4) * 8 + 8)).pow(2).mean().backward();
    adam.step();
  };
  auto first = make();
  torch::optim::Adam adam(first->parameters(), torch::optim::AdamOptions(1e-2));
  for (int64_t i = 0; i < 5; ++i) step(*first, adam, i);

  std::map<std::string, torch::Tensor> tensors;
  nlohmann::json info;
  vaelab::save_adam_state(adam, *first, tensors, info);
  REQUIRE(tensors.at("optim.0.step").item<int64_t>() == 5);
  vaelab::NamedTensors file_tensors = vaelab::module_state(*first);
  for (const auto& [k, t] : tensors) file_tensors.emplace_back(std::string(vaelab::kTrainingStatePrefix) + k, t);
  const fs::path file = scratch() / "adam.safetensors";
  vaelab::save_safetensors(file, file_tensors);

  // A new model and optimizer from the file, and one with the weights but a fresh optimizer.
  auto second = make();
  auto fresh = make();
  const vaelab::NamedTensors loaded = vaelab::load_safetensors(file);
  vaelab::load_module_state(*second, loaded, file.string());  // skips the _train.* tensors
  vaelab::load_module_state(*fresh, loaded, file.string());
  std::map<std::string, torch::Tensor> loaded_state;
  for (const auto& [k, t] : loaded) {
    if (k.rfind(vaelab::kTrainingStatePrefix, 0) == 0) loaded_state[k.substr(7)] = t;
  }
  torch::optim::Adam adam2(second->parameters(), torch::optim::AdamOptions(1e-2));
  vaelab::load_adam_state(adam2, *second, loaded_state, info, file.string());
  torch::optim::Adam adam3(fresh->parameters(), torch::optim::AdamOptions(1e-2));
  for (int64_t i = 5; i < 10; ++i) {
    step(*first, adam, i);
    step(*second, adam2, i);
    step(*fresh, adam3, i);
  }
  const auto p1 = first->parameters();
  const auto p2 = second->parameters();
  const auto p3 = fresh->parameters();
  bool fresh_differs = false;
  for (size_t i = 0; i < p1.size(); ++i) {
    REQUIRE(torch::equal(p1[i], p2[i]));
    fresh_differs = fresh_differs || !torch::equal(p1[i], p3[i]);
  }
  REQUIRE(fresh_differs);  // the state matters, so the equality above says something

  // Another model's state is refused, naming the parameter.
  auto other = std::make_shared<torch::nn::Module>();
  other->register_module("a", torch::nn::Linear(6, 5));
  other->register_module("c", torch::nn::Linear(5, 2));
  torch::optim::Adam adam4(other->parameters(), torch::optim::AdamOptions(1e-2));
  REQUIRE_THROWS_WITH(vaelab::load_adam_state(adam4, *other, loaded_state, info, "ckpt"),
                      Contains("ckpt") && Contains("b.weight") && Contains("c.weight"));
}

TEST_CASE("a checkpoint of an unknown version or with a missing key is refused, never misread", "[checkpoint]") {
  const vaelab::NamedTensors model = {{"w", torch::ones({2})}};
  nlohmann::json state = nlohmann::json::object();
  for (const auto& key : vaelab::training_state_keys()) state[key] = 0;
  const vaelab::NamedTensors with_rng = {{"w", torch::ones({2})},
                                         {"_train.rng.cpu", torch::zeros({8}, torch::kUInt8)}};
  const fs::path file = scratch() / "versions.safetensors";

  vaelab::save_safetensors(file, with_rng, {{"vaelab_checkpoint_version", "1"}, {"training_state", state.dump()}});
  const vaelab::TrainingCheckpoint ok = vaelab::read_training_checkpoint(file);
  REQUIRE(ok.model.size() == 1);
  REQUIRE(ok.state.count("rng.cpu") == 1);

  vaelab::save_safetensors(file, with_rng, {{"vaelab_checkpoint_version", "2"}, {"training_state", state.dump()}});
  REQUIRE_THROWS_WITH(vaelab::read_training_checkpoint(file),
                      Contains(file.string()) && Contains("vaelab_checkpoint_version = \"2\"") && Contains("newer"));
  vaelab::save_safetensors(file, with_rng, {{"vaelab_checkpoint_version", "one"}, {"training_state", state.dump()}});
  REQUIRE_THROWS_WITH(vaelab::read_training_checkpoint(file), Contains("\"one\" is not one this vaelab reads"));
  vaelab::save_safetensors(file, model, {{"epoch", "3"}});  // what vaelab wrote before format 1
  REQUIRE_THROWS_WITH(vaelab::read_training_checkpoint(file),
                      Contains(file.string()) && Contains("'vaelab_checkpoint_version'") && Contains("weights only"));
  nlohmann::json partial = state;
  partial.erase("global_step");
  vaelab::save_safetensors(file, with_rng, {{"vaelab_checkpoint_version", "1"}, {"training_state", partial.dump()}});
  REQUIRE_THROWS_WITH(vaelab::read_training_checkpoint(file),
                      Contains(file.string()) && Contains("missing key 'global_step'"));
  vaelab::save_safetensors(file, model, {{"vaelab_checkpoint_version", "1"}, {"training_state", state.dump()}});
  REQUIRE_THROWS_WITH(vaelab::read_training_checkpoint(file), Contains("missing tensor '_train.rng.cpu'"));
}

TEST_CASE("non-finite policy stop: an error naming the epoch, step and layer; the last checkpoint kept", "[checkpoint][nonfinite]") {
  TrainWorld w;
  w.model.poisoned = [](int64_t step) { return step == 6; };  // epoch 2, step 2
  const fs::path dir = scratch() / "stop";
  REQUIRE_THROWS_WITH(w.fit(options(3), dir),
                      Contains("non-finite gradient at epoch 2, step 2") &&
                          Contains("decoder.gate (layer decoder)") && Contains("epoch 1"));
  const vaelab::TrainingCheckpoint last = vaelab::read_training_checkpoint(dir / "checkpoints" / "last.safetensors");
  REQUIRE(last.info["epochs_done"] == 1);
  REQUIRE(last.info["global_step"] == 4);
  for (const auto& [name, t] : last.model) REQUIRE(torch::isfinite(t).all().item<bool>());
}

TEST_CASE("non-finite policy skip: steps skipped and counted, stopped after max in a row", "[checkpoint][nonfinite]") {
  SECTION("a few skipped steps: the run ends, Adam took only the good steps") {
    TrainWorld w;
    w.model.poisoned = [](int64_t step) { return step == 2 || step == 3 || step == 7; };
    vaelab::TrainOptions o = options(3);
    o.nonfinite = vaelab::NonfinitePolicy::skip;
    o.max_skips_in_row = 3;
    const fs::path dir = scratch() / "skip-some";
    const vaelab::TrainResult r = w.fit(o, dir);
    REQUIRE(r.epochs == 3);
    REQUIRE(r.nonfinite_skipped_steps == 3);
    REQUIRE(all_finite(w.model.holder));
    const vaelab::TrainingCheckpoint last = vaelab::read_training_checkpoint(dir / "checkpoints" / "last.safetensors");
    REQUIRE(last.info["nonfinite_skipped_steps"] == 3);
    REQUIRE(last.info["global_step"] == 12);
    REQUIRE(last.state.at("optim.0.step").item<int64_t>() == 12 - 3);
  }
  SECTION("non-finite from step 6 on: stopped after 3 in a row, never an endless loop") {
    TrainWorld w;
    w.model.poisoned = [](int64_t step) { return step >= 6; };
    vaelab::TrainOptions o = options(50);
    o.nonfinite = vaelab::NonfinitePolicy::skip;
    o.max_skips_in_row = 3;
    const fs::path dir = scratch() / "skip-all";
    REQUIRE_THROWS_WITH(w.fit(o, dir), Contains("3 steps in a row skipped") &&
                                           Contains("epoch 2, step 4") && Contains("decoder.gate"));
    REQUIRE(w.model.training_calls == 8);
    REQUIRE(all_finite(w.model.holder));
  }
}

TEST_CASE("a checkpoint that cannot be written is one clear error and the previous one stays", "[checkpoint]") {
  TrainWorld w;
  const fs::path dir = scratch() / "unwritable";
  vaelab::TrainOptions o = options(1);
  w.fit(o, dir);
  const fs::path file = dir / "checkpoints" / "last.safetensors";
  const std::string before = [&] {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  REQUIRE(!before.empty());
  // The temporary file's place is taken by a folder: unwritable, even for root.
  fs::create_directories(file.string() + ".tmp");
  REQUIRE_THROWS_WITH(vaelab::check_writable(file), Contains("last.safetensors.tmp: cannot write"));
  REQUIRE_THROWS_WITH(vaelab::save_safetensors(file, {{"w", torch::ones({1})}}),
                      Contains("last.safetensors.tmp: cannot write"));
  std::ifstream in(file, std::ios::binary);
  REQUIRE(std::string(std::istreambuf_iterator<char>(in), {}) == before);
}

TEST_CASE("a run stopped mid-epoch and resumed equals the uninterrupted run, bit for bit, in every regime", "[checkpoint]") {
  const vaelab::SyntheticStream::Producer producer = [](uint64_t first, int64_t n) {
    torch::Tensor t = torch::empty({n, 1, 4, 4});
    for (int64_t i = 0; i < n; ++i) t[i].fill_(static_cast<double>((first + static_cast<uint64_t>(i)) % 97) / 97.0);
    return t;
  };
  vaelab::AugmentSettings augment;
  augment.p = 0.5;
  augment.xflip = true;
  augment.brightness_std = 0.1;
  const std::map<std::string, std::function<std::unique_ptr<vaelab::TrainingStream>(const torch::Tensor&)>> regimes = {
      {"normal", [](const torch::Tensor& d) { return std::make_unique<vaelab::RealDataStream>(d, 4, 11); }},
      {"augment", [&](const torch::Tensor& d) {
         return std::make_unique<vaelab::AugmentedStream>("augment-tuned", d, 4, 11, augment, vaelab::PixelGrid::continuous);
       }},
      {"synthetic", [](const torch::Tensor& d) {
         return std::make_unique<vaelab::SyntheticStream>("synthetic", d, torch::rand({40, 1, 4, 4}), 0.0, 4, 11);
       }},
      {"mixed-fresh", [&](const torch::Tensor& d) {
         return std::make_unique<vaelab::SyntheticStream>("mixed", d, producer, 500, 0.25, 4, 11);
       }},
  };
  for (const auto& [name, make_stream] : regimes) {
    INFO(name);
    vaelab::TrainOptions o = options(3);
    o.checkpoint.every_steps = 3;  // global steps 3, 6, 9: the one at 6 is epoch 2, step 2

    torch::manual_seed(42);
    TrainWorld reference;
    torch::manual_seed(123);  // the synthetic pool of the stream, the same in each run
    auto reference_stream = make_stream(reference.data);
    const vaelab::TrainResult want = reference.fit(o, scratch() / ("whole-" + name), *reference_stream);

    // The same run, stopped by a non-finite gradient at step 8 (stop policy), is left with the
    // checkpoint of step 6, mid-epoch.
    torch::manual_seed(42);
    TrainWorld stopped;
    torch::manual_seed(123);
    auto stopped_stream = make_stream(stopped.data);
    stopped.model.poisoned = [](int64_t step) { return step == 8; };
    const fs::path dir = scratch() / ("stopped-" + name);
    REQUIRE_THROWS_WITH(stopped.fit(o, dir, *stopped_stream), Contains("epoch 2, step 4"));
    const vaelab::TrainingCheckpoint checkpoint =
        vaelab::read_training_checkpoint(dir / "checkpoints" / "last.safetensors");
    REQUIRE(checkpoint.info["global_step"] == 6);
    REQUIRE(checkpoint.info["in_epoch"]["step"] == 2);

    // Resumed into a model initialised differently, with a stream that has drawn nothing.
    torch::manual_seed(7);
    TrainWorld resumed;
    torch::manual_seed(123);
    auto resumed_stream = make_stream(resumed.data);
    const vaelab::TrainResult got = resumed.fit(o, dir, *resumed_stream, &checkpoint);
    REQUIRE(got.resumed_at_step == 6);
    REQUIRE(got.images_seen == want.images_seen);
    REQUIRE(got.elbo_trained_on_nats == want.elbo_trained_on_nats);
    REQUIRE(got.last_eval["elbo_test_nats"] == want.last_eval["elbo_test_nats"]);
    const auto a = reference.model.holder.named_parameters();
    const auto b = resumed.model.holder.named_parameters();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      INFO(a[i].key());
      REQUIRE(torch::equal(a[i].value(), b[i].value()));
    }
    std::ifstream metrics(dir / "metrics.jsonl");
    int64_t lines = 0;
    for (std::string line; std::getline(metrics, line);) ++lines;
    REQUIRE(lines == 3);
  }
}
