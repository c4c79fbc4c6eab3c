// The study file expander (core/src/study/study.cpp, expand_study_text) on the input as a study
// file. Its origin lies in a folder that does not exist, so a relative `[study] base` names no file
// (an absolute one is read as given, as `vaelab study` would).

#include <vaelab/config.hpp>
#include <vaelab/study/study.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const vaelab::StudyPlan plan =
        vaelab::expand_study_text(text, "/nonexistent-vaelab-fuzz/study.toml");
    if (plan.runs.empty() || plan.hash.size() != 16) {
      std::fprintf(stderr, "finding: %zu runs, hash '%s'\n", plan.runs.size(), plan.hash.c_str());
      std::abort();
    }
    for (size_t i = 0; i < plan.runs.size(); ++i) {
      if (plan.runs[i].ordinal != static_cast<int64_t>(i)) std::abort();
      // Every run config is written out for its `vaelab train` child: it must read back.
      const std::string toml_text = vaelab::format_toml(plan.runs[i].config);
      try {
        (void)vaelab::parse_toml(toml_text, "run.toml");
      } catch (const vaelab::Error& e) {
        std::fprintf(stderr, "finding: run %zu's config does not read back: %s\n", i, e.what());
        std::abort();
      }
    }
  } catch (const vaelab::Error& e) {
    vaelab::fuzz::check_refusal(e);
  }
  return 0;
}
