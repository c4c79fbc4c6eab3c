// `vaelab` notices OpenBLAS's generic kernels and restarts itself with OPENBLAS_CORETYPE
// (core/include/vaelab/cpu.hpp). OpenBLAS's own choice is replaced by a preloaded library
// (fake_openblas_core.c) that reports the core the test names, so the restart is exercised on
// any CPU; what it restarts with is what better_blas_core() gives for this CPU.
#include <catch2/catch.hpp>

#include <string>

#include <vaelab/cpu.hpp>

#include "cli_runner.hpp"

using Catch::Matchers::Contains;
using vaelab::testing::run_cli;
using vaelab::testing::scratch_dir;

namespace {

vaelab::testing::CliResult version_with_core(const std::string& env) {
  return run_cli(scratch_dir("vaelab-test-blas"), "--version",
                 "env -u OPENBLAS_CORETYPE -u VAELAB_BLAS_RESTARTED LD_PRELOAD='" VAELAB_FAKE_OPENBLAS "' " + env);
}

}  // namespace

TEST_CASE("generic OpenBLAS kernels on a CPU with AVX2 or AVX-512: vaelab restarts with the right core",
          "[blas]") {
  const std::string better = vaelab::better_blas_core(vaelab::cpu_features(), "Prescott");
  const auto r = version_with_core("FAKE_OPENBLAS_CORE=Prescott");
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  if (better.empty()) {
    WARN("this CPU has no AVX2 with FMA: nothing better than the generic kernels to restart with");
    CHECK_THAT(r.out, Contains("OpenBLAS core Prescott") && !Contains("restarted"));
  } else {
    CHECK_THAT(r.out, Contains("OpenBLAS core " + better + " (restarted with OPENBLAS_CORETYPE=" + better +
                               ": OpenBLAS had chosen Prescott"));
  }
}

TEST_CASE("a core the user chose and a good automatic choice are left alone", "[blas]") {
  const auto user = run_cli(scratch_dir("vaelab-test-blas"), "--version",
                            "env -u VAELAB_BLAS_RESTARTED LD_PRELOAD='" VAELAB_FAKE_OPENBLAS
                            "' OPENBLAS_CORETYPE=Prescott");
  INFO(user.out << user.err);
  REQUIRE(user.code == 0);
  CHECK_THAT(user.out, Contains("OpenBLAS core Prescott (OPENBLAS_CORETYPE=Prescott set by the user)"));

  const auto good = version_with_core("FAKE_OPENBLAS_CORE=Haswell");
  INFO(good.out << good.err);
  REQUIRE(good.code == 0);
  CHECK_THAT(good.out, Contains("OpenBLAS core Haswell\n"));
}

TEST_CASE("the real BLAS is named: OpenBLAS's core, or that the BLAS is another one", "[blas]") {
  const auto r = run_cli(scratch_dir("vaelab-test-blas"), "--version");
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains("\nCPU ") && (Contains("OpenBLAS core ") || Contains("BLAS is not OpenBLAS")));
}
