#include <vaelab/compress/run_codec.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/build_info.h>
#include <vaelab/compress/baselines.hpp>
#include <vaelab/compress/container.hpp>
#include <vaelab/compress/quantize.hpp>
#include <vaelab/config.hpp>
#include <vaelab/io/pool.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/log.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/run.hpp>
#include <vaelab/train/session.hpp>

namespace fs = std::filesystem;

namespace vaelab::compress {

TorchCodingModel::TorchCodingModel(Model& model, const CodecSettings& settings, bool binary)
    : model_(model), settings_(settings), binary_(binary), latent_shape_(model.latent_shape()) {
  int64_t dims = 1;
  for (int64_t s : latent_shape_) dims *= s;
  if (dims != settings.latent_dims) {
    throw Error("the model's latent code has " + std::to_string(dims) + " dimensions, the coder expects " +
                std::to_string(settings.latent_dims));
  }
}

void TorchCodingModel::posterior(const uint8_t* symbols, int64_t n, float* mean, float* log_var) {
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::from_blob(const_cast<uint8_t*>(symbols),
                                     {n, settings_.channels, settings_.height, settings_.width}, torch::kUInt8)
                        .to(torch::kFloat32);
  if (!binary_) x.div_(255.0);
  const Posterior q = model_.encode(x);
  const auto count = static_cast<size_t>(n * settings_.latent_dims);
  const torch::Tensor m = q.mean.to(torch::kCPU, torch::kFloat32).contiguous();
  const torch::Tensor v = q.log_var.to(torch::kCPU, torch::kFloat32).contiguous();
  if (static_cast<size_t>(m.numel()) != count || static_cast<size_t>(v.numel()) != count) {
    throw Error("the model's encoder returned " + std::to_string(m.numel()) + " numbers for " + std::to_string(n) +
                " images of " + std::to_string(settings_.latent_dims) + " latent dimensions");
  }
  std::memcpy(mean, m.data_ptr<float>(), count * sizeof(float));
  std::memcpy(log_var, v.data_ptr<float>(), count * sizeof(float));
}

void TorchCodingModel::likelihood_params(const float* z, int64_t n, float* params) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), latent_shape_.begin(), latent_shape_.end());
  const torch::Tensor zt = torch::from_blob(const_cast<float*>(z), shape, torch::kFloat32);
  const torch::Tensor out = model_.decode(zt).to(torch::kCPU, torch::kFloat32).contiguous();
  const auto count = static_cast<size_t>(n * settings_.param_channels() * settings_.height * settings_.width);
  if (static_cast<size_t>(out.numel()) != count) {
    throw Error("the model's decoder returned " + std::to_string(out.numel()) + " numbers where " +
                std::to_string(count) + " likelihood parameters are needed");
  }
  std::memcpy(params, out.data_ptr<float>(), count * sizeof(float));
}

uint64_t weights_hash(torch::nn::Module& module) {
  uint64_t h = kFnvBasis;
  for (const auto& [name, tensor] : module_state(module)) {
    h = fnv1a(h, name.data(), name.size() + 1);
    const torch::Tensor t = tensor.to(torch::kCPU).contiguous();
    for (int64_t s : t.sizes()) h = fnv1a(h, &s, sizeof s);
    h = fnv1a(h, t.data_ptr(), static_cast<uint64_t>(t.numel()) * t.element_size());
  }
  return h;
}

uint64_t numerics_hash(CodingModel& model, const CodecSettings& s, int64_t batch) {
  RandomWords random(0x5eed);
  std::vector<uint8_t> symbols(static_cast<size_t>(batch * s.image_symbols()));
  const bool binary = s.likelihood == LikelihoodKind::bernoulli;
  for (auto& v : symbols) v = static_cast<uint8_t>(binary ? random.next() >> 31 : random.next() >> 24);
  std::vector<float> mean(static_cast<size_t>(batch * s.latent_dims)), log_var(mean.size()), z(mean.size());
  model.posterior(symbols.data(), batch, mean.data(), log_var.data());
  const GaussianBuckets buckets(s.latent_precision);
  for (auto& v : z) v = buckets.centre(random.next() >> (32 - s.latent_precision));
  std::vector<float> params(static_cast<size_t>(batch * s.param_channels() * s.height * s.width));
  model.likelihood_params(z.data(), batch, params.data());
  uint64_t h = fnv1a(kFnvBasis, mean.data(), mean.size() * sizeof(float));
  h = fnv1a(h, log_var.data(), log_var.size() * sizeof(float));
  return fnv1a(h, params.data(), params.size() * sizeof(float));
}

