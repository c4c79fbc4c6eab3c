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

/// A dense layer's matrix shape: in_features → out_features.
struct DenseShape {
  int in = 0;
  int out = 0;
};

/// Median GFLOP/s of oneDNN's matmul over the products of one training step of dense layers at
/// `batch` (per layer: forward [batch × in]·[in × out], the input gradient [batch × out]·[out × in]
/// except for the first layer, and the weight gradient [out × batch]·[batch × in]), run one after
/// the other as a step runs them, in "f32" or "bf16" (bf16 inputs, f32 results: AMX or
/// AVX512-BF16 where oneDNN offers them). The peak a model of these shapes could reach, which
/// small matrices keep below the square-matrix peak. nullopt (with `why`) where the precision
/// cannot run.
std::optional<double> measure_layer_shapes_gflops(const std::string& precision, const std::vector<DenseShape>& layers,
                                                  int batch, int repeats, bool quick, std::string& why);

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
