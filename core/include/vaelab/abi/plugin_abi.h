/* vaelab plugin ABI: the C envelope every plugin library exposes (docs/architecture.md, "The plugin boundary").
 *
 * Versioning rules
 * - Every struct starts with `struct_size`; a reader never reads past the size the writer set.
 * - The first three fields of vl_plugin_set and vl_plugin_descriptor (struct_size, abi_major,
 *   abi_minor) never move, so any host can read them from any plugin.
 * - VL_ABI_MAJOR changes when a field moves or changes meaning, or when a C++ interface in
 *   vaelab/{backend,model,generator,data_source}.hpp changes: hosts refuse any other major.
 * - VL_ABI_MINOR grows when fields are appended: a host accepts plugins whose minor is <= its own.
 * - On top of the version, the build fingerprint (compiler, _GLIBCXX_USE_CXX11_ABI, LibTorch
 *   version, layout flags) must be equal: after the check, host and plugin exchange C++ objects.
 *
 * Ownership
 * - Descriptors and strings returned by a plugin are static and live as long as the library,
 *   which is never unloaded.
 * - An instance made by `create` is freed only by the same descriptor's `destroy`.
 * - Nothing in this envelope throws: errors come back as a status code plus a message written
 *   into the caller's vl_status.
 *
 * C only. Names: vl_ prefix, snake_case, enum values prefixed with the enum name, 0 = invalid.
 */
#ifndef VAELAB_ABI_PLUGIN_ABI_H
#define VAELAB_ABI_PLUGIN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VL_ABI_VERSION_MAJOR 2
#define VL_ABI_VERSION_MINOR 0

/* The one symbol a plugin library exports. */
#define VL_PLUGIN_ENTRY_SYMBOL "vaelab_plugin_entry"

typedef enum vl_plugin_kind {
  VL_PLUGIN_KIND_INVALID = 0,
  VL_PLUGIN_KIND_BACKEND = 1,
  VL_PLUGIN_KIND_MODEL = 2,
  VL_PLUGIN_KIND_GENERATOR = 3,
  VL_PLUGIN_KIND_DATA_SOURCE = 4
} vl_plugin_kind;

typedef enum vl_status_code {
  VL_STATUS_CODE_INVALID = 0,
  VL_STATUS_CODE_OK = 1,
  VL_STATUS_CODE_BAD_CONFIG = 2,  /* the config table was rejected; message says which key */
  VL_STATUS_CODE_UNAVAILABLE = 3, /* cannot run here (no device, missing file, ...) */
  VL_STATUS_CODE_INTERNAL = 4     /* anything else, including a caught exception */
} vl_status_code;

typedef enum vl_log_level {
  VL_LOG_LEVEL_INVALID = 0,
  VL_LOG_LEVEL_TRACE = 1,
  VL_LOG_LEVEL_DEBUG = 2,
  VL_LOG_LEVEL_INFO = 3,
  VL_LOG_LEVEL_WARN = 4,
  VL_LOG_LEVEL_ERROR = 5,
  VL_LOG_LEVEL_CRITICAL = 6,
  VL_LOG_LEVEL_OFF = 7
} vl_log_level;

#define VL_STATUS_MESSAGE_CAPACITY 1024

/* Written by the plugin, owned by the caller. */
typedef struct vl_status {
  size_t struct_size;
  vl_status_code code;
  char message[VL_STATUS_MESSAGE_CAPACITY]; /* NUL-terminated; truncated if longer */
} vl_status;

/* Forwards one formatted log line to the host's logger. `logger` names the plugin. */
typedef void (*vl_log_fn)(void* context, vl_log_level level, const char* logger,
                          const char* message);

/* What the host offers a plugin. Owned by the host; valid until the process exits. */
typedef struct vl_host {
  size_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  const char* build_fingerprint;
  const char* host_version;
  vl_log_level log_level; /* lines below this level are not worth formatting */
  void* log_context;
  vl_log_fn log;
} vl_host;

typedef struct vl_plugin_descriptor {
  size_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  const char* build_fingerprint;
  vl_plugin_kind kind;
  const char* name;          /* unique per kind, e.g. "vae-mlp" */
  const char* version;       /* the plugin's own version */
  const char* description;   /* one line */
  const char* defaults_toml; /* every config key with its default: the schema of its table */
  /* Optional (may be NULL): 0 = unusable on this machine, >0 = preference. */
  int32_t (*probe)(const vl_host* host);
  /* Makes an instance from the plugin's resolved config table (TOML text). On success writes
   * *instance and returns VL_STATUS_CODE_OK; otherwise fills *status and returns its code. The
   * instance is the C++ interface of `kind` (vaelab::Backend*, vaelab::Model*, ...). */
  vl_status_code (*create)(const vl_host* host, const char* config_toml, void** instance,
                           vl_status* status);
  /* Frees an instance made by `create`. Never fails. */
  void (*destroy)(void* instance);
} vl_plugin_descriptor;

typedef struct vl_plugin_set {
  size_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t count;
  const vl_plugin_descriptor* const* descriptors;
} vl_plugin_set;

/* The entry point: returns a static set; never NULL for a well-formed plugin. */
typedef const vl_plugin_set* (*vl_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* VAELAB_ABI_PLUGIN_ABI_H */
