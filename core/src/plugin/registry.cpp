// Plugin machinery: finding, checking and loading plugin libraries (Boost.DLL).
#include <vaelab/registry.hpp>

// Boost 1.74's library_info.hpp uses std::vector and std::string without including them.
#include <string>
#include <vector>

#include <boost/dll/library_info.hpp>
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <vaelab/build_info.h>
#include <vaelab/config.hpp>
#include <vaelab/log.hpp>

namespace fs = std::filesystem;

namespace vaelab {
namespace {

constexpr std::string_view kFilePrefix = "libvaelab-";
constexpr std::string_view kFileSuffix = ".so";

// Libraries stay mapped for the life of the process: LibTorch, CUDA, exception tables and static
// destructors do not survive dlclose. This list is never destroyed.
std::vector<std::shared_ptr<void>>& loaded_libraries() {
  static auto* libraries = new std::vector<std::shared_ptr<void>>();
  return *libraries;
}

std::string user_text(uid_t uid) {
  std::string text = "uid " + std::to_string(uid);
  std::vector<char> buffer(16384);
  struct passwd entry {};
  struct passwd* found = nullptr;
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    text += std::string(" (") + found->pw_name + ")";
  }
  return text;
}

std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Why `p` (called `what` in the message: "file", "folder /x") must not be trusted with a plugin,
// or "" when it may be: write access for group or others, or an owner other than root and the
// user running vaelab, would let someone else replace the code this process is about to run.
std::string unsafe_reason(const fs::path& p, const std::string& what) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    return what + " cannot be checked: " + std::strerror(errno);
  }
  if ((st.st_mode & S_IWOTH) != 0) {
    return what + " is world-writable (mode " + mode_text(st.st_mode) +
           "); anyone could replace the plugin";
  }
  if ((st.st_mode & S_IWGRP) != 0) {
    return what + " is group-writable (mode " + mode_text(st.st_mode) + "); any member of group " +
           std::to_string(st.st_gid) + " could replace the plugin";
  }
  const uid_t me = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != me) {
    return what + " is owned by " + user_text(st.st_uid) +
           ", neither root nor the user running vaelab (" + user_text(me) +
           "); that user could replace the plugin";
  }
  return "";
}

// The kind and name a plugin's file name gives, libvaelab-<kind>-<name>.so, for a file refused
// before its descriptors were read.
void name_from_file(PluginRecord& record) {
  const std::string file = record.path.filename().string();
  const std::string stem =
      file.substr(kFilePrefix.size(), file.size() - kFilePrefix.size() - kFileSuffix.size());
  for (const vl_plugin_kind kind : {VL_PLUGIN_KIND_BACKEND, VL_PLUGIN_KIND_MODEL,
                                    VL_PLUGIN_KIND_GENERATOR, VL_PLUGIN_KIND_DATA_SOURCE}) {
    const std::string prefix = std::string(kind_name(kind)) + "-";
    if (stem.size() > prefix.size() && stem.compare(0, prefix.size(), prefix) == 0) {
      record.kind = kind;
      record.name = stem.substr(prefix.size());
      return;
    }
  }
}

std::string abi_string(uint32_t major, uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

bool is_elf(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "\x7f" "ELF", 4) == 0;
}

PluginRecord refused_file(const fs::path& file, Refusal refusal, std::string message) {
  PluginRecord record;
  record.path = file;
  record.refusal = refusal;
  record.message = std::move(message);
  return record;
}

}  // namespace

std::string_view refusal_name(Refusal refusal) noexcept {
  switch (refusal) {
    case Refusal::none: return "ok";
    case Refusal::not_a_plugin: return "not_a_plugin";
    case Refusal::abi_major_mismatch: return "abi_major_mismatch";
    case Refusal::abi_minor_newer: return "abi_minor_newer";
    case Refusal::fingerprint_mismatch: return "fingerprint_mismatch";
    case Refusal::create_failed: return "create_failed";
    case Refusal::duplicate_name: return "duplicate_name";
    case Refusal::unsafe_permissions: return "unsafe_permissions";
  }
  return "unknown";
}

PluginError::PluginError(Refusal refusal, const std::string& message)
    : Error(message), refusal_(refusal) {}
PluginError::~PluginError() = default;

