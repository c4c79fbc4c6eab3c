#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <vaelab/abi/plugin_abi.h>
#include <vaelab/error.hpp>
#include <vaelab/plugin_kind.hpp>

namespace vaelab {

/// Why a plugin was not accepted. Every refusal has exactly one category.
enum class Refusal {
  none,                  ///< accepted
  not_a_plugin,          ///< not a shared library, no entry symbol, or a malformed descriptor
  abi_major_mismatch,    ///< abi_major differs from the host's
  abi_minor_newer,       ///< abi_minor newer than the host's
  fingerprint_mismatch,  ///< built with another compiler / C++ ABI / LibTorch / layout flags
  create_failed,         ///< create() returned an error (the message is the plugin's)
  duplicate_name,        ///< a plugin of the same kind and name was found earlier in the path
  unsafe_permissions,    ///< the file or its folder is writable by group or others, or owned by
                         ///< a user who is neither root nor the one running vaelab
};

/// "ok", "not_a_plugin", "abi_major_mismatch", ... (the words `vaelab plugins --json` prints).
std::string_view refusal_name(Refusal refusal) noexcept;

/// A plugin the registry found: one descriptor of one library, or one refused file.
struct PluginRecord {
  /// Empty when the file was refused before its descriptors could be read, except for
  /// unsafe_permissions: then the kind and name its file name gives (libvaelab-<kind>-<name>.so),
  /// so that asking for the plugin says why it was refused.
  std::string name;
  vl_plugin_kind kind = VL_PLUGIN_KIND_INVALID;
  std::string version;
  std::string abi;  ///< "major.minor" as the plugin declares it
  std::string fingerprint;
  std::string description;
  std::string defaults_toml;
  std::filesystem::path path;
  Refusal refusal = Refusal::none;
  std::string message;  ///< why it was refused; empty when accepted
  int32_t preference = 1;  ///< the probe's answer (1 without a probe)
  const vl_plugin_descriptor* descriptor = nullptr;  ///< null when refused before reading it
  std::shared_ptr<void> library;                     ///< keeps the library mapped

  bool ok() const { return refusal == Refusal::none; }
};

/// Thrown when a plugin cannot be found, is refused, or fails to create.
class PluginError : public Error {
 public:
  PluginError(Refusal refusal, const std::string& message);
  ~PluginError() override;
  Refusal refusal() const { return refusal_; }

 private:
  Refusal refusal_;
};

/// Frees an instance through its plugin's destroy() and keeps the library alive until then.
template <class Interface>
struct PluginDeleter {
  void (*destroy)(void*) = nullptr;
  std::shared_ptr<void> library;
  void operator()(Interface* instance) const noexcept {
    if (instance != nullptr && destroy != nullptr) destroy(static_cast<void*>(instance));
  }
};

/// An instance made by a plugin. Destroy every one before `main` returns.
template <class Interface>
using PluginPtr = std::unique_ptr<Interface, PluginDeleter<Interface>>;

/// Finds, checks and loads plugin libraries (docs/architecture.md, "The plugin boundary"). Libraries are loaded
/// RTLD_NOW | RTLD_LOCAL after their entry symbol was found without loading them, and are never
/// unloaded, even after the registry is gone.
class Registry {
 public:
  /// Scans `search_dirs` in order for files named libvaelab-*.so. Missing folders are skipped.
  ///
  /// A file is loaded only when it is safe: the search folder, the file (the file a symbolic link
  /// points to) and that file's own folder must be writable by their owner only (no group or
  /// others write bit) and owned by root or by the user running vaelab. Anything else is refused
  /// as unsafe_permissions, saying which of these is wrong, before any of its code runs.
  /// Throws Error for a relative folder: the registry never searches the current directory.
  explicit Registry(std::vector<std::filesystem::path> search_dirs);

  /// The search order: `config_paths` (the config's [plugins].paths), then VAELAB_PLUGIN_PATH
  /// (colon-separated), then <folder of the executable>/../lib/vaelab/plugins, then the install
  /// folder. Plugins are never looked for in the current directory: a relative entry of
  /// `config_paths` is resolved against `config_dir` (the folder of the config file that names it;
  /// a relative `config_dir` is taken from the current directory once, explicitly), and a relative
  /// entry of VAELAB_PLUGIN_PATH is an error. Empty entries are skipped.
  ///
  /// Throws ConfigError naming a relative `config_paths` entry when `config_dir` is empty, and
  /// Error naming a relative VAELAB_PLUGIN_PATH entry.
  static std::vector<std::filesystem::path> search_path(
      const std::vector<std::string>& config_paths, const std::filesystem::path& config_dir);

  /// search_path() without a config folder: every entry of `config_paths` must be absolute.
  static std::vector<std::filesystem::path> search_path(
      const std::vector<std::string>& config_paths);

  const std::vector<std::filesystem::path>& search_dirs() const { return search_dirs_; }

  /// Everything found, accepted or refused, in search order.
  const std::vector<PluginRecord>& records() const { return records_; }

  /// The accepted plugin of this kind and name. Throws PluginError listing what is available, or
  /// why a plugin of that name was refused.
  const PluginRecord& find(vl_plugin_kind kind, std::string_view name) const;

  /// Makes an instance from the plugin's resolved config (TOML text). Throws PluginError
  /// (Refusal::create_failed) with the plugin's own message when create() fails.
  template <class Interface>
  PluginPtr<Interface> create(std::string_view name, const std::string& config_toml) const {
    PluginDeleter<Interface> deleter;
    void* raw = create_raw(PluginKindOf<Interface>::value, name, config_toml, deleter.destroy,
                           deleter.library);
    return PluginPtr<Interface>(static_cast<Interface*>(raw), std::move(deleter));
  }

  /// Tries create() + destroy() with each accepted plugin's defaults; a failure turns the record
  /// into Refusal::create_failed. Used by `vaelab plugins`.
  void check_create();

 private:
  void scan_dir(const std::filesystem::path& dir);
  void scan_file(const std::filesystem::path& file);
  void add_descriptor(const vl_plugin_descriptor* descriptor, const std::filesystem::path& file,
                      const std::shared_ptr<void>& library);
  void* create_raw(vl_plugin_kind kind, std::string_view name, const std::string& config_toml,
                   void (*&destroy)(void*), std::shared_ptr<void>& library) const;

  std::vector<std::filesystem::path> search_dirs_;
  std::vector<PluginRecord> records_;
};

}  // namespace vaelab
