// `vaelab plugins` and `vaelab plugins show NAME`.

#include <iomanip>
#include <iostream>

#include <nlohmann/json.hpp>

#include <vaelab/registry.hpp>

#include "commands.hpp"

namespace vaelab::cli {
namespace {

Registry scan(const std::vector<std::string>& extra_paths) {
  Registry registry(Registry::search_path(extra_paths));
  registry.check_create();
  return registry;
}

std::string status_of(const PluginRecord& r) {
  if (r.ok()) return "ok";
  return std::string(refusal_name(r.refusal)) + ": " + r.message;
}

}  // namespace

int plugins_list(const std::vector<std::string>& extra_paths, bool json) {
  const Registry registry = scan(extra_paths);
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : registry.records()) {
      out.push_back({{"name", r.name},
                     {"kind", r.kind == VL_PLUGIN_KIND_INVALID ? "" : std::string(kind_name(r.kind))},
                     {"version", r.version},
                     {"abi", r.abi},
                     {"path", r.path.string()},
                     {"preference", r.preference},
                     {"status", status_of(r)}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << std::left << std::setw(14) << "KIND" << std::setw(16) << "NAME" << std::setw(9)
            << "VERSION" << std::setw(6) << "ABI" << "STATUS / PATH\n";
  for (const auto& r : registry.records()) {
    std::cout << std::setw(14) << (r.kind == VL_PLUGIN_KIND_INVALID ? "?" : std::string(kind_name(r.kind)))
              << std::setw(16) << (r.name.empty() ? "?" : r.name) << std::setw(9)
              << (r.version.empty() ? "-" : r.version) << std::setw(6)
              << (r.abi.empty() ? "-" : r.abi) << status_of(r) << "\n"
              << std::setw(45) << "" << r.path.string() << "\n";
  }
  std::cout << "searched:";
  for (const auto& d : registry.search_dirs()) std::cout << " " << d.string();
  std::cout << "\n";
  return 0;
}

int plugins_show(const std::vector<std::string>& extra_paths, const std::string& name) {
  const Registry registry(Registry::search_path(extra_paths));
  bool found = false;
  for (const auto& r : registry.records()) {
    if (r.name != name) continue;
    found = true;
    std::cout << "# " << kind_name(r.kind) << " plugin '" << r.name << "' " << r.version << " (ABI "
              << r.abi << ")\n# " << r.description << "\n# " << r.path.string() << "\n";
    if (!r.ok()) std::cout << "# refused: " << status_of(r) << "\n";
    std::cout << "\n" << r.defaults_toml << "\n";
  }
  if (!found) throw Error("no plugin named '" + name + "'; `vaelab plugins` lists what was found");
  return 0;
}

}  // namespace vaelab::cli