namespace {

using Clock = std::chrono::steady_clock;

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

/// The run's config with the coding path's backend (torch-cpu, one thread), the given [data]
/// table (keeping the run's data.binarize: the model's preprocessing) and --set compress.* keys.
RunConfig coding_config(const RunStore& store, const toml::table* data, const std::vector<std::string>& sets) {
  toml::table table = read_toml_file(store.config_path());
  toml::table backend_config;
  backend_config.insert_or_assign("threads", 1);
  backend_config.insert_or_assign("blas_threads", 1);
  toml::table backend;
  backend.insert_or_assign("plugin", "torch-cpu");
  backend.insert_or_assign("config", backend_config);
  table.insert_or_assign("backend", backend);
  if (data != nullptr) {
    toml::table given = *data;
    const toml::table* run_data = table["data"].as_table();
    const auto binarize = run_data != nullptr ? (*run_data)["binarize"].value<std::string>() : std::nullopt;
    given.insert_or_assign("binarize", binarize.value_or("none"));
    table.insert_or_assign("data", given);
  }
  for (const std::string& s : sets) {
    if (s.rfind("compress.", 0) != 0) {
      throw ConfigError("--set " + s + ": only compress.* keys can be set here (the model is the run's)");
    }
  }
  return RunConfig::resolve(table, sets);
}

/// The coder's settings from the run's [likelihood] and [compress] sections; refuses what cannot
/// be coded, saying why and what to use.
CodecSettings codec_settings(const RunConfig& config, const std::string& run) {
  const ConfigTable lik = config.section("likelihood");
  const std::string name = lik.get_choice("name", {"bernoulli", "gaussian", "mol"});
  const std::string binarize = config.section("data").get_choice("binarize", {"none", "threshold"});
  CodecSettings s;
  if (name == "gaussian") {
    throw ConfigError(run + ": likelihood.name = \"gaussian\" cannot code images: a density on continuous "
                            "values gives no code length (no probability) for a pixel value. Train the run with "
                            "likelihood.name = \"mol\" for 8-bit images, or \"bernoulli\" with data.binarize = "
                            "\"threshold\" for binary ones");
  }
  if (name == "bernoulli") {
    if (binarize != "threshold") {
      throw ConfigError(run + ": likelihood.name = \"bernoulli\" needs data.binarize = \"threshold\"");
    }
    s.likelihood = LikelihoodKind::bernoulli;
  } else {
    s.likelihood = LikelihoodKind::mol;
    s.mixtures = static_cast<int>(lik.get_int_in("mixtures", 1, 1024));
  }
  const ConfigTable c = config.section("compress");
  s.latent_precision = static_cast<int>(c.get_int_in("latent_precision", 1, 16));
  s.posterior_precision = static_cast<int>(c.get_int_in("posterior_precision", 2, 31));
  s.likelihood_precision = static_cast<int>(c.get_int_in("likelihood_precision", 1, 31));
  s.lanes = c.get_int_in("lanes", 1, 65536);
  return s;
}

/// The run's model on the coding path's backend, with its last checkpoint's weights.
struct LoadedModel {
  PluginPtr<Backend> backend;
  PluginPtr<Model> model;
  uint64_t hash = 0;
};

LoadedModel load_model(const RunConfig& config, const RunStore& store, const CodecSettings& s,
                       const std::string& run) {
  LoadedModel m;
  const Registry& registry = config.registry();
  m.backend = registry.create<Backend>(config.plugin("backend"), config.plugin_config("backend"));
  m.backend->apply_threads();
  torch::manual_seed(static_cast<uint64_t>(config.section("train").get_int("seed")));
  m.model = registry.create<Model>(config.plugin("model"), config.plugin_config("model"));
  ModelSpec spec{s.channels, s.height, s.width, s.param_channels()};
  m.model->build(spec, *m.backend);
  m.model->module().to(torch::kCPU);
  const fs::path checkpoint = store.checkpoint_path("last");
  if (!fs::exists(checkpoint)) throw Error(checkpoint.string() + ": no checkpoint to code with");
  try {
    load_module_state(m.model->module(), load_safetensors(checkpoint), checkpoint.string());
  } catch (const Error& e) {
    throw Error(run + ": the run's model does not take images of " + std::to_string(s.channels) + "x" +
                std::to_string(s.height) + "x" + std::to_string(s.width) + ": " + e.what());
  }
  m.model->module().eval();
  m.hash = weights_hash(m.model->module());
  return m;
}

int64_t latent_dims_of(Model& model) {
  int64_t d = 1;
  for (int64_t v : model.latent_shape()) d *= v;
  return d;
}

/// The images to code as symbols: binary 0/1 for a Bernoulli run, else the 8-bit values (0/255
/// when the run binarizes). Sets `binary_one` to the byte a 1 is written back as.
std::vector<uint8_t> to_symbols(const ImageSet& images, const CodecSettings& s, bool binarized,
                                uint8_t& binary_one, std::string& note) {
  std::vector<uint8_t> out(images.pixels);
  if (s.likelihood == LikelihoodKind::bernoulli) {
    bool zero_one = true, zero_255 = true;
    for (uint8_t v : out) {
      zero_one = zero_one && v <= 1;
      zero_255 = zero_255 && (v == 0 || v == 255);
    }
    if (zero_one) {
      binary_one = 1;
    } else {
      binary_one = 255;
      if (!zero_255) note = "8-bit images were binarized (pixel >= 128 → 1) as the run's data.binarize does";
      for (auto& v : out) v = v >= 128 ? 1 : 0;
    }
  } else {
    binary_one = 0;
    if (binarized) {
      for (auto& v : out) v = v >= 128 ? 255 : 0;
      note = "8-bit images were binarized (pixel >= 128 → 255) as the run's data.binarize does";
    }
  }
  return out;
}

/// Mean −ELBO in bits per dimension of the symbols under the model (eval.elbo_samples samples).
double neg_elbo_bits_per_dim(Model& model, const RunConfig& config, const std::vector<uint8_t>& symbols,
                             const CodecSettings& s) {
  torch::NoGradGuard no_grad;
  const std::unique_ptr<Likelihood> likelihood = make_likelihood(config.section("likelihood"));
  const ConfigTable eval = config.section("eval");
  const int64_t batch = eval.get_int_in("batch_size", 1, INT64_MAX);
  const int64_t samples = eval.get_int_in("elbo_samples", 1, INT64_MAX);
  at::Generator noise = shim::make_cpu_generator(static_cast<uint64_t>(config.section("train").get_int("seed")) + 5);
  const int64_t image = s.image_symbols();
  const auto count = static_cast<int64_t>(symbols.size()) / image;
  double total = 0;
  for (int64_t first = 0; first < count; first += batch) {
    const int64_t n = std::min(batch, count - first);
    torch::Tensor x = torch::from_blob(const_cast<uint8_t*>(symbols.data()) + first * image,
                                       {n, s.channels, s.height, s.width}, torch::kUInt8)
                          .to(torch::kFloat32);
    if (s.likelihood != LikelihoodKind::bernoulli) x.div_(255.0);
    total -= elbo_terms(model, *likelihood, x, samples, &noise).elbo.to(torch::kFloat64).sum().item<double>();
  }
  return total / (static_cast<double>(count * image) * std::log(2.0));
}

/// uint8 [N, C, H, W] as a .npy file (format 1.0), written through a temporary file.
void write_npy(const fs::path& path, const std::vector<uint8_t>& data, int64_t n, const CodecSettings& s) {
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': (" + std::to_string(n) + ", " +
                       std::to_string(s.channels) + ", " + std::to_string(s.height) + ", " +
                       std::to_string(s.width) + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::vector<uint8_t> bytes = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  bytes.push_back(static_cast<uint8_t>(header.size() & 0xff));
  bytes.push_back(static_cast<uint8_t>(header.size() >> 8));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  write_file_atomically(path.string(), bytes);
}

}  // namespace

