#include "gemm_peak.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
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

std::optional<double> measure_layer_shapes_gflops(const std::string& precision, const std::vector<DenseShape>& layers,
                                                  int batch, int repeats, bool quick, std::string& why) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const dt in_type = precision == "bf16" ? dt::bf16 : dt::f32;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  struct Product {
    dnnl::matmul prim;
    std::unordered_map<int, dnnl::memory> args;
  };
  std::vector<Product> step;
  double flops = 0;
  const auto add = [&](int m, int k, int n) {
    const dnnl::memory::desc a_md({m, k}, in_type, tag::ab);
    const dnnl::memory::desc b_md({k, n}, in_type, tag::ab);
    const dnnl::memory::desc c_md({m, n}, dt::f32, tag::ab);
    Product p;
    p.prim = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), engine));
    dnnl::memory a(a_md, engine), b(b_md, engine), c(c_md, engine);
    // ±0.125 everywhere: no denormals, no NaNs
    const size_t elem = in_type == dt::f32 ? 4 : 2;
    for (auto* mem : {&a, &b}) {
      auto* bytes = static_cast<unsigned char*>(mem->get_data_handle());
      const size_t count = mem->get_desc().get_size() / elem;
      for (size_t i = 0; i < count; ++i) {
        if (elem == 4) {
          const float v = (i % 2) != 0 ? 0.125f : -0.125f;
          std::memcpy(bytes + i * 4, &v, 4);
        } else {
          const uint16_t v = (i % 2) != 0 ? 0x3e00 : 0xbe00;
          std::memcpy(bytes + i * 2, &v, 2);
        }
      }
    }
    p.args = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
    step.push_back(std::move(p));
    flops += 2.0 * m * k * n;
  };
  try {
    for (size_t l = 0; l < layers.size(); ++l) {
      add(batch, layers[l].in, layers[l].out);                 // forward
      if (l > 0) add(batch, layers[l].out, layers[l].in);      // gradient of the input
      add(layers[l].out, batch, layers[l].in);                 // gradient of the weights
    }
  } catch (const dnnl::error& e) {
    why = std::string("oneDNN cannot run a ") + precision + " matmul here: " + e.what();
    return std::nullopt;
  }
  if (step.empty()) return std::nullopt;
  const auto run_step = [&] {
    for (auto& p : step) p.prim.execute(stream, p.args);
  };
  run_step();  // warm-up: page faults, JIT
  stream.wait();
  const int calls = std::max(1, static_cast<int>((quick ? 2e8 : 2e9) / flops));
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int k = 0; k < calls; ++k) run_step();
    stream.wait();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(flops * calls / s / 1e9);
  }
  return median(rates);
}

std::string onednn_isa() { return isa_name(dnnl::get_effective_cpu_isa()); }

std::string onednn_description() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + ", " + isa_name(dnnl::get_effective_cpu_isa());
}

double measure_triad_bandwidth(int threads, int repeats, bool quick) {
  const int64_t n = (quick ? int64_t{4} : int64_t{32}) << 20;
  threads = std::max(1, threads);
  // Not std::vector: its value-initialization would touch every page from this thread alone.
  const std::unique_ptr<float[]> a(new float[static_cast<size_t>(n)]);
  const std::unique_ptr<float[]> b(new float[static_cast<size_t>(n)]);
  const std::unique_ptr<float[]> c(new float[static_cast<size_t>(n)]);
  const auto on_threads = [threads, n](const std::function<void(int64_t, int64_t)>& part) {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back(part, n * t / threads, n * (t + 1) / threads);
    }
    for (auto& th : pool) th.join();
  };
  float* pa = a.get();
  float* pb = b.get();
  float* pc = c.get();
  on_threads([pa, pb, pc](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      pa[i] = 0;
      pb[i] = 1.0f + static_cast<float>(i % 5);
      pc[i] = 0.5f;
    }
  });
  std::vector<double> rates;
  for (int r = 0; r < std::max(1, repeats) * 3; ++r) {
    const float s = 1.0f + 0.25f * static_cast<float>(r % 3);
    const auto start = std::chrono::steady_clock::now();
    on_threads([pa, pb, pc, s](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) pa[i] = pb[i] + s * pc[i];
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(12.0 * static_cast<double>(n) / seconds / 1e9);
  }
  // Read a result, so that no pass can be left out.
  if (pa[n - 1] < 0) rates.push_back(0);
  return median(rates);
}

}  // namespace vaelab::cli
