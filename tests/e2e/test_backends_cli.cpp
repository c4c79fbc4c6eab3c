// Every backend that can run here trains the paper's Fashion-MNIST MLP (examples/fmnist-mlp.toml,
// shortened) to the same test ELBO as the torch-cpu reference, within stated tolerances; the
// example runs with backend plugin = "auto", which measures the CPU backends once per machine, picks
// the fastest and writes its name into the run's config.toml; `vaelab bench --json --quick` prints every line the benchmark promises.

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include <vaelab/cpu.hpp>

#include "cli_runner.hpp"

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::json;

namespace {

fs::path work_dir() { return vaelab::testing::scratch_dir("vaelab-e2e-backends"); }

vaelab::testing::CliResult run_vaelab(const std::string& args) {
  return vaelab::testing::run_cli(work_dir(), args);
}

/// examples/fmnist-mlp.toml on 1,000 training and 1,000 test images for 15 epochs (120 steps),
/// on `backend` with extra `--set` words; returns the run's summary.json. A run of the same name
/// is trained once per test process (Catch2 runs a test case's body once per SECTION).
json train_on(const std::string& name, const std::string& backend_sets, std::string* err = nullptr) {
  static std::map<std::string, std::pair<json, std::string>> done;
  const auto found = done.find(name);
  if (found != done.end()) {
    if (err != nullptr) *err = found->second.second;
    return found->second.first;
  }
  const fs::path out = work_dir() / name;
  const auto r = run_vaelab("train '" VAELAB_TEST_EXAMPLES "/fmnist-mlp.toml' --out '" + out.string() +
                            "' --set data.train_size=1000 --set data.test_size=1000 --set train.epochs=15"
                            " --set eval.every_epochs=15 " + backend_sets);
  INFO(r.err);
  REQUIRE(r.code == 0);
  const json summary = json::parse(vaelab::testing::slurp(out / "summary.json"));
  done[name] = {summary, r.err};
  if (err != nullptr) *err = r.err;
  return summary;
}

double test_elbo(const json& summary) { return summary["elbo_test_nats"].get<double>(); }

/// |ELBO_a − ELBO_b| as a fraction of what training gained: the Gaussian likelihood's constant
/// puts this model's trained ELBO near 0 nats, so a gap relative to the ELBO itself means nothing,
/// while the gain over the untrained model (thousands of nats) is the scale training works on.
/// Summation order alone moves the trained ELBO by a few nats (torch-cpu against itself with one
/// or two BLAS threads: −11.4 against −6.5).
double gap_of_gain(const json& a, const json& b, const json& untrained) {
  return std::abs(test_elbo(a) - test_elbo(b)) / (test_elbo(b) - test_elbo(untrained));
}

}  // namespace

TEST_CASE("every backend that runs here reaches torch-cpu's test ELBO on the paper MLP", "[e2e][backends]") {
  const json reference = train_on("torch-cpu", "--set backend.plugin=torch-cpu");
  REQUIRE(reference["backend"] == "torch-cpu");
  // The 15 epochs must have taught the model something, or equal ELBOs would mean nothing.
  const json untrained = train_on("untrained", "--set backend.plugin=torch-cpu --set train.lr=1e-12");
  REQUIRE(test_elbo(reference) > test_elbo(untrained) + 1000);

  SECTION("onednn-cpu f32: the same training within 0.5 % of the gain") {
    const json f32 = train_on("onednn-f32", "--set backend.plugin=onednn-cpu --set backend.config.precision=f32");
    REQUIRE(f32["backend"] == "onednn-cpu");
    INFO("torch-cpu " << reference["elbo_test_nats"] << ", onednn-cpu f32 " << f32["elbo_test_nats"]);
    REQUIRE(gap_of_gain(f32, reference, untrained) < 0.005);
  }
  SECTION("onednn-cpu bf16: within 1 % of the gain (bfloat16 products, float32 weights)") {
    const vaelab::CpuFeatures cpu = vaelab::cpu_features();
    if (!cpu.avx512_bf16 && !cpu.amx_bf16) {
      // onednn-cpu refuses bf16 without native bfloat16 instructions, naming the ISA (checked).
      const auto r = run_vaelab("train '" VAELAB_TEST_EXAMPLES "/fmnist-mlp.toml' --out '" +
                                (work_dir() / "onednn-bf16").string() +
                                "' --set backend.plugin=onednn-cpu --set backend.config.precision=bf16");
      REQUIRE(r.code != 0);
      REQUIRE_THAT(r.err, Contains("precision") && Contains("f32"));
      WARN("this CPU (" << vaelab::cpu_isa_name(cpu) << ") has no native bfloat16: bf16 training not compared");
      return;
    }
    const json bf16 = train_on("onednn-bf16", "--set backend.plugin=onednn-cpu --set backend.config.precision=bf16");
    INFO("torch-cpu " << reference["elbo_test_nats"] << ", onednn-cpu bf16 " << bf16["elbo_test_nats"]);
    REQUIRE(gap_of_gain(bf16, reference, untrained) < 0.01);
  }
}

