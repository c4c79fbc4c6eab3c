#pragma once
// Shared by the plugin tests: the build tree's plugins, loaded the way the host loads them.

#include <vaelab/backend.hpp>
#include <vaelab/registry.hpp>

namespace vaelab::testing {

/// The registry of the build tree's plugin folder, scanned once.
inline const Registry& build_registry() {
  static const Registry registry({VAELAB_TEST_PLUGIN_DIR});
  return registry;
}

/// torch-cpu with one intra-op and one BLAS thread (results independent of the machine).
inline PluginPtr<Backend> single_thread_cpu() {
  return build_registry().create<Backend>("torch-cpu",
                                          "threads = 1\nblas_threads = 1\ninterop_threads = 1\n");
}

}  // namespace vaelab::testing
