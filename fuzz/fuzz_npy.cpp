// The .npy reader (data-sources/npy/npy_array.cpp): the header parser on the input in memory, then
// read_npy on a file holding it, and every element of what it accepts.

#include <cmath>

#include "fuzz_common.hpp"
#include "npy_array.hpp"

namespace npy = vaelab::plugins::npy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vaelab::fuzz::InputFile file("npy", ".npy");
  const std::string& path = file.write(data, size);
  try {
    (void)npy::parse_npy_header(path, data, size);
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
  }
  try {
    bool checked = false;
    const npy::NpyArray array =
        npy::read_npy(path, uint64_t{1} << 32, [&](const npy::NpyHeader&) { checked = true; });
    const npy::NpyHeader& h = array.header;
    if (!checked || array.data.size() != h.data_bytes ||
        h.data_bytes != h.element_count() * static_cast<uint64_t>(h.dtype.item_bytes) ||
        array.size_bytes != size || h.data_offset + h.data_bytes != size) {
      std::fprintf(stderr, "finding: inconsistent array %s of %s, %zu data bytes\n",
                   h.shape_text().c_str(), h.dtype.name().c_str(), array.data.size());
      std::abort();
    }
    double sum = 0;
    for (uint64_t i = 0; i < h.element_count(); ++i) {
      if (h.dtype.is_integer()) {
        int64_t v = 0;
        if (array.int_at(i, v)) sum += static_cast<double>(v);
      } else {
        const double v = array.float_at(i);
        if (std::isfinite(v)) sum += v;
      }
      (void)array.offset_of(i);
    }
    if (sum == 0.5) std::fprintf(stderr, " ");  // keeps the reads
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
  }
  return 0;
}
