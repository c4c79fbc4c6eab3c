// The plugin SDK end to end, as a third party uses it (examples/custom-plugin/README.md):
//   1. `cmake --install` the current build into a prefix under the build tree;
//   2. configure examples/custom-plugin out of tree with CMAKE_PREFIX_PATH = that prefix;
//   3. [slow] build it, run its ctest (the installed vaelab-conformance on both plugin files),
//      and train examples/custom-plugin/run.toml with the *installed* vaelab, the plugins found
//      through VAELAB_PLUGIN_PATH.
// The [slow] case compiles two plugins against LibTorch without a precompiled header (about a
// minute of CPU from a cold compiler cache; ccache, when present, makes reruns fast). Run it with
// `build/bin/test-custom-plugin "[slow]"`.
//
// Everything lives in <build>/test-sdk/ (a fixed place, so the compiler cache can hit), wiped at
// the start of each case.

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include <vaelab/build_info.h>

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::json;

namespace {

const fs::path kSource = VAELAB_TEST_SOURCE_DIR;
const fs::path kWork = fs::path(VAELAB_TEST_BUILD_DIR) / "test-sdk";
const fs::path kPrefix = kWork / "prefix";
const fs::path kCustomBuild = kWork / "custom-build";

struct Command {
  int code = -1;
  std::string output;  ///< stdout and stderr together
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// `text` without its whitespace: CMake wraps long messages at arbitrary spaces.
std::string squeeze(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c))) out += c;
  }
  return out;
}

std::string quote(const fs::path& p) { return "'" + p.string() + "'"; }

/// Runs a shell command line with VAELAB_PLUGIN_PATH cleared (unless `env` sets it).
Command run(const std::string& command, const std::string& env = "") {
  static int counter = 0;
  const fs::path log = kWork / ("command" + std::to_string(counter++) + ".log");
  const std::string line =
      "env -u VAELAB_PLUGIN_PATH " + env + " " + command + " >" + quote(log) + " 2>&1 </dev/null";
  const int status = std::system(line.c_str());
  Command c;
  c.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  c.output = slurp(log);
  return c;
}

void fresh_work_dir() {
  fs::remove_all(kWork);
  fs::create_directories(kWork);
}

/// `cmake --install <build> --prefix <prefix>`, then the layout the package promises.
void install() {
  const Command c = run(std::string("'" VAELAB_TEST_CMAKE "' --install ") + quote(VAELAB_TEST_BUILD_DIR) +
                        " --prefix " + quote(kPrefix));
  INFO(c.output);
  REQUIRE(c.code == 0);
  for (const char* file :
       {"bin/vaelab", "bin/vaelab-conformance", "lib/libvaelab-sdk.so", "lib/libvaelab-host.so",
        "lib/libvaelab-core.so", "lib/libvaelab-study.so", "include/vaelab/abi/plugin_abi.h",
        "include/vaelab/plugin.hpp", "include/vaelab/model.hpp", "include/vaelab/build_info.h",
        "lib/cmake/vaelab/vaelabConfig.cmake", "lib/cmake/vaelab/vaelabConfigVersion.cmake",
        "lib/cmake/vaelab/vaelabTargets.cmake", "lib/cmake/vaelab/VaelabPlugin.cmake",
        "lib/cmake/vaelab/VaelabFingerprint.cmake", "lib/cmake/vaelab/plugin_defaults.h.in",
        "lib/cmake/vaelab/plugin.version", "lib/vaelab/plugins/libvaelab-model-vae-mlp.so",
        "lib/vaelab/plugins/libvaelab-backend-torch-cpu.so"}) {
    INFO(file);
    REQUIRE(fs::is_regular_file(kPrefix / file));
  }
  // The plugin skeleton and the test fixtures are not installed.
  REQUIRE_FALSE(fs::exists(kPrefix / "lib/vaelab/plugins/libvaelab-model-template-vae.so"));
  REQUIRE_FALSE(fs::exists(kPrefix / "lib/vaelab/plugins/libvaelab-model-conformance-broken.so"));
}

/// Configures examples/custom-plugin against the prefix; `extra` adds cmake arguments.
Command configure_custom(const std::string& extra = "") {
  std::string cmd = std::string("'" VAELAB_TEST_CMAKE "' -S ") + quote(kSource / "examples/custom-plugin") +
                    " -B " + quote(kCustomBuild) + " -G '" VAELAB_TEST_GENERATOR "' -DCMAKE_BUILD_TYPE=Release" +
                    " -DCMAKE_PREFIX_PATH=" + quote(kPrefix) + " -DCMAKE_CXX_COMPILER='" VAELAB_TEST_CXX_COMPILER
                    "' -DCMAKE_C_COMPILER='" VAELAB_TEST_C_COMPILER "'";
  if (std::string(VAELAB_TEST_CCACHE).size() > 0) {
    cmd += " -DCMAKE_CXX_COMPILER_LAUNCHER='" VAELAB_TEST_CCACHE "' -DCMAKE_C_COMPILER_LAUNCHER='" VAELAB_TEST_CCACHE "'";
  }
  return run(cmd + " " + extra);
}

std::string installed_vaelab() { return quote(kPrefix / "bin/vaelab"); }

}  // namespace

