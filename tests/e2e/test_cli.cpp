#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_runner.hpp"

#include <vaelab/data_source.hpp>
#include <vaelab/io/pool.hpp>

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::json;

namespace {

using Result = vaelab::testing::CliResult;
using vaelab::testing::slurp;

fs::path work_dir() { return vaelab::testing::scratch_dir("vaelab-e2e"); }

/// Runs the vaelab command with `args` (shell words) and `env` prefix; captures both streams.
Result run_vaelab(const std::string& args, const std::string& env = "") {
  return vaelab::testing::run_cli(work_dir(), args, env);
}

const std::string kFashion = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";

fs::path write_config(const std::string& name, const std::string& text) {
  const fs::path p = work_dir() / name;
  std::ofstream(p) << text;
  return p;
}

const char* kSmallRun = R"(
[data]
plugin = "idx"
train_size = 512
test_size = 512
[model]
plugin = "vae-mlp"
[train]
epochs = 2
batch_size = 64
lr = 1e-3
[eval]
every_epochs = 1
[eval.iwae]
samples = 20
images = 64
[eval.amortization]
images = 32
steps = 20
final_samples = 10
[eval.robustness]
images = 4
restarts = 2
steps = 5
[eval.probe]
images = 200
)";

bool finite_number(const json& v) { return v.is_number() && std::isfinite(v.get<double>()); }

}  // namespace

TEST_CASE("vaelab --version names the version, ABI and fingerprint", "[e2e]") {
  const Result r = run_vaelab("--version");
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Contains("vaelab 0.1.0") && Contains("plugin ABI 2.0") && Contains("cxx11abi="));
}

TEST_CASE("vaelab plugins --json lists the three plugins ok and a broken file with its category", "[e2e]") {
  const fs::path broken_dir = work_dir() / "broken-plugins";
  fs::create_directories(broken_dir);
  std::ofstream(broken_dir / "libvaelab-model-broken.so") << "this is not a library\n";
  fs::permissions(broken_dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                  fs::perms::others_read | fs::perms::others_exec);
  const Result r = run_vaelab("plugins --json", "VAELAB_PLUGIN_PATH='" + broken_dir.string() + "'");
  REQUIRE(r.code == 0);
  const json list = json::parse(r.out);
  REQUIRE(list.is_array());
  std::set<std::string> ok;
  bool saw_broken = false;
  for (const auto& p : list) {
    std::set<std::string> keys;
    for (const auto& [k, v] : p.items()) keys.insert(k);
    REQUIRE(keys == std::set<std::string>{"name", "kind", "version", "abi", "path", "preference", "status"});
    if (p["status"] == "ok") ok.insert(p["kind"].get<std::string>() + "/" + p["name"].get<std::string>());
    if (p["path"].get<std::string>().find("libvaelab-model-broken.so") != std::string::npos) {
      saw_broken = true;
      REQUIRE_THAT(p["status"].get<std::string>(), Contains("not_a_plugin"));
    }
  }
  REQUIRE(ok.count("backend/torch-cpu") == 1);
  REQUIRE(ok.count("backend/onednn-cpu") == 1);
  REQUIRE(ok.count("model/vae-mlp") == 1);
  REQUIRE(ok.count("data-source/idx") == 1);
  REQUIRE(saw_broken);
}

TEST_CASE("vaelab plugins show prints the defaults", "[e2e]") {
  const Result r = run_vaelab("plugins show vae-mlp");
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Contains("hidden = [512, 512]") && Contains("latent = 16"));
  const Result missing = run_vaelab("plugins show vae-nope");
  REQUIRE(missing.code != 0);
  REQUIRE_THAT(missing.err, Contains("no plugin named 'vae-nope'"));
}