std::vector<fs::path> Registry::search_path(const std::vector<std::string>& config_paths,
                                            const fs::path& config_dir) {
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (size_t i = 0; i < config_paths.size(); ++i) {
    const std::string& entry = config_paths[i];
    if (entry.empty()) continue;
    fs::path dir(entry);
    if (dir.is_relative()) {
      if (config_dir.empty()) {
        throw ConfigError("plugins.paths[" + std::to_string(i) + "]: '" + entry +
                          "' is a relative folder and there is no config file folder to resolve "
                          "it against; plugins are never searched relative to the current "
                          "directory: give an absolute folder");
      }
      const fs::path base = fs::absolute(config_dir, ec);
      if (ec) {
        throw ConfigError("plugins.paths[" + std::to_string(i) + "]: '" + entry +
                          "': cannot make the config folder " + config_dir.string() +
                          " absolute: " + ec.message());
      }
      dir = base / dir;
    }
    dirs.push_back(dir.lexically_normal());
  }
  if (const char* env = std::getenv("VAELAB_PLUGIN_PATH"); env != nullptr) {
    std::string list(env);
    size_t start = 0;
    while (start <= list.size()) {
      const size_t colon = list.find(':', start);
      const std::string item = list.substr(start, colon - start);
      if (!item.empty()) {
        if (fs::path(item).is_relative()) {
          throw Error("VAELAB_PLUGIN_PATH: '" + item +
                      "' is a relative folder; plugins are never searched relative to the "
                      "current directory: give absolute folders");
        }
        dirs.emplace_back(fs::path(item).lexically_normal());
      }
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  const fs::path exe = fs::path(boost::dll::program_location(ec).string());
  if (!ec && exe.is_absolute()) {
    dirs.push_back(exe.parent_path().parent_path() / "lib" / "vaelab" / "plugins");
  }
  // A relative install prefix would mean the current directory: never searched.
  if (fs::path(VAELAB_PLUGIN_INSTALL_DIR).is_absolute())
    dirs.emplace_back(VAELAB_PLUGIN_INSTALL_DIR);
  // Drop repeats (the build tree and the install dir may coincide), keep the first.
  std::vector<fs::path> unique;
  for (const auto& d : dirs) {
    const fs::path normal = fs::weakly_canonical(d, ec);
    const fs::path key = ec ? d : normal;
    if (std::find(unique.begin(), unique.end(), key) == unique.end()) unique.push_back(key);
  }
  return unique;
}

std::vector<fs::path> Registry::search_path(const std::vector<std::string>& config_paths) {
  return search_path(config_paths, fs::path());
}

Registry::Registry(std::vector<fs::path> search_dirs) : search_dirs_(std::move(search_dirs)) {
  for (const auto& dir : search_dirs_) {
    if (dir.is_relative()) {
      throw Error("plugin folder '" + dir.string() +
                  "' is relative; plugins are searched in absolute folders only, never relative "
                  "to the current directory");
    }
  }
  for (const auto& dir : search_dirs_) scan_dir(dir);
}

void Registry::scan_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    logger().debug("plugin folder {} does not exist; skipped", dir.string());
    return;
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > kFilePrefix.size() + kFileSuffix.size() &&
        name.compare(0, kFilePrefix.size(), kFilePrefix) == 0 &&
        name.compare(name.size() - kFileSuffix.size(), kFileSuffix.size(), kFileSuffix) == 0) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());  // deterministic order within a folder
  const std::string dir_unsafe = unsafe_reason(dir, "folder " + dir.string());
  for (const auto& file : files) {
    if (!dir_unsafe.empty()) {
      records_.push_back(refused_file(file, Refusal::unsafe_permissions, dir_unsafe));
      name_from_file(records_.back());
      continue;
    }
    scan_file(file);
  }
}

