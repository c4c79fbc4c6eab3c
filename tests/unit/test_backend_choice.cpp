// backend.plugin = "auto" (train/backend_choice.hpp): the choice among measured speeds, the
// cache folder, and the machine key.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include <vaelab/error.hpp>
#include <vaelab/threads.hpp>
#include <vaelab/train/backend_choice.hpp>

using Catch::Contains;

TEST_CASE("auto picks the fastest backend, the preferred one within 5 %", "[unit][auto]") {
  const std::vector<std::string> order = {"onednn-cpu", "torch-cpu"};
  CHECK(vaelab::choose_fastest_backend({{"onednn-cpu", 100}, {"torch-cpu", 200}}, order) == "torch-cpu");
  CHECK(vaelab::choose_fastest_backend({{"onednn-cpu", 200}, {"torch-cpu", 100}}, order) == "onednn-cpu");
  // A near-tie goes to the earlier one in preference order, either way round.
  CHECK(vaelab::choose_fastest_backend({{"onednn-cpu", 96}, {"torch-cpu", 100}}, order) == "onednn-cpu");
  CHECK(vaelab::choose_fastest_backend({{"onednn-cpu", 94}, {"torch-cpu", 100}}, order) == "torch-cpu");
  CHECK(vaelab::choose_fastest_backend({{"onednn-cpu", 94}, {"torch-cpu", 100}}, order, 0.1) == "onednn-cpu");
  CHECK(vaelab::choose_fastest_backend({{"a", 1}}, {}) == "a");
  CHECK_THROWS_AS(vaelab::choose_fastest_backend({}, order), vaelab::Error);
}

TEST_CASE("the cache folder follows VAELAB_CACHE_DIR, XDG_CACHE_HOME, HOME", "[unit][auto]") {
  const char* saved = std::getenv("VAELAB_CACHE_DIR");
  const std::string keep = saved != nullptr ? saved : "";
  ::setenv("VAELAB_CACHE_DIR", "/tmp/vaelab-cache-test", 1);
  CHECK(vaelab::vaelab_cache_dir() == "/tmp/vaelab-cache-test");
  ::unsetenv("VAELAB_CACHE_DIR");
  ::setenv("XDG_CACHE_HOME", "/tmp/xdg", 1);
  CHECK(vaelab::vaelab_cache_dir() == "/tmp/xdg/vaelab");
  ::unsetenv("XDG_CACHE_HOME");
  if (std::getenv("HOME") != nullptr) CHECK(vaelab::vaelab_cache_dir() == std::string(std::getenv("HOME")) + "/.cache/vaelab");
  if (saved != nullptr) ::setenv("VAELAB_CACHE_DIR", keep.c_str(), 1);
  // The machine key names the thread count, so a study's one-core runs and a two-core run differ.
  CHECK_THAT(vaelab::machine_key(1), Contains("| 1 thread |"));
  CHECK_THAT(vaelab::machine_key(2), Contains("| 2 threads |"));
  CHECK(vaelab::machine_key(1) != vaelab::machine_key(2));
}
