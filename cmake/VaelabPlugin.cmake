# vaelab_add_plugin(NAME KIND SOURCES... [LIBRARIES libs...] [TORCH] [OUTPUT_DIRECTORY dir]
#                   [DEFAULTS file] [NO_INSTALL])
#
# Builds one plugin: a MODULE library named libvaelab-<KIND>-<NAME>.so with hidden visibility, a
# version script that exports only `vaelab_plugin_entry`, and -Wl,--no-undefined. KIND is one of
# backend, model, generator, data-source. The plugin's defaults.toml (DEFAULTS, default
# <folder>/defaults.toml) is compiled in as the string VAELAB_PLUGIN_DEFAULTS_TOML, declared in the
# generated header <vaelab_plugin_defaults.h>. TORCH makes the target reuse the precompiled torch
# header. The library lands in the build tree's plugin folder so `build/bin/vaelab` finds it
# without installing.
set(VAELAB_PLUGIN_KINDS backend model generator data-source)
set(VAELAB_PLUGIN_VERSION_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/plugin.version)

function(vaelab_add_plugin NAME KIND)
  cmake_parse_arguments(ARG "TORCH;NO_INSTALL" "OUTPUT_DIRECTORY;DEFAULTS" "SOURCES;LIBRARIES"
                        ${ARGN})
  if(NOT KIND IN_LIST VAELAB_PLUGIN_KINDS)
    message(FATAL_ERROR "vaelab_add_plugin(${NAME}): kind '${KIND}' is not one of ${VAELAB_PLUGIN_KINDS}")
  endif()
  set(sources ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  set(target vaelab-${KIND}-${NAME})
  add_library(${target} MODULE ${sources})
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME "vaelab-${KIND}-${NAME}"
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${VAELAB_PLUGIN_VERSION_SCRIPT}
    INSTALL_RPATH "$ORIGIN/../..")
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  else()
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${VAELAB_PLUGIN_BUILD_DIR})
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
  configure_file(${CMAKE_CURRENT_FUNCTION_LIST_DIR}/plugin_defaults.h.in
                 ${gen_dir}/vaelab_plugin_defaults.h @ONLY)
  target_include_directories(${target} PRIVATE ${gen_dir} ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${target} PRIVATE vaelab::sdk ${ARG_LIBRARIES})
  if(ARG_TORCH)
    target_link_libraries(${target} PRIVATE torch)
    vaelab_use_torch_pch(${target})
  endif()
  if(NOT ARG_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION ${VAELAB_PLUGIN_INSTALL_DIR})
  endif()
endfunction()

# Reuse the one precompiled <torch/torch.h> (built by the vaelab_torch_pch target).
function(vaelab_use_torch_pch target)
  if(VAELAB_USE_PCH)
    target_precompile_headers(${target} REUSE_FROM vaelab_torch_pch)
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE")
      # The PCH is compiled -fPIC (for the libraries); GCC refuses it under an executable's -fPIE,
      # so executables that reuse it compile their own code -fPIC too (the last flag wins).
      target_compile_options(${target} PRIVATE -fPIC)
    endif()
  endif()
endfunction()