nlohmann::json compress_run(const fs::path& run_dir, const CompressOptions& options) {
  if (options.data_config.empty() == options.images.empty()) {
    throw ConfigError("compress: give exactly one of --data CONFIG and --images NPY|POOL");
  }
  if (options.split != "test" && options.split != "train") {
    throw ConfigError("--split: '" + options.split + "' is not one of test, train");
  }
  if (options.out.empty()) throw ConfigError("compress: --out FILE is required");
  const std::string run = run_dir.string();
  const RunStore store = RunStore::open(run_dir);

  // The images, as stored (8-bit).
  ImageSet images;
  std::string source;
  std::unique_ptr<RunConfig> config;
  const bool is_pool = !options.images.empty() && options.images.extension() != ".npy";
  if (is_pool) {
    config = std::make_unique<RunConfig>(coding_config(store, nullptr, options.sets));
    const PoolReader pool(options.images.string());
    images = pool.read(0, pool.count());
    source = options.images.string() + " (pool, " + std::to_string(images.count) + " images)";
  } else {
    toml::table data;
    if (!options.images.empty()) {
      toml::table npy;
      npy.insert_or_assign("train", options.images.string());
      npy.insert_or_assign("test", options.images.string());
      data.insert_or_assign("plugin", "npy");
      data.insert_or_assign("config", npy);
      source = options.images.string();
    } else {
      const toml::table given = read_toml_file(options.data_config);
      const toml::table* table = given["data"].as_table();
      if (table == nullptr) throw ConfigError(options.data_config.string() + ": no [data] table");
      data = *table;
      source = options.data_config.string() + " (" + options.split + " split)";
    }
    config = std::make_unique<RunConfig>(coding_config(store, &data, options.sets));
    OpenedData opened = open_dataset(*config);
    images = std::move(!options.images.empty() || options.split == "test" ? opened.dataset.test : opened.dataset.train);
  }
  if (images.continuous()) {
    throw ConfigError(source + ": continuous images have no 8-bit values to code losslessly");
  }
  if (images.count < 1) throw Error(source + ": no images to compress");

  CodecSettings s = codec_settings(*config, run);
  s.channels = images.channels;
  s.height = images.height;
  s.width = images.width;
  const bool binarized = config->section("data").get_string("binarize") == "threshold";
  CompressedFile file;
  std::string note;
  const std::vector<uint8_t> symbols = to_symbols(images, s, binarized, file.header.binary_one, note);

  LoadedModel m = load_model(*config, store, s, run);
  s.latent_dims = latent_dims_of(*m.model);
  s.check();
  TorchCodingModel coding(*m.model, s, s.likelihood == LikelihoodKind::bernoulli);
  CompressedHeader& h = file.header;
  h.settings = s;
  h.count = static_cast<uint64_t>(images.count);
  h.seed = static_cast<uint64_t>(config->section("compress").get_int("seed"));
  h.checkpoint_hash = m.hash;
  h.numerics_hash = numerics_hash(coding, s, std::min<int64_t>(s.lanes, images.count));
  h.images_crc32 = crc32_of(symbols.data(), symbols.size());

  CodingStats stats;
  const auto start = Clock::now();
  file.lanes = bbans_encode(s, coding, symbols.data(), images.count, h.seed, &stats);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::vector<uint8_t> bytes = serialize(file);
  write_file_atomically(options.out.string(), bytes);

  const double dims = static_cast<double>(images.count * s.image_symbols());
  const uint64_t header_bytes = kFixedHeaderBytes + file.lanes.size() * kLaneEntryBytes + 4;
  nlohmann::json report = {
      {"file", options.out.string()},
      {"source", source},
      {"run", run},
      {"images", images.count},
      {"shape", {s.channels, s.height, s.width}},
      {"likelihood", s.likelihood == LikelihoodKind::bernoulli ? "bernoulli" : "mol"},
      {"binary", s.likelihood == LikelihoodKind::bernoulli},
      {"bytes", bytes.size()},
      {"header_bytes", header_bytes},
      {"bits_per_dim", 8.0 * static_cast<double>(bytes.size()) / dims},
      {"initial_bits", stats.initial_bits},
      {"initial_bits_per_dim", stats.initial_bits / dims},
      {"rate_without_initial_bits_per_dim", (8.0 * static_cast<double>(bytes.size()) - stats.initial_bits) / dims},
      {"likelihood_bits_per_dim", stats.likelihood_bits / dims},
      {"prior_bits_per_dim", stats.prior_bits / dims},
      {"posterior_bits_per_dim", stats.posterior_bits / dims},
      {"chains", file.lanes.size()},
      {"latent_precision", s.latent_precision},
      {"posterior_precision", s.posterior_precision},
      {"likelihood_precision", s.likelihood_precision},
      {"seconds", seconds},
      {"images_per_second", static_cast<double>(images.count) / std::max(seconds, 1e-9)},
      {"checkpoint_hash", hex64(h.checkpoint_hash)},
  };
  if (!note.empty()) report["note"] = note;
  if (options.compare) {
    const double elbo = neg_elbo_bits_per_dim(*m.model, *config, symbols, s);
    const double actual = report["bits_per_dim"].get<double>();
    report["neg_elbo_bits_per_dim"] = elbo;
    report["overhead_bits_per_dim"] = actual - elbo;
    report["overhead_percent"] = 100.0 * (actual - elbo) / elbo;
    report["overhead_without_initial_bits_percent"] =
        100.0 * (report["rate_without_initial_bits_per_dim"].get<double>() - elbo) / elbo;
    PixelBlock block{symbols.data(), images.count, s.channels, s.height, s.width,
                     s.likelihood == LikelihoodKind::bernoulli};
    nlohmann::json others = nlohmann::json::array();
    uint64_t best = UINT64_MAX;
    std::string best_name;
    for (const BaselineResult& r : run_baselines(block)) {
      others.push_back({{"name", r.name}, {"input", r.input}, {"bytes", r.bytes},
                        {"bits_per_dim", 8.0 * static_cast<double>(r.bytes) / dims}});
      if (r.bytes < best) {
        best = r.bytes;
        best_name = r.name + " (" + r.input + ")";
      }
    }
    report["baselines"] = others;
    report["best_baseline"] = best_name;
    report["best_baseline_bytes"] = best;
    report["smaller_than_best_percent"] = 100.0 * (1.0 - static_cast<double>(bytes.size()) / static_cast<double>(best));
  }
  return report;
}

