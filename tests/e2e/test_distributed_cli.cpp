// Data-parallel training through the `vaelab` command (docs/distributed.md), two processes on
// loopback with Gloo: the same weights as one process on the combined batch; a rank that dies or
// stops answering ends the other with an error inside the timeout; resume with the same world
// size continues exactly, another world size is refused.
//
// That `vaelab study --shard i/n` runs merged by `vaelab study merge` reproduce the one-process
// study's database is tested in test_study_cli.cpp ("a study killed mid-way resumes, and shards
// merged equal the study in one process").

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
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
using Clock = std::chrono::steady_clock;

namespace {

fs::path work_dir() { return vaelab::testing::scratch_dir("vaelab-e2e-distributed"); }

vaelab::testing::CliResult vaelab_cli(const std::string& args) {
  return vaelab::testing::run_cli(work_dir(), args);
}

// 251 images of 8x8 in batches of 16: 15 batches of 16 and one of 11, which two ranks split 5/6.
// One thread per process. Two epochs = 32 optimizer steps.
const char* kRun = R"(
[data]
plugin = "ppca-world"
[data.config]
height = 8
width = 8
latent = 4
train_size = 251
test_size = 128
[model]
plugin = "vae-mlp"
[model.config]
hidden = [32]
latent = 4
[likelihood]
name = "gaussian"
sigma = 0.1
[backend.config]
threads = 1
blas_threads = 1
[train]
epochs = 2
batch_size = 16
lr = 2e-3
seed = 3
[train.checkpoint]
every_minutes = 0.0
[eval]
every_epochs = 1
)";

fs::path write_config() {
  const fs::path config = work_dir() / "run.toml";
  if (!fs::exists(config)) std::ofstream(config) << kRun;
  return config;
}

/// The float32 model tensors of a checkpoint (not the "_train." state).
std::map<std::string, std::vector<float>> model_weights(const fs::path& file) {
  const std::string bytes = slurp(file);
  REQUIRE(bytes.size() > 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  const json header = json::parse(bytes.substr(8, n));
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__" || name.rfind("_train.", 0) == 0) continue;
    REQUIRE(entry["dtype"] == "F32");
    const auto begin = entry["data_offsets"][0].get<uint64_t>();
    const auto end = entry["data_offsets"][1].get<uint64_t>();
    std::vector<float> values((end - begin) / sizeof(float));
    std::memcpy(values.data(), bytes.data() + 8 + n + begin, end - begin);
    out[name] = std::move(values);
  }
  return out;
}

/// Starts `vaelab ARGS...` with extra environment variables; stdout and stderr to files.
pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const fs::path& out, const fs::path& err) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::freopen(out.c_str(), "w", stdout);
    std::freopen(err.c_str(), "w", stderr);
    std::vector<std::string> argv_text = {VAELAB_TEST_EXE};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(VAELAB_TEST_EXE, argv.data());
    std::_Exit(127);
  }
  return pid;
}

/// Waits up to `limit` for `pid`; returns its wait status, or -1 (and kills it) past the limit.
int wait_for(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

/// Polls until `ready()` or `limit` passes.
bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

/// The child of `parent` whose environment holds RANK=`rank` (the launcher's ranks).
pid_t child_with_rank(pid_t parent, int rank) {
  std::ifstream children("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children");
  for (pid_t child; children >> child;) {
    const std::string env = slurp("/proc/" + std::to_string(child) + "/environ");
    std::istringstream vars(env);
    for (std::string var; std::getline(vars, var, '\0');) {
      if (var == "RANK=" + std::to_string(rank)) return child;
    }
  }
  return -1;
}

/// A loopback TCP port that was free a moment ago.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  ::close(fd);
  return ntohs(sa.sin_port);
}

}  // namespace

