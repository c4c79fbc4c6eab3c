# The build fingerprint: everything that must agree between the host and a plugin before a C++
# object may cross the boundary (DESIGN.md §3). Generated at configure time into a header that
# both the host and every plugin compile in.
# The ABI version has one source of truth: the C header.
file(STRINGS ${CMAKE_SOURCE_DIR}/core/include/vaelab/abi/plugin_abi.h _vaelab_abi_lines
     REGEX "^#define VL_ABI_VERSION_(MAJOR|MINOR) ")
foreach(_line ${_vaelab_abi_lines})
  if(_line MATCHES "VL_ABI_VERSION_MAJOR ([0-9]+)")
    set(VAELAB_ABI_MAJOR ${CMAKE_MATCH_1})
  elseif(_line MATCHES "VL_ABI_VERSION_MINOR ([0-9]+)")
    set(VAELAB_ABI_MINOR ${CMAKE_MATCH_1})
  endif()
endforeach()

string(REGEX MATCH "^[0-9]+" _vaelab_cxx_major "${CMAKE_CXX_COMPILER_VERSION}")
set(_vaelab_cxx11_abi 1)
if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
  set(_vaelab_cxx11_abi 0)
endif()
set(_vaelab_torch_version "${Torch_VERSION}")
if(NOT _vaelab_torch_version)
  set(_vaelab_torch_version "unknown")
endif()
# Flags that change the layout of standard or torch types.
set(_vaelab_layout_flags "")
foreach(_flag _GLIBCXX_DEBUG _GLIBCXX_ASSERTIONS)
  if(CMAKE_CXX_FLAGS MATCHES "${_flag}")
    string(APPEND _vaelab_layout_flags "${_flag};")
  endif()
endforeach()
if(_vaelab_layout_flags STREQUAL "")
  set(_vaelab_layout_flags "none")
endif()

set(VAELAB_BUILD_FINGERPRINT
    "abi=${VAELAB_ABI_MAJOR};cxx=${CMAKE_CXX_COMPILER_ID}-${_vaelab_cxx_major};cxx11abi=${_vaelab_cxx11_abi};torch=${_vaelab_torch_version};layout=${_vaelab_layout_flags}")
message(STATUS "vaelab build fingerprint: ${VAELAB_BUILD_FINGERPRINT}")

set(VAELAB_GENERATED_INCLUDE_DIR ${CMAKE_BINARY_DIR}/generated/include)
configure_file(${CMAKE_CURRENT_LIST_DIR}/build_info.h.in
               ${VAELAB_GENERATED_INCLUDE_DIR}/vaelab/build_info.h @ONLY)
