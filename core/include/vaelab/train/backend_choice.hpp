#pragma once
// `backend.plugin = "auto"` among CPU backends: the fastest here, measured (docs/backends.md,
// "auto"). The measurement — a few training steps of the paper's fully-connected VAE on each CPU
// backend, with the thread count a run would get — is kept per machine in a small JSON file, so
// it is paid once per machine (and per vaelab version and thread count), not once per run.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace vaelab {

class Registry;

/// What was measured, or read back, for one machine.
struct BackendSpeeds {
  std::string machine;                             ///< the key: CPU model, ISA, BLAS core, threads, version
  std::map<std::string, double> images_per_second;  ///< per CPU backend
  std::string fastest;                             ///< the choice (choose_fastest_backend)
  std::filesystem::path file;                       ///< where it is kept ("" when it could not be)
  bool from_file = false;                          ///< read back rather than measured now
};

/// The choice among measured speeds: the fastest, except that a backend earlier in
/// `preference_order` wins when it is within `tie` (a fraction, 0.05 = 5 %) of the fastest, so
/// noise does not flip a near-tie. Throws when `speeds` is empty.
std::string choose_fastest_backend(const std::map<std::string, double>& speeds,
                                   const std::vector<std::string>& preference_order, double tie = 0.05);

/// Where measurements are kept: $VAELAB_CACHE_DIR, else $XDG_CACHE_HOME/vaelab, else
/// $HOME/.cache/vaelab.
std::filesystem::path vaelab_cache_dir();

/// This machine as a key: "CPU model | ISA | OpenBLAS core | N threads | vaelab version".
std::string machine_key(int threads);

/// The speeds of `candidates` (CPU backends that can be created here, most preferred first) on
/// this machine: read from vaelab_cache_dir()/backend-speed.json when it holds this machine's
/// entry for exactly these candidates, else measured (under a lock, so concurrent runs of a study
/// measure once) and written there. A cache that cannot be read or written is warned about and
/// the speeds measured anyway. Needs the vae-mlp model plugin (throws without it).
BackendSpeeds cpu_backend_speeds(const Registry& registry, const std::vector<std::string>& candidates);

}  // namespace vaelab
