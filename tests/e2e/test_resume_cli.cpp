// `vaelab train --resume`: a run killed (SIGKILL) mid-epoch after a mid-epoch checkpoint, then
// resumed, ends with the same weights, bit for bit, as the run done in one go (CPU, one thread);
// what --resume refuses; an unwritable checkpoint is one clear error that leaves the last one.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_runner.hpp"
#include "run_files.hpp"

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::json;
using vaelab::testing::metrics_of;
using vaelab::testing::slurp;

namespace {

fs::path work_dir() { return vaelab::testing::scratch_dir("vaelab-e2e-resume"); }

vaelab::testing::CliResult vaelab_cli(const std::string& args) {
  return vaelab::testing::run_cli(work_dir(), args);
}

// 2048 images of 8x8, batches of 16: 128 steps an epoch; a checkpoint every 50 steps, so most
// are mid-epoch. One thread: deterministic.
const char* kRun = R"(
[data]
plugin = "ppca-world"
[data.config]
height = 8
width = 8
latent = 4
train_size = 2048
test_size = 256
[model]
plugin = "vae-mlp"
[model.config]
hidden = [64]
latent = 4
[likelihood]
name = "gaussian"
sigma = 0.1
[backend.config]
threads = 1
blas_threads = 1
[train]
epochs = 12
batch_size = 16
lr = 2e-3
seed = 3
[train.checkpoint]
every_steps = 50
every_minutes = 0.0
[eval]
every_epochs = 2
)";

/// A safetensors file's JSON header.
json header_of(const fs::path& file) {
  const std::string bytes = slurp(file);
  if (bytes.size() < 8) return json();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  if (8 + n > bytes.size()) return json();
  return json::parse(bytes.substr(8, n), nullptr, false);
}

/// The model's tensors of a checkpoint (names not starting with "_train."), as raw bytes.
std::map<std::string, std::string> model_tensors(const fs::path& file) {
  const std::string bytes = slurp(file);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  const json header = json::parse(bytes.substr(8, n));
  std::map<std::string, std::string> out;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__" || name.rfind("_train.", 0) == 0) continue;
    const auto begin = entry["data_offsets"][0].get<uint64_t>();
    const auto end = entry["data_offsets"][1].get<uint64_t>();
    out[name] = entry["dtype"].get<std::string>() + entry["shape"].dump() + ":" +
                bytes.substr(8 + n + begin, end - begin);
  }
  return out;
}

/// Starts `vaelab train CONFIG --out RUN` and kills it (SIGKILL) once a mid-epoch checkpoint after
/// the second evaluation exists; returns the training state of the checkpoint left behind.
json run_until_killed(const fs::path& config, const fs::path& run) {
  const fs::path checkpoint = run / "checkpoints" / "last.safetensors";
  const pid_t pid = vaelab::testing::start_vaelab({"train", config.string(), "--out", run.string()});
  REQUIRE(pid > 0);
  json state;
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (!fs::exists(checkpoint)) continue;
    const json h = header_of(checkpoint);
    if (!h.is_object() || !h.contains("__metadata__")) continue;
    state = json::parse(h["__metadata__"]["training_state"].get<std::string>());
    if (state["epochs_done"].get<int64_t>() >= 4 && !state["in_epoch"].is_null()) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(killed);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE_FALSE(fs::exists(run / "summary.json"));  // really stopped mid-run
  // The killed process may have written a checkpoint after the one seen above: read it again.
  return json::parse(header_of(checkpoint)["__metadata__"]["training_state"].get<std::string>());
}

}  // namespace