TEST_CASE("two processes reach the weights one process reaches on the combined batch", "[e2e][distributed]") {
  const fs::path config = write_config();
  const fs::path one = work_dir() / "one";
  const fs::path two = work_dir() / "two";
  const auto r1 = vaelab_cli("train '" + config.string() + "' --out '" + one.string() + "'");
  INFO(r1.err);
  REQUIRE(r1.code == 0);
  const auto r2 = vaelab_cli("train '" + config.string() + "' --nproc 2 --out '" + two.string() + "'");
  INFO(r2.err);
  REQUIRE(r2.code == 0);
  // The launcher's output is rank 0's: the run folder, once.
  CHECK(r2.out == two.string() + "\n");
  CHECK_THAT(r2.err, Contains("2 processes, 8 images per process of each batch of 16"));

  const auto w1 = model_weights(one / "checkpoints" / "last.safetensors");
  const auto w2 = model_weights(two / "checkpoints" / "last.safetensors");
  REQUIRE(w1.size() == w2.size());
  REQUIRE(w1.size() >= 4);
  double max_diff = 0;
  double max_weight = 0;
  for (const auto& [name, a] : w1) {
    const auto& b = w2.at(name);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(a[i] - b[i])));
      max_weight = std::max(max_weight, static_cast<double>(std::fabs(a[i])));
    }
  }
  INFO("largest weight difference " << max_diff << " (largest weight " << max_weight << ")");
  CHECK(max_diff < 2e-5);
  CHECK(max_weight > 0.1);

  // The same numbers at each evaluation point: the same images seen, the same ELBOs.
  const auto m1 = metrics_of(one);
  const auto m2 = metrics_of(two);
  REQUIRE(m1.size() == 2);
  REQUIRE(m2.size() == 2);
  for (size_t i = 0; i < m1.size(); ++i) {
    CHECK(m1[i]["images_seen"] == m2[i]["images_seen"]);
    for (const char* key : {"elbo_train_nats", "elbo_test_nats", "elbo_trained_on_nats"}) {
      INFO(key);
      CHECK(m2[i][key].get<double>() == Approx(m1[i][key].get<double>()).epsilon(1e-5));
    }
  }
  const json summary = json::parse(slurp(two / "summary.json"));
  CHECK(summary["world_size"] == 2);
  CHECK(summary["images_seen"] == 502);
  CHECK_FALSE(json::parse(slurp(one / "summary.json")).contains("world_size"));
}

TEST_CASE("a killed rank ends the launcher's other rank with an error inside the timeout", "[e2e][distributed]") {
  const fs::path config = write_config();
  const fs::path run = work_dir() / "killed";
  const pid_t launcher = spawn({"train", config.string(), "--nproc", "2", "--out", run.string(), "--set",
                                "train.epochs=100000", "--set", "eval.every_epochs=1000", "--set",
                                "train.distributed.timeout_seconds=20"},
                               {}, work_dir() / "killed.out", work_dir() / "killed.err");
  REQUIRE(launcher > 0);
  // Once both ranks train (the launcher's log shows rank 0's progress), rank 1 is killed.
  pid_t rank1 = -1;
  const bool training = wait_until(
      [&] {
        rank1 = child_with_rank(launcher, 1);
        return rank1 > 0 && slurp(work_dir() / "killed.err").find("data-parallel: 2 processes") != std::string::npos;
      },
      std::chrono::seconds(60));
  if (!training) {
    ::kill(launcher, SIGKILL);
    ::waitpid(launcher, nullptr, 0);
  }
  INFO(slurp(work_dir() / "killed.err"));
  REQUIRE(training);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(rank1, SIGKILL);
  const auto killed_at = Clock::now();
  const int status = wait_for(launcher, std::chrono::seconds(30));
  const double seconds = std::chrono::duration<double>(Clock::now() - killed_at).count();
  const std::string err = slurp(work_dir() / "killed.err");
  INFO(err);
  REQUIRE(status != -1);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(seconds < 20);
  // Rank 0's own error, then the launcher's summary naming the rank that died first.
  CHECK_THAT(err, Contains("rank 0 of 2: the gradient all-reduce of step") && Contains("failed"));
  CHECK_THAT(err, Contains("data-parallel run of 2 processes failed: rank 1 was killed by signal 9"));
  CHECK_THAT(err, Contains("rank 0 exited with code 1"));
}

