#include <vaelab/clock.hpp>
#include <vaelab/train/trainer.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/log.hpp>
#include <vaelab/metrics/elbo.hpp>

namespace vaelab {
namespace {

using Clock = std::chrono::steady_clock;

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
  explicit Progress(int64_t epochs) : epochs_(epochs), tty_(::isatty(STDERR_FILENO) == 1) {}

  void update(int64_t epoch, double loss, double images_per_second, double eta_seconds,
              bool epoch_done) {
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
    if (tty_) {
      std::fprintf(stderr, "\r\033[K");
      std::fflush(stderr);
    }
  }

 private:
  int64_t epochs_;
  bool tty_;
  Clock::time_point last_{};
};

}  // namespace

Trainer::Trainer(Model& model, const Likelihood& likelihood, Backend& backend, TrainOptions options)
    : model_(model), likelihood_(likelihood), backend_(backend), options_(options) {
  if (options_.epochs < 1) throw ConfigError("train.epochs: must be at least 1");
  if (!(options_.lr > 0)) throw ConfigError("train.lr: must be positive");
  if (options_.eval_every_epochs < 1) throw ConfigError("eval.every_epochs: must be at least 1");
}

TrainResult Trainer::fit(TrainingStream& stream, const Evaluator& evaluator, const EvalData& eval,
                         RunStore& store) {
  const torch::Device device = backend_.device();
  torch::nn::Module& module = model_.module();
  torch::optim::Adam optimizer(module.parameters(), torch::optim::AdamOptions(options_.lr));
  Progress progress(options_.epochs);

  TrainResult result;
  const auto run_start = Clock::now();
  for (int64_t epoch = 1; epoch <= options_.epochs; ++epoch) {
    // ---- one effective epoch of optimizer steps -------------------------------------------
    module.train();
    stream.begin_epoch(epoch - 1);
    const auto epoch_start = Clock::now();
    double loss_sum = 0;
    int64_t epoch_images = 0;
    torch::Tensor batch;
    int64_t step = 0;
    while (stream.next_batch(batch)) {
      const torch::Tensor x = batch.to(device);
      optimizer.zero_grad();
      const ElboTerms terms = elbo_terms(model_, likelihood_, x, 1);
      const torch::Tensor loss = -terms.elbo.mean();
      const double loss_value = loss.item<double>();
      if (!std::isfinite(loss_value)) {
        progress.break_line();
        throw Error("training diverged: non-finite loss at epoch " + std::to_string(epoch) +
                    ", step " + std::to_string(step) + "; the last checkpoint holds the state of the last evaluation");
      }
      loss.backward();
      optimizer.step();
      ++step;
      const int64_t b = x.size(0);
      loss_sum += loss_value * static_cast<double>(b);
      epoch_images += b;
      result.images_seen += b;
      const double elapsed = result.train_seconds + seconds_since(epoch_start);
      const double rate = static_cast<double>(result.images_seen) / std::max(elapsed, 1e-9);
      const double remaining_images =
          static_cast<double>(options_.epochs * stream.epoch_size() - result.images_seen);
      progress.update(epoch, loss_sum / static_cast<double>(epoch_images), rate,
                      remaining_images / std::max(rate, 1e-9), false);
    }
    backend_.synchronize();
    result.train_seconds += seconds_since(epoch_start);
    result.epochs = epoch;
    result.elbo_trained_on_nats = -loss_sum / static_cast<double>(std::max<int64_t>(epoch_images, 1));
    const double rate = static_cast<double>(result.images_seen) / std::max(result.train_seconds, 1e-9);
    progress.update(epoch, -result.elbo_trained_on_nats, rate,
                    static_cast<double>((options_.epochs - epoch) * stream.epoch_size()) / std::max(rate, 1e-9),
                    true);

    // ---- evaluation point: ELBO on the real training set and on the test set, and the
    //      other metrics when due --------------------------------------------------------
    if (epoch % options_.eval_every_epochs != 0 && epoch != options_.epochs) continue;
    const auto eval_start = Clock::now();
    progress.break_line();
    nlohmann::json record = evaluator.run(evaluator.due(epoch, options_.epochs), eval);
    result.eval_seconds += seconds_since(eval_start);
    const double train_elbo = record["elbo_train_nats"].get<double>();
    const double test_elbo = record["elbo_test_nats"].get<double>();
    logger().info("epoch {}: ELBO train {:.2f}  test {:.2f}  gap {:.2f} nats", epoch, train_elbo,
                  test_elbo, train_elbo - test_elbo);
    if (!std::isfinite(train_elbo) || !std::isfinite(test_elbo)) {
      throw Error("evaluation at epoch " + std::to_string(epoch) + " gave a non-finite ELBO");
    }
    record["epoch"] = epoch;
    record["images_seen"] = result.images_seen;
    record["elbo_trained_on_nats"] = result.elbo_trained_on_nats;
    record["regime"] = stream.regime();
    record["train_seconds"] = result.train_seconds;
    record["seconds"] = seconds_since(run_start);
    store.append_metrics(record);
    result.last_eval = std::move(record);
    save_safetensors(store.checkpoint_path("last"), module_state(module),
                     {{"epoch", std::to_string(epoch)},
                      {"images_seen", std::to_string(result.images_seen)},
                      {"format", "vaelab model state (parameters and buffers)"}});
  }
  return result;
}

}  // namespace vaelab
