// The checkpoint reader (core/src/io/safetensors.cpp): load_safetensors on a file holding the input,
// with its metadata. The reader allocates each tensor with LibTorch as it parses the header, so the
// target links LibTorch (uninstrumented; the reader's own code is).

#include <vaelab/io/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vaelab::fuzz::InputFile file("safetensors", ".safetensors");
  const std::string& path = file.write(data, size);
  try {
    std::map<std::string, std::string> metadata;
    const vaelab::NamedTensors tensors = vaelab::load_safetensors(path, &metadata);
    uint64_t bytes = 0;
    for (const auto& [name, tensor] : tensors) {
      bytes += static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
    }
    if (bytes > size) {
      std::fprintf(stderr, "finding: %llu tensor bytes from a %zu-byte file\n",
                   static_cast<unsigned long long>(bytes), size);
      std::abort();
    }
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
  }
  return 0;
}