TEST_CASE("the installed vaelab finds its own plugins and a project finds the installed package",
          "[e2e][sdk]") {
  fresh_work_dir();
  install();

  // The installed command runs from its prefix (RUNPATH) and finds the installed plugins.
  const Command version = run(installed_vaelab() + " --version");
  INFO(version.output);
  REQUIRE(version.code == 0);
  REQUIRE_THAT(version.output, Contains(VAELAB_BUILD_FINGERPRINT));
  const Command plugins = run(installed_vaelab() + " plugins --json");
  INFO(plugins.output);
  REQUIRE(plugins.code == 0);
  bool vae_mlp = false;
  for (const auto& p : json::parse(plugins.output)) {
    if (p["name"] == "vae-mlp") {
      vae_mlp = true;
      REQUIRE(p["status"] == "ok");
      REQUIRE(fs::equivalent(p["path"].get<std::string>(), kPrefix / "lib/vaelab/plugins/libvaelab-model-vae-mlp.so"));
    }
  }
  REQUIRE(vae_mlp);

  // find_package(vaelab) and vaelab_add_plugin() configure the example against the prefix.
  const Command configured = configure_custom();
  INFO(configured.output);
  REQUIRE(configured.code == 0);
  REQUIRE_THAT(squeeze(configured.output), Contains(squeeze(std::string("fingerprint ") + VAELAB_BUILD_FINGERPRINT)));
  REQUIRE((fs::exists(kCustomBuild / "build.ninja") || fs::exists(kCustomBuild / "Makefile")));
}

TEST_CASE("a plugin compiled unlike the installed vaelab is stopped at configure time", "[e2e][sdk]") {
  fresh_work_dir();
  install();
  // _GLIBCXX_ASSERTIONS changes the layout of standard types: the host would refuse the plugin.
  const Command c = configure_custom("-DCMAKE_CXX_FLAGS=-D_GLIBCXX_ASSERTIONS");
  INFO(c.output);
  REQUIRE(c.code != 0);
  REQUIRE_THAT(squeeze(c.output), Contains(squeeze("vaelab_add_plugin(vae-act): this build's fingerprint is")) &&
                                      Contains("layout=_GLIBCXX_ASSERTIONS;") &&
                                      Contains(squeeze(std::string("was built as '") + VAELAB_BUILD_FINGERPRINT + "'")));
}

TEST_CASE("plugins built out of tree against the installed SDK train with the installed vaelab",
          "[e2e][sdk][slow]") {
  fresh_work_dir();
  install();
  {
    const Command c = configure_custom();
    INFO(c.output);
    REQUIRE(c.code == 0);
  }
  {
    const Command c = run(std::string("'" VAELAB_TEST_CMAKE "' --build ") + quote(kCustomBuild));
    INFO(c.output);
    REQUIRE(c.code == 0);
  }
  const fs::path plugin_dir = kCustomBuild / "plugins";
  REQUIRE(fs::is_regular_file(plugin_dir / "libvaelab-model-vae-act.so"));
  REQUIRE(fs::is_regular_file(plugin_dir / "libvaelab-data-source-bars.so"));

  // The project's own tests: the installed conformance kit on both plugin files.
  {
    const Command c = run(std::string("'" VAELAB_TEST_CTEST "' --test-dir ") + quote(kCustomBuild) +
                          " --output-on-failure");
    INFO(c.output);
    REQUIRE(c.code == 0);
    REQUIRE_THAT(c.output, Contains("100% tests passed, 0 tests failed out of 2"));
  }

  // The installed vaelab sees the new plugins beside its own.
  const std::string env = "VAELAB_PLUGIN_PATH=" + quote(plugin_dir);
  {
    const Command c = run(installed_vaelab() + " plugins --json", env);
    INFO(c.output);
    REQUIRE(c.code == 0);
    int found = 0;
    for (const auto& p : json::parse(c.output)) {
      if (p["name"] == "vae-act" || p["name"] == "bars") {
        ++found;
        REQUIRE(p["status"] == "ok");
        REQUIRE(fs::equivalent(fs::path(p["path"].get<std::string>()).parent_path(), plugin_dir));
      }
    }
    REQUIRE(found == 2);
  }

  // A short run of examples/custom-plugin/run.toml.
  const fs::path run_dir = kWork / "run";
  const Command trained =
      run(installed_vaelab() + " train " + quote(kSource / "examples/custom-plugin/run.toml") +
              " --set train.epochs=3 --set eval.every_epochs=3 --set data.config.train_size=1000 --out " +
              quote(run_dir),
          env);
  INFO(trained.output);
  REQUIRE(trained.code == 0);
  const json summary = json::parse(slurp(run_dir / "summary.json"));
  REQUIRE(summary["dataset"] == "bars");
  REQUIRE(summary["epochs"] == 3);
  REQUIRE(std::isfinite(summary["elbo_test_nats"].get<double>()));
  REQUIRE(std::isfinite(summary["elbo_train_nats"].get<double>()));
  // hidden [256, 256], latent 8 on 16x16 images: the model the config asked for was trained.
  const int64_t enc = (256 * 256 + 256) + (256 * 256 + 256) + (256 * 16 + 16);
  const int64_t dec = (8 * 256 + 256) + (256 * 256 + 256) + (256 * 256 + 256);
  REQUIRE(summary["params_total"] == enc + dec);
  REQUIRE_THAT(slurp(run_dir / "config.toml"), Contains("activation = 'silu'") && Contains("plugin = 'bars'"));
  // The plugin's log line reached the host's logger.
  REQUIRE_THAT(trained.output, Contains("[vae-act] vae-act: 2 hidden layers, silu activation, 8 latent dimensions"));
}
