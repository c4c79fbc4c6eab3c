#include "gemm_peak.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include <dnnl.hpp>

namespace vaelab::cli {
namespace {

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

}  // namespace

std::optional<GemmPeak> measure_gemm_peak(const std::string& precision, int repeats, bool quick,
                                          std::string& why) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dt in_type = precision == "bf16" ? dt::bf16 : dt::f32;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  std::optional<GemmPeak> best;
  const std::vector<int> sizes = quick ? std::vector<int>{256} : std::vector<int>{512, 1024, 2048};
  for (const int n : sizes) {
    const dnnl::memory::dims dims = {n, n};
    const dnnl::memory::desc a_md(dims, in_type, tag::ab);
    const dnnl::memory::desc b_md(dims, in_type, tag::ab);
    const dnnl::memory::desc c_md(dims, dt::f32, tag::ab);
    dnnl::matmul prim;
    try {
      prim = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), engine));
    } catch (const dnnl::error& e) {
      why = std::string("oneDNN cannot run a ") + precision + " matmul here: " + e.what();
      return std::nullopt;
    }
    dnnl::memory a(a_md, engine), b(b_md, engine), c(c_md, engine);
    // Small non-zero values: a matmul of zeros may take shortcuts in no implementation, but
    // denormals or NaNs could.
    const auto fill = [n](dnnl::memory& m, dt type) {
      if (type == dt::f32) {
        auto* p = static_cast<float*>(m.get_data_handle());
        for (int64_t i = 0; i < int64_t{n} * n; ++i) p[i] = static_cast<float>((i % 7) - 3) * 0.125f;
      } else {
        auto* p = static_cast<uint16_t*>(m.get_data_handle());
        for (int64_t i = 0; i < int64_t{n} * n; ++i) p[i] = (i % 2) != 0 ? 0x3e00 : 0xbe00;  // ±0.125
      }
    };
    fill(a, in_type);
    fill(b, in_type);
    const std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
    prim.execute(stream, args);  // warm-up: page faults, JIT
    stream.wait();
    const double flops = 2.0 * n * n * n;
    const int calls = std::max(1, static_cast<int>((quick ? 2e8 : 4e9) / flops));
    std::vector<double> rates;
    for (int r = 0; r < repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      for (int k = 0; k < calls; ++k) prim.execute(stream, args);
      stream.wait();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      rates.push_back(flops * calls / s / 1e9);
    }
    const double g = median(rates);
    if (!best || g > best->gflops) best = GemmPeak{g, n};
  }
  return best;
}

std::string onednn_description() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + ", " + isa_name(dnnl::get_effective_cpu_isa());
}

}  // namespace vaelab::cli
