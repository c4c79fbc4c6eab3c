// Plugin machinery: the plugin kinds by name.
#include <vaelab/plugin_kind.hpp>

namespace vaelab {

std::string_view kind_name(vl_plugin_kind kind) noexcept {
  switch (kind) {
    case VL_PLUGIN_KIND_BACKEND: return "backend";
    case VL_PLUGIN_KIND_MODEL: return "model";
    case VL_PLUGIN_KIND_GENERATOR: return "generator";
    case VL_PLUGIN_KIND_DATA_SOURCE: return "data-source";
    default: return "invalid";
  }
}

vl_plugin_kind kind_from_name(std::string_view name) noexcept {
  for (vl_plugin_kind kind : {VL_PLUGIN_KIND_BACKEND, VL_PLUGIN_KIND_MODEL,
                              VL_PLUGIN_KIND_GENERATOR, VL_PLUGIN_KIND_DATA_SOURCE}) {
    if (kind_name(kind) == name) return kind;
  }
  return VL_PLUGIN_KIND_INVALID;
}

}  // namespace vaelab
