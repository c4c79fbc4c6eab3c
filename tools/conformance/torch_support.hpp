#pragma once
// Helpers shared by the checks that need LibTorch.

#include <string>

#include <torch/types.h>

#include <vaelab/backend.hpp>
#include <vaelab/registry.hpp>

#include "conformance.hpp"

namespace vaelab::conformance {

/// An instance of the plugin under test, made from the context's config.
template <class Interface>
PluginPtr<Interface> make_instance(const Context& context) {
  return context.registry.create<Interface>(context.record.name, context.config_toml);
}

/// The backend that models and generators are built on: options.backend with its own defaults,
/// found on the search path (options.plugin_paths, VAELAB_PLUGIN_PATH, next to the executable,
/// the install folder), with its threads applied. Throws vaelab::Error when it cannot be made.
PluginPtr<Backend> make_backend(const Options& options);

/// Largest |a − b| (infinite when the shapes differ or either has a non-finite value where the
/// other does not).
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);

/// Throws CheckFailed "<what>: differs from the reference by up to D (allowed ...)" unless `got`
/// is within atol + rtol·|want| of `want` elementwise (and finite, and of the same shape).
void require_close(const torch::Tensor& got, const torch::Tensor& want, double rtol, double atol,
                   const std::string& what);

/// "[4, 1, 32, 32]".
std::string shape_string(torch::IntArrayRef sizes);

}  // namespace vaelab::conformance
