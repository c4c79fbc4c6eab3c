#pragma once
// Sample pools on disk: the synthetic images a generator produced, with the seed of each image,
// the generator's identity and config hash, and provenance. Format: docs/pool-format.md.
// Torch-free (part of vaelab::sdk) so that torch-free plugins can read pools.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <vaelab/data_source.hpp>

namespace vaelab {

/// What a pool says about itself.
struct PoolHeader {
  std::string generator;          ///< plugin name, e.g. "gen-diffusion"
  std::string generator_version;  ///< plugin version
  std::string config_hash;        ///< hash of the generator's resolved config (hex)
  std::string provenance;         ///< one JSON object: training data, fit, command line, time
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
};

/// Writes a pool to `path` + ".tmp", in chunks, and renames it to `path` on commit(). Destroyed
/// without commit(), it removes the temporary file: a pool either exists whole or not at all.
class PoolWriter {
 public:
  PoolWriter(std::string path, PoolHeader header);
  ~PoolWriter();
  PoolWriter(const PoolWriter&) = delete;
  PoolWriter& operator=(const PoolWriter&) = delete;
  /// Appends images (in the header's shape) with their seeds (seeds.size() == images.count).
  void append(const ImageSet& images, const std::vector<uint64_t>& seeds);
  /// Flushes, fsyncs and renames. Throws vaelab::Error naming the path on any I/O failure.
  void commit();
  int64_t count() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Opens a pool read-only (memory-mapped). Validates the whole layout and every checksum before
/// returning: a corrupt or truncated file is a vaelab::Error "<path>: byte <offset>: ...". Sizes
/// in the header are checked against fixed limits and the file size before anything is mapped or
/// allocated.
class PoolReader {
 public:
  explicit PoolReader(std::string path);
  ~PoolReader();
  PoolReader(const PoolReader&) = delete;
  PoolReader& operator=(const PoolReader&) = delete;
  const PoolHeader& header() const;
  const std::string& path() const;
  /// The header's CRC-32 as 8 hex digits. The header covers the checksums of the meta block, the
  /// seeds and every chunk of images, so this stands for the whole file's content.
  const std::string& checksum() const;
  int64_t count() const;
  int64_t image_bytes() const;
  /// Image i's pixels (image_bytes() bytes, C×H×W); valid while the reader lives.
  const uint8_t* image(int64_t i) const;
  uint64_t seed(int64_t i) const;
  /// Copies images [first, first + n) into an ImageSet (labels -1). Out of range is an Error.
  ImageSet read(int64_t first, int64_t n) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// The config hash a pool header records: FNV-1a 64 of `config_toml` (the generator's resolved
/// config table as TOML text), 16 lowercase hex digits.
std::string pool_config_hash(std::string_view config_toml);

}  // namespace vaelab
