// The CIFAR-10 batch reader (data-sources/cifar10/cifar10_batch.cpp): read_cifar10_batch on a file
// holding the input, and read_class_names on the same file as a batches.meta.txt.

#include "cifar10_batch.hpp"
#include "fuzz_common.hpp"

namespace cifar10 = vaelab::plugins::cifar10;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vaelab::fuzz::InputFile file("cifar10", ".bin");
  const std::string& path = file.write(data, size);
  try {
    const cifar10::Cifar10Batch batch = cifar10::read_cifar10_batch(path, uint64_t{1} << 30);
    if (batch.count < 1 || batch.labels.size() != static_cast<size_t>(batch.count) ||
        batch.pixels.size() != static_cast<size_t>(batch.count * cifar10::kImageBytes) ||
        batch.size_bytes != size) {
      std::fprintf(stderr, "finding: inconsistent batch of %lld records\n",
                   static_cast<long long>(batch.count));
      std::abort();
    }
    for (const int64_t label : batch.labels) {
      if (label < 0 || label >= cifar10::kClasses) std::abort();
    }
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
  }
  try {
    const std::vector<std::string> names = cifar10::read_class_names(path);
    if (names.size() != static_cast<size_t>(cifar10::kClasses)) std::abort();
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
  }
  return 0;
}
