// The CPU's features and the choice of OpenBLAS kernels for them (core/include/vaelab/cpu.hpp).
#include <catch2/catch.hpp>

#include <vaelab/cpu.hpp>

using namespace vaelab;

namespace {
// /proc/cpuinfo flags of three machines this project runs on (abridged to the vector extensions).
constexpr const char* kXeonAmx =
    "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep pni ssse3 fma sse4_1 sse4_2 avx avx2 "
    "avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8";
constexpr const char* kEpycZen = "flags : fpu pni ssse3 fma sse4_1 sse4_2 avx avx2 bmi2 sha_ni";
constexpr const char* kOldXeon = "flags : fpu pni ssse3 sse4_1 sse4_2 avx";
}  // namespace

TEST_CASE("cpuinfo flags are read word by word", "[cpu]") {
  const CpuFeatures amx = parse_cpu_flags(kXeonAmx);
  CHECK(amx.sse3);
  CHECK(amx.avx2);
  CHECK(amx.fma);
  CHECK(amx.avx512f);
  CHECK(amx.avx512bw);
  CHECK(amx.avx512_bf16);
  CHECK(amx.amx_bf16);
  CHECK(amx.amx_tile);
  const CpuFeatures zen = parse_cpu_flags(kEpycZen);
  CHECK(zen.avx2);
  CHECK_FALSE(zen.avx512f);
  CHECK_FALSE(zen.amx_tile);
  // "avx512f" must not be read out of a longer word, nor "avx" out of "avx2".
  const CpuFeatures partial = parse_cpu_flags("flags : avx512fx avx2");
  CHECK_FALSE(partial.avx512f);
  CHECK_FALSE(partial.avx);
  CHECK(partial.avx2);
}

TEST_CASE("the ISA name is the widest extension present", "[cpu]") {
  CHECK(cpu_isa_name(parse_cpu_flags(kXeonAmx)) == "avx512_core_amx");
  CHECK(cpu_isa_name(parse_cpu_flags(
            "flags : pni fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16")) ==
        "avx512_core_bf16");
  CHECK(cpu_isa_name(parse_cpu_flags("flags : pni fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl")) ==
        "avx512_core");
  CHECK(cpu_isa_name(parse_cpu_flags(kEpycZen)) == "avx2");
  CHECK(cpu_isa_name(parse_cpu_flags(kOldXeon)) == "avx");
  CHECK(cpu_isa_name(parse_cpu_flags("flags : fpu")) == "baseline");
}

TEST_CASE("generic OpenBLAS kernels are replaced by the widest core the CPU runs", "[cpu]") {
  CHECK(is_pre_avx2_blas_core("Prescott"));
  CHECK(is_pre_avx2_blas_core("NEHALEM"));
  CHECK(is_pre_avx2_blas_core("Sandybridge"));
  CHECK_FALSE(is_pre_avx2_blas_core("Haswell"));
  CHECK_FALSE(is_pre_avx2_blas_core("SkylakeX"));
  CHECK_FALSE(is_pre_avx2_blas_core("Zen"));
  CHECK_FALSE(is_pre_avx2_blas_core("Cooperlake"));

  CHECK(better_blas_core(parse_cpu_flags(kXeonAmx), "Prescott") == "SkylakeX");
  CHECK(better_blas_core(parse_cpu_flags(kEpycZen), "Prescott") == "Haswell");
  CHECK(better_blas_core(parse_cpu_flags(kEpycZen), "Sandybridge") == "Haswell");
  // A good choice is kept; a CPU without AVX2 has nothing better; no OpenBLAS, nothing to do.
  CHECK(better_blas_core(parse_cpu_flags(kXeonAmx), "SkylakeX").empty());
  CHECK(better_blas_core(parse_cpu_flags(kXeonAmx), "Haswell").empty());
  CHECK(better_blas_core(parse_cpu_flags(kEpycZen), "Zen").empty());
  CHECK(better_blas_core(parse_cpu_flags(kOldXeon), "Prescott").empty());
  CHECK(better_blas_core(parse_cpu_flags(kXeonAmx), "").empty());
  // AVX2 without FMA (no such CPU is sold, but the flags may be masked in a VM): no Haswell.
  CHECK(better_blas_core(parse_cpu_flags("flags : pni avx avx2"), "Prescott").empty());
}

TEST_CASE("the load average is the first number of /proc/loadavg", "[cpu]") {
  CHECK(vaelab::parse_load_average("1.93 1.69 1.76 3/412 15973") == Approx(1.93));
  CHECK(vaelab::parse_load_average("0.00 0.01 0.05 1/80 7") == Approx(0.0));
  CHECK(vaelab::parse_load_average("12.5 3 2 1/1 1\n") == Approx(12.5));
  CHECK(vaelab::parse_load_average("") == -1);
  CHECK(vaelab::parse_load_average("x 1 2") == -1);
  CHECK(vaelab::parse_load_average("-1 2 3") == -1);
  CHECK(vaelab::parse_load_average("1.5x 2 3") == -1);
  // This machine's (Linux has /proc/loadavg): a number, not the error value.
  CHECK(vaelab::load_average() >= 0);
}
