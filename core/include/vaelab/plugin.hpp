#pragma once
/// The plugin SDK. A plugin author writes an ordinary C++ class that implements one of the
/// interfaces (vaelab::Backend, Model, Generator, DataSource) and has a constructor taking
/// `const vaelab::ConfigTable&` (the plugin's resolved config table). Its entry.cpp then holds
/// only the entry macro:
///
///   #include <vaelab/plugin.hpp>
///   #include <vaelab_plugin_defaults.h>   // generated from defaults.toml by vaelab_add_plugin()
///   #include "mlp_vae.hpp"
///
///   VAELAB_PLUGIN(vaelab::describe<vaelab::Model, MlpVae>(
///       "vae-mlp", "0.1.0", "Fully-connected VAE", VAELAB_PLUGIN_DEFAULTS_TOML))
///
/// VAELAB_PLUGIN takes one or more descriptors and defines the one exported C symbol. The
/// generated thunks are noexcept: an exception thrown by the constructor becomes a status with
/// its message (vaelab::ConfigError → VL_STATUS_CODE_BAD_CONFIG, anything else →
/// VL_STATUS_CODE_INTERNAL). A class may also define `static int32_t probe()` (0 = unusable
/// here, >0 = preference).
///
/// Logging: use vaelab::sdk::log(), a logger whose sink forwards each line to the host.

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>

#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>

#include <vaelab/abi/plugin_abi.h>
#include <vaelab/build_info.h>
#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/log_levels.hpp>
#include <vaelab/plugin_kind.hpp>

#ifndef VAELAB_PLUGIN_NAME
#define VAELAB_PLUGIN_NAME "plugin"
#endif

namespace vaelab::sdk {

/// The host this library was created by; set by the first create() call.
inline const vl_host*& host_slot() noexcept {
  static const vl_host* host = nullptr;
  return host;
}

/// An spdlog sink that hands each message to the host's log callback (spdlog 1.10 has no
/// callback_sink). Falls back to stderr before a host is known.
class HostSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string text(msg.payload.data(), msg.payload.size());
    const vl_host* host = host_slot();
    if (host != nullptr && host->log != nullptr) {
      host->log(host->log_context, to_vl_level(msg.level), VAELAB_PLUGIN_NAME, text.c_str());
    } else {
      std::fprintf(stderr, "[%s] %s\n", VAELAB_PLUGIN_NAME, text.c_str());
    }
  }
  void flush_() override {}
};

/// This plugin's logger. Not registered with spdlog: the host owns the only registry.
inline spdlog::logger& log() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    auto made = std::make_shared<spdlog::logger>(VAELAB_PLUGIN_NAME, std::make_shared<HostSink>());
    const vl_host* host = host_slot();
    made->set_level(host != nullptr ? to_spdlog_level(host->log_level) : spdlog::level::info);
    return made;
  }();
  return *logger;
}

inline vl_status_code fail(vl_status* status, vl_status_code code, const char* message) noexcept {
  if (status != nullptr && status->struct_size >= sizeof(vl_status)) {
    status->code = code;
    std::snprintf(status->message, sizeof status->message, "%s", message);
  }
  return code;
}

template <class T, class = void>
struct HasProbe : std::false_type {};
template <class T>
struct HasProbe<T, std::void_t<decltype(T::probe())>> : std::true_type {};

/// The noexcept C thunks for class T implementing Interface.
template <class Interface, class T>
struct Thunks {
  static_assert(std::is_base_of_v<Interface, T>, "the plugin class must implement the interface");
  static_assert(std::is_constructible_v<T, const ConfigTable&>,
                "the plugin class needs a constructor taking const vaelab::ConfigTable&");

  static vl_status_code create(const vl_host* host, const char* config_toml, void** instance,
                               vl_status* status) noexcept {
    if (instance == nullptr) return fail(status, VL_STATUS_CODE_INTERNAL, "instance is NULL");
    *instance = nullptr;
    try {
      if (host != nullptr) host_slot() = host;
      const ConfigTable config =
          ConfigTable::parse(config_toml != nullptr ? config_toml : "", "config");
      Interface* made = new T(config);
      *instance = static_cast<void*>(made);
      return VL_STATUS_CODE_OK;
    } catch (const ConfigError& e) {
      return fail(status, VL_STATUS_CODE_BAD_CONFIG, e.what());
    } catch (const std::exception& e) {
      return fail(status, VL_STATUS_CODE_INTERNAL, e.what());
    } catch (...) {
      return fail(status, VL_STATUS_CODE_INTERNAL, "unknown exception");
    }
  }

  static void destroy(void* instance) noexcept {
    try {
      delete static_cast<Interface*>(instance);
    } catch (...) {
      std::fprintf(stderr, "[%s] destructor threw; ignored\n", VAELAB_PLUGIN_NAME);
    }
  }

  static int32_t probe(const vl_host* host) noexcept {
    try {
      if (host != nullptr) host_slot() = host;
      return static_cast<int32_t>(T::probe());
    } catch (...) {
      return 0;
    }
  }
};

/// Th::probe when T has a static probe(), else NULL (Th::probe is then never instantiated).
template <class Th, class T>
constexpr int32_t (*probe_thunk())(const vl_host*) {
  if constexpr (HasProbe<T>::value) {
    return &Th::probe;
  } else {
    return nullptr;
  }
}

}  // namespace vaelab::sdk

namespace vaelab {

/// One descriptor for class T implementing Interface. The strings must be static.
template <class Interface, class T>
const vl_plugin_descriptor* describe(const char* name, const char* version,
                                     const char* description, const char* defaults_toml) {
  using Th = sdk::Thunks<Interface, T>;
  static const vl_plugin_descriptor descriptor = {
      sizeof(vl_plugin_descriptor),
      VL_ABI_VERSION_MAJOR,
      VL_ABI_VERSION_MINOR,
      VAELAB_BUILD_FINGERPRINT,
      PluginKindOf<Interface>::value,
      name,
      version,
      description,
      defaults_toml,
      sdk::probe_thunk<Th, T>(),
      &Th::create,
      &Th::destroy,
  };
  return &descriptor;
}

}  // namespace vaelab

/// Defines the one exported symbol, `vaelab_plugin_entry`, returning the given descriptors.
#define VAELAB_PLUGIN(...)                                                                \
  extern "C" __attribute__((visibility("default"))) const vl_plugin_set*                 \
  vaelab_plugin_entry(void) {                                                             \
    static const vl_plugin_descriptor* const vaelab_descriptors[] = {__VA_ARGS__};        \
    static const vl_plugin_set vaelab_set = {                                             \
        sizeof(vl_plugin_set), VL_ABI_VERSION_MAJOR, VL_ABI_VERSION_MINOR,               \
        static_cast<uint32_t>(sizeof vaelab_descriptors / sizeof vaelab_descriptors[0]), \
        vaelab_descriptors};                                                              \
    return &vaelab_set;                                                                   \
  }
