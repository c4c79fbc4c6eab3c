# vaelab_add_plugin(NAME KIND SOURCES... [LIBRARIES libs...] [TORCH] [OUTPUT_DIRECTORY dir]
#                   [DEFAULTS file] [NO_INSTALL])
#
# Builds one plugin: a MODULE library named libvaelab-<KIND>-<NAME>.so with hidden visibility, a
# version script that exports only `vaelab_plugin_entry`, and -Wl,--no-undefined. KIND is one of
# backend, model, generator, data-source. The plugin's defaults.toml (DEFAULTS, default
# <folder>/defaults.toml) is compiled in as the string VAELAB_PLUGIN_DEFAULTS_TOML, declared in the
# generated header <vaelab_plugin_defaults.h>. TORCH links LibTorch (and, in the vaelab tree,
# reuses the precompiled torch header). The plugin links vaelab::sdk; LIBRARIES adds more
# (vaelab::core for models and backends).
#
# The same function serves the vaelab tree and projects built against the installed package
# (`find_package(vaelab CONFIG REQUIRED)`, docs/writing-a-plugin.md):
#   - the library lands in VAELAB_PLUGIN_BUILD_DIR (in the tree: build/lib/vaelab/plugins, where
#     build/bin/vaelab finds it; elsewhere, by default, <build>/plugins: point
#     VAELAB_PLUGIN_PATH or [plugins].paths at it) unless OUTPUT_DIRECTORY says otherwise;
#   - `cmake --install` puts it in VAELAB_PLUGIN_INSTALL_DIR (default lib/vaelab/plugins under the
#     install prefix, where an installed vaelab with the same prefix looks);
#   - the toolchain's build fingerprint is computed (cmake/VaelabFingerprint.cmake) and must equal
#     the host's, else configuring stops here with both named: the host would refuse the plugin.
set(VAELAB_PLUGIN_KINDS backend model generator data-source)
set(VAELAB_PLUGIN_VERSION_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/plugin.version)
set(VAELAB_PLUGIN_DEFAULTS_TEMPLATE ${CMAKE_CURRENT_LIST_DIR}/plugin_defaults.h.in)
include(GNUInstallDirs)

