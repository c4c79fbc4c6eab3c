// `vaelab bench threads CONFIG`: training throughput for each (intra-op threads, BLAS threads)
// setting, measured interleaved in one process and printed as medians and ratios to 1×1.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include <torch/torch.h>

#include <vaelab/log.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/threads.hpp>
#include <vaelab/train/fused_adam.hpp>
#include <vaelab/train/run.hpp>
#include <vaelab/train/session.hpp>

#include "commands.hpp"
#include "gemm_peak.hpp"

namespace vaelab::cli {

int bench_threads(const std::string& config_file, const std::vector<std::string>& overrides,
                  int steps, int repeats) {
  const RunConfig config = RunConfig::load(config_file, overrides);
  Session s = open_session(config);
  const int64_t batch_size = config.section("train").get_int("batch_size");
  const torch::Device device = s.backend->device();
  const torch::Tensor batch = s.train.slice(0, 0, std::min<int64_t>(batch_size, s.train.size(0))).to(device);
  torch::nn::Module& module = s.model->module();
  module.train();
  // The trainer's optimizer and gradient handling, so the settings are compared on its steps.
  const auto optimizer = make_adam(module.parameters(), torch::optim::AdamOptions(1e-4), true);

  const auto step = [&] {
    clear_gradients(*optimizer);
    const torch::Tensor loss = -elbo_terms(*s.model, *s.likelihood, batch, 1).elbo.mean();
    loss.backward();
    optimizer->step();
  };
  const int cpus = available_cpus();
  std::vector<std::pair<int, int>> settings;
  for (int intra : {1, 2, cpus}) {
    for (int blas : {1, 2, cpus}) {
      if (intra <= cpus && blas <= cpus &&
          std::find(settings.begin(), settings.end(), std::make_pair(intra, blas)) == settings.end()) {
        settings.emplace_back(intra, blas);
      }
    }
  }
  std::vector<std::vector<double>> rates(settings.size());
  for (int r = 0; r < repeats; ++r) {
    for (size_t i = 0; i < settings.size(); ++i) {
      at::set_num_threads(settings[i].first);
      set_blas_threads(settings[i].second);
      for (int w = 0; w < 3; ++w) step();
      s.backend->synchronize();
      const auto start = std::chrono::steady_clock::now();
      for (int k = 0; k < steps; ++k) step();
      s.backend->synchronize();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      rates[i].push_back(static_cast<double>(steps * batch.size(0)) / seconds);
    }
  }
  const double reference = median(rates[0]);
  std::printf("model %s, batch %ld, %d steps x %d repeats, %d CPUs; reference = 1 intra-op x 1 BLAS thread\n",
              config.plugin("model").c_str(), static_cast<long>(batch.size(0)), steps, repeats, cpus);
  std::printf("%-10s %-10s %14s %8s\n", "intra-op", "BLAS", "images/s", "ratio");
  for (size_t i = 0; i < settings.size(); ++i) {
    const double m = median(rates[i]);
    std::printf("%-10d %-10d %14.0f %8.2f\n", settings[i].first, settings[i].second, m, m / reference);
  }
  return 0;
}

}  // namespace vaelab::cli
