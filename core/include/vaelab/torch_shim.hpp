#pragma once
/// Every LibTorch call whose spelling differs between 1.13 (Debian) and 2.x lives here.

#include <cstdint>

#include <ATen/core/Generator.h>
#include <torch/types.h>

namespace vaelab::shim {

/// A CPU random generator seeded with `seed`, independent of the global one.
at::Generator make_cpu_generator(uint64_t seed);

/// Standard normal noise shaped like `like`. With a generator, drawn on the CPU from it (so the
/// same seed gives the same numbers on every backend) and moved to like's device.
torch::Tensor randn_like(const torch::Tensor& like, at::Generator* generator);

/// Standard normal noise of `shape`, drawn like randn_like().
torch::Tensor randn(at::IntArrayRef shape, const torch::TensorOptions& options,
                    at::Generator* generator);

/// Uniform noise in [0, 1) of `shape`, drawn on the CPU from `generator` and moved to the options'
/// device.
torch::Tensor rand(at::IntArrayRef shape, const torch::TensorOptions& options,
                   at::Generator& generator);

/// A random permutation of 0..n-1 drawn from `generator` (CPU, int64).
torch::Tensor randperm(int64_t n, at::Generator& generator);

/// The LibTorch version the code was compiled against, e.g. "1.13.1".
const char* torch_version();

}  // namespace vaelab::shim
