#pragma once
// Finite-difference gradient check shared by the model plugin tests (Catch2 assertions inside).

#include <algorithm>
#include <functional>

#include <catch2/catch.hpp>
#include <torch/torch.h>

namespace vaelab::testing {

/// Compares the autograd gradient of `loss` (which must give the same value for the same
/// parameters, e.g. fixed noise) with central differences at about three entries of every
/// parameter of `module` (float64). Returns how many entries were checked.
inline int check_gradients(torch::nn::Module& module, const std::function<torch::Tensor()>& loss,
                           double margin) {
  module.zero_grad();
  loss().backward();
  torch::NoGradGuard no_grad;
  int checked = 0;
  for (auto& named : module.named_parameters()) {
    auto flat = named.value().view(-1);
    const torch::Tensor grad = named.value().grad().view(-1);
    for (int64_t i = 0; i < flat.size(0); i += std::max<int64_t>(1, flat.size(0) / 3)) {
      const double h = 1e-6;
      const double saved = flat[i].item<double>();
      flat[i].fill_(saved + h);
      const double up = loss().item<double>();
      flat[i].fill_(saved - h);
      const double down = loss().item<double>();
      flat[i].fill_(saved);
      const double numeric = (up - down) / (2 * h);
      INFO(named.key() << "[" << i << "]: autograd " << grad[i].item<double>() << ", numeric " << numeric);
      REQUIRE(grad[i].item<double>() == Approx(numeric).epsilon(1e-5).margin(margin));
      ++checked;
    }
  }
  return checked;
}

}  // namespace vaelab::testing
