#include "torch_support.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include <torch/torch.h>

namespace vaelab::conformance {

PluginPtr<Backend> make_backend(const Options& options) {
  // Scanned once; libraries are never unloaded, so the registry may outlive every instance.
  static const Registry registry(Registry::search_path(options.plugin_paths));
  const PluginRecord& record = registry.find(VL_PLUGIN_KIND_BACKEND, options.backend);
  PluginPtr<Backend> backend = registry.create<Backend>(options.backend, record.defaults_toml);
  backend->apply_threads();
  return backend;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  if (!a.defined() || !b.defined() || a.sizes() != b.sizes()) {
    return std::numeric_limits<double>::infinity();
  }
  const torch::Tensor x = a.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor y = b.detach().to(torch::kCPU, torch::kFloat64);
  if (!torch::equal(torch::isfinite(x), torch::isfinite(y))) {
    return std::numeric_limits<double>::infinity();
  }
  if (x.numel() == 0) return 0.0;
  const torch::Tensor finite = torch::isfinite(x);
  return (x - y).abs().masked_fill(finite.logical_not(), 0.0).max().item<double>();
}

void require_close(const torch::Tensor& got, const torch::Tensor& want, double rtol, double atol,
                   const std::string& what) {
  if (!got.defined() || !want.defined()) {
    throw CheckFailed(what + ": " + (got.defined() ? "the reference" : "the result") + " is undefined");
  }
  if (got.sizes() != want.sizes()) {
    throw CheckFailed(what + ": shape " + shape_string(got.sizes()) + ", expected " +
                      shape_string(want.sizes()));
  }
  const torch::Tensor x = got.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor y = want.detach().to(torch::kCPU, torch::kFloat64);
  if (!torch::isfinite(x).all().item<bool>()) throw CheckFailed(what + ": non-finite values");
  const torch::Tensor excess = (x - y).abs() - (atol + rtol * y.abs());
  if (excess.numel() > 0 && excess.max().item<double>() > 0) {
    std::ostringstream out;
    out << what << ": differs from the reference by up to " << (x - y).abs().max().item<double>()
        << " (allowed " << atol << " + " << rtol << "·|reference|)";
    throw CheckFailed(out.str());
  }
}

std::string shape_string(torch::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

}  // namespace vaelab::conformance
