#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <vaelab/data_source.hpp>
#include <vaelab/plugin_kind.hpp>

namespace vaelab {

/// How much a generator may spend on fitting.
struct FitBudget {
  int64_t steps = 0;    ///< optimizer steps; 0 = the plugin's own default
  double seconds = 0;   ///< wall-clock cap; 0 = none
};

/// Progress callback: (step, total_steps, loss). Return false to stop early.
using FitProgress = std::function<bool(int64_t, int64_t, double)>;

/// A synthetic-data generator plugin (DESIGN.md §4): fitted to a training split, saved, and
/// sampled with one seed per image so image i is reproducible alone, whatever the batch size.
class Generator {
 public:
  virtual ~Generator() = default;
  virtual void fit(const ImageSet& train, const FitBudget& budget, const FitProgress& progress) = 0;
  virtual void save(const std::string& directory) const = 0;
  virtual void load(const std::string& directory) = 0;
  /// Samples images first_seed, first_seed + 1, ... first_seed + n - 1, in the training shape.
  virtual ImageSet sample(int64_t n, uint64_t first_seed) = 0;
  /// What it is, its parameter count and what fitting cost.
  virtual std::string describe() const = 0;
};

template <>
struct PluginKindOf<Generator> {
  static constexpr vl_plugin_kind value = VL_PLUGIN_KIND_GENERATOR;
};

}  // namespace vaelab
