// End-to-end: a VAE brought as TorchScript (vae-torchscript) through the `vaelab` command, side by
// side with the built-in vae-mlp it mirrors: train, eval with every metric, score, a resume after
// a kill, a study, and `vaelab export`. The module is the paper's MLP built in C++
// (tests/support/scripted_mlp.hpp), so no Python is needed.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <vaelab/io/safetensors.hpp>

#include "cli_runner.hpp"
#include "run_files.hpp"
#include "scripted_mlp.hpp"

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::json;
using vaelab::testing::metrics_of;
using vaelab::testing::slurp;

namespace {

fs::path work_dir() { return vaelab::testing::scratch_dir("vaelab-e2e-torchscript"); }

vaelab::testing::CliResult vaelab_cli(const std::string& args) {
  return vaelab::testing::run_cli(work_dir(), args);
}

const vaelab::testing::MlpShape kShape{{32}, 4, 1, 32, 32, 1};

/// The scripted MLP (its weights are drawn again from the run's seed: init = "seeded").
fs::path module_file() {
  static const fs::path file = [] {
    const fs::path f = work_dir() / "vae.pt";
    torch::manual_seed(0);
    vaelab::testing::scripted_mlp(kShape).save(f.string());
    return f;
  }();
  return file;
}

/// 256 Fashion-MNIST training images, 3 epochs of 8 steps; with `metrics`, every metric at the end.
std::string run_config(const std::string& model, bool metrics = false) {
  const std::string model_table =
      model == "vae-mlp"
          ? "[model]\nplugin = \"vae-mlp\"\n[model.config]\nhidden = [32]\nlatent = 4\n"
          : "[model]\nplugin = \"vae-torchscript\"\n[model.config]\npath = \"" +
                module_file().string() + "\"\n";
  const std::string every_metric = R"(
[eval.iwae]
every_epochs = 3
samples = 8
[eval.amortization]
every_epochs = 3
steps = 20
[eval.robustness]
every_epochs = 3
images = 8
restarts = 2
steps = 5
[eval.probe]
every_epochs = 3
)";
  return model_table + (metrics ? every_metric : "") + R"(
[data]
train_size = 256
test_size = 200
binarize = "threshold"
[data.config]
pad_to = 32
[likelihood]
name = "bernoulli"
[backend.config]
threads = 1
blas_threads = 1
[train]
epochs = 3
batch_size = 32
lr = 2e-3
seed = 4
[train.checkpoint]
every_steps = 3
every_minutes = 0.0
[eval]
every_epochs = 1
)";
}

fs::path write_config(const std::string& name, const std::string& text) {
  const fs::path file = work_dir() / (name + ".toml");
  std::ofstream(file) << text;
  return file;
}

fs::path train(const std::string& model, const std::string& name, bool metrics = false) {
  const fs::path run = work_dir() / name;
  const auto r = vaelab_cli("train '" + write_config(name, run_config(model, metrics)).string() +
                            "' --out '" + run.string() + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  return run;
}

/// Every number of `want` is in `got` and equal to relative `tolerance`.
void require_same_numbers(const json& got, const json& want, double tolerance) {
  int compared = 0;
  for (const auto& [key, value] : want.items()) {
    // Timings, and the checkpoint size (vae-torchscript adds its file record).
    if (!value.is_number() || key.find("second") != std::string::npos || key == "checkpoint_bytes")
      continue;
    INFO(key << ": vae-mlp " << value << ", vae-torchscript "
             << (got.contains(key) ? got[key] : json()));
    REQUIRE(got.contains(key));
    const double a = value.get<double>();
    const double b = got[key].get<double>();
    REQUIRE(std::isfinite(b));
    REQUIRE(std::abs(a - b) <= tolerance * std::max(1.0, std::abs(a)));
    ++compared;
  }
  REQUIRE(compared >= 5);
}

}  // namespace

