// Writes the seed corpus of fuzz-safetensors with the project's own writer, save_safetensors:
//
//   make-seeds-safetensors OUT_DIR        → OUT_DIR/safetensors/<name>.safetensors

#include <cstdio>
#include <filesystem>

#include <torch/torch.h>

#include <vaelab/io/safetensors.hpp>

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make-seeds-safetensors OUT_DIR\n");
    return 2;
  }
  const fs::path out = fs::path(argv[1]) / "safetensors";
  try {
    fs::create_directories(out);
    vaelab::save_safetensors(out / "two-tensors.safetensors",
                             {{"encoder.weight", torch::arange(6, torch::kFloat32).reshape({2, 3})},
                              {"encoder.bias", torch::tensor({1, 2, 3, 4}, torch::kUInt8)}},
                             {{"format", "pt"}, {"epoch", "3"}});
    vaelab::save_safetensors(out / "scalar-and-empty.safetensors",
                             {{"step", torch::tensor(int64_t{42})},
                              {"empty", torch::zeros({0, 4}, torch::kFloat64)},
                              {"half", torch::ones({2}, torch::kFloat16)},
                              {"flags", torch::tensor({true, false})}});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make-seeds-safetensors: %s\n", e.what());
    return 1;
  }
  return 0;
}