TEST_CASE("train 2 epochs on 512 Fashion-MNIST images, then eval reproduces it", "[e2e]") {
  REQUIRE(fs::exists(kFashion));  // from the dataset-fashion-mnist package
  const fs::path config = write_config("small.toml", kSmallRun);
  const fs::path run = work_dir() / "run-small";
  const Result r = run_vaelab("train '" + config.string() + "' --out '" + run.string() + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  REQUIRE_THAT(r.out, Contains(run.string()));

  // metrics.jsonl: one line per evaluation, finite, and the train ELBO improved.
  std::ifstream metrics(run / "metrics.jsonl");
  std::vector<json> lines;
  for (std::string line; std::getline(metrics, line);) lines.push_back(json::parse(line));
  REQUIRE(lines.size() == 2);
  for (const auto& m : lines) {
    for (const char* key : {"elbo_train_nats", "elbo_test_nats", "seconds"}) REQUIRE(finite_number(m[key]));
    REQUIRE(m["epoch"].is_number_integer());
    REQUIRE(m["images_seen"].is_number_integer());
  }
  REQUIRE(lines[0]["epoch"] == 1);
  REQUIRE(lines[1]["images_seen"] == 1024);
  REQUIRE(lines[1]["elbo_train_nats"].get<double>() > lines[0]["elbo_train_nats"].get<double>());

  // summary.json: the keys the issue asks for, finite, with exact parameter counts.
  const json summary = json::parse(slurp(run / "summary.json"));
  for (const char* key : {"elbo_train_nats", "elbo_test_nats", "generalization_gap_nats", "train_seconds",
                          "train_images_per_second"}) {
    INFO(key);
    REQUIRE(finite_number(summary[key]));
  }
  REQUIRE(summary["epochs"] == 2);
  // What the run computed with.
  REQUIRE(summary["backend"] == "torch-cpu");
  REQUIRE_THAT(summary["backend_description"].get<std::string>(), Contains("f32"));
  REQUIRE_FALSE(summary["cpu_isa"].get<std::string>().empty());
  REQUIRE(summary.contains("blas_core"));
  REQUIRE(summary["images_seen"] == 1024);
  REQUIRE(summary["train_size"] == 512);
  // 1024→512→512→2·16 and 16→512→512→1024, weights and biases.
  const int64_t enc = (1024 * 512 + 512) + (512 * 512 + 512) + (512 * 32 + 32);
  const int64_t dec = (16 * 512 + 512) + (512 * 512 + 512) + (512 * 1024 + 1024);
  REQUIRE(summary["params_total"] == enc + dec);
  REQUIRE(summary["params_latent_adjacent"] == (512 * 32 + 32) + (16 * 512 + 512));
  REQUIRE(summary["generalization_gap_nats"].get<double>() ==
          Approx(summary["elbo_train_nats"].get<double>() - summary["elbo_test_nats"].get<double>()));

  REQUIRE(fs::file_size(run / "checkpoints" / "last.safetensors") > 4 * static_cast<uintmax_t>(enc + dec));
  REQUIRE_THAT(slurp(run / "config.toml"), Contains("hidden = [ 512, 512 ]") && Contains("train_size = 512"));
  // train.log holds every line of the run, those logged before its folder existed included, in order.
  const std::string log = slurp(run / "train.log");
  REQUIRE_THAT(log, Contains("epoch 2: ELBO train"));
  const size_t backend_line = log.find("] backend ");
  const size_t data_line = log.find(" train / ");
  const size_t folder_line = log.find("] run folder ");
  REQUIRE(backend_line != std::string::npos);
  REQUIRE(data_line != std::string::npos);
  REQUIRE(folder_line != std::string::npos);
  REQUIRE(backend_line < data_line);
  REQUIRE(data_line < folder_line);
  REQUIRE(folder_line < log.find("epoch 2: ELBO train"));

  // eval: the checkpoint reproduces the final numbers.
  const Result e = run_vaelab("eval '" + run.string() + "' --json");
  INFO(e.err);
  REQUIRE(e.code == 0);
  const json ev = json::parse(e.out);
  REQUIRE(ev["elbo_test_nats"].get<double>() == Approx(summary["elbo_test_nats"].get<double>()).epsilon(1e-4));
  REQUIRE(ev["elbo_train_nats"].get<double>() == Approx(summary["elbo_train_nats"].get<double>()).epsilon(1e-4));

  // Every metric runs on the finished run and gives finite numbers under summary.json's keys.
  const Result all = run_vaelab("eval '" + run.string() + "' --metrics elbo,iwae,amortization,robustness,probe --json");
  INFO(all.err);
  REQUIRE(all.code == 0);
  const json m = json::parse(all.out);
  for (const char* key : {"elbo_test_nats", "iwae_test_nats", "elbo_star_test_nats", "amortization_gap_nats",
                          "robustness_gap", "msssim_inputs", "msssim_reconstructions", "probe_accuracy",
                          "knn_accuracy"}) {
    INFO(key);
    REQUIRE(finite_number(m[key]));
  }
  REQUIRE(m["iwae_test_nats"].get<double>() >= m["elbo_test_nats"].get<double>() - 5.0);
  REQUIRE(m["probe_accuracy"].get<double>() > 0.2);  // 10 classes: chance is 0.1
  // A config.toml written before eval.amortization.lr_schedule existed keeps the constant rate its
  // G_a was measured with; the current one decays the rate, so the two searches end elsewhere.
  {
    const std::string current = slurp(run / "config.toml");
    const size_t at = current.find("lr_schedule = ");
    REQUIRE(at != std::string::npos);
    std::ofstream(run / "config.toml") << current.substr(0, at) << current.substr(current.find('\n', at) + 1);
    const Result earlier = run_vaelab("eval '" + run.string() + "' --metrics amortization --json");
    std::ofstream(run / "config.toml") << current;
    INFO(earlier.err);
    REQUIRE(earlier.code == 0);
    REQUIRE_THAT(earlier.err, Contains("written before eval.amortization.lr_schedule existed"));
    const json old = json::parse(earlier.out);
    REQUIRE(old["amortization_elbo_test_nats"].get<double>() == m["amortization_elbo_test_nats"].get<double>());
    REQUIRE(old["elbo_star_test_nats"].get<double>() != m["elbo_star_test_nats"].get<double>());
  }
  // --set changes how the run is measured, for this call only; keys outside eval.* are refused.
  {
    const std::string config_before = slurp(run / "config.toml");
    const Result longer = run_vaelab("eval '" + run.string() +
                                     "' --metrics amortization --json --set eval.amortization.steps=7");
    INFO(longer.err);
    REQUIRE(longer.code == 0);
    REQUIRE(json::parse(longer.out)["amortization_steps"].get<int64_t>() == 7);
    REQUIRE(m["amortization_steps"].get<int64_t>() == 20);
    const Result outside = run_vaelab("eval '" + run.string() + "' --set train.epochs=3");
    REQUIRE(outside.code != 0);
    REQUIRE_THAT(outside.err, Contains("--set train.epochs=3") && Contains("only eval.* keys"));
    REQUIRE(slurp(run / "config.toml") == config_before);
  }
  const Result typo = run_vaelab("eval '" + run.string() + "' --metrics elbo,iwea");
  REQUIRE(typo.code != 0);
  REQUIRE_THAT(typo.err, Contains("unknown metric 'iwea'") && Contains("did you mean 'iwae'?"));

  // score: one row per test image, −ELBO in nats.
  const Result scored = run_vaelab("score '" + run.string() + "' --out '" + (run / "scores.csv").string() + "'");
  INFO(scored.err);
  REQUIRE(scored.code == 0);
  std::ifstream csv(run / "scores.csv");
  std::string header;
  std::getline(csv, header);
  REQUIRE(header == "split,index,label,neg_elbo_nats");
  int rows = 0;
  double score_sum = 0;
  for (std::string line; std::getline(csv, line); ++rows) score_sum += std::stod(line.substr(line.rfind(',') + 1));
  REQUIRE(rows == 512);
  REQUIRE(-score_sum / rows == Approx(summary["elbo_test_nats"].get<double>()).epsilon(0.02));

  // A second run into the same folder is refused and the first run is untouched.
  const std::string before = slurp(run / "summary.json");
  const Result again = run_vaelab("train '" + config.string() + "' --out '" + run.string() + "'");
  REQUIRE(again.code != 0);
  REQUIRE_THAT(again.err, Contains("already holds a run"));
  REQUIRE(slurp(run / "summary.json") == before);
}

TEST_CASE("user errors are one line on stderr naming the place, and a non-zero exit", "[e2e]") {
  const fs::path typo = write_config("typo.toml", "[train]\nepochs = 2\nbatchsize = 3\n");
  Result r = run_vaelab("train '" + typo.string() + "'");
  REQUIRE(r.code != 0);
  REQUIRE_THAT(r.err, Contains(typo.string() + ":3:1") && Contains("did you mean 'batch_size'?"));
  REQUIRE(std::count(r.err.begin(), r.err.end(), '\n') == 1);

  const fs::path plugin_typo = write_config("plugin-typo.toml", "[model.config]\nhiden = [8]\n");
  r = run_vaelab("train '" + plugin_typo.string() + "'");
  REQUIRE(r.code != 0);
  REQUIRE_THAT(r.err, Contains("unknown key 'model.config.hiden'") && Contains("did you mean 'hidden'?"));

  const fs::path good = write_config("good.toml", kSmallRun);
  r = run_vaelab("train '" + good.string() + "' --set train.epochs=two");
  REQUIRE(r.code != 0);
  REQUIRE_THAT(r.err, Contains("--set train.epochs=two") && Contains("expected an integer"));

  r = run_vaelab("train '" + good.string() + "' --set model.plugin=vae-mpl");
  REQUIRE(r.code != 0);
  REQUIRE_THAT(r.err, Contains("no model plugin named 'vae-mpl'") && Contains("did you mean 'vae-mlp'?"));

  r = run_vaelab("train '" + (work_dir() / "missing.toml").string() + "'");
  REQUIRE(r.code != 0);
  REQUIRE_THAT(r.err, Contains("missing.toml: no such config file"));

  r = run_vaelab("train '" + good.string() + "' --set data.config.train_images=/nonexistent.gz");
  REQUIRE(r.code != 0);
  REQUIRE_THAT(r.err, Contains("/nonexistent.gz"));
  REQUIRE(r.err.find("terminate") == std::string::npos);
}

TEST_CASE("train on ppca-world reports its exact log-likelihood above the ELBO", "[e2e][ppca]") {
  const std::string world = R"(
[data]
plugin = "ppca-world"
[data.config]
height = 8
width = 8
latent = 4
noise = 0.1
train_size = 512
test_size = 256
[model]
plugin = "vae-mlp"
[model.config]
hidden = [64]
latent = 4
[likelihood]
name = "gaussian"
sigma = 0.1
[train]
epochs = 3
batch_size = 64
[eval]
every_epochs = 3
[eval.iwae]
every_epochs = 3
samples = 50
images = 64
)";
  const fs::path config = write_config("ppca.toml", world);
  const fs::path run = work_dir() / "run-ppca";
  const Result r = run_vaelab("train '" + config.string() + "' --out '" + run.string() + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  const json summary = json::parse(slurp(run / "summary.json"));
  REQUIRE(summary["dataset"] == "ppca-world");
  const double exact = summary["exact_log_likelihood_test_nats"].get<double>();
  REQUIRE(std::isfinite(exact));
  // No model beats the true density on average (Gibbs' inequality), and a bound sits below it.
  REQUIRE(summary["elbo_test_nats"].get<double>() < exact);
  REQUIRE(summary["iwae_exact_gap_nats"].get<double>() > 0);
  REQUIRE(!summary.contains("bits_per_dim_test"));  // a density on the reals is no code length

  // A likelihood that needs 8-bit or binary data is refused before the run folder exists.
  const Result bad = run_vaelab("train '" + config.string() + "' --set likelihood.name=mol --out '" +
                            (work_dir() / "run-ppca-mol").string() + "'");
  REQUIRE(bad.code != 0);
  REQUIRE_THAT(bad.err, Contains("continuous images") && Contains("gaussian"));
  REQUIRE(!fs::exists(work_dir() / "run-ppca-mol"));
}

TEST_CASE("every training regime trains, synthetic ones from a pool file", "[e2e][regimes]") {
  // A pool of 2 x 256 "synthetic" images: stripes, unlike any Fashion-MNIST image.
  const fs::path pool = work_dir() / "stripes.pool";
  {
    vaelab::PoolHeader header;
    header.generator = "test-stripes";
    header.generator_version = "1";
    header.config_hash = "0";
    header.provenance = "{}";
    header.channels = 1;
    header.height = 32;
    header.width = 32;
    vaelab::PoolWriter writer(pool.string(), header);
    vaelab::ImageSet images;
    images.count = 512;
    images.channels = 1;
    images.height = 32;
    images.width = 32;
    images.labels.assign(512, -1);
    std::vector<uint64_t> seeds(512);
    for (int64_t i = 0; i < 512; ++i) {
      seeds[static_cast<size_t>(i)] = static_cast<uint64_t>(i);
      for (int64_t p = 0; p < 1024; ++p) images.pixels.push_back(((p % 32) + i) % 8 < 4 ? 255 : 0);
    }
    writer.append(images, seeds);
    writer.commit();
  }
  const std::string base = std::string(R"(
[data]
plugin = "idx"
train_size = 256
test_size = 256
[model]
plugin = "vae-mlp"
[model.config]
hidden = [128]
[train]
epochs = 2
batch_size = 64
[eval]
every_epochs = 2
[generator]
pool = ")") + pool.string() + R"("
[train.synthetic]
k = 2
)";
  const fs::path config = write_config("regimes.toml", base);
  std::map<std::string, json> summaries;
  for (const std::string regime : {"normal", "augment-naive", "augment-tuned", "synthetic", "mixed"}) {
    const fs::path run = work_dir() / ("run-" + regime);
    const Result r = run_vaelab("train '" + config.string() + "' --set train.regime=" + regime + " --out '" +
                            run.string() + "'");
    INFO(regime << ": " << r.err);
    REQUIRE(r.code == 0);
    summaries[regime] = json::parse(slurp(run / "summary.json"));
    REQUIRE(summaries[regime]["regime"] == regime);
    REQUIRE(summaries[regime]["images_seen"] == 512);  // 2 effective epochs of |D_train| = 256
    REQUIRE(finite_number(summaries[regime]["elbo_test_nats"]));
  }
  REQUIRE(summaries["synthetic"]["synthetic_images"] == 512);
  REQUIRE(summaries["mixed"]["synthetic_images"] == 512);
  REQUIRE(summaries["normal"]["synthetic_images"] == 0);
  // Trained on stripes only, the VAE fits real test images far worse than one trained on them;
  // half real data recovers much of it.
  const double normal = summaries["normal"]["elbo_test_nats"].get<double>();
  const double synthetic = summaries["synthetic"]["elbo_test_nats"].get<double>();
  const double mixed = summaries["mixed"]["elbo_test_nats"].get<double>();
  REQUIRE(synthetic < normal - 50);
  REQUIRE(mixed > synthetic + 25);

  // score streams a pool file: to the VAE trained on real images, stripes are anomalies.
  const auto mean_score = [](const fs::path& csv_file, const std::string& split, int& rows) {
    std::ifstream csv(csv_file);
    std::string line;
    std::getline(csv, line);
    double sum = 0;
    rows = 0;
    for (; std::getline(csv, line);) {
      if (line.rfind(split + ",", 0) != 0) continue;
      sum += std::stod(line.substr(line.rfind(',') + 1));
      ++rows;
    }
    return sum / std::max(rows, 1);
  };
  const fs::path normal_run = work_dir() / "run-normal";
  const Result pooled = run_vaelab("score '" + normal_run.string() + "' --data '" + pool.string() +
                                   "' --out '" + (normal_run / "pool-scores.csv").string() + "'");
  INFO(pooled.err);
  REQUIRE(pooled.code == 0);
  const Result tested = run_vaelab("score '" + normal_run.string() + "' --out '" +
                                   (normal_run / "test-scores.csv").string() + "'");
  REQUIRE(tested.code == 0);
  int pool_rows = 0;
  int test_rows = 0;
  const double pool_score = mean_score(normal_run / "pool-scores.csv", "pool", pool_rows);
  const double test_score = mean_score(normal_run / "test-scores.csv", "test", test_rows);
  REQUIRE(pool_rows == 512);
  REQUIRE(test_rows == 256);
  REQUIRE(pool_score > test_score + 100);
  const Result not_pool = run_vaelab("score '" + normal_run.string() + "' --data '" + kFashion +
                                     "' --out '" + (normal_run / "x.csv").string() + "'");
  REQUIRE(not_pool.code != 0);
  REQUIRE_THAT(not_pool.err, Contains(kFashion));

  // A pool too small for k, and a synthetic regime with no source, are refused up front.
  const Result small = run_vaelab("train '" + config.string() + "' --set train.regime=synthetic --set train.synthetic.k=3 --out '" +
                              (work_dir() / "run-k3").string() + "'");
  REQUIRE(small.code != 0);
  REQUIRE_THAT(small.err, Contains("holds 512 images") && Contains("k = 3"));
  const Result none = run_vaelab("train '" + write_config("nogen.toml", kSmallRun).string() +
                             "' --set train.regime=synthetic --out '" + (work_dir() / "run-nogen").string() + "'");
  REQUIRE(none.code != 0);
  REQUIRE_THAT(none.err, Contains("generator.pool"));
  const Result typo = run_vaelab("train '" + config.string() + "' --set train.regime=synthetc --out '" +
                             (work_dir() / "run-typo").string() + "'");
  REQUIRE(typo.code != 0);
  REQUIRE_THAT(typo.err, Contains("did you mean 'synthetic'?"));
}
