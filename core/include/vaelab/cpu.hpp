#pragma once
// What the process computes with on the CPU: the instruction-set features /proc/cpuinfo reports,
// and the kernels OpenBLAS chose for them. Debian's OpenBLAS (0.3.21) picks its kernels once, when
// it is loaded, from the CPU model; on a model it does not know it falls back to generic SSE3
// kernels (its "Prescott" core) even where AVX2 or AVX-512 would run several times faster.
// vaelab notices that at start-up and restarts itself with OPENBLAS_CORETYPE set
// (docs/backends.md, "BLAS kernels"). Torch-free; part of vaelab::sdk.

#include <string>
#include <string_view>

namespace vaelab {

/// The instruction-set extensions that decide which BLAS kernels can run.
struct CpuFeatures {
  bool sse3 = false;
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512cd = false;
  bool avx512_bf16 = false;
  bool amx_bf16 = false;
  bool amx_tile = false;
};

/// The features named in a /proc/cpuinfo "flags" line ("flags\t\t: fpu vme ... avx2 ..."; the
/// part before a colon, if any, is ignored).
CpuFeatures parse_cpu_flags(std::string_view flags_line);

/// This machine's features: the first "flags" line of /proc/cpuinfo (all false where it cannot
/// be read).
CpuFeatures cpu_features();

/// The first "model name" of /proc/cpuinfo, e.g. "AMD EPYC 7B13" ("" where there is none).
std::string cpu_model_name();

/// The 1-minute load average from a /proc/loadavg line ("1.93 1.69 1.76 3/412 15973"), or −1
/// where the line does not start with a non-negative number.
double parse_load_average(std::string_view loadavg_line);

/// This machine's 1-minute load average now (/proc/loadavg), or −1 where it cannot be read: how
/// many threads were running or waiting for a CPU, averaged over the last minute. On a machine
/// shared with other work it says why a measurement came out slow.
double load_average();

/// A short name of the widest vector extension: "avx512_core_amx", "avx512_core_bf16",
/// "avx512_core", "avx2", "avx", "sse3" or "baseline" (oneDNN's names where they exist).
std::string cpu_isa_name(const CpuFeatures& features);

/// Whether OpenBLAS core `core` (as openblas_get_corename() names it, any case) uses no AVX2:
/// one of its generic or pre-Haswell cores.
bool is_pre_avx2_blas_core(std::string_view core);

/// The OPENBLAS_CORETYPE to force for these features when OpenBLAS chose `chosen_core`: "SkylakeX"
/// (AVX-512 F, BW, VL, DQ, CD) or "Haswell" (AVX2 and FMA) where `chosen_core` uses no AVX2;
/// "" where the choice is fine or nothing better runs here.
std::string better_blas_core(const CpuFeatures& features, std::string_view chosen_core);

/// The core OpenBLAS chose in this process (openblas_get_corename, looked up at run time), or ""
/// where the BLAS in use is not OpenBLAS.
std::string blas_core_name();

/// At the start of main(): when OpenBLAS fell back to pre-AVX2 kernels on a CPU with AVX2 or
/// AVX-512 and the user has not set OPENBLAS_CORETYPE, re-executes this program (same argv) with
/// OPENBLAS_CORETYPE set to better_blas_core(); returns only where no restart is needed or the
/// restart failed. VAELAB_BLAS_RESTARTED marks the restarted process (no second restart).
void ensure_blas_kernels(char** argv);

/// One line for logs: what ensure_blas_kernels() found or did, e.g. "OpenBLAS core Haswell" or
/// "OpenBLAS core SkylakeX (restarted with OPENBLAS_CORETYPE=SkylakeX: OpenBLAS had chosen
/// Prescott, its generic SSE3 kernels, on this avx512_core_amx CPU)".
std::string blas_kernels_report();

}  // namespace vaelab
