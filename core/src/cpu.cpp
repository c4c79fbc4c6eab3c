// The CPU's vector features and OpenBLAS's choice of kernels for them (core/include/vaelab/cpu.hpp).
#include <vaelab/cpu.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace vaelab {
namespace {

constexpr const char* kRestartedVariable = "VAELAB_BLAS_RESTARTED";

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

CpuFeatures parse_cpu_flags(std::string_view flags_line) {
  const size_t colon = flags_line.find(':');
  if (colon != std::string_view::npos) flags_line.remove_prefix(colon + 1);
  std::set<std::string> flags;
  std::istringstream words{std::string(flags_line)};
  for (std::string word; words >> word;) flags.insert(word);
  const auto has = [&flags](const char* name) { return flags.count(name) > 0; };
  CpuFeatures f;
  f.sse3 = has("pni");  // Linux names SSE3 "pni"
  f.avx = has("avx");
  f.avx2 = has("avx2");
  f.fma = has("fma");
  f.avx512f = has("avx512f");
  f.avx512bw = has("avx512bw");
  f.avx512vl = has("avx512vl");
  f.avx512dq = has("avx512dq");
  f.avx512cd = has("avx512cd");
  f.avx512_bf16 = has("avx512_bf16");
  f.amx_bf16 = has("amx_bf16");
  f.amx_tile = has("amx_tile");
  return f;
}

CpuFeatures cpu_features() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) == 0) return parse_cpu_flags(line);
  }
  return {};
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    const size_t first = line.find_first_not_of(" \t", colon + 1);
    return first == std::string::npos ? std::string() : line.substr(first);
  }
  return "";
}

double parse_load_average(std::string_view line) {
  const std::string text(line.substr(0, line.find(' ')));
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) != 0)) return -1;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() ? value : -1;
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  std::string line;
  if (!std::getline(in, line)) return -1;
  return parse_load_average(line);
}

std::string cpu_isa_name(const CpuFeatures& f) {
  const bool avx512_core = f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
  if (avx512_core && f.amx_bf16 && f.amx_tile) return "avx512_core_amx";
  if (avx512_core && f.avx512_bf16) return "avx512_core_bf16";
  if (avx512_core) return "avx512_core";
  if (f.avx2) return "avx2";
  if (f.avx) return "avx";
  if (f.sse3) return "sse3";
  return "baseline";
}

bool is_pre_avx2_blas_core(std::string_view core) {
  static const std::set<std::string> pre_avx2 = {
      "unknown", "katmai",   "coppermine", "northwood",    "prescott",  "banias",    "atom",
      "core2",   "penryn",   "dunnington", "nehalem",      "athlon",    "opteron",   "opteron_sse3",
      "barcelona", "nano",   "bobcat",     "sandybridge",  "bulldozer", "piledriver", "generic"};
  return pre_avx2.count(lower(core)) > 0;
}

std::string better_blas_core(const CpuFeatures& f, std::string_view chosen_core) {
  if (chosen_core.empty() || !is_pre_avx2_blas_core(chosen_core)) return "";
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512cd) return "SkylakeX";
  if (f.avx2 && f.fma) return "Haswell";
  return "";
}

std::string blas_core_name() {
  using CoreName = char* (*)();
  void* symbol = ::dlsym(RTLD_DEFAULT, "openblas_get_corename");
  if (symbol == nullptr) return "";
  const char* name = reinterpret_cast<CoreName>(symbol)();
  return name != nullptr ? std::string(name) : std::string();
}

void ensure_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || std::getenv(kRestartedVariable) != nullptr) return;
  const std::string chosen = blas_core_name();
  if (!is_pre_avx2_blas_core(chosen)) return;  // the usual case: /proc/cpuinfo is not read
  const std::string better = better_blas_core(cpu_features(), chosen);
  if (better.empty()) return;
  ::setenv("OPENBLAS_CORETYPE", better.c_str(), 1);
  ::setenv(kRestartedVariable, chosen.c_str(), 1);
  ::execv("/proc/self/exe", argv);
  // Still here: the restart failed; go on with the kernels OpenBLAS chose, and say so.
  ::unsetenv("OPENBLAS_CORETYPE");
  ::setenv(kRestartedVariable, ("!" + chosen + ": restart failed: " + std::strerror(errno)).c_str(), 1);
}

std::string blas_kernels_report() {
  const std::string core = blas_core_name();
  if (core.empty()) return "BLAS is not OpenBLAS (no openblas_get_corename)";
  std::string report = "OpenBLAS core " + core;
  const char* restarted = std::getenv(kRestartedVariable);
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  const CpuFeatures features = cpu_features();
  const std::string isa = cpu_isa_name(features);
  if (restarted != nullptr && restarted[0] == '!') {
    report += " (generic kernels on this " + isa + " CPU: OpenBLAS had chosen " + std::string(restarted + 1) + ")";
  } else if (restarted != nullptr && forced != nullptr) {
    report += " (restarted with OPENBLAS_CORETYPE=" + std::string(forced) + ": OpenBLAS had chosen " +
              std::string(restarted) + ", kernels without AVX2, on this " + isa + " CPU)";
  } else if (forced != nullptr) {
    report += " (OPENBLAS_CORETYPE=" + std::string(forced) + " set by the user)";
  } else if (!better_blas_core(features, core).empty()) {
    report += " (kernels without AVX2 on this " + isa + " CPU)";
  }
  return report;
}

}  // namespace vaelab
