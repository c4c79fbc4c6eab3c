#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <vaelab/data_source.hpp>
#include <vaelab/plugin_kind.hpp>

namespace vaelab {

class Backend;

/// How much a generator may spend on fitting, and where it keeps its checkpoints.
struct FitBudget {
  int64_t steps = 0;   ///< total optimizer steps of the fit; 0 = the plugin's own default
  double seconds = 0;  ///< wall-clock cap for this call; 0 = none
  /// When not empty, the plugin calls save(checkpoint_directory) every checkpoint_every_seconds
  /// (0 = only at the end) and when it stops early, so a killed fit loses at most that much.
  std::string checkpoint_directory;
  double checkpoint_every_seconds = 0;
};

/// Progress callback: (step, total_steps, loss). Return false to stop early (the plugin then
/// checkpoints, if asked to, and returns normally).
using FitProgress = std::function<bool(int64_t, int64_t, double)>;

/// A synthetic-data generator plugin (docs/architecture.md, "The interfaces"): fitted to a training split, saved, and
/// sampled with one seed per image so image i is reproducible alone, whatever the batch size.
///
/// Life cycle, as the host drives it: create(config) → attach(backend) → either fit(train, ...)
/// or load(dir) [→ fit(train, ...) again, which resumes from the loaded step counter up to
/// budget.steps] → sample(...) any number of times → save(dir).
class Generator {
 public:
  virtual ~Generator() = default;
  /// The backend the generator's networks run on (device, threads, layer factory). Called once,
  /// before fit or load. The backend outlives the generator.
  virtual void attach(Backend& backend) = 0;
  /// Fits to `train` (uint8 images; continuous datasets are refused with a vaelab::Error).
  /// After load(), continues from the saved step counter.
  virtual void fit(const ImageSet& train, const FitBudget& budget, const FitProgress& progress) = 0;
  /// Writes everything needed to sample (and to resume fitting) into `directory`, which exists.
  /// Every file is written atomically (temporary name, then rename).
  virtual void save(const std::string& directory) const = 0;
  /// Reads what save() wrote; a missing or corrupt file is a vaelab::Error naming it.
  virtual void load(const std::string& directory) = 0;
  /// Samples images first_seed, first_seed + 1, ... first_seed + n - 1, in the training shape.
  /// labels are -1.
  virtual ImageSet sample(int64_t n, uint64_t first_seed) = 0;
  /// One JSON object: {"what": ..., "parameters": N, "fit_steps": N, "fit_seconds": S, ...}.
  virtual std::string describe() const = 0;
};

template <>
struct PluginKindOf<Generator> {
  static constexpr vl_plugin_kind value = VL_PLUGIN_KIND_GENERATOR;
};

}  // namespace vaelab