void Registry::scan_file(const fs::path& file) {
  // The same file reached through two search folders is one plugin.
  for (const auto& r : records_) {
    std::error_code ec;
    if (fs::equivalent(r.path, file, ec)) return;
  }
  std::error_code exists_ec;
  if (!fs::exists(file, exists_ec)) {
    records_.push_back(refused_file(
        file, Refusal::not_a_plugin,
        "cannot be read: " +
            (exists_ec ? exists_ec.message() : std::string("a symbolic link to nothing"))));
    return;
  }
  // The file itself (stat follows a symbolic link to it) and, for a link, the folder of the file
  // it points to: whoever may write there may replace what is loaded.
  std::string unsafe = unsafe_reason(file, "file");
  std::error_code link_ec;
  if (unsafe.empty() && fs::is_symlink(file, link_ec)) {
    const fs::path target = fs::canonical(file, link_ec);
    if (link_ec) {
      unsafe = "file is a symbolic link that cannot be resolved: " + link_ec.message();
    } else {
      unsafe = unsafe_reason(target.parent_path(), "folder " + target.parent_path().string() +
                                                       " (of the link's target " + target.string() +
                                                       ")");
    }
  }
  if (!unsafe.empty()) {
    records_.push_back(refused_file(file, Refusal::unsafe_permissions, unsafe));
    name_from_file(records_.back());
    return;
  }
  if (!is_elf(file)) {
    records_.push_back(refused_file(file, Refusal::not_a_plugin, "not a shared library (no ELF header)"));
    return;
  }
  // Look for the entry symbol without running any of the file's code.
  try {
    boost::dll::library_info info(boost::dll::fs::path(file.string()));
    const std::vector<std::string> symbols = info.symbols();
    if (std::find(symbols.begin(), symbols.end(), VL_PLUGIN_ENTRY_SYMBOL) == symbols.end()) {
      records_.push_back(refused_file(file, Refusal::not_a_plugin,
                                      "exports no " VL_PLUGIN_ENTRY_SYMBOL " symbol"));
      return;
    }
  } catch (const std::exception& e) {
    // Boost 1.74 throws a bare "basic_ios::clear: iostream error" on a file it cannot parse.
    records_.push_back(
        refused_file(file, Refusal::not_a_plugin, "not a readable shared library"));
    return;
  }

  std::shared_ptr<boost::dll::shared_library> library;
  try {
    library = std::make_shared<boost::dll::shared_library>(
        boost::dll::fs::path(file.string()),
        boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    records_.push_back(
        refused_file(file, Refusal::not_a_plugin, std::string("cannot be loaded: ") + e.what()));
    return;
  }
  std::shared_ptr<void> keep(library, library.get());
  loaded_libraries().push_back(keep);

  const auto entry = library->get<const vl_plugin_set*()>(VL_PLUGIN_ENTRY_SYMBOL);
  const vl_plugin_set* set = entry();
  if (set == nullptr || set->struct_size < offsetof(vl_plugin_set, abi_minor) + sizeof(uint32_t)) {
    records_.push_back(refused_file(file, Refusal::not_a_plugin,
                                    VL_PLUGIN_ENTRY_SYMBOL " returned no plugin set"));
    return;
  }
  if (set->abi_major != VL_ABI_VERSION_MAJOR) {
    records_.push_back(refused_file(
        file, Refusal::abi_major_mismatch,
        "plugin ABI " + abi_string(set->abi_major, set->abi_minor) + ", host ABI " +
            abi_string(VL_ABI_VERSION_MAJOR, VL_ABI_VERSION_MINOR) + ": majors differ"));
    records_.back().abi = abi_string(set->abi_major, set->abi_minor);
    return;
  }
  if (set->struct_size < sizeof(vl_plugin_set) || set->descriptors == nullptr || set->count == 0) {
    records_.push_back(refused_file(file, Refusal::not_a_plugin, "plugin set is empty or truncated"));
    return;
  }
  for (uint32_t i = 0; i < set->count; ++i) add_descriptor(set->descriptors[i], file, keep);
}

void Registry::add_descriptor(const vl_plugin_descriptor* d, const fs::path& file,
                              const std::shared_ptr<void>& library) {
  PluginRecord record;
  record.path = file;
  record.library = library;
  if (d == nullptr || d->struct_size < offsetof(vl_plugin_descriptor, abi_minor) + sizeof(uint32_t)) {
    record.refusal = Refusal::not_a_plugin;
    record.message = "descriptor is missing or truncated";
    records_.push_back(std::move(record));
    return;
  }
  record.abi = abi_string(d->abi_major, d->abi_minor);
  if (d->abi_major != VL_ABI_VERSION_MAJOR) {
    record.refusal = Refusal::abi_major_mismatch;
    record.message = "plugin ABI " + record.abi + ", host ABI " +
                     abi_string(VL_ABI_VERSION_MAJOR, VL_ABI_VERSION_MINOR) + ": majors differ";
    records_.push_back(std::move(record));
    return;
  }
  // Within one major, every field up to `destroy` has a fixed place: name the plugin even when
  // it is refused below.
  if (d->struct_size >= sizeof(vl_plugin_descriptor)) {
    record.name = d->name != nullptr ? d->name : "";
    record.kind = d->kind;
    record.version = d->version != nullptr ? d->version : "";
    record.description = d->description != nullptr ? d->description : "";
    record.defaults_toml = d->defaults_toml != nullptr ? d->defaults_toml : "";
    record.fingerprint = d->build_fingerprint != nullptr ? d->build_fingerprint : "";
  }
  if (d->abi_minor > VL_ABI_VERSION_MINOR) {
    record.refusal = Refusal::abi_minor_newer;
    record.message = "plugin ABI " + record.abi + " is newer than the host's " +
                     abi_string(VL_ABI_VERSION_MAJOR, VL_ABI_VERSION_MINOR) +
                     ": rebuild the plugin against this SDK or upgrade vaelab";
    records_.push_back(std::move(record));
    return;
  }
  if (d->struct_size < sizeof(vl_plugin_descriptor)) {
    record.refusal = Refusal::not_a_plugin;
    record.message = "descriptor is " + std::to_string(d->struct_size) + " bytes, ABI " +
                     record.abi + " needs " + std::to_string(sizeof(vl_plugin_descriptor));
    records_.push_back(std::move(record));
    return;
  }
  if (kind_name(d->kind) == "invalid" || record.name.empty() || d->create == nullptr ||
      d->destroy == nullptr) {
    record.refusal = Refusal::not_a_plugin;
    record.message = "descriptor has no valid kind, name, create or destroy";
    records_.push_back(std::move(record));
    return;
  }
  if (record.fingerprint != VAELAB_BUILD_FINGERPRINT) {
    record.refusal = Refusal::fingerprint_mismatch;
    record.message = "plugin built as '" + record.fingerprint + "', host built as '" +
                     VAELAB_BUILD_FINGERPRINT + "'";
    records_.push_back(std::move(record));
    return;
  }
  for (const auto& other : records_) {
    if (other.ok() && other.kind == record.kind && other.name == record.name) {
      record.refusal = Refusal::duplicate_name;
      record.message = std::string(kind_name(record.kind)) + " '" + record.name +
                       "' is already provided by " + other.path.string();
      records_.push_back(std::move(record));
      return;
    }
  }
  if (d->probe != nullptr) {
    record.preference = d->probe(host_api());
    if (record.preference <= 0) {
      record.refusal = Refusal::create_failed;
      record.message = "probe says it cannot run on this machine";
    }
  }
  record.descriptor = d;
  records_.push_back(std::move(record));
}

const PluginRecord& Registry::find(vl_plugin_kind kind, std::string_view name) const {
  const PluginRecord* refused = nullptr;
  std::vector<std::string> available;
  for (const auto& r : records_) {
    if (r.kind != kind) continue;
    if (r.name == name) {
      if (r.ok()) return r;
      if (refused == nullptr) refused = &r;
    } else if (r.ok()) {
      available.push_back(r.name);
    }
  }
  if (refused != nullptr) {
    throw PluginError(refused->refusal,
                      std::string(kind_name(kind)) + " plugin '" + std::string(name) + "' (" +
                          refused->path.string() + ") was refused: " +
                          std::string(refusal_name(refused->refusal)) + ": " + refused->message);
  }
  std::string list;
  for (const auto& a : available) list += (list.empty() ? "" : ", ") + a;
  std::string dirs;
  for (const auto& d : search_dirs_) dirs += (dirs.empty() ? "" : ":") + d.string();
  const std::string best = closest_match(name, available);
  throw PluginError(Refusal::none,
                    "no " + std::string(kind_name(kind)) + " plugin named '" + std::string(name) +
                        "'" + (best.empty() ? "" : " (did you mean '" + best + "'?)") +
                        "; available: " + (list.empty() ? "none" : list) +
                        "; searched: " + dirs);
}

void* Registry::create_raw(vl_plugin_kind kind, std::string_view name,
                           const std::string& config_toml, void (*&destroy)(void*),
                           std::shared_ptr<void>& library) const {
  const PluginRecord& record = find(kind, name);
  vl_status status{};
  status.struct_size = sizeof(vl_status);
  status.code = VL_STATUS_CODE_INVALID;
  void* instance = nullptr;
  const vl_status_code code =
      record.descriptor->create(host_api(), config_toml.c_str(), &instance, &status);
  if (code != VL_STATUS_CODE_OK || instance == nullptr) {
    status.message[VL_STATUS_MESSAGE_CAPACITY - 1] = '\0';
    const std::string detail = status.message[0] != '\0' ? status.message : "no message";
    throw PluginError(Refusal::create_failed, std::string(kind_name(kind)) + " plugin '" +
                                                  record.name + "' failed to start: " + detail);
  }
  destroy = record.descriptor->destroy;
  library = record.library;
  return instance;
}

void Registry::check_create() {
  for (auto& record : records_) {
    if (!record.ok()) continue;
    vl_status status{};
    status.struct_size = sizeof(vl_status);
    void* instance = nullptr;
    const vl_status_code code = record.descriptor->create(
        host_api(), record.defaults_toml.c_str(), &instance, &status);
    if (code == VL_STATUS_CODE_OK && instance != nullptr) {
      record.descriptor->destroy(instance);
    } else {
      status.message[VL_STATUS_MESSAGE_CAPACITY - 1] = '\0';
      record.refusal = Refusal::create_failed;
      record.message = status.message[0] != '\0' ? status.message : "no message";
    }
  }
}

}  // namespace vaelab
