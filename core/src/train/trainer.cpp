// Training: the Trainer's loop over the stream's batches, evaluation schedule, checkpoints.
#include <vaelab/clock.hpp>
#include <vaelab/train/trainer.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/log.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/checkpoint.hpp>
#include <vaelab/train/distributed.hpp>
#include <vaelab/train/fused_adam.hpp>

namespace vaelab {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", static_cast<long>(s / 3600), static_cast<long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", static_cast<long>(s / 60), static_cast<long>(s % 60));
  }
  return buf;
}

/// One progress line, rewritten in place on a terminal; plain log lines otherwise.
class Progress {
 public:
  /// `quiet`: no output at all (a data-parallel rank other than 0).
  Progress(int64_t epochs, bool quiet)
      : epochs_(epochs), tty_(::isatty(STDERR_FILENO) == 1), quiet_(quiet) {}

  void update(int64_t epoch, double loss, double images_per_second, double eta_seconds,
              bool epoch_done) {
    if (quiet_) return;
    if (tty_) {
      const auto now = Clock::now();
      if (!epoch_done && now - last_ < std::chrono::milliseconds(200)) return;
      last_ = now;
      std::fprintf(stderr, "\r\033[Kepoch %ld/%ld  loss %.2f  %.0f img/s  ETA %s",
                   static_cast<long>(epoch), static_cast<long>(epochs_), loss, images_per_second,
                   format_duration(eta_seconds).c_str());
      std::fflush(stderr);
    } else if (epoch_done) {
      logger().info("epoch {}/{}  loss {:.2f}  {:.0f} img/s  ETA {}", epoch, epochs_, loss,
                    images_per_second, format_duration(eta_seconds));
    }
  }

  /// Ends the in-place line before other output.
  void break_line() {
    if (tty_ && !quiet_) {
      std::fprintf(stderr, "\r\033[K");
      std::fflush(stderr);
    }
  }

 private:
  int64_t epochs_;
  bool tty_;
  bool quiet_;
  Clock::time_point last_{};
};

/// Data-parallel: the ELBO of this process's rows [first, first + x.size(0)) of a batch of
/// `batch_images`, with one sample of reparameterization noise drawn for the whole batch from the
/// global generator (as elbo_terms draws it in a one-process run) and this process's rows used:
/// every image gets the noise it gets in a one-process run, and every process's generator
/// advances alike. An empty share still draws the noise and returns an empty tensor.
torch::Tensor share_elbo(Model& model, const Likelihood& likelihood, const torch::Tensor& x,
                         int64_t batch_images, int64_t first, const torch::Device& device) {
  std::vector<int64_t> shape = {batch_images};
  for (int64_t d : model.latent_shape()) shape.push_back(d);
  if (x.size(0) == 0) {
    shim::randn(shape, torch::TensorOptions().device(device), nullptr);
    return torch::Tensor();
  }
  const Posterior q = model.encode(x);
  const torch::Tensor noise = shim::randn(shape, q.mean.options(), nullptr).slice(0, first, first + x.size(0));
  const torch::Tensor std_dev = (0.5 * q.log_var).exp();
  const torch::Tensor z = q.mean + std_dev * noise;
  return likelihood.log_prob(x, model.decode(z)) - gaussian_kl(q.mean, q.log_var);
}

/// What data-parallel processes exchange at the start and before each evaluation: the weights
/// and buffers (rank 0's win).
std::vector<torch::Tensor> module_tensors(torch::nn::Module& module) {
  std::vector<torch::Tensor> out;
  for (const auto& p : module.parameters(true)) out.push_back(p);
  for (const auto& b : module.buffers(true)) out.push_back(b);
  return out;
}


}  // namespace

Trainer::Trainer(Model& model, const Likelihood& likelihood, Backend& backend, TrainOptions options,
                 Distributed* distributed)
    : model_(model), likelihood_(likelihood), backend_(backend), options_(options), distributed_(distributed) {
  if (options_.epochs < 1) throw ConfigError("train.epochs: must be at least 1");
  if (!(options_.lr > 0)) throw ConfigError("train.lr: must be positive");
  if (options_.eval_every_epochs < 1) throw ConfigError("eval.every_epochs: must be at least 1");
  if (options_.checkpoint.every_epochs < 0) throw ConfigError("train.checkpoint.every_epochs: must be 0 (off) or more");
  if (options_.checkpoint.every_steps < 0) throw ConfigError("train.checkpoint.every_steps: must be 0 (off) or more");
  if (!(options_.checkpoint.every_minutes >= 0)) throw ConfigError("train.checkpoint.every_minutes: must be 0 (off) or more");
  if (options_.max_skips_in_row < 1) throw ConfigError("train.nonfinite.max_skips_in_row: must be at least 1");
}

