#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace vaelab {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// Writes tensors in the safetensors format (8-byte little-endian header length, a JSON header
/// with dtype, shape and data offsets, then the raw little-endian data), readable from Python with
/// `safetensors.torch.load_file`. Tensors are copied to the CPU and made contiguous. The file is
/// written next to `file` and renamed into place, so a crash never leaves a half-written file.
void save_safetensors(const std::filesystem::path& file, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads a safetensors file (F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL). Every header
/// field is checked against the file size before anything is allocated; errors name the file and
/// the byte offset.
NamedTensors load_safetensors(const std::filesystem::path& file,
                              std::map<std::string, std::string>* metadata = nullptr);

/// The module's parameters and buffers by their dotted names, for a checkpoint.
NamedTensors module_state(const torch::nn::Module& module);

/// Copies `state` into the module's parameters and buffers. Throws vaelab::Error naming the
/// first missing, unexpected or wrongly shaped tensor. Tensors named "_train.*" (the training
/// state of a checkpoint, train/checkpoint.hpp) are skipped, so a training checkpoint loads as a
/// model checkpoint.
void load_module_state(torch::nn::Module& module, const NamedTensors& state,
                       const std::string& source);

}  // namespace vaelab