TEST_CASE("a scripted VAE trains, evaluates every metric and scores as the built-in vae-mlp does",
          "[e2e][torchscript]") {
  const fs::path reference = train("vae-mlp", "mlp", true);
  const fs::path scripted = train("vae-torchscript", "scripted", true);

  // Drawn from the same seed, trained on the same batches with the same noise: the same numbers.
  const auto want = metrics_of(reference);
  const auto got = metrics_of(scripted);
  REQUIRE(want.size() == 3);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) require_same_numbers(got[i], want[i], 1e-4);
  const json want_summary = json::parse(slurp(reference / "summary.json"));
  const json got_summary = json::parse(slurp(scripted / "summary.json"));
  CHECK(got_summary["params_total"] == want_summary["params_total"]);
  CHECK(got_summary["params_latent_adjacent"] == want_summary["params_latent_adjacent"]);
  require_same_numbers(got_summary, want_summary, 1e-4);

  // vaelab eval: every metric, from the checkpoint.
  const std::string all = " --metrics elbo,iwae,amortization,robustness,probe --json";
  const auto eval_want = vaelab_cli("eval '" + reference.string() + "'" + all);
  const auto eval_got = vaelab_cli("eval '" + scripted.string() + "'" + all);
  INFO(eval_got.err);
  REQUIRE(eval_want.code == 0);
  REQUIRE(eval_got.code == 0);
  const json e = json::parse(eval_got.out);
  for (const char* key : {"elbo_test_nats", "iwae_test_nats", "amortization_gap_nats",
                          "robustness_gap", "probe_accuracy"}) {
    INFO(key);
    REQUIRE(e.contains(key));
  }
  CHECK(e["elbo_test_nats"] == got_summary["elbo_test_nats"]);
  require_same_numbers(e, json::parse(eval_want.out), 1e-3);

  // vaelab score: per-image −ELBO.
  const fs::path csv = work_dir() / "scores.csv";
  const auto score = vaelab_cli("score '" + scripted.string() + "' --out '" + csv.string() + "'");
  INFO(score.err);
  REQUIRE(score.code == 0);
  CHECK_THAT(score.out, Contains("(200 images)"));
}

TEST_CASE("vaelab export writes the trained module for torch.jit.load and refuses a changed file",
          "[e2e][torchscript]") {
  const fs::path run = train("vae-torchscript", "exported");
  const fs::path out = work_dir() / "trained.pt";
  const auto r = vaelab_cli("export '" + run.string() + "' --torchscript '" + out.string() + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains("trained.pt") && Contains("parameters"));

  // The exported module holds the checkpoint's weights under their names, in eval mode.
  torch::jit::Module m = torch::jit::load(out.string());
  CHECK_FALSE(m.is_training());
  const vaelab::NamedTensors checkpoint =
      vaelab::load_safetensors(run / "checkpoints" / "last.safetensors");
  int compared = 0;
  for (const auto& p : m.named_parameters(true)) {
    bool found = false;
    for (const auto& [name, value] : checkpoint) {
      if (name != p.name) continue;
      found = true;
      CHECK(torch::equal(value, p.value));
      ++compared;
    }
    INFO(p.name);
    CHECK(found);
  }
  CHECK(compared == 2 * static_cast<int>(vaelab::testing::mlp_layers(kShape).size()));
  // ... and computes with them: its decoder differs from the untrained file's.
  torch::jit::Module untrained = torch::jit::load(module_file().string());
  const torch::Tensor z = torch::ones({1, 4});
  CHECK_FALSE(torch::allclose(m.get_method("decode")({z}).toTensor(),
                              untrained.get_method("decode")({z}).toTensor()));

  // Only a vae-torchscript run is a TorchScript module (refused from its config.toml alone).
  const fs::path mlp_run = work_dir() / "not-scripted";
  fs::create_directories(mlp_run);
  std::ofstream(mlp_run / "config.toml") << run_config("vae-mlp");
  const auto refused = vaelab_cli("export '" + mlp_run.string() + "' --torchscript '" +
                                  (work_dir() / "x.pt").string() + "'");
  CHECK(refused.code != 0);
  CHECK_THAT(refused.err, Contains("vae-mlp") && Contains("vae-torchscript"));

  // The .pt changed since the run: eval and export refuse, in one line naming the file.
  const std::string original = slurp(module_file());
  torch::manual_seed(1);
  vaelab::testing::scripted_mlp(kShape).save(module_file().string());
  const auto eval = vaelab_cli("eval '" + run.string() + "'");
  const auto exported = vaelab_cli("export '" + run.string() + "' --torchscript '" +
                                   (work_dir() / "y.pt").string() + "'");
  std::ofstream(module_file(), std::ios::binary) << original;
  for (const auto& changed : {eval, exported}) {
    CHECK(changed.code != 0);
    CHECK_THAT(changed.err, Contains("vae.pt changed since the run started") && Contains("crc32"));
    size_t errors = 0;  // one error line (the others are the log's)
    for (size_t at = changed.err.find("error:"); at != std::string::npos;
         at = changed.err.find("error:", at + 1))
      ++errors;
    CHECK(errors == 1);
  }
  CHECK(vaelab_cli("eval '" + run.string() + "'").code == 0);  // restored
}

