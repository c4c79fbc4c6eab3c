#include "torch_cuda_backend.hpp"

#include <string>

#include <torch/cuda.h>
#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab::plugins {

std::string cuda_unavailable_reason(int index) {
  if (!at::globalContext().hasCUDA()) {
    return std::string("this LibTorch (") + shim::torch_version() +
           ") was built without CUDA: build vaelab against a CUDA-enabled LibTorch (README, \"GPU\") "
           "or choose backend plugin = \"onednn-cpu\", \"torch-cpu\" or \"auto\"";
  }
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (count == 0) {
    return "LibTorch has CUDA but sees no GPU (driver missing, or CUDA_VISIBLE_DEVICES hides them)";
  }
  if (index >= count) {
    return "device = " + std::to_string(index) + ", but only " + std::to_string(count) +
           " CUDA device(s) are visible (0.." + std::to_string(count - 1) + ")";
  }
  return "";
}

TorchCudaBackend::TorchCudaBackend(const ConfigTable& config)
    : device_index_(static_cast<int>(config.get_int_in("device", 0, 1023))),
      threads_(static_cast<int>(config.get_int_in("threads", 1, 4096))),
      cudnn_benchmark_(config.get_bool("cudnn_benchmark")),
      allow_tf32_(config.get_bool("allow_tf32")),
      compute_(aten_layers::precision_from(config)) {
  const std::string why = cuda_unavailable_reason(device_index_);
  if (!why.empty()) throw Error("torch-cuda: " + why);
}

torch::Device TorchCudaBackend::device() const {
  return {torch::kCUDA, static_cast<torch::DeviceIndex>(device_index_)};
}

void TorchCudaBackend::apply_threads() {
  at::set_num_threads(threads_);
  at::globalContext().setBenchmarkCuDNN(cudnn_benchmark_);
  at::globalContext().setAllowTF32CuBLAS(allow_tf32_);
  at::globalContext().setAllowTF32CuDNN(allow_tf32_);
}

void TorchCudaBackend::synchronize() { torch::cuda::synchronize(device_index_); }

std::shared_ptr<Layer> TorchCudaBackend::dense(const DenseOptions& options) {
  return aten_layers::dense("torch-cuda", options, compute_);
}

std::shared_ptr<Layer> TorchCudaBackend::conv2d(const Conv2dOptions& options) {
  return aten_layers::conv2d("torch-cuda", options, compute_);
}

std::shared_ptr<Layer> TorchCudaBackend::conv_transpose2d(const Conv2dOptions& options) {
  return aten_layers::conv_transpose2d("torch-cuda", options, compute_);
}

std::shared_ptr<Layer> TorchCudaBackend::batch_norm2d(const BatchNormOptions& options) {
  return aten_layers::batch_norm2d("torch-cuda", options);
}

std::string TorchCudaBackend::describe() const {
  return "cuda:" + std::to_string(device_index_) + ", " + aten_layers::precision_name(compute_) +
         (cudnn_benchmark_ ? ", cuDNN autotuning" : "") + (allow_tf32_ ? ", TF32" : "") + ", " +
         std::to_string(threads_) + " host threads, LibTorch " + shim::torch_version();
}

}  // namespace vaelab::plugins
