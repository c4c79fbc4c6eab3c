#include <vaelab/torch_shim.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <torch/version.h>

namespace vaelab::shim {

at::Generator make_cpu_generator(uint64_t seed) {
  return at::detail::createCPUGenerator(seed);
}

torch::Tensor randn(at::IntArrayRef shape, const torch::TensorOptions& options,
                    at::Generator* generator) {
  if (generator == nullptr) return torch::randn(shape, options);
  torch::Tensor noise = at::randn(shape, *generator, options.device(torch::kCPU));
  return options.device().is_cpu() ? noise : noise.to(options.device());
}

torch::Tensor randn_like(const torch::Tensor& like, at::Generator* generator) {
  return randn(like.sizes(), like.options(), generator);
}

torch::Tensor rand(at::IntArrayRef shape, const torch::TensorOptions& options,
                   at::Generator& generator) {
  torch::Tensor noise = at::rand(shape, generator, options.device(torch::kCPU));
  return options.device().is_cpu() ? noise : noise.to(options.device());
}

torch::Tensor randperm(int64_t n, at::Generator& generator) {
  return at::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong));
}

const char* torch_version() { return TORCH_VERSION; }

}  // namespace vaelab::shim
