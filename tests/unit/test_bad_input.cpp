// Bad input found by fuzzing (fuzz/) that reaches a reader through another one: study files,
// whose axes become run configs written by the config writer. Each case is the fuzzer's input,
// reduced, with the error the user now gets. The readers' own fuzz findings are tested beside
// their other tests (test_config.cpp, the data sources' tests).
#include <catch2/catch.hpp>

#include <string>

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/study/study.hpp>

using Catch::Contains;

namespace {

/// The message of the ConfigError expanding `text` throws; fails the test if there is none.
std::string expansion_error(const std::string& text) {
  try {
    (void)vaelab::expand_study_text(text, "/nonexistent/study.toml");
  } catch (const vaelab::ConfigError& e) {
    return e.what();
  }
  FAIL("the study expanded without an error");
  return {};
}

}  // namespace

TEST_CASE("a study axis key TOML cannot hold is refused by name when the study is expanded",
          "[study][fuzz]") {
  // fuzz-study: the axis became a key of every run config, which was then written without quotes
  // and failed to parse in the `vaelab train` child, naming the generated file.
  const std::string message =
      expansion_error("[base.data]\ntrain_size = 50\n[grid]\n\"data.subsetk'eed\" = [0, 1, 2]\n");
  CHECK(message.find('\n') == std::string::npos);
  CHECK_THAT(message,
             Contains("key 'data.subsetk'eed'") && Contains("cannot be written to a config file"));
  // Inside a [[path]] step too.
  CHECK_THAT(expansion_error("[[path]]\nname = \"a\"\nsteps = [ { \"model.config.it's\" = 2 } ]\n"),
             Contains("key 'model.config.it's'"));
}

TEST_CASE("a study file's parse error is one line even when toml++ quotes a newline",
          "[study][fuzz]") {
  // fuzz-study: "expected 'inf', saw 'i<newline>'" split the error over two lines.
  const std::string message = expansion_error("[study]\nname = \"one\"\n[base.train]\nseed = i\n");
  CHECK(message.find('\n') == std::string::npos);
  CHECK_THAT(message, Contains("/nonexistent/study.toml:4:") && Contains("saw 'i\\n'"));
}

TEST_CASE("a study whose grid multiplies to more runs than a study may hold is refused before expanding",
          "[study][fuzz]") {
  // fuzz-study: 189 bytes, seven axes of eight values: 2,097,152 runs, a hang, then memory
  // exhaustion (fuzz/regressions/study/two-million-runs.toml).
  std::string text = "[grid]\n";
  for (const char* key : {"a.b", "c.d", "e.f", "g.h", "i.j", "k.l", "m.n"}) {
    text += std::string("\"") + key + "\" = [0,1,2,3,4,5,6,7]\n";
  }
  const std::string message = expansion_error(text);
  CHECK(message.find('\n') == std::string::npos);
  CHECK_THAT(message, Contains("/nonexistent/study.toml") &&
                          Contains("8 x 8 x 8 x 8 x 8 x 8 x 8 = 2097152 runs") &&
                          Contains("more than the 10000"));
  // 10,000 is allowed: 10 x 10 x 100 expands (labels and all).
  const auto plan = vaelab::expand_study_text(
      "[grid]\n\"train.seed\" = [" + [] {
        std::string v;
        for (int i = 0; i < 100; ++i) v += (i ? "," : "") + std::to_string(i);
        return v;
      }() + "]\n\"data.train_size\" = [1,2,3,4,5,6,7,8,9,10]\n\"train.lr\" = [1,2,3,4,5,6,7,8,9,10]\n",
      "/nonexistent/study.toml");
  CHECK(plan.runs.size() == 10000);
}