TEST_CASE("backend plugin = \"auto\" measures the CPU backends once, picks the fastest and records it",
          "[e2e][backends]") {
  const fs::path cache = work_dir() / "cache";
  fs::remove_all(cache);
  const std::string env = "VAELAB_CACHE_DIR='" + cache.string() + "'";
  const auto short_run = [&](const std::string& name, const std::string& sets) {
    return vaelab::testing::run_cli(work_dir(), "train '" VAELAB_TEST_EXAMPLES "/fmnist-mlp.toml' --out '" +
                                                    (work_dir() / name).string() +
                                                    "' --set data.train_size=256 --set data.test_size=256"
                                                    " --set train.epochs=1 --set backend.plugin=auto " + sets,
                                    env);
  };
  const auto first = short_run("auto-first", "");
  INFO(first.err);
  REQUIRE(first.code == 0);
  const fs::path file = cache / "backend-speed.json";
  REQUIRE(fs::exists(file));
  const json speeds = json::parse(vaelab::testing::slurp(file));
  REQUIRE(speeds.size() == 1);
  const json& entry = speeds.begin().value();
  CHECK_THAT(speeds.begin().key(), Contains(vaelab::cpu_isa_name(vaelab::cpu_features())) && Contains("thread"));
  // Both CPU backends measured; the choice is the faster one, or onednn-cpu within 5 % of it.
  const double onednn = entry["images_per_second"]["onednn-cpu"].get<double>();
  const double torch_cpu = entry["images_per_second"]["torch-cpu"].get<double>();
  REQUIRE(onednn > 0);
  REQUIRE(torch_cpu > 0);
  const std::string want = onednn >= 0.95 * torch_cpu ? "onednn-cpu" : "torch-cpu";
  CHECK(entry["fastest"] == want);
  const json summary = json::parse(vaelab::testing::slurp(work_dir() / "auto-first" / "summary.json"));
  CHECK(summary["backend"] == want);
  CHECK_THAT(vaelab::testing::slurp(work_dir() / "auto-first" / "config.toml"), Contains("plugin = '" + want + "'"));
  CHECK_THAT(first.err, Contains("backend plugin = \"auto\": " + want + ", the fastest here") &&
                            Contains("measured now") && Contains("passed over: torch-cuda"));

  // The next run reads the measurement back.
  const auto second = short_run("auto-second", "");
  INFO(second.err);
  REQUIRE(second.code == 0);
  CHECK_THAT(second.err, Contains("measured before, read from " + file.string()));
  CHECK(json::parse(vaelab::testing::slurp(work_dir() / "auto-second" / "summary.json"))["backend"] == want);

  // A damaged file is named in a warning, measured again and rewritten; the run goes on.
  std::ofstream(file) << "{ not json";
  const auto damaged = short_run("auto-damaged", "");
  INFO(damaged.err);
  REQUIRE(damaged.code == 0);
  CHECK_THAT(damaged.err, Contains(file.string() + ": not a backend-speed file") && Contains("measured now"));
  CHECK(json::parse(vaelab::testing::slurp(file)).size() == 1);

  // A [backend.config] key only torch-cpu has: auto keeps to the backends that accept it.
  const auto keyed = short_run("auto-keyed", "--set backend.config.blas_threads=1");
  INFO(keyed.err);
  REQUIRE(keyed.code == 0);
  CHECK(json::parse(vaelab::testing::slurp(work_dir() / "auto-keyed" / "summary.json"))["backend"] == "torch-cpu");
  CHECK_THAT(keyed.err, Contains("onednn-cpu: has no backend.config key blas_threads"));
}