TEST_CASE(
    "a scripted VAE killed mid-run and resumed ends with the uninterrupted run's weights, bit for "
    "bit",
    "[e2e][torchscript]") {
  // 4096 images: 128 steps an epoch, a checkpoint every 3, so the kill lands mid-epoch.
  const fs::path config = write_config("resume", run_config("vae-torchscript"));
  const std::string bigger = " --set data.train_size=4096";
  const fs::path reference = work_dir() / "resume-reference";
  const auto ref = vaelab_cli("train '" + config.string() + "'" + bigger + " --out '" +
                              reference.string() + "'");
  INFO(ref.err);
  REQUIRE(ref.code == 0);

  // Killed once a mid-epoch checkpoint after the first epoch exists.
  const fs::path run = work_dir() / "resume-killed";
  const fs::path checkpoint = run / "checkpoints" / "last.safetensors";
  const pid_t pid = vaelab::testing::start_vaelab(
      {"train", config.string(), "--set", "data.train_size=4096", "--out", run.string()});
  REQUIRE(pid > 0);
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!killed && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::map<std::string, std::string> metadata;
    try {
      if (!fs::exists(checkpoint)) continue;
      vaelab::load_safetensors(checkpoint, &metadata);
    } catch (const std::exception&) {
      continue;  // being replaced
    }
    const json state = json::parse(metadata["training_state"], nullptr, false);
    if (state.is_object() && state["epochs_done"].get<int64_t>() >= 1 &&
        !state["in_epoch"].is_null()) {
      kill(pid, SIGKILL);
      killed = true;
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(killed);
  REQUIRE_FALSE(fs::exists(run / "summary.json"));

  const auto resumed = vaelab_cli("train --resume '" + run.string() + "'");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  const vaelab::NamedTensors want =
      vaelab::load_safetensors(reference / "checkpoints" / "last.safetensors");
  const vaelab::NamedTensors got = vaelab::load_safetensors(checkpoint);
  int compared = 0;
  for (const auto& [name, value] : want) {
    if (name.rfind("_train.", 0) == 0) continue;
    INFO(name);
    bool found = false;
    for (const auto& [other, tensor] : got) {
      if (other != name) continue;
      found = true;
      CHECK(torch::equal(tensor, value));
    }
    CHECK(found);
    ++compared;
  }
  CHECK(compared ==
        2 * static_cast<int>(vaelab::testing::mlp_layers(kShape).size()) + 1);  // + the file record
  CHECK(json::parse(slurp(run / "summary.json"))["elbo_test_nats"] ==
        json::parse(slurp(reference / "summary.json"))["elbo_test_nats"]);
}

TEST_CASE("a study runs a scripted VAE like any model", "[e2e][torchscript]") {
  const fs::path study = write_config("study", R"(
[study]
name = "scripted"
jobs = 2
[grid]
seed = [0, 1]
[base.data]
train_size = 150
test_size = 100
[base.data.config]
pad_to = 32
[base.model]
plugin = "vae-torchscript"
[base.model.config]
path = ")" + module_file().string() + R"("
[base.train]
epochs = 2
[base.eval]
every_epochs = 1
)");
  const fs::path out = work_dir() / "study-out";
  const auto r =
      vaelab_cli("study '" + study.string() + "' --out '" + out.string() + "' --no-report");
  INFO(r.err);
  REQUIRE(r.code == 0);
  std::vector<double> elbos;
  for (const auto& entry : fs::directory_iterator(out / "runs")) {
    const json summary = json::parse(slurp(entry.path() / "summary.json"));
    CHECK(summary["params_latent_adjacent"] == (32 * 8 + 8) + (4 * 32 + 32));
    elbos.push_back(summary["elbo_test_nats"].get<double>());
  }
  REQUIRE(elbos.size() == 2);
  CHECK(std::isfinite(elbos[0]));
  CHECK(elbos[0] != elbos[1]);  // two seeds, two initialisations
}
