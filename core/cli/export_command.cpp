// `vaelab export RUN_DIR --torchscript OUT.pt`: a vae-torchscript run's trained module, back to
// TorchScript for use from Python.

#include "export_command.hpp"

#include <cstdio>
#include <filesystem>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/io/torchscript_vae.hpp>
#include <vaelab/train/run.hpp>

namespace fs = std::filesystem;

namespace vaelab::cli {

int export_torchscript(const std::string& run_dir, const std::string& out_file) {
  if (out_file.empty()) throw ConfigError("export: --torchscript OUT.pt is required");
  const RunStore store = RunStore::open(run_dir);
  const RunConfig config = RunConfig::load(store.config_path(), {});
  const std::string plugin = config.plugin("model");
  if (plugin != "vae-torchscript") {
    throw Error("export --torchscript: " + store.config_path().string() + " trains model plugin '" +
                plugin +
                "'; only a vae-torchscript run is a TorchScript module (its weights are in "
                "checkpoints/last.safetensors under their own names)");
  }
  const fs::path checkpoint = store.checkpoint_path("last");
  if (!fs::exists(checkpoint)) throw Error(checkpoint.string() + ": no checkpoint to export");
  const std::string path = config.section("model").sub("config").get_string("path");

  TorchScriptVae vae(path, torch::kCPU, "vae-torchscript");
  load_module_state(vae.module(), load_safetensors(checkpoint), checkpoint.string());
  vae.require_same_file(checkpoint.string());
  vae.save(out_file);

  // Read back: every parameter and buffer must be what the checkpoint holds.
  TorchScriptVae written(out_file, torch::kCPU, "export");
  const NamedTensors want = module_state(vae.module());
  const NamedTensors got = module_state(written.module());
  if (want.size() != got.size()) {
    throw Error(out_file + ": read back with " + std::to_string(got.size()) +
                " tensors, expected " + std::to_string(want.size()));
  }
  int64_t parameters = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i].first == TorchScriptVae::kFileBuffer) continue;
    if (got[i].first != want[i].first || !torch::equal(got[i].second, want[i].second)) {
      throw Error(out_file + ": read back, tensor '" + want[i].first +
                  "' differs from the checkpoint's");
    }
  }
  for (const auto& p : written.module().parameters()) parameters += p.numel();
  std::printf("%s (%lld parameters from %s; torch.jit.load it in Python)\n", out_file.c_str(),
              static_cast<long long>(parameters), checkpoint.string().c_str());
  return 0;
}

}  // namespace vaelab::cli
