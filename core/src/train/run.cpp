// Stage 4 of a run, the training run (docs/architecture.md): the session (train/session.cpp) and
// the synthetic data (train/synthetic_data.cpp) feed the training stream
// (train/training_stream.cpp); the Trainer (train/trainer.cpp) trains on its batches and
// evaluates (metrics/evaluator.cpp); the run folder (io/run_store.cpp) receives config.toml,
// metrics.jsonl, checkpoints, train.log, and at the end summary.json and the image grids.
#include <vaelab/train/run.hpp>

#include <algorithm>
#include <ctime>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/build_info.h>
#include <vaelab/cpu.hpp>
#include <vaelab/error.hpp>
#include <vaelab/gen/pixels.hpp>
#include <vaelab/io/image_grid.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/log.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/checkpoint.hpp>
#include <vaelab/train/distributed.hpp>
#include <vaelab/train/session.hpp>
#include <vaelab/train/synthetic_data.hpp>
#include <vaelab/train/trainer.hpp>
#include <vaelab/train/training_stream.hpp>

namespace fs = std::filesystem;

namespace vaelab {
namespace {

TrainOptions train_options(const RunConfig& config) {
  const ConfigTable train = config.section("train");
  TrainOptions o;
  o.epochs = train.get_int_in("epochs", 1, 1000000);
  o.lr = train.get_double("lr");
  o.fused_adam = train.get_choice("optimizer", {"adam-fused", "adam"}) == "adam-fused";
  o.eval_every_epochs = config.section("eval").get_int_in("every_epochs", 1, 1000000);
  const ConfigTable checkpoint = train.sub("checkpoint");
  o.checkpoint.every_epochs = checkpoint.get_int_in("every_epochs", 0, 1000000);
  o.checkpoint.every_steps = checkpoint.get_int_in("every_steps", 0, INT64_MAX);
  o.checkpoint.every_minutes = checkpoint.get_double("every_minutes");
  if (!(o.checkpoint.every_minutes >= 0)) {
    throw ConfigError(checkpoint.key_path("every_minutes") + ": must be 0 (off) or more");
  }
  const ConfigTable nonfinite = train.sub("nonfinite");
  o.nonfinite = nonfinite.get_choice("policy", {"stop", "skip"}) == "skip" ? NonfinitePolicy::skip
                                                                            : NonfinitePolicy::stop;
  o.max_skips_in_row = nonfinite.get_int_in("max_skips_in_row", 1, 1000000);
  return o;
}

/// What augmented images are brought back to: the grid the likelihood needs.
PixelGrid pixel_grid(const RunConfig& config, const Likelihood& likelihood) {
  if (config.section("data").get_string("binarize") == "threshold") return PixelGrid::binary;
  return likelihood.discrete() ? PixelGrid::bytes : PixelGrid::continuous;
}

/// samples.png (64 decodes of z ~ N(0, I), the likelihood's mean) and reconstructions.png (rows
/// of 8 test images, each followed by a row of their reconstructions from the posterior mean):
/// what a person looks at first, and what a study's report shows.
void write_run_grids(Session& s, const fs::path& dir, uint64_t seed) {
  if (s.test.size(1) != 1 && s.test.size(1) != 3) return;  // no picture of other channel counts
  torch::nn::Module& module = s.model->module();
  const bool was_training = module.is_training();
  module.eval();
  torch::NoGradGuard no_grad;
  at::Generator generator = shim::make_cpu_generator(seed);
  std::vector<int64_t> shape = {64};
  for (int64_t d : s.model->latent_shape()) shape.push_back(d);
  const torch::Tensor z =
      shim::randn(shape, torch::TensorOptions().device(s.backend->device()), &generator);
  write_image_grid(dir / "samples.png", unit_to_image_set(s.likelihood->mean(s.model->decode(z))));

  const int64_t n = std::min<int64_t>(32, s.test.size(0));
  const torch::Tensor x = s.test.slice(0, 0, n).to(s.backend->device());
  const torch::Tensor recon = s.likelihood->mean(s.model->decode(s.model->encode(x).mean)).to(torch::kCPU);
  std::vector<torch::Tensor> rows;
  for (int64_t start = 0; start < n; start += 8) {
    const int64_t end = std::min(n, start + 8);
    rows.push_back(x.slice(0, start, end).to(torch::kCPU));
    rows.push_back(recon.slice(0, start, end));
  }
  write_image_grid(dir / "reconstructions.png", unit_to_image_set(torch::cat(rows)));
  if (was_training) module.train();
}

fs::path default_run_dir(const fs::path& config_file) {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &utc);
  const fs::path base = fs::path("runs") / (config_file.stem().string() + "-" + stamp);
  fs::path dir = base;
  for (int i = 2; fs::exists(dir); ++i) dir = base.string() + "-" + std::to_string(i);
  return dir;
}

/// `vaelab train` and `vaelab train --resume`: builds the session and the stream from `config`,
/// then makes the run folder `dir` (new) or reopens it (`resume`), and trains.
fs::path run_training(const RunConfig& config, const fs::path& dir, const TrainingCheckpoint* resume) {
  const TrainOptions options = train_options(config);
  const ConfigTable train_cfg = config.section("train");
  const std::string regime = train_cfg.get_string("regime");
  const int64_t batch_size = train_cfg.get_int_in("batch_size", 1, 1 << 20);
  const DistributedEnv env = DistributedEnv::from_environment();
  const DistributedOptions dist_options = DistributedOptions::from_config(train_cfg.sub("distributed"));
  if (batch_size % env.world_size != 0) {
    throw ConfigError("train.batch_size = " + std::to_string(batch_size) + " is the batch of all " +
                      std::to_string(env.world_size) + " processes together and must divide evenly among them "
                      "(each takes batch_size / world size images)");
  }

  // ---- the session: backend, likelihood, data → preprocessing, model (train/session.cpp) --
  Session s = open_session(config);

  // ---- data-parallel: join the group (docs/distributed.md); rank 0 alone writes the run folder --
  std::unique_ptr<Distributed> dist;
  if (env.world_size > 1) {
    dist = std::make_unique<Distributed>(env, dist_options, s.backend->device());
    dist->check_same("resolved config", config.to_toml());
  }
  const bool writes = dist == nullptr || dist->writes_results();
  // Data-parallel: a rank that fails while setting up tells the others at the agreement point, so
  // none waits for it; one that fails while training leaves its error for the others' messages.
  bool setup_agreed = false;
  try {
    // ---- the training stream: real images from the session, synthetic ones from a pool or a
    // generator (train/synthetic_data.cpp) --
    StreamInputs inputs;
    inputs.regime = regime;
    inputs.train = s.train;
    inputs.batch_size = batch_size;
    inputs.seed = static_cast<uint64_t>(train_cfg.get_int("seed"));
    inputs.grid = pixel_grid(config, *s.likelihood);
    SyntheticData synthetic = open_synthetic_data(config, s, options.epochs);
    inputs.synthetic = synthetic.images;
    inputs.producer = synthetic.producer;
    inputs.first_seed = synthetic.first_seed;
    // Where every training batch comes from: the regime's stream over real (and synthetic) images.
    auto stream = make_training_stream(inputs, train_cfg);
    if (dist) stream->set_shard(dist->rank(), dist->world_size());
    const Evaluator evaluator = make_evaluator(config, s);

    // Only now, with everything checked, the run folder is made (or reopened: its metrics.jsonl is
    // cut back to the checkpoint's records).
    std::unique_ptr<RunStore> store;
    if (writes) {
      store = std::make_unique<RunStore>(resume != nullptr ? RunStore::resume(dir, resume->info["metrics"])
                                                           : RunStore::create(dir));
      if (resume == nullptr) store->write_config(config.to_toml());
      add_log_file(store->log_path());
    }
    setup_agreed = true;
    if (dist) dist->agree("setting up the run", "");
    logger().info("{} {}", resume != nullptr ? "resuming run" : "run folder", dir.string());
    logger().info("model {}: {} parameters ({} in the layers touching z)", config.plugin("model"),
                  s.params_total, s.params_latent_adjacent);
    if (dist) {
      logger().info("data-parallel: {} processes, {} images per process of each batch of {}", dist->world_size(),
                    batch_size / dist->world_size(), batch_size);
    }

    // ---- training: each batch trained on, evaluated on schedule, metrics and checkpoints written
    // into the run folder (train/trainer.cpp) --
    Trainer trainer(*s.model, *s.likelihood, *s.backend, options, dist.get());
    const TrainResult r = trainer.fit(*stream, evaluator, eval_data(s), store.get(), resume);
    if (!writes) return dir;  // data-parallel: rank 0 writes the results

    // ---- summary.json: the last evaluation's metrics, then what describes the run --
    nlohmann::json summary = r.last_eval;
    for (const char* per_point : {"epoch", "seconds", "train_seconds", "images_seen", "regime"}) {
      summary.erase(per_point);
    }
    if (dist) {  // data-parallel: processes that trained it, and rank 0's time in the all-reduce
      summary["world_size"] = dist->world_size();
      summary["allreduce_seconds"] = dist->gradient_seconds();
    }
    summary.update({
        {"elbo_trained_on_nats", r.elbo_trained_on_nats},
        {"params_total", s.params_total},
        {"params_latent_adjacent", s.params_latent_adjacent},
        {"params_other", s.params_total - s.params_latent_adjacent},
        {"epochs", r.epochs},
        {"images_seen", r.images_seen},
        {"train_seconds", r.train_seconds},
        {"eval_seconds", r.eval_seconds},
        {"train_images_per_second", static_cast<double>(r.images_seen) / std::max(r.train_seconds, 1e-9)},
        {"nonfinite_skipped_steps", r.nonfinite_skipped_steps},
        {"checkpoint_seconds", r.checkpoint_seconds},
        {"checkpoints_written", r.checkpoints_written},
        {"checkpoint_bytes", r.checkpoint_bytes},
        {"regime", regime},
        {"synthetic_images", synthetic.count},
        {"synthetic_source", synthetic.source},
        {"synthetic_seconds", synthetic.seconds},
        {"model", config.plugin("model")},
        {"likelihood", s.likelihood->name()},
        {"dataset", s.dataset.name},
        {"train_size", s.dataset.train.count},
        {"test_size", s.dataset.test.count},
        {"backend", config.plugin("backend")},
        {"threads", s.backend->threads()},
        {"backend_description", s.backend->describe()},
        {"cpu_isa", cpu_isa_name(cpu_features())},
        {"blas_core", blas_core_name()},
        {"vaelab_version", VAELAB_VERSION},
        {"torch_version", shim::torch_version()},
    });
    store->write_summary(summary);
    write_run_grids(s, dir, static_cast<uint64_t>(train_cfg.get_int("seed")) + 7);
    logger().info("done: ELBO train {:.2f}, test {:.2f} nats; {:.0f} images/s; results in {}",
                  summary["elbo_train_nats"].get<double>(), summary["elbo_test_nats"].get<double>(),
                  summary["train_images_per_second"].get<double>(), dir.string());
    return dir;
  } catch (const std::exception& e) {
    if (dist && !setup_agreed) dist->agree("setting up the run", e.what());
    if (dist && setup_agreed) dist->report_failure(e.what());
    throw;
  }
}

/// The first line where two TOML texts differ, with the [table] it is in.
std::string first_difference(const std::string& a, const std::string& b) {
  std::istringstream in_a(a), in_b(b);
  std::string line_a, line_b, table;
  while (true) {
    const bool more_a = static_cast<bool>(std::getline(in_a, line_a));
    const bool more_b = static_cast<bool>(std::getline(in_b, line_b));
    if (!more_a && !more_b) return "";
    if (!more_a) line_a.clear();
    if (!more_b) line_b.clear();
    if (line_a != line_b) {
      return (table.empty() ? "" : "in " + table + ": ") + "the run has '" + line_a + "', the given config '" + line_b + "'";
    }
    if (!line_a.empty() && line_a[0] == '[') table = line_a;
  }
}

}  // namespace