TEST_CASE("a run killed mid-epoch and resumed ends with the uninterrupted run's weights, bit for bit", "[e2e][resume]") {
  const fs::path config = work_dir() / "run.toml";
  std::ofstream(config) << kRun;

  // The reference, in one go and without the mid-epoch checkpoints (they must not change anything).
  const fs::path reference = work_dir() / "reference";
  const auto ref = vaelab_cli("train '" + config.string() + "' --set train.checkpoint.every_steps=0 --out '" +
                              reference.string() + "'");
  INFO(ref.err);
  REQUIRE(ref.code == 0);

  // The same run, killed once a mid-epoch checkpoint after the second evaluation exists.
  const fs::path run = work_dir() / "killed";
  const fs::path checkpoint = run / "checkpoints" / "last.safetensors";
  const json state = run_until_killed(config, run);
  INFO("killed at epoch " << state["in_epoch"] << " after " << state["global_step"] << " steps");
  REQUIRE(header_of(checkpoint)["__metadata__"]["vaelab_checkpoint_version"] == "1");
  // An evaluation record written after the checkpoint: a resume must drop it.
  std::ofstream(run / "metrics.jsonl", std::ios::app) << R"({"epoch": 999, "elbo_test_nats": 0})" << "\n";
  const std::string metrics_before = slurp(run / "metrics.jsonl");
  const std::string checkpoint_before = slurp(checkpoint);

  // --resume with a different config is refused, naming the key; nothing is touched.
  const auto differs = vaelab_cli("train '" + config.string() + "' --resume '" + run.string() + "' --set train.lr=0.5");
  CHECK(differs.code != 0);
  CHECK_THAT(differs.err, Contains("lr = 0.5") && Contains("[train]") && Contains("leave out the config"));
  const auto with_out = vaelab_cli("train --resume '" + run.string() + "' --out '" + (work_dir() / "elsewhere").string() + "'");
  CHECK(with_out.code != 0);
  CHECK_THAT(with_out.err, Contains("leave out --out"));

  // An unwritable checkpoint (its temporary file's place taken by a folder: unwritable even for
  // root) is one clear error before anything changes.
  fs::create_directories(checkpoint.string() + ".tmp");
  const auto unwritable = vaelab_cli("train --resume '" + run.string() + "'");
  CHECK(unwritable.code != 0);
  CHECK_THAT(unwritable.err, Contains("last.safetensors.tmp: cannot write"));
  size_t errors = 0;
  for (size_t at = unwritable.err.find("error:"); at != std::string::npos; at = unwritable.err.find("error:", at + 1)) ++errors;
  CHECK(errors == 1);
  CHECK(slurp(checkpoint) == checkpoint_before);
  CHECK(slurp(run / "metrics.jsonl") == metrics_before);
  fs::remove(checkpoint.string() + ".tmp");

  // The resume proper, with the same config given again (accepted: it resolves to the run's).
  const auto resumed = vaelab_cli("train '" + config.string() + "' --resume '" + run.string() + "'");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  // (Almost always mid-epoch; the kill may land just after an epoch's last checkpoint.)
  const std::string step = state["in_epoch"].is_null() ? "0" : state["in_epoch"]["step"].dump();
  CHECK_THAT(resumed.err, Contains("resumed from") && Contains("step " + step + " of the epoch"));

  // Bit for bit: every model tensor of the final checkpoint.
  const auto want = model_tensors(reference / "checkpoints" / "last.safetensors");
  const auto got = model_tensors(checkpoint);
  REQUIRE(want.size() >= 4);
  REQUIRE(got.size() == want.size());
  for (const auto& [name, bytes] : want) {
    INFO(name);
    REQUIRE(got.count(name) == 1);
    CHECK(got.at(name) == bytes);
  }
  // The same evaluations, the bogus record gone, and the same summary numbers.
  const auto ref_metrics = metrics_of(reference);
  const auto run_metrics = metrics_of(run);
  REQUIRE(ref_metrics.size() == 6);
  REQUIRE(run_metrics.size() == ref_metrics.size());
  for (size_t i = 0; i < ref_metrics.size(); ++i) {
    CHECK(run_metrics[i]["epoch"] == ref_metrics[i]["epoch"]);
    CHECK(run_metrics[i]["elbo_test_nats"] == ref_metrics[i]["elbo_test_nats"]);
    CHECK(run_metrics[i]["elbo_trained_on_nats"] == ref_metrics[i]["elbo_trained_on_nats"]);
    CHECK(run_metrics[i]["images_seen"] == ref_metrics[i]["images_seen"]);
  }
  const json ref_summary = json::parse(slurp(reference / "summary.json"));
  const json run_summary = json::parse(slurp(run / "summary.json"));
  CHECK(run_summary["elbo_test_nats"] == ref_summary["elbo_test_nats"]);
  CHECK(run_summary["images_seen"] == ref_summary["images_seen"]);
  CHECK(run_summary["nonfinite_skipped_steps"] == 0);
  CHECK(run_summary["checkpoints_written"].get<int64_t>() >= 1);

  // `vaelab eval` reads the training checkpoint as a model checkpoint.
  const auto eval = vaelab_cli("eval '" + run.string() + "' --json");
  INFO(eval.err);
  REQUIRE(eval.code == 0);
  CHECK(json::parse(eval.out)["elbo_test_nats"] == ref_summary["elbo_test_nats"]);

  // A finished run is not resumed.
  const auto again = vaelab_cli("train --resume '" + run.string() + "'");
  CHECK(again.code != 0);
  CHECK_THAT(again.err, Contains("the run is finished"));
}

