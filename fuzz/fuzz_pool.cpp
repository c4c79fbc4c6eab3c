// The sample pool reader (core/src/io/pool.cpp): PoolReader on a file holding the input, then every
// accessor over the whole pool, as the synthetic training stream and `vaelab score` use it.

#include <vaelab/io/pool.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vaelab::fuzz::InputFile file("pool");
  const std::string& path = file.write(data, size);
  try {
    const vaelab::PoolReader pool(path);
    const int64_t count = pool.count();
    const int64_t bytes = pool.image_bytes();
    const vaelab::PoolHeader& h = pool.header();
    if (count < 0 || bytes != h.channels * h.height * h.width || pool.checksum().size() != 8) {
      std::fprintf(stderr, "finding: inconsistent pool header\n");
      std::abort();
    }
    uint64_t sum = 0;
    for (int64_t i = 0; i < count; ++i) {
      const uint8_t* image = pool.image(i);
      for (int64_t b = 0; b < bytes; ++b) sum += image[b];
      sum += pool.seed(i);
    }
    const vaelab::ImageSet all = pool.read(0, count);
    if (all.pixels.size() != static_cast<size_t>(count * bytes)) std::abort();
    // Out of range is an error naming the file, never a read past the map.
    try {
      (void)pool.image(count);
      std::abort();
    } catch (const vaelab::Error& e) {
      vaelab::fuzz::check_refusal(e, path);
    }
    try {
      (void)pool.read(count, 1);
      std::abort();
    } catch (const vaelab::Error& e) {
      vaelab::fuzz::check_refusal(e, path);
    }
    if (sum == 1) std::fprintf(stderr, " ");  // keeps the reads
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
  }
  return 0;
}