fs::path train_run(const fs::path& config_file, const std::vector<std::string>& overrides,
                   const fs::path& out_dir) {
  const LogCaptureScope log_capture;  // train.log gets the lines from before its folder existed
  const RunConfig config = RunConfig::load(config_file, overrides);
  return run_training(config, out_dir.empty() ? default_run_dir(config_file) : out_dir, nullptr);
}

fs::path resume_run(const fs::path& run_dir, const fs::path& config_file,
                    const std::vector<std::string>& overrides) {
  const LogCaptureScope log_capture;
  const RunStore store = RunStore::open(run_dir);
  std::error_code ec;
  if (fs::exists(store.summary_path(), ec)) {
    throw Error(run_dir.string() + ": the run is finished (" + store.summary_path().string() +
                " exists); nothing to resume");
  }
  const fs::path checkpoint = store.checkpoint_path("last");
  if (!fs::exists(checkpoint, ec)) {
    throw Error(run_dir.string() + ": no checkpoint to resume from (" + checkpoint.string() +
                "): the run stopped before its first one; start it again");
  }
  const TrainingCheckpoint state = read_training_checkpoint(checkpoint);
  const RunConfig config = RunConfig::load(store.config_path(), {});
  if (!config_file.empty() || !overrides.empty()) {
    // The run continues with the config it started with; a config given again must resolve to it.
    const fs::path given_file = config_file.empty() ? store.config_path() : config_file;
    RunConfig given = RunConfig::load(given_file, overrides);
    if (given.backend_chosen_by_auto() && given.plugin("backend") != config.plugin("backend")) {
      // "auto" stands for the backend the run chose when it started, whatever it would choose now.
      std::vector<std::string> pinned = overrides;
      pinned.push_back("backend.plugin=" + config.plugin("backend"));
      given = RunConfig::load(given_file, pinned);
    }
    const std::string difference = first_difference(format_toml(config.table()), format_toml(given.table()));
    if (!difference.empty()) {
      throw ConfigError("--resume " + run_dir.string() + ": the run continues with its own " +
                        store.config_path().string() + " and the config given differs (" + difference +
                        "); leave out the config and --set, or start a new run");
    }
  }
  return run_training(config, run_dir, &state);
}

}  // namespace vaelab
