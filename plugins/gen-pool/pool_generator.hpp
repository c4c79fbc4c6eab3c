#pragma once
// gen-pool: a Generator that serves an existing sample pool (vaelab/io/pool.hpp). Torch-free.

#include <memory>
#include <string>

#include <vaelab/config.hpp>
#include <vaelab/generator.hpp>
#include <vaelab/io/pool.hpp>

namespace vaelab::plugins {

/// Serves pool images: sample(n, s) returns images (s + i) mod count. Not fitted (fit throws);
/// save/load write and read gen-pool.json, which names the pool by absolute path and checksum.
class PoolGenerator final : public Generator {
 public:
  /// Opens config `path` when it is not empty (a bad pool is an error here, at create time).
  explicit PoolGenerator(const ConfigTable& config);

  /// A pool needs no backend: ignored.
  void attach(Backend& backend) override;
  /// Always throws vaelab::Error: a pool is sampled already and has nothing to fit.
  void fit(const ImageSet& train, const FitBudget& budget, const FitProgress& progress) override;
  void save(const std::string& directory) const override;
  void load(const std::string& directory) override;
  ImageSet sample(int64_t n, uint64_t first_seed) override;
  std::string describe() const override;

  /// The file save() writes in its folder.
  static constexpr const char* kSavedFile = "gen-pool.json";

 private:
  const PoolReader& pool() const;
  std::unique_ptr<PoolReader> pool_;
};

}  // namespace vaelab::plugins
