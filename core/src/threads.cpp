#include <vaelab/threads.hpp>

#include <dlfcn.h>
#include <sched.h>

#include <thread>

namespace vaelab {

bool set_blas_threads(int threads) {
  using SetFn = void (*)(int);
  auto* fn = reinterpret_cast<SetFn>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn == nullptr) return false;
  fn(threads);
  return true;
}

int blas_threads() {
  using GetFn = int (*)();
  auto* fn = reinterpret_cast<GetFn>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return fn != nullptr ? fn() : 0;
}

int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  return static_cast<int>(std::thread::hardware_concurrency());
}

}  // namespace vaelab
