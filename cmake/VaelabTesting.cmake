# vaelab_add_test(NAME SOURCES... [LIBRARIES libs...] [TORCH] [LABELS labels...]
#                 [PROPERTIES ctest properties...])
#
# One Catch2 (v2) test executable in build/bin, its test cases registered with ctest one by one
# (catch_discover_tests). Test cases tagged [slow] are left out of the default run: run them
# with `ctest -L slow` or the executable directly with `[slow]`.
include(Catch)

if(NOT TARGET vaelab_catch_main)
  # Tests keep what vaelab caches (backend.plugin = "auto"'s measurements) in the build folder, so a
  # measurement taken while the suite loads the machine never reaches the user's cache.
  file(WRITE ${CMAKE_BINARY_DIR}/generated/catch_main.cpp
       "#define CATCH_CONFIG_MAIN\n#include <catch2/catch.hpp>\n#include <cstdlib>\n"
       "static const int vaelab_test_cache = ::setenv(\"VAELAB_CACHE_DIR\", \"${CMAKE_BINARY_DIR}/test-cache\", 1);\n")
  add_library(vaelab_catch_main STATIC ${CMAKE_BINARY_DIR}/generated/catch_main.cpp)
  target_link_libraries(vaelab_catch_main PUBLIC Catch2::Catch2)
endif()

function(vaelab_add_test NAME)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;LIBRARIES;LABELS;PROPERTIES" ${ARGN})
  add_executable(${NAME} ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${NAME} PRIVATE vaelab_catch_main ${ARG_LIBRARIES})
  target_compile_options(${NAME} PRIVATE ${VAELAB_WARNINGS})
  target_include_directories(${NAME} PRIVATE ${CMAKE_SOURCE_DIR}/tests/support)
  target_compile_definitions(${NAME} PRIVATE
    VAELAB_TEST_BUILD_DIR="${CMAKE_BINARY_DIR}"
    VAELAB_TEST_PLUGIN_DIR="${VAELAB_PLUGIN_BUILD_DIR}"
    VAELAB_TEST_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  if(ARG_TORCH)
    target_link_libraries(${NAME} PRIVATE torch)
    vaelab_use_torch_pch(${NAME})
  endif()
  # Default run: everything not tagged [slow].
  catch_discover_tests(${NAME} TEST_SPEC "~[slow]" PROPERTIES LABELS "${ARG_LABELS}" ${ARG_PROPERTIES})
endfunction()