nlohmann::json decompress_run(const fs::path& file_path, const fs::path& run_dir, const fs::path& out) {
  if (out.empty()) throw ConfigError("decompress: --out OUT.npy|POOL is required");
  const std::string path = file_path.string();
  const std::string run = run_dir.string();
  const CompressedFile file = read_compressed(path);
  const CompressedHeader& h = file.header;
  const RunStore store = RunStore::open(run_dir);
  const RunConfig config = coding_config(store, nullptr, {});
  const CodecSettings from_run = codec_settings(config, run);
  CodecSettings s = h.settings;
  const auto kind = [](LikelihoodKind k) { return k == LikelihoodKind::bernoulli ? "bernoulli" : "mol"; };
  if (from_run.likelihood != s.likelihood || from_run.mixtures != s.mixtures) {
    throw Error(path + ": coded with likelihood " + kind(s.likelihood) +
                (s.likelihood == LikelihoodKind::mol ? " (K = " + std::to_string(s.mixtures) + ")" : "") + ", but " +
                run + " uses " + kind(from_run.likelihood) +
                (from_run.likelihood == LikelihoodKind::mol ? " (K = " + std::to_string(from_run.mixtures) + ")" : "") +
                ": decompress with the run that compressed it");
  }
  LoadedModel m = load_model(config, store, s, run);
  if (latent_dims_of(*m.model) != s.latent_dims) {
    throw Error(path + ": coded with " + std::to_string(s.latent_dims) + " latent dimensions, but " + run +
                "'s model has " + std::to_string(latent_dims_of(*m.model)));
  }
  if (m.hash != h.checkpoint_hash) {
    throw Error(path + ": coded with a model whose weights hash to " + hex64(h.checkpoint_hash) + ", but " +
                store.checkpoint_path("last").string() + " hashes to " + hex64(m.hash) +
                ": decompress with the run (and checkpoint) that compressed it");
  }
  TorchCodingModel coding(*m.model, s, s.likelihood == LikelihoodKind::bernoulli);
  const auto count = static_cast<int64_t>(h.count);
  const uint64_t numerics = numerics_hash(coding, s, std::min<int64_t>(s.lanes, count));
  if (numerics != h.numerics_hash) {
    throw Error(path + ": this machine computes the model's probabilities differently from the one that "
                       "compressed the file (probe hash " + hex64(numerics) + ", the file's " +
                hex64(h.numerics_hash) +
                "; another CPU kernel or library version): the file cannot be decoded exactly here");
  }
  std::vector<uint8_t> symbols(static_cast<size_t>(count * s.image_symbols()));
  const auto start = Clock::now();
  try {
    bbans_decode(s, coding, file.lanes, count, h.seed, symbols.data());
  } catch (const ChainError& e) {
    const auto lane = static_cast<size_t>(e.lane());
    throw Error(path + ": byte " + std::to_string(lane < file.lane_offsets.size() ? file.lane_offsets[lane] : 0) +
                " (" + lane_bytes(file, lane) + "): " + e.what());
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  check_images_crc(path, h, symbols.data(), symbols.size());
  if (h.binary_one > 1) {
    for (auto& v : symbols) v = v != 0 ? h.binary_one : 0;
  }
  if (out.extension() == ".npy") {
    write_npy(out, symbols, count, s);
  } else {
    PoolHeader ph;
    ph.generator = "vaelab-decompress";
    ph.generator_version = VAELAB_VERSION;
    ph.config_hash = hex64(h.checkpoint_hash);
    ph.provenance = nlohmann::json{{"decompressed_from", path}, {"run", run}}.dump();
    ph.channels = s.channels;
    ph.height = s.height;
    ph.width = s.width;
    PoolWriter writer(out.string(), ph);
    ImageSet set;
    set.count = count;
    set.channels = s.channels;
    set.height = s.height;
    set.width = s.width;
    set.pixels = std::move(symbols);
    set.labels.assign(static_cast<size_t>(count), -1);
    std::vector<uint64_t> seeds(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) seeds[static_cast<size_t>(i)] = static_cast<uint64_t>(i);
    writer.append(set, seeds);
    writer.commit();
  }
  return {{"file", path},
          {"out", out.string()},
          {"images", count},
          {"shape", {s.channels, s.height, s.width}},
          {"seconds", seconds},
          {"images_per_second", static_cast<double>(count) / std::max(seconds, 1e-9)}};
}

void print_compress_report(const nlohmann::json& r) {
  const double dims = static_cast<double>(r["images"].get<int64_t>()) *
                      static_cast<double>(r["shape"][0].get<int64_t>() * r["shape"][1].get<int64_t>() *
                                          r["shape"][2].get<int64_t>());
  std::printf("%s: %lld images of %lldx%lldx%lld (%s) from %s\n", r["file"].get<std::string>().c_str(),
              static_cast<long long>(r["images"].get<int64_t>()), static_cast<long long>(r["shape"][0].get<int64_t>()),
              static_cast<long long>(r["shape"][1].get<int64_t>()), static_cast<long long>(r["shape"][2].get<int64_t>()),
              r["binary"].get<bool>() ? "binary, Bernoulli" : "8-bit, mixture of logistics",
              r["source"].get<std::string>().c_str());
  if (r.contains("note")) std::printf("note: %s\n", r["note"].get<std::string>().c_str());
  std::printf("%-34s %12s %10s\n", "", "bytes", "bits/dim");
  std::printf("%-34s %12llu %10.4f\n", "vaelab (BB-ANS)", static_cast<unsigned long long>(r["bytes"].get<uint64_t>()),
              r["bits_per_dim"].get<double>());
  std::printf("%-34s %12.0f %10.4f\n", "  of which initial bits (chains)", r["initial_bits"].get<double>() / 8.0,
              r["initial_bits_per_dim"].get<double>());
  if (r.contains("neg_elbo_bits_per_dim")) {
    std::printf("%-34s %12.0f %10.4f   (vaelab: %+.2f%%; without the initial bits %+.2f%%)\n",
                "negative ELBO (the bound)", r["neg_elbo_bits_per_dim"].get<double>() * dims / 8.0,
                r["neg_elbo_bits_per_dim"].get<double>(), r["overhead_percent"].get<double>(),
                r["overhead_without_initial_bits_percent"].get<double>());
    for (const auto& b : r["baselines"]) {
      const std::string label = b["name"].get<std::string>() + " (" + b["input"].get<std::string>() + ")";
      std::printf("%-34s %12llu %10.4f\n", label.c_str(), static_cast<unsigned long long>(b["bytes"].get<uint64_t>()),
                  b["bits_per_dim"].get<double>());
    }
    std::printf("vaelab's file is %.1f%% smaller than the best other, %s\n",
                r["smaller_than_best_percent"].get<double>(), r["best_baseline"].get<std::string>().c_str());
  }
  std::printf("coded in %.2f s: %.0f images/s (torch-cpu, one thread, %lld chains)\n", r["seconds"].get<double>(),
              r["images_per_second"].get<double>(), static_cast<long long>(r["chains"].get<int64_t>()));
}

}  // namespace vaelab::compress