TEST_CASE("on onednn-cpu too, a run killed mid-epoch and resumed ends with the uninterrupted run's weights, bit for bit",
          "[e2e][resume]") {
  // onednn-cpu (what backend.plugin = "auto" may choose) with one thread: deterministic as well.
  std::string text = kRun;
  const std::string torch_threads = "[backend.config]\nthreads = 1\nblas_threads = 1\n";
  REQUIRE(text.find(torch_threads) != std::string::npos);
  text.replace(text.find(torch_threads), torch_threads.size(),
               "[backend]\nplugin = \"onednn-cpu\"\n[backend.config]\nthreads = 1\n");
  const fs::path config = work_dir() / "onednn.toml";
  std::ofstream(config) << text;
  const fs::path reference = work_dir() / "onednn-reference";
  const auto ref = vaelab_cli("train '" + config.string() + "' --set train.checkpoint.every_steps=0 --out '" +
                              reference.string() + "'");
  INFO(ref.err);
  REQUIRE(ref.code == 0);
  const fs::path run = work_dir() / "onednn-killed";
  run_until_killed(config, run);
  const auto resumed = vaelab_cli("train --resume '" + run.string() + "'");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  const auto want = model_tensors(reference / "checkpoints" / "last.safetensors");
  const auto got = model_tensors(run / "checkpoints" / "last.safetensors");
  REQUIRE(want.size() >= 4);
  REQUIRE(got.size() == want.size());
  for (const auto& [name, bytes] : want) {
    INFO(name);
    CHECK(got.at(name) == bytes);
  }
  CHECK(json::parse(slurp(run / "summary.json"))["elbo_test_nats"] ==
        json::parse(slurp(reference / "summary.json"))["elbo_test_nats"]);
}

