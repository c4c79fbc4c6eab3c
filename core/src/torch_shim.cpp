#include <vaelab/torch_shim.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <torch/version.h>

namespace vaelab::shim {

at::Generator make_cpu_generator(uint64_t seed) {
  return at::detail::createCPUGenerator(seed);
}

torch::Tensor randn_like(const torch::Tensor& like, at::Generator* generator) {
  if (generator == nullptr) return torch::randn_like(like);
  torch::Tensor noise =
      at::randn(like.sizes(), *generator, torch::TensorOptions().dtype(like.scalar_type()));
  return like.device().is_cpu() ? noise : noise.to(like.device());
}

torch::Tensor randperm(int64_t n, at::Generator& generator) {
  return at::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong));
}

const char* torch_version() { return TORCH_VERSION; }

}  // namespace vaelab::shim
