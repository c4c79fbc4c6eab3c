#pragma once
/// The mapping between spdlog's levels and the ABI's vl_log_level, used on both sides of the
/// plugin boundary.

#include <spdlog/common.h>

#include <vaelab/abi/plugin_abi.h>

namespace vaelab {

inline vl_log_level to_vl_level(spdlog::level::level_enum level) noexcept {
  switch (level) {
    case spdlog::level::trace: return VL_LOG_LEVEL_TRACE;
    case spdlog::level::debug: return VL_LOG_LEVEL_DEBUG;
    case spdlog::level::info: return VL_LOG_LEVEL_INFO;
    case spdlog::level::warn: return VL_LOG_LEVEL_WARN;
    case spdlog::level::err: return VL_LOG_LEVEL_ERROR;
    case spdlog::level::critical: return VL_LOG_LEVEL_CRITICAL;
    default: return VL_LOG_LEVEL_OFF;
  }
}

inline spdlog::level::level_enum to_spdlog_level(vl_log_level level) noexcept {
  switch (level) {
    case VL_LOG_LEVEL_TRACE: return spdlog::level::trace;
    case VL_LOG_LEVEL_DEBUG: return spdlog::level::debug;
    case VL_LOG_LEVEL_INFO: return spdlog::level::info;
    case VL_LOG_LEVEL_WARN: return spdlog::level::warn;
    case VL_LOG_LEVEL_ERROR: return spdlog::level::err;
    case VL_LOG_LEVEL_CRITICAL: return spdlog::level::critical;
    default: return spdlog::level::off;
  }
}

}  // namespace vaelab