TEST_CASE("train --resume refuses a folder without a checkpoint and an old model-only checkpoint", "[e2e][resume]") {
  const fs::path config = work_dir() / "short.toml";
  std::ofstream(config) << kRun;
  const fs::path run = work_dir() / "short";
  const auto r = vaelab_cli("train '" + config.string() + "' --set train.epochs=1 --set data.config.train_size=64 --out '" +
                            run.string() + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  fs::remove(run / "summary.json");
  const fs::path checkpoint = run / "checkpoints" / "last.safetensors";

  // A checkpoint as vaelab wrote it before format 1: model tensors only.
  const std::string bytes = slurp(checkpoint);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  json header = json::parse(bytes.substr(8, n));
  header["__metadata__"].erase("vaelab_checkpoint_version");
  std::string text = header.dump();
  text.append(n > text.size() ? n - text.size() : 0, ' ');  // same data offsets
  REQUIRE(text.size() == n);
  std::ofstream(checkpoint, std::ios::binary) << bytes.substr(0, 8) << text << bytes.substr(8 + n);
  const auto old = vaelab_cli("train --resume '" + run.string() + "'");
  CHECK(old.code != 0);
  CHECK_THAT(old.err, Contains(checkpoint.string()) && Contains("vaelab_checkpoint_version") && Contains("weights only"));
  // ... which `vaelab eval` still reads.
  CHECK(vaelab_cli("eval '" + run.string() + "'").code == 0);

  fs::remove(checkpoint);
  const auto none = vaelab_cli("train --resume '" + run.string() + "'");
  CHECK(none.code != 0);
  CHECK_THAT(none.err, Contains("no checkpoint to resume from"));
}

TEST_CASE("vaelab study --resume continues a killed run from its checkpoint, with the same result", "[e2e][resume][study]") {
  std::string base;  // kRun's tables under [base.*]
  {
    std::istringstream in(kRun);
    for (std::string line; std::getline(in, line);) {
      base += (line.size() > 1 && line[0] == '[' ? "[base." + line.substr(1) : line) + "\n";
    }
  }
  const fs::path study = work_dir() / "study.toml";
  std::ofstream(study) << "[study]\nname = \"resume\"\njobs = 1\n[grid]\nseed = [3]\n" << base;

  // The study in one go, for reference.
  const fs::path whole = work_dir() / "study-whole";
  const auto ref = vaelab_cli("study '" + study.string() + "' --out '" + whole.string() + "' --no-report");
  INFO(ref.out << ref.err);
  REQUIRE(ref.code == 0);

  // Killed (the study and, with it, its child) once the run has a mid-epoch checkpoint.
  const fs::path out = work_dir() / "study-killed";
  const fs::path run = out / "runs" / "r0000";
  const fs::path checkpoint = run / "checkpoints" / "last.safetensors";
  const pid_t pid = fork();
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execl(VAELAB_TEST_EXE, VAELAB_TEST_EXE, "study", study.c_str(), "--out", out.c_str(), "--no-report",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  REQUIRE(pid > 0);
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (!fs::exists(checkpoint)) continue;
    const json h = header_of(checkpoint);
    if (!h.is_object() || !h.contains("__metadata__")) continue;
    const json state = json::parse(h["__metadata__"]["training_state"].get<std::string>());
    if (state["epochs_done"].get<int64_t>() >= 2 && !state["in_epoch"].is_null()) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(killed);
  // The child dies with the study (PR_SET_PDEATHSIG); give it a moment.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  REQUIRE_FALSE(fs::exists(run / "summary.json"));

  const auto resumed = vaelab_cli("study '" + study.string() + "' --out '" + out.string() + "' --resume --no-report");
  INFO(resumed.out << resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK_THAT(resumed.err, Contains("was interrupted") && Contains("resumed from its checkpoint"));
  CHECK_THAT(slurp(run / "train.log"), Contains("resumed from"));
  const json want = json::parse(slurp(whole / "runs" / "r0000" / "summary.json"));
  const json got = json::parse(slurp(run / "summary.json"));
  CHECK(got["elbo_test_nats"] == want["elbo_test_nats"]);
  CHECK(got["images_seen"] == want["images_seen"]);
  CHECK(model_tensors(checkpoint) == model_tensors(whole / "runs" / "r0000" / "checkpoints" / "last.safetensors"));
}

TEST_CASE("a run on backend.plugin = \"auto\" resumes on the backend it chose, whatever auto would choose now",
          "[e2e][resume]") {
  // The run, with auto's measurement in cache A; then cache B says the other CPU backend is
  // twice as fast. Given the config again, --resume must keep the run's backend, not refuse.
  std::string text = kRun;
  const std::string torch_threads = "[backend.config]\nthreads = 1\nblas_threads = 1\n";
  REQUIRE(text.find(torch_threads) != std::string::npos);
  text.replace(text.find(torch_threads), torch_threads.size(), "[backend]\nplugin = \"auto\"\n");
  const fs::path config = work_dir() / "auto.toml";
  std::ofstream(config) << text;
  const fs::path cache_a = work_dir() / "cache-a", cache_b = work_dir() / "cache-b";
  fs::remove_all(cache_a);
  fs::remove_all(cache_b);
  const fs::path run = work_dir() / "auto-run";
  fs::remove_all(run);
  const auto first = vaelab::testing::run_cli(work_dir(), "train '" + config.string() + "' --set train.epochs=2 --out '" +
                                                               run.string() + "'",
                                              "VAELAB_CACHE_DIR='" + cache_a.string() + "'");
  INFO(first.err);
  REQUIRE(first.code == 0);
  const std::string chosen = json::parse(slurp(run / "summary.json"))["backend"].get<std::string>();
  json speeds = json::parse(slurp(cache_a / "backend-speed.json"));
  REQUIRE(speeds.size() == 1);
  json& entry = speeds.begin().value();
  const std::string other = chosen == "torch-cpu" ? "onednn-cpu" : "torch-cpu";
  entry["images_per_second"][chosen] = 100.0;
  entry["images_per_second"][other] = 1000.0;
  entry["fastest"] = other;
  fs::create_directories(cache_b);
  std::ofstream(cache_b / "backend-speed.json") << speeds.dump(2);
  // Unfinished again: its last checkpoint (at the end) is what a resume continues from.
  fs::remove(run / "summary.json");
  const auto resumed = vaelab::testing::run_cli(
      work_dir(), "train '" + config.string() + "' --set train.epochs=2 --resume '" + run.string() + "'",
      "VAELAB_CACHE_DIR='" + cache_b.string() + "'");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK(json::parse(slurp(run / "summary.json"))["backend"] == chosen);
  CHECK_THAT(resumed.err, Contains("auto\": " + other));  // what auto would take today
}
