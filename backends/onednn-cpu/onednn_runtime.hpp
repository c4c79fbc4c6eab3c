#pragma once
// What every onednn-cpu layer shares: the CPU engine, one stream per thread, the precision and the
// primitive cache.

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/core/ivalue.h>
#include <dnnl.hpp>

namespace vaelab::plugins::onednn {

/// How the layers compute. Parameters and gradients are float32 in both; bf16 casts sources and
/// weights to bfloat16 inside each dense and convolution layer and accumulates in float32.
enum class Precision { f32, bf16 };

const char* precision_name(Precision p);

/// The process-wide oneDNN CPU engine.
const dnnl::engine& cpu_engine();

/// The calling thread's oneDNN stream on cpu_engine() (a stream is not shared between threads).
dnnl::stream& thread_stream();

/// oneDNN's name for the instruction set it dispatches to on this CPU ("avx512_core_bf16", ...).
std::string effective_isa_name();

/// Whether oneDNN runs bfloat16 with native instructions here (AVX512-BF16 or AMX).
bool native_bf16();

/// The version of the oneDNN library loaded at run time, e.g. "2.6.3".
std::string onednn_version();

/// The cache key: an operation tag, the precision, then every size and option that shapes the
/// primitive.
using CacheKey = std::vector<int64_t>;

/// Primitives (and their descriptors) by key, least recently used first out when full. A miss
/// creates exactly one primitive; steady-state training, which repeats the same shapes, only hits.
/// Thread-safe.
class PrimitiveCache {
 public:
  explicit PrimitiveCache(size_t capacity) : capacity_(capacity) {}

  /// The entry for `key`, made by `make()` (returning an Entry) on a miss. Entries of one key are
  /// always of one type: the key's first element names the operation.
  template <class Entry, class Make>
  std::shared_ptr<const Entry> get(const CacheKey& key, const Make& make) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto found = index_.find(key);
      if (found != index_.end()) {
        ++hits_;
        order_.splice(order_.begin(), order_, found->second);
        return std::static_pointer_cast<const Entry>(found->second->second);
      }
    }
    // Made outside the lock: creating a primitive can take milliseconds (JIT compilation).
    std::shared_ptr<const Entry> made = std::make_shared<const Entry>(make());
    const std::lock_guard<std::mutex> lock(mutex_);
    ++misses_;
    const auto found = index_.find(key);
    if (found != index_.end()) {  // another thread made it meanwhile; keep the first
      order_.splice(order_.begin(), order_, found->second);
      return std::static_pointer_cast<const Entry>(found->second->second);
    }
    order_.emplace_front(key, made);
    index_.emplace(key, order_.begin());
    while (order_.size() > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    return made;
  }

  /// Primitives created so far (one per miss).
  int64_t misses() const;
  int64_t hits() const;
  /// Entries held now.
  int64_t size() const;

 private:
  struct KeyHash {
    size_t operator()(const CacheKey& key) const;
  };
  using Item = std::pair<CacheKey, std::shared_ptr<const void>>;

  size_t capacity_;
  mutable std::mutex mutex_;
  std::list<Item> order_;  // most recently used first
  std::unordered_map<CacheKey, std::list<Item>::iterator, KeyHash> index_;
  int64_t misses_ = 0;
  int64_t hits_ = 0;
};

/// The state a backend instance shares with its layers and their autograd nodes (held by
/// intrusive pointer so a graph outlives the layer that built it safely).
struct Runtime : torch::CustomClassHolder {
  Runtime(Precision p, size_t cache_capacity, int primitive_threads)
      : precision(p), cache(cache_capacity), threads(primitive_threads) {}
  const Precision precision;
  PrimitiveCache cache;
  /// OpenMP threads a large primitive runs with; a small one runs in the calling thread
  /// (kSmallPrimitiveBytes).
  const int threads;
};

/// A primitive whose largest argument is smaller than this runs in one thread: below it, waking
/// and joining a second OpenMP thread costs more than it saves (the diffusion denoiser's 64×256
/// products, for one).
constexpr size_t kSmallPrimitiveBytes = size_t{512} << 10;

using RuntimePtr = c10::intrusive_ptr<Runtime>;

}  // namespace vaelab::plugins::onednn