function(vaelab_add_plugin NAME KIND)
  cmake_parse_arguments(ARG "TORCH;NO_INSTALL" "OUTPUT_DIRECTORY;DEFAULTS" "SOURCES;LIBRARIES"
                        ${ARGN})
  if(NOT KIND IN_LIST VAELAB_PLUGIN_KINDS)
    message(FATAL_ERROR "vaelab_add_plugin(${NAME}): kind '${KIND}' is not one of ${VAELAB_PLUGIN_KINDS}")
  endif()
  if(NOT NAME MATCHES "^[a-z0-9][a-z0-9_-]*$")
    message(FATAL_ERROR "vaelab_add_plugin(${NAME}): a plugin name is lowercase letters, digits, '-' and '_'")
  endif()

  # Compiled as the host was? The plugin embeds the host's fingerprint (<vaelab/build_info.h>), so
  # this is where a different compiler, C++ ABI, LibTorch or layout flag is caught.
  vaelab_compute_fingerprint(fingerprint ${VAELAB_ABI_HEADER})
  if(NOT fingerprint STREQUAL VAELAB_BUILD_FINGERPRINT)
    message(FATAL_ERROR
      "vaelab_add_plugin(${NAME}): this build's fingerprint is '${fingerprint}', the vaelab it "
      "builds against was built as '${VAELAB_BUILD_FINGERPRINT}'; vaelab would refuse the plugin. "
      "Use the same compiler (major version), LibTorch and layout flags (_GLIBCXX_DEBUG, "
      "_GLIBCXX_ASSERTIONS) as vaelab, or rebuild vaelab with this toolchain.")
  endif()

  set(sources ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  set(target vaelab-${KIND}-${NAME})
  add_library(${target} MODULE ${sources})
  set(install_rpath "$ORIGIN/../..")  # <prefix>/lib/vaelab/plugins -> <prefix>/lib
  if(VAELAB_SDK_INSTALLED AND DEFINED VAELAB_LIBRARY_DIR)
    list(APPEND install_rpath "${VAELAB_LIBRARY_DIR}")  # the vaelab libraries, in their prefix
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME "vaelab-${KIND}-${NAME}"
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${VAELAB_PLUGIN_VERSION_SCRIPT}
    INSTALL_RPATH "${install_rpath}")
  if(ARG_OUTPUT_DIRECTORY)
    set(output_dir ${ARG_OUTPUT_DIRECTORY})
  elseif(VAELAB_PLUGIN_BUILD_DIR)
    set(output_dir ${VAELAB_PLUGIN_BUILD_DIR})
  else()
    set(output_dir ${CMAKE_BINARY_DIR}/plugins)
  endif()
  set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${output_dir})
  if(NOT ARG_OUTPUT_DIRECTORY AND NOT VAELAB_SDK_INSTALLED)
    # The built-in plugins, for the tests that cover every one (tests/conformance, tests/sdk).
    set_property(GLOBAL APPEND PROPERTY VAELAB_BUILTIN_PLUGIN_TARGETS ${target})
  endif()
  target_link_options(${target} PRIVATE
    -Wl,--version-script=${VAELAB_PLUGIN_VERSION_SCRIPT} -Wl,--no-undefined)
  target_compile_options(${target} PRIVATE ${VAELAB_WARNINGS})
  target_compile_definitions(${target} PRIVATE VAELAB_PLUGIN_NAME="${NAME}")

  set(defaults ${ARG_DEFAULTS})
  if(NOT defaults)
    set(defaults ${CMAKE_CURRENT_SOURCE_DIR}/defaults.toml)
  endif()
  set(gen_dir ${CMAKE_CURRENT_BINARY_DIR}/generated/${target})
  if(EXISTS ${defaults})
    file(READ ${defaults} VAELAB_DEFAULTS_CONTENT)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${defaults})
  else()
    set(VAELAB_DEFAULTS_CONTENT "")
  endif()
  if(VAELAB_DEFAULTS_CONTENT MATCHES "\\)vaelab_defaults\"")
    message(FATAL_ERROR "${defaults}: must not contain the text )vaelab_defaults\" (it ends the "
                        "raw string the defaults are compiled into)")
  endif()
  configure_file(${VAELAB_PLUGIN_DEFAULTS_TEMPLATE} ${gen_dir}/vaelab_plugin_defaults.h @ONLY)
  target_include_directories(${target} PRIVATE ${gen_dir} ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${target} PRIVATE vaelab::sdk ${ARG_LIBRARIES})
  if(ARG_TORCH)
    target_link_libraries(${target} PRIVATE torch)
    vaelab_use_torch_pch(${target})
  endif()
  if(NOT ARG_NO_INSTALL)
    set(install_dir ${VAELAB_PLUGIN_INSTALL_DIR})
    if(NOT install_dir)
      set(install_dir ${CMAKE_INSTALL_LIBDIR}/vaelab/plugins)
    endif()
    install(TARGETS ${target} LIBRARY DESTINATION ${install_dir})
  endif()
endfunction()

# Reuse the one precompiled <torch/torch.h> (built by the vaelab_torch_pch target of the vaelab
# tree); a no-op elsewhere.
function(vaelab_use_torch_pch target)
  if(VAELAB_USE_PCH AND TARGET vaelab_torch_pch)
    target_precompile_headers(${target} REUSE_FROM vaelab_torch_pch)
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE")
      # The PCH is compiled -fPIC (for the libraries); GCC refuses it under an executable's -fPIE,
      # so executables that reuse it compile their own code -fPIC too (the last flag wins).
      target_compile_options(${target} PRIVATE -fPIC)
    endif()
  endif()
endfunction()
