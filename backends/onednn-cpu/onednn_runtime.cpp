#include "onednn_runtime.hpp"

#include <functional>

namespace vaelab::plugins::onednn {

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "f32"; }

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

std::string effective_isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::all: return "all";
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
  }
  return "unknown";
}

bool native_bf16() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

size_t PrimitiveCache::KeyHash::operator()(const CacheKey& key) const {
  size_t h = key.size();
  for (const int64_t k : key) h ^= std::hash<int64_t>()(k) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

int64_t PrimitiveCache::misses() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return misses_;
}

int64_t PrimitiveCache::hits() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return hits_;
}

int64_t PrimitiveCache::size() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(order_.size());
}

}  // namespace vaelab::plugins::onednn
