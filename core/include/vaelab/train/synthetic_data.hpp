#pragma once
// Stage 3 of a run, synthetic data (docs/architecture.md): what the synthetic and mixed regimes
// train on, from a sample pool file or a fitted generator, preprocessed like the real images.

#include <cstdint>
#include <string>

#include <torch/types.h>

#include <vaelab/generator.hpp>
#include <vaelab/registry.hpp>
#include <vaelab/train/run_config.hpp>
#include <vaelab/train/session.hpp>
#include <vaelab/train/training_stream.hpp>

namespace vaelab {

/// The synthetic images of a run: a fixed set (generator.pool, or k × |D_train| images sampled
/// once from generator.directory) or, with [train.synthetic] fresh = true, a generator sampled
/// anew every effective epoch through `producer`.
struct SyntheticData {
  torch::Tensor images;                 ///< the fixed set, preprocessed (undefined when fresh)
  PluginPtr<Generator> generator;       ///< fresh: what `producer` samples; keep it alive as long
  SyntheticStream::Producer producer;   ///<   as the stream that calls it
  uint64_t first_seed = 0;              ///< fresh: the seed of the first image sampled
  std::string source;                   ///< the pool file or generator folder
  int64_t count = 0;                    ///< distinct synthetic images the run trains on
  double seconds = 0;                   ///< reading or sampling the fixed set
};

/// The synthetic data of the session's run for `epochs` effective epochs, checked against the
/// real training images (8-bit, same shape) and logged. Empty for a regime without synthetic
/// images. Throws ConfigError naming the key for a missing or unusable pool or generator.
SyntheticData open_synthetic_data(const RunConfig& config, Session& session, int64_t epochs);

/// The fitted generator in `directory` (vaelab generator fit), attached to `backend`; `name` is
/// set to its plugin's name.
PluginPtr<Generator> open_generator(const std::string& directory, Backend& backend, std::string& name);

}  // namespace vaelab
