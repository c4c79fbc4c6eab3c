// The IDX reader (data-sources/idx/idx_reader.cpp) on a file holding the input: raw, or gzip when
// the input starts with the gzip magic. The size limit is the one the idx source sets for images.

#include "fuzz_common.hpp"
#include "idx_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vaelab::fuzz::InputFile file("idx");
  const std::string& path = file.write(data, size);
  try {
    const vaelab::plugins::IdxArray array =
        vaelab::plugins::read_idx(path, uint64_t{1} << 30, "image");
    uint64_t product = 1;
    for (const int64_t d : array.dims) product *= static_cast<uint64_t>(d);
    if (array.dims.empty() || array.dims.size() > 4 || product != array.data.size()) {
      std::fprintf(stderr, "finding: dimensions %s do not match %zu data bytes\n",
                   vaelab::plugins::join_dims(array.dims).c_str(), array.data.size());
      std::abort();
    }
    (void)vaelab::plugins::digest_file(path);
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e, path);
  }
  return 0;
}
