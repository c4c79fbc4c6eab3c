#pragma once
// The machine's matrix-product peak through oneDNN's matmul: the reference `vaelab bench`
// measures every training figure against. No torch here.

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace vaelab::cli {

/// The median of `values` (the upper one of the two middle values for an even count); the benches
/// report medians of repeats because this machine is shared and noisy.
inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

struct GemmPeak {
  double gflops = 0;   ///< the best median over the sizes tried
  int size = 0;        ///< the square size (M = N = K) that reached it
};

/// Median GFLOP/s of oneDNN's matmul on square f32 ("f32") or bf16-in/f32-out ("bf16") matrices
/// with `threads` OpenMP threads, best over a few sizes; nullopt when the CPU cannot run the
/// precision (`why` says what oneDNN answered).
std::optional<GemmPeak> measure_gemm_peak(const std::string& precision, int repeats, bool quick,
                                          std::string& why);

/// oneDNN's version and the instruction set it dispatches to, e.g. "oneDNN 2.6.3, avx512_core_bf16".
std::string onednn_description();

/// The ISA oneDNN dispatches to here, e.g. "avx512_core_amx".
std::string onednn_isa();

/// Memory bandwidth in GB/s (10^9 bytes) of a STREAM-like triad a[i] = b[i] + s·c[i] over three
/// float arrays far larger than the caches (3 × 128 MiB; 3 × 16 MiB with `quick`), split over
/// `threads` threads, each touching its own part first. Counts 12 bytes per element (two reads, one
/// write), as STREAM does. Median over `repeats` × 3 passes.
double measure_triad_bandwidth(int threads, int repeats, bool quick);

}  // namespace vaelab::cli