TEST_CASE("a rank that stops answering ends the other (external launcher) after the timeout", "[e2e][distributed]") {
  const fs::path config = write_config();
  const fs::path run = work_dir() / "stopped";
  const int port = free_port();
  std::vector<pid_t> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.push_back(spawn({"train", config.string(), "--out", run.string(), "--set", "train.epochs=100000", "--set",
                           "eval.every_epochs=1000", "--set", "train.distributed.timeout_seconds=3"},
                          {{"WORLD_SIZE", "2"}, {"RANK", std::to_string(r)}, {"LOCAL_RANK", std::to_string(r)},
                           {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}},
                          work_dir() / ("stopped" + std::to_string(r) + ".out"),
                          work_dir() / ("stopped" + std::to_string(r) + ".err")));
  }
  const bool training = wait_until(
      [&] { return slurp(work_dir() / "stopped0.err").find("data-parallel: 2 processes") != std::string::npos; },
      std::chrono::seconds(60));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(ranks[1], SIGSTOP);
  const auto stopped_at = Clock::now();
  const int status = wait_for(ranks[0], std::chrono::seconds(30));
  const double seconds = std::chrono::duration<double>(Clock::now() - stopped_at).count();
  ::kill(ranks[1], SIGKILL);
  ::waitpid(ranks[1], nullptr, 0);
  const std::string err = slurp(work_dir() / "stopped0.err");
  INFO(err);
  REQUIRE(training);
  REQUIRE(status != -1);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(seconds >= 2.5);
  CHECK(seconds < 15);
  CHECK_THAT(err, Contains("rank 0 of 2") && Contains("timeout_seconds = 3 s"));
  // Rank 0 made the run folder; neither printed a run folder (neither finished).
  CHECK(fs::exists(run / "config.toml"));
  CHECK(slurp(work_dir() / "stopped0.out").empty());
  CHECK(slurp(work_dir() / "stopped1.out").empty());
}

TEST_CASE("a data-parallel run resumes with the same world size, exactly, and refuses another", "[e2e][distributed]") {
  const fs::path config = write_config();
  const std::string long_run = " --set train.epochs=120 --set eval.every_epochs=40 --set train.checkpoint.every_steps=200";
  // The reference, uninterrupted.
  const fs::path whole = work_dir() / "whole";
  const auto ref = vaelab_cli("train '" + config.string() + "' --nproc 2 --out '" + whole.string() + "'" + long_run);
  INFO(ref.err);
  REQUIRE(ref.code == 0);

  // The same, killed (rank 1) after the first mid-epoch checkpoint.
  const fs::path run = work_dir() / "interrupted";
  std::vector<std::string> args = {"train", config.string(), "--nproc", "2", "--out", run.string()};
  std::istringstream words(long_run);
  for (std::string w; words >> w;) args.push_back(w);
  const pid_t launcher = spawn(args, {}, work_dir() / "interrupted.out", work_dir() / "interrupted.err");
  const bool checkpointed =
      wait_until([&] { return fs::exists(run / "checkpoints" / "last.safetensors"); }, std::chrono::seconds(60));
  const pid_t rank1 = child_with_rank(launcher, 1);
  if (rank1 > 0) ::kill(rank1, SIGKILL);
  const int status = wait_for(launcher, std::chrono::seconds(30));
  INFO(slurp(work_dir() / "interrupted.err"));
  REQUIRE(checkpointed);
  REQUIRE(rank1 > 0);
  REQUIRE(status != -1);
  REQUIRE_FALSE(fs::exists(run / "summary.json"));  // killed before the end

  // Another world size is refused, naming the one to use.
  const auto alone = vaelab_cli("train --resume '" + run.string() + "'");
  CHECK(alone.code != 0);
  CHECK_THAT(alone.err, Contains("world size 2") && Contains("--nproc 2"));

  const auto resumed = vaelab_cli("train --resume '" + run.string() + "' --nproc 2");
  INFO(resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK_THAT(resumed.err, Contains("resumed from"));
  const auto want = model_weights(whole / "checkpoints" / "last.safetensors");
  const auto got = model_weights(run / "checkpoints" / "last.safetensors");
  REQUIRE(want.size() == got.size());
  for (const auto& [name, values] : want) {
    INFO(name);
    CHECK(values == got.at(name));
  }
  CHECK(metrics_of(whole).size() == metrics_of(run).size());

  // And the other way round: a one-process run is not continued by two.
  const fs::path single = work_dir() / "single";
  const auto one = vaelab_cli("train '" + config.string() + "' --out '" + single.string() + "'");
  REQUIRE(one.code == 0);
  fs::remove(single / "summary.json");
  const auto two = vaelab_cli("train --resume '" + single.string() + "' --nproc 2");
  CHECK(two.code != 0);
  CHECK_THAT(two.err, Contains("written by a run of 1 process") && Contains("without --nproc"));
}

TEST_CASE("a failing rank's error reaches the launcher, which fails too", "[e2e][distributed]") {
  const fs::path config = write_config();
  const auto r = vaelab_cli("train '" + config.string() + "' --nproc 2 --set train.batch_size=15 --out '" +
                            (work_dir() / "odd").string() + "'");
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("train.batch_size = 15 is the batch of all 2 processes together"));
  CHECK_THAT(r.err, Contains("data-parallel run of 2 processes failed: rank"));
  CHECK_FALSE(fs::exists(work_dir() / "odd"));
}
