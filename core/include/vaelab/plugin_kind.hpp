#pragma once

#include <string_view>

#include <vaelab/abi/plugin_abi.h>

namespace vaelab {

/// Maps a plugin interface (Backend, Model, Generator, DataSource) to its vl_plugin_kind.
/// Specialised next to each interface.
template <class Interface>
struct PluginKindOf;

/// "backend", "model", "generator", "data-source" (as in plugin file names); "invalid" otherwise.
std::string_view kind_name(vl_plugin_kind kind) noexcept;

/// The inverse of kind_name(); VL_PLUGIN_KIND_INVALID for an unknown word.
vl_plugin_kind kind_from_name(std::string_view name) noexcept;

}  // namespace vaelab