TrainResult Trainer::fit(TrainingStream& stream, const Evaluator& evaluator, const EvalData& eval,
                         RunStore& store, const TrainingCheckpoint* resume) {
  return fit(stream, evaluator, eval, &store, resume);
}

TrainResult Trainer::fit(TrainingStream& stream, const Evaluator& evaluator, const EvalData& eval,
                         RunStore* store, const TrainingCheckpoint* resume) {
  const torch::Device device = backend_.device();
  const int64_t world_size = distributed_ != nullptr ? distributed_->world_size() : 1;
  if (stream.shard_world() != world_size ||
      (distributed_ != nullptr && stream.shard_rank() != distributed_->rank())) {
    throw Error("the training stream is sharded for rank " + std::to_string(stream.shard_rank()) + " of " +
                std::to_string(stream.shard_world()) + ", but this process is rank " +
                std::to_string(distributed_ != nullptr ? distributed_->rank() : 0) + " of " + std::to_string(world_size));
  }
  torch::nn::Module& module = model_.module();
  for (const auto& t : module_state(module)) {
    if (t.first.rfind(kTrainingStatePrefix, 0) == 0) {
      throw Error("model tensor '" + t.first + "': names starting with '" + kTrainingStatePrefix +
                  "' are reserved for the training state in checkpoints");
    }
  }
  std::string optimizer_name;
  const std::unique_ptr<torch::optim::Adam> optimizer_owner =
      make_adam(module.parameters(), torch::optim::AdamOptions(options_.lr), options_.fused_adam, &optimizer_name);
  torch::optim::Adam& optimizer = *optimizer_owner;
  logger().info("optimizer: {}", optimizer_name);
  Progress progress(options_.epochs, store == nullptr);
  const fs::path checkpoint_file = store != nullptr ? store->checkpoint_path("last") : fs::path();

  TrainResult result;
  nlohmann::json metrics = nlohmann::json::array();  // every record so far, kept in checkpoints
  int64_t first_epoch = 1;
  int64_t global_step = 0;
  int64_t skips_in_row = 0;
  int64_t resumes = 0;
  double seconds_before = 0;  // wall seconds of the run before this process
  bool resume_in_epoch = false;
  int64_t resume_step = 0;
  double resume_loss_sum = 0;
  int64_t resume_images = 0;
  std::string last_checkpoint_text = "no checkpoint was written yet";

  if (resume != nullptr) {
    const std::string source = resume->file.string();
    const nlohmann::json& info = resume->info;
    // Data-parallel: the batches, the noise and the shares follow from the world size.
    const int64_t written_world = info.contains("world_size") ? info["world_size"].get<int64_t>() : 1;
    if (written_world != world_size) {
      throw Error(source + ": written by a run of " + std::to_string(written_world) + " process" +
                  (written_world == 1 ? "" : "es") + " (world size " + std::to_string(written_world) +
                  "); this one has " + std::to_string(world_size) + ". Resume it with the same world size (" +
                  (written_world == 1 ? "without --nproc or WORLD_SIZE" : "--nproc " + std::to_string(written_world) +
                                                                            ", or WORLD_SIZE=" + std::to_string(written_world)) +
                  ")");
    }
    if (info["regime"] != stream.regime()) {
      throw Error(source + ": written by a " + info["regime"].dump() + " run; this run's regime is \"" +
                  stream.regime() + "\"");
    }
    load_module_state(module, resume->model, source);
    load_adam_state(optimizer, module, resume->state, info["optimizer"], source);
    StreamState stream_state;
    const std::string stream_prefix = "stream.";
    for (const auto& [name, tensor] : resume->state) {
      if (name.rfind(stream_prefix, 0) == 0) stream_state.tensors[name.substr(stream_prefix.size())] = tensor;
    }
    stream_state.values = info["stream"];
    try {
      stream.load_state(stream_state);
    } catch (const Error& e) {
      throw Error(source + ": " + e.what());
    }
    const int64_t epochs_done = info["epochs_done"].get<int64_t>();
    global_step = info["global_step"].get<int64_t>();
    result.epochs = epochs_done;
    result.images_seen = info["images_seen"].get<int64_t>();
    result.train_seconds = info["train_seconds"].get<double>();
    result.eval_seconds = info["eval_seconds"].get<double>();
    result.elbo_trained_on_nats = info["elbo_trained_on_nats"].get<double>();
    result.nonfinite_skipped_steps = info["nonfinite_skipped_steps"].get<int64_t>();
    result.last_eval = info["last_eval"];
    result.resumed_at_step = global_step;
    skips_in_row = info["skips_in_row"].get<int64_t>();
    seconds_before = info["seconds"].get<double>();
    resumes = info["resumes"].get<int64_t>() + 1;
    metrics = info["metrics"];
    first_epoch = epochs_done + 1;
    const nlohmann::json& in_epoch = info["in_epoch"];
    if (!in_epoch.is_null()) {
      const std::string where = source + ": training_state.in_epoch: ";
      if (require_json_key(in_epoch, "epoch", where).get<int64_t>() != epochs_done + 1) {
        throw Error(where + "epoch " + in_epoch["epoch"].dump() + " does not follow epochs_done " +
                    std::to_string(epochs_done));
      }
      resume_in_epoch = true;
      resume_step = require_json_key(in_epoch, "step", where).get<int64_t>();
      resume_loss_sum = require_json_key(in_epoch, "loss_sum", where).get<double>();
      resume_images = require_json_key(in_epoch, "images", where).get<int64_t>();
    }
    if (epochs_done > options_.epochs) {
      throw Error(source + ": " + std::to_string(epochs_done) + " epochs done, but the run has train.epochs = " +
                  std::to_string(options_.epochs));
    }
    // Last: nothing above may draw from it.
    at::Generator global = at::detail::getDefaultCPUGenerator();
    set_generator_state(global, resume->state.at("rng.cpu"));
    last_checkpoint_text = "the last checkpoint (" + source + ") is unchanged";
    logger().info("resumed from {}: epoch {}, step {} of the epoch ({} steps, {} images so far)", source,
                  first_epoch, resume_step, global_step, result.images_seen);
  }

  // ---- data-parallel: every process starts from rank 0's weights ---------------------------
  std::vector<torch::Tensor> trained;  // the parameters whose gradients are all-reduced each step
  for (const auto& p : module.parameters(true)) {
    if (p.requires_grad()) trained.push_back(p);
  }
  if (distributed_ != nullptr) {
    distributed_->broadcast_from_rank0(module_tensors(module), "the initial weights' broadcast");
  }

  const auto run_start = Clock::now();
  auto last_checkpoint = Clock::now();
  // Writes the training checkpoint: `epochs_done` whole epochs, and with `in_epoch` the position in
  // the next one. Only finite weights are written. Returns the seconds it took.
  const auto write_checkpoint = [&](int64_t epochs_done, const nlohmann::json& in_epoch,
                                    double train_seconds) {
    const auto start = Clock::now();
    const std::string bad = first_nonfinite_parameter(module);
    if (!bad.empty()) {
      progress.break_line();
      throw Error("training diverged: parameter " + bad + " holds non-finite values after " +
                  std::to_string(global_step) + " steps; not written to a checkpoint, " +
                  last_checkpoint_text);
    }
    if (store == nullptr) return 0.0;  // data-parallel: only rank 0 writes
    NamedTensors tensors = module_state(module);
    std::map<std::string, torch::Tensor> state;
    nlohmann::json info = nlohmann::json::object();
    nlohmann::json optim_info = nlohmann::json::object();
    save_adam_state(optimizer, module, state, optim_info);
    optim_info["lr"] = options_.lr;
    StreamState stream_state;
    stream.save_state(stream_state);
    for (auto& [name, tensor] : stream_state.tensors) state["stream." + name] = tensor;
    state["rng.cpu"] = generator_state(at::detail::getDefaultCPUGenerator());
    info["epochs_done"] = epochs_done;
    info["in_epoch"] = in_epoch;
    info["global_step"] = global_step;
    info["images_seen"] = result.images_seen;
    info["train_seconds"] = train_seconds;
    info["eval_seconds"] = result.eval_seconds;
    info["seconds"] = seconds_before + seconds_since(run_start);
    info["elbo_trained_on_nats"] = result.elbo_trained_on_nats;
    info["nonfinite_skipped_steps"] = result.nonfinite_skipped_steps;
    info["skips_in_row"] = skips_in_row;
    info["metrics"] = metrics;
    info["last_eval"] = result.last_eval;
    info["regime"] = stream.regime();
    info["stream"] = stream_state.values;
    info["optimizer"] = optim_info;
    info["resumes"] = resumes;
    info["epochs"] = options_.epochs;
    info["world_size"] = world_size;
    for (auto& [name, tensor] : state) tensors.emplace_back(kTrainingStatePrefix + name, tensor);
    const int64_t epoch_number = in_epoch.is_null() ? epochs_done : epochs_done + 1;
    const std::string where = "epoch " + std::to_string(epoch_number) +
                              (in_epoch.is_null() ? "" : ", step " + in_epoch["step"].dump());
    try {
      save_safetensors(checkpoint_file, tensors,
                       {{"vaelab_checkpoint_version", std::to_string(kCheckpointVersion)},
                        {"format", "vaelab training checkpoint: model parameters and buffers under "
                                   "their own names, training state under _train.* (docs/checkpoints.md)"},
                        {"epoch", std::to_string(epochs_done)},
                        {"images_seen", std::to_string(result.images_seen)},
                        {"training_state", info.dump()}});
    } catch (const Error& e) {
      progress.break_line();
      throw Error("checkpoint at " + where + " not written: " + e.what() + "; " + last_checkpoint_text);
    }
    last_checkpoint_text = "the last checkpoint (" + checkpoint_file.string() + ", " + where +
                           ") holds the last good state";
    std::error_code ec;
    result.checkpoint_bytes = static_cast<int64_t>(fs::file_size(checkpoint_file, ec));
    ++result.checkpoints_written;
    const double seconds = seconds_since(start);
    result.checkpoint_seconds += seconds;
    last_checkpoint = Clock::now();
    logger().debug("checkpoint at {}: {} bytes in {:.1f} ms", where, result.checkpoint_bytes, seconds * 1e3);
    return seconds;
  };

  const CheckpointOptions& every = options_.checkpoint;
  for (int64_t epoch = first_epoch; epoch <= options_.epochs; ++epoch) {
    // ---- one effective epoch of optimizer steps -------------------------------------------
    module.train();
    double loss_sum = 0;
    int64_t epoch_images = 0;  // of the steps taken (skipped ones are not in the mean loss)
    int64_t step = 0;
    if (resume_in_epoch && epoch == first_epoch) {
      loss_sum = resume_loss_sum;
      epoch_images = resume_images;
      step = resume_step;
    } else {
      stream.begin_epoch(epoch - 1);
    }
    const auto epoch_start = Clock::now();
    double epoch_checkpoint_seconds = 0;
    torch::Tensor batch;
    while (stream.next_batch(batch)) {
      const torch::Tensor x = batch.to(device);
      clear_gradients(optimizer);
      int64_t b = x.size(0);
      double loss_value = 0;
      if (distributed_ == nullptr) {
        const ElboTerms terms = elbo_terms(model_, likelihood_, x, 1);
        const torch::Tensor loss = -terms.elbo.mean();
        loss_value = loss.item<double>();
        loss.backward();
      } else {
        // ---- data-parallel step: this process's share of the batch of b images; its −ELBO sum
        //      over b, so the gradients summed over the processes are the one-process batch's ----
        b = stream.last_batch_size();
        const int64_t first = b * stream.shard_rank() / stream.shard_world();
        const torch::Tensor elbo = share_elbo(model_, likelihood_, x, b, first, device);
        std::vector<double> sums = {0.0};
        if (elbo.defined()) {
          const torch::Tensor neg_sum = -elbo.sum();
          sums[0] = neg_sum.item<double>();
          (neg_sum / static_cast<double>(b)).backward();
        }
        distributed_->all_reduce_gradients(trained, sums, global_step + 1);
        loss_value = sums[0] / static_cast<double>(b);
      }
      const std::string bad = first_nonfinite_gradient(module);
      ++step;
      ++global_step;
      result.images_seen += b;
      if (!std::isfinite(loss_value) || !bad.empty()) {
        clear_gradients(optimizer);
        std::string what = std::string(std::isfinite(loss_value) ? "non-finite gradient" : "non-finite loss (") +
                           (std::isfinite(loss_value) ? "" : std::to_string(loss_value) + ")") + " at epoch " +
                           std::to_string(epoch) + ", step " + std::to_string(step) + " (step " +
                           std::to_string(global_step) + " of the run)";
        if (!bad.empty()) what += "; first parameter with a non-finite gradient: " + bad + " (layer " + parameter_layer(bad) + ")";
        if (options_.nonfinite == NonfinitePolicy::stop) {
          progress.break_line();
          throw Error("training diverged: " + what + "; " + last_checkpoint_text +
                      " (train.nonfinite.policy = \"skip\" skips such steps)");
        }
        ++result.nonfinite_skipped_steps;
        if (++skips_in_row >= options_.max_skips_in_row) {
          progress.break_line();
          throw Error("training diverged: " + std::to_string(skips_in_row) +
                      " steps in a row skipped (train.nonfinite.max_skips_in_row); the last: " + what + "; " +
                      last_checkpoint_text);
        }
        if (result.nonfinite_skipped_steps <= 10 || result.nonfinite_skipped_steps % 100 == 0) {
          progress.break_line();
          logger().warn("skipped step {}: {} ({} skipped so far)", global_step, what, result.nonfinite_skipped_steps);
        }
      } else {
        skips_in_row = 0;
        optimizer.step();
        loss_sum += loss_value * static_cast<double>(b);
        epoch_images += b;
      }
      const double elapsed = result.train_seconds + seconds_since(epoch_start) - epoch_checkpoint_seconds;
      const double rate = static_cast<double>(result.images_seen) / std::max(elapsed, 1e-9);
      const double remaining_images =
          static_cast<double>(options_.epochs * stream.epoch_size() - result.images_seen);
      progress.update(epoch, loss_sum / static_cast<double>(std::max<int64_t>(epoch_images, 1)), rate,
                      remaining_images / std::max(rate, 1e-9), false);
      // ---- a checkpoint between steps (mid-epoch) ------------------------------------------
      const bool steps_due = every.every_steps > 0 && global_step % every.every_steps == 0;
      const bool time_due = every.every_minutes > 0 && seconds_since(last_checkpoint) >= every.every_minutes * 60;
      if (steps_due || time_due) {
        backend_.synchronize();
        const double train_now = result.train_seconds + seconds_since(epoch_start) - epoch_checkpoint_seconds;
        epoch_checkpoint_seconds += write_checkpoint(
            epoch - 1, {{"epoch", epoch}, {"step", step}, {"loss_sum", loss_sum}, {"images", epoch_images}},
            train_now);
      }
    }
    backend_.synchronize();
    result.train_seconds += seconds_since(epoch_start) - epoch_checkpoint_seconds;
    result.epochs = epoch;
    result.elbo_trained_on_nats = -loss_sum / static_cast<double>(std::max<int64_t>(epoch_images, 1));
    const double rate = static_cast<double>(result.images_seen) / std::max(result.train_seconds, 1e-9);
    progress.update(epoch, -result.elbo_trained_on_nats, rate,
                    static_cast<double>((options_.epochs - epoch) * stream.epoch_size()) / std::max(rate, 1e-9),
                    true);

    // ---- evaluation point: ELBO on the real training set and on the test set, and the
    //      other metrics when due --------------------------------------------------------
    const bool eval_due = epoch % options_.eval_every_epochs == 0 || epoch == options_.epochs;
    if (!eval_due) {
      if (every.every_epochs > 0 && epoch % every.every_epochs == 0) {
        write_checkpoint(epoch, nullptr, result.train_seconds);
      }
      continue;
    }
    const auto eval_start = Clock::now();
    progress.break_line();
    // Data-parallel: every process evaluates the same weights (rank 0's, buffers included) on the
    // whole evaluation data with the same seeds, so the numbers are the same everywhere.
    if (distributed_ != nullptr) {
      distributed_->broadcast_from_rank0(module_tensors(module),
                                         "the weights' broadcast before the evaluation of epoch " + std::to_string(epoch));
    }
    nlohmann::json record = evaluator.run(evaluator.due(epoch, options_.epochs), eval);
    result.eval_seconds += seconds_since(eval_start);
    const double train_elbo = record["elbo_train_nats"].get<double>();
    const double test_elbo = record["elbo_test_nats"].get<double>();
    logger().info("epoch {}: ELBO train {:.2f}  test {:.2f}  gap {:.2f} nats", epoch, train_elbo,
                  test_elbo, train_elbo - test_elbo);
    if (!std::isfinite(train_elbo) || !std::isfinite(test_elbo)) {
      throw Error("evaluation at epoch " + std::to_string(epoch) + " gave a non-finite ELBO; " +
                  last_checkpoint_text);
    }
    record["epoch"] = epoch;
    record["images_seen"] = result.images_seen;
    record["elbo_trained_on_nats"] = result.elbo_trained_on_nats;
    record["regime"] = stream.regime();
    record["train_seconds"] = result.train_seconds;
    record["seconds"] = seconds_before + seconds_since(run_start);
    if (store != nullptr) store->append_metrics(record);
    metrics.push_back(record);
    result.last_eval = std::move(record);
    write_checkpoint(epoch, nullptr, result.train_seconds);
  }
  return result;
}

}  // namespace vaelab
