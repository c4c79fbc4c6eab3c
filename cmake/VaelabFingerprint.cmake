# The build fingerprint: everything that must agree between the host and a plugin before a C++
# object may cross the boundary (docs/architecture.md, "The plugin boundary"): the ABI major version, the compiler and its major
# version, _GLIBCXX_USE_CXX11_ABI, the LibTorch version and flags that change the layout of
# standard or torch types.
#
# vaelab_compute_fingerprint(OUT_VAR ABI_HEADER) computes it for the toolchain, LibTorch and flags
# of the calling scope; ABI_HEADER is the C envelope (vaelab/abi/plugin_abi.h), the one source of
# truth for the ABI version. The same function runs in two places, so they agree by construction:
#   - in the vaelab tree at configure time, to generate <vaelab/build_info.h> (the host's
#     fingerprint, compiled into the host and every plugin);
#   - in vaelab_add_plugin(), in the tree and in a project built against the installed package, to
#     check that the plugin is compiled the way the host was (a plugin compiles the fingerprint of
#     <vaelab/build_info.h> in, so a toolchain that differs is stopped at configure time, not at
#     load time).
# Also sets VAELAB_ABI_MAJOR and VAELAB_ABI_MINOR in the calling scope.
function(vaelab_compute_fingerprint out_var abi_header)
  if(NOT EXISTS "${abi_header}")
    message(FATAL_ERROR "vaelab: the plugin ABI header ${abi_header} does not exist")
  endif()
  file(STRINGS "${abi_header}" abi_lines REGEX "^#define VL_ABI_VERSION_(MAJOR|MINOR) ")
  set(abi_major "")
  set(abi_minor "")
  foreach(line ${abi_lines})
    if(line MATCHES "VL_ABI_VERSION_MAJOR ([0-9]+)")
      set(abi_major ${CMAKE_MATCH_1})
    elseif(line MATCHES "VL_ABI_VERSION_MINOR ([0-9]+)")
      set(abi_minor ${CMAKE_MATCH_1})
    endif()
  endforeach()
  if(abi_major STREQUAL "" OR abi_minor STREQUAL "")
    message(FATAL_ERROR "vaelab: ${abi_header} defines no VL_ABI_VERSION_MAJOR/MINOR")
  endif()

  string(REGEX MATCH "^[0-9]+" cxx_major "${CMAKE_CXX_COMPILER_VERSION}")
  set(cxx11_abi 1)
  if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
    set(cxx11_abi 0)
  endif()
  set(torch_version "${Torch_VERSION}")
  if(NOT torch_version)
    set(torch_version "unknown")
  endif()
  # Flags that change the layout of standard or torch types, wherever the scope sets them: the
  # global flags, the build type's flags, and the directory's definitions and options.
  string(TOUPPER "${CMAKE_BUILD_TYPE}" build_type)
  get_directory_property(dir_definitions COMPILE_DEFINITIONS)
  get_directory_property(dir_options COMPILE_OPTIONS)
  set(all_flags "${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${build_type}} ${dir_definitions} ${dir_options}")
  set(layout_flags "")
  foreach(flag _GLIBCXX_DEBUG _GLIBCXX_ASSERTIONS)
    if(all_flags MATCHES "${flag}")
      string(APPEND layout_flags "${flag};")
    endif()
  endforeach()
  if(layout_flags STREQUAL "")
    set(layout_flags "none")
  endif()

  set(${out_var}
      "abi=${abi_major};cxx=${CMAKE_CXX_COMPILER_ID}-${cxx_major};cxx11abi=${cxx11_abi};torch=${torch_version};layout=${layout_flags}"
      PARENT_SCOPE)
  set(VAELAB_ABI_MAJOR ${abi_major} PARENT_SCOPE)
  set(VAELAB_ABI_MINOR ${abi_minor} PARENT_SCOPE)
endfunction()

# In the vaelab tree: the host's fingerprint and the generated <vaelab/build_info.h>. (The
# installed package sets VAELAB_SDK_INSTALLED and takes both from the installation instead.)
if(NOT VAELAB_SDK_INSTALLED)
  set(VAELAB_ABI_HEADER ${CMAKE_SOURCE_DIR}/core/include/vaelab/abi/plugin_abi.h)
  vaelab_compute_fingerprint(VAELAB_BUILD_FINGERPRINT ${VAELAB_ABI_HEADER})
  message(STATUS "vaelab build fingerprint: ${VAELAB_BUILD_FINGERPRINT}")

  set(VAELAB_GENERATED_INCLUDE_DIR ${CMAKE_BINARY_DIR}/generated/include)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/build_info.h.in
                 ${VAELAB_GENERATED_INCLUDE_DIR}/vaelab/build_info.h @ONLY)
endif()
