// Stage 5, evaluation of a finished run (docs/architecture.md): `vaelab eval` reopens the run's
// session and checkpoint and runs the Evaluator's metrics; `vaelab score` writes per-image −ELBO
// (or −IWAE) of any dataset or sample pool, one batch at a time.
#include <vaelab/train/run.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <memory>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/io/pool.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/metrics/iwae.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/session.hpp>

namespace fs = std::filesystem;

namespace vaelab {

nlohmann::json eval_run(const fs::path& run_dir, const std::vector<std::string>& metrics,
                        const std::vector<std::string>& overrides) {
  check_metric_names(metrics);
  for (const std::string& o : overrides) {
    if (parse_override(o).key.rfind("eval.", 0) != 0) {
      throw ConfigError("--set " + o + ": vaelab eval changes only eval.* keys (how the run is measured); the "
                        "model, data and backend are the run's own");
    }
  }
  const RunStore store = RunStore::open(run_dir);
  const RunConfig config = RunConfig::load(store.config_path(), overrides);
  Session s = open_session(config);
  const fs::path checkpoint = store.checkpoint_path("last");
  if (!fs::exists(checkpoint)) throw Error(checkpoint.string() + ": no checkpoint to evaluate");
  load_module_state(s.model->module(), load_safetensors(checkpoint), checkpoint.string());
  nlohmann::json out = make_evaluator(config, s).run(metrics, eval_data(s));
  out["run"] = run_dir.string();
  out["params_total"] = s.params_total;
  out["params_latent_adjacent"] = s.params_latent_adjacent;
  return out;
}

int64_t score_run(const fs::path& run_dir, const fs::path& data_file, const ScoreOptions& options,
                  const fs::path& out_csv) {
  if (options.metric != "elbo" && options.metric != "iwae") {
    throw ConfigError("--metric: '" + options.metric + "' is not one of elbo, iwae");
  }
  if (options.split != "test" && options.split != "train" && options.split != "all") {
    throw ConfigError("--split: '" + options.split + "' is not one of test, train, all");
  }
  const RunStore store = RunStore::open(run_dir);
  toml::table table = read_toml_file(store.config_path());
  // --data names either a TOML file with a [data] table or a sample pool file.
  fs::path pool_file;
  if (!data_file.empty() && data_file.extension() != ".toml") {
    pool_file = data_file;
  } else if (!data_file.empty()) {
    const toml::table given = read_toml_file(data_file);
    for (const auto& [key, node] : given) {
      if (key.str() != "data") {
        throw ConfigError(data_file.string() + ": only a [data] table belongs here, found '" +
                          std::string(key.str()) + "'");
      }
    }
    const toml::table* data = given["data"].as_table();
    if (data == nullptr) throw ConfigError(data_file.string() + ": no [data] table");
    table.insert_or_assign("data", *data);
  }
  const RunConfig config = RunConfig::resolve(table, {});
  // The data stay as stored (8-bit, or a memory-mapped pool); each batch is converted to float
  // when it is scored, so float memory is bounded by eval.batch_size images.
  Session s = open_session(config, /*preprocess=*/false);
  const fs::path checkpoint = store.checkpoint_path("last");
  if (!fs::exists(checkpoint)) throw Error(checkpoint.string() + ": no checkpoint to score with");
  load_module_state(s.model->module(), load_safetensors(checkpoint), checkpoint.string());
  std::unique_ptr<PoolReader> pool;
  if (!pool_file.empty()) {
    const ImageSet& trained = s.dataset.train;
    if (trained.continuous()) {
      throw ConfigError(pool_file.string() + ": the run was trained on continuous images; an "
                        "8-bit pool cannot be scored with it");
    }
    pool = std::make_unique<PoolReader>(pool_file.string());
    const PoolHeader& h = pool->header();
    if (h.channels != trained.channels || h.height != trained.height || h.width != trained.width) {
      throw Error(pool_file.string() + ": pool images are " + std::to_string(h.channels) + "x" +
                  std::to_string(h.height) + "x" + std::to_string(h.width) + " but the run's model takes " +
                  std::to_string(trained.channels) + "x" + std::to_string(trained.height) + "x" +
                  std::to_string(trained.width));
    }
  }

  const ConfigTable eval = config.section("eval");
  const int64_t batch = eval.get_int_in("batch_size", 1, INT64_MAX);
  const int64_t samples = options.samples > 0 ? options.samples
                          : options.metric == "iwae"
                              ? eval.sub("iwae").get_int_in("samples", 1, INT64_MAX)
                              : eval.get_int_in("elbo_samples", 1, INT64_MAX);
  const int64_t chunk = eval.sub("iwae").get_int_in("chunk", 1, INT64_MAX);
  const std::string binarize = config.section("data").get_string("binarize");
  const torch::Device device = s.backend->device();
  s.model->module().eval();
  at::Generator generator =
      shim::make_cpu_generator(static_cast<uint64_t>(config.section("train").get_int("seed")) + 5);
  const double dims = static_cast<double>(s.dataset.train.image_bytes());
  const bool bits = s.likelihood->discrete();

  const fs::path tmp = out_csv.string() + ".tmp";
  std::ofstream out(tmp);
  if (!out) throw Error(tmp.string() + ": cannot write");
  out << "split,index,label,neg_" << options.metric << "_nats" << (bits ? ",bits_per_dim" : "")
      << "\n";
  out.precision(10);
  int64_t rows = 0;
  // Scores images [0, count) of one split; `load(start, n)` gives a float batch.
  const auto score_split = [&](const char* name, int64_t count,
                               const std::function<torch::Tensor(int64_t, int64_t)>& load,
                               const std::vector<int64_t>& labels) {
    for (int64_t start = 0; start < count; start += batch) {
      const int64_t end = std::min(count, start + batch);
      const torch::Tensor x = load(start, end - start).to(device);
      torch::NoGradGuard no_grad;
      const torch::Tensor score =
          options.metric == "iwae"
              ? -iwae_bound(*s.model, *s.likelihood, x, samples, chunk, &generator)
              : -elbo_terms(*s.model, *s.likelihood, x, samples, &generator).elbo;
      const torch::Tensor cpu = score.to(torch::kCPU, torch::kFloat64).contiguous();
      const double* v = cpu.data_ptr<double>();
      for (int64_t i = 0; i < end - start; ++i) {
        const int64_t index = start + i;
        out << name << "," << index << ","
            << (static_cast<size_t>(index) < labels.size() ? labels[static_cast<size_t>(index)] : -1)
            << "," << v[i];
        if (bits) out << "," << v[i] / (dims * std::log(2.0));
        out << "\n";
        ++rows;
      }
    }
  };
  const auto from_split = [&](const ImageSet& images) {
    return [&images, &binarize](int64_t start, int64_t n) {
      return to_float_range(images, start, n, binarize);
    };
  };
  if (pool) {
    const PoolReader& reader = *pool;
    score_split("pool", reader.count(),
                [&reader, &binarize](int64_t start, int64_t n) {
                  const PoolHeader& h = reader.header();
                  return bytes_to_float(reader.image(start), n, h.channels, h.height, h.width, binarize);
                },
                {});
  } else {
    if (options.split != "train") {
      score_split("test", s.dataset.test.count, from_split(s.dataset.test), s.test_labels);
    }
    if (options.split != "test") {
      score_split("train", s.dataset.train.count, from_split(s.dataset.train), s.dataset.train.labels);
    }
  }
  out.close();
  if (!out) throw Error(tmp.string() + ": write failed");
  std::error_code ec;
  fs::rename(tmp, out_csv, ec);
  if (ec) throw Error(out_csv.string() + ": cannot move the scores into place: " + ec.message());
  return rows;
}

}  // namespace vaelab