TEST_CASE("vaelab bench --json --quick prints the peak and every benchmark line", "[e2e][backends]") {
  const auto r = run_vaelab("bench --json --quick --repeats 1");
  INFO(r.err);
  REQUIRE(r.code == 0);
  const json out = json::parse(r.out);
  REQUIRE(out["gemm_peak_gflops"]["f32"].get<double>() > 0);
  REQUIRE(out["gemm_peak_gflops"].contains("bf16"));
  // The products of one step on the paper MLP's own shapes, in each precision (null where bf16
  // cannot run, as for the square peak).
  REQUIRE(out["gemm_mlp_shapes_gflops"]["f32"].get<double>() > 0);
  REQUIRE(out["gemm_mlp_shapes_gflops"]["bf16"].is_null() == out["gemm_peak_gflops"]["bf16"].is_null());
  // What the figures were measured with, and the memory reference of the limit.
  REQUIRE(out["memory_bandwidth_gb_per_s"].get<double>() > 0);
  REQUIRE_FALSE(out["isa"].get<std::string>().empty());
  REQUIRE(out.contains("blas_core"));
  // The machine's load before the run, so a slow figure from a shared machine can be told apart.
  REQUIRE(out["load_average_before"].get<double>() >= 0);
  std::set<std::string> lines;
  for (const auto& line : out["results"]) {
    const std::string key = line["benchmark"].get<std::string>() + " " + line["backend"].get<std::string>() + " " +
                            line["precision"].get<std::string>();
    lines.insert(key);
    REQUIRE(line["images_per_second"].get<double>() > 0);
    if (line["backend"] == "torch-cpu") REQUIRE(line["ratio_vs_torch_cpu"].get<double>() == Approx(1.0));
    if (line["benchmark"] == "vae-mlp-train") {
      // The paper MLP's exact training FLOPs per image (see bench_suite.cpp): 6·Σ in·out − 2·1024·512.
      REQUIRE(line["flops_per_image"].get<double>() == Approx(8536064.0));
      REQUIRE(line["gflops"].get<double>() == Approx(line["images_per_second"].get<double>() * 8536064.0 / 1e9));
      // The memory-aware limit: 8,536,064 FLOPs at the peak plus Adam's 28 bytes per parameter
      // (1,600,544 of them) over the batch of 128 at the triad bandwidth.
      const std::string precision = line["precision"].get<std::string>();
      if (!out["gemm_peak_gflops"][precision].is_null()) {
        const double seconds = 8536064.0 / (out["gemm_peak_gflops"][precision].get<double>() * 1e9) +
                               28.0 * 1600544.0 / 128.0 / (out["memory_bandwidth_gb_per_s"].get<double>() * 1e9);
        REQUIRE(line["limit_images_per_second"].get<double>() == Approx(1.0 / seconds));
        REQUIRE(line["fraction_of_limit"].get<double>() == Approx(line["images_per_second"].get<double>() * seconds));
        REQUIRE(line["fraction_of_limit"].get<double>() > line["fraction_of_peak"].get<double>());  // a longer step
        REQUIRE(line["fraction_of_layer_shape_peak"].get<double>() ==
                Approx(line["gflops"].get<double>() / out["gemm_mlp_shapes_gflops"][precision].get<double>()));
      }
      // The optimizer training used, and torch's Adam timed on the same gradients beside it.
      if (line.contains("step_seconds")) {
        REQUIRE(line["optimizer"] == "adam-fused");
        REQUIRE(line["step_seconds"]["torch_adam"].get<double>() > 0);
      }
    } else {
      REQUIRE(line["fraction_of_limit"].is_null());
    }
  }
  for (const std::string benchmark : {"vae-mlp-train", "vae-conv-train", "iwae-eval", "diffusion-sample"}) {
    INFO(benchmark);
    REQUIRE(lines.count(benchmark + " torch-cpu f32") == 1);
    REQUIRE(lines.count(benchmark + " onednn-cpu f32") == 1);
  }
}
