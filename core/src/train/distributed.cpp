// Training: data-parallel training over c10d (rendezvous, bucketed gradient all-reduce, failure).
#include <vaelab/train/distributed.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <spdlog/fmt/fmt.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

// Gloo: LibTorch defines USE_C10D_GLOO when it was built with it; its headers (libgloo-dev) must
// also be there for ProcessGroupGloo.hpp to compile.
#if defined(USE_C10D_GLOO) && __has_include(<gloo/algorithm.h>)
#define VAELAB_HAVE_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
// NCCL: only in a LibTorch built with CUDA and NCCL (it defines USE_C10D_NCCL).
#if defined(USE_C10D_NCCL)
#define VAELAB_HAVE_NCCL 1
#include <torch/cuda.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/log.hpp>

namespace vaelab {
namespace {

// LibTorch 2.x moved the collectives from ProcessGroup to Backend (which ProcessGroupGloo and
// ProcessGroupNCCL derive from there).
#if TORCH_VERSION_MAJOR >= 2
using GroupBase = c10d::Backend;
#else
using GroupBase = c10d::ProcessGroup;
#endif

std::string first_line(const std::string& text) {
  const std::string line = text.substr(0, text.find('\n'));
  return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

std::vector<uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }
std::string text_of(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

int env_int(const char* name, int lo, int hi, bool required, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    if (required) {
      throw ConfigError(std::string(name) + " is not set: a data-parallel process needs RANK, WORLD_SIZE, "
                        "MASTER_ADDR and MASTER_PORT (as torchrun sets them), or start the run with "
                        "vaelab train CONFIG --nproc N");
    }
    return fallback;
  }
  char* end = nullptr;
  errno = 0;
  const long parsed = std::strtol(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || parsed < lo || parsed > hi) {
    throw ConfigError(std::string(name) + "=" + value + ": expected an integer in [" + std::to_string(lo) +
                      ", " + std::to_string(hi) + "]");
  }
  return static_cast<int>(parsed);
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv env;
  env.world_size = env_int("WORLD_SIZE", 1, 1 << 20, false, 1);
  if (env.world_size == 1) return env;
  env.rank = env_int("RANK", 0, env.world_size - 1, true, 0);
  env.local_rank = env_int("LOCAL_RANK", 0, env.world_size - 1, false, 0);
  const char* addr = std::getenv("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0') {
    throw ConfigError("MASTER_ADDR is not set: with WORLD_SIZE=" + std::to_string(env.world_size) +
                      " every process needs the address of rank 0 (MASTER_ADDR, MASTER_PORT)");
  }
  env.master_addr = addr;
  env.master_port = env_int("MASTER_PORT", 1, 65535, true, 0);
  return env;
}

DistributedOptions DistributedOptions::from_config(const ConfigTable& table) {
  DistributedOptions o;
  o.backend = table.get_choice("backend", {"auto", "gloo", "nccl"});
  const double timeout = table.get_double("timeout_seconds");
  if (!(timeout > 0 && timeout <= 86400)) {
    throw ConfigError(table.key_path("timeout_seconds") + ": must be in (0, 86400] seconds");
  }
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(std::llround(timeout * 1000)));
  const double bucket_mb = table.get_double("bucket_mb");
  if (!(bucket_mb > 0 && bucket_mb <= 4096)) {
    throw ConfigError(table.key_path("bucket_mb") + ": must be in (0, 4096] MiB");
  }
  o.bucket_bytes = static_cast<int64_t>(bucket_mb * (1 << 20));
  return o;
}

bool nccl_available(std::string& why) {
#if defined(VAELAB_HAVE_NCCL)
  if (!torch::cuda::is_available()) {
    why = "LibTorch has NCCL but no CUDA device is visible to this process";
    return false;
  }
  why.clear();
  return true;
#else
  why = std::string("this LibTorch (") + TORCH_VERSION +
        ") was built without CUDA and NCCL (USE_C10D_NCCL is not defined), so it has no "
        "ProcessGroupNCCL";
  return false;
#endif
}

int free_tcp_port(const std::string& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("cannot open a socket to find a free port: ") + std::strerror(errno));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = 0;
  if (::inet_pton(AF_INET, address == "localhost" ? "127.0.0.1" : address.c_str(), &sa.sin_addr) != 1) {
    ::close(fd);
    throw Error("free_tcp_port: '" + address + "' is not an IPv4 address");
  }
  socklen_t len = sizeof sa;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw Error("cannot find a free TCP port on " + address + ": " + why);
  }
  ::close(fd);
  return ntohs(sa.sin_port);
}

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<GroupBase> group;
  DistributedOptions options;
  torch::Device device = torch::kCPU;
  std::string where;  ///< "rank R of W"

  double timeout_seconds() const { return static_cast<double>(options.timeout.count()) / 1000.0; }

  /// Waits for `work`, turning a failure (a peer gone, or the timeout) into vaelab::Error.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) const {
    try {
      if (!work->wait(options.timeout + std::chrono::milliseconds(1000))) {
        throw Error("no answer");
      }
    } catch (const std::exception& e) {
      std::string message = where + ": " + what + " failed: another rank stopped or did not answer within "
                            "train.distributed.timeout_seconds = " + fmt::format("{:g}", timeout_seconds()) +
                            " s (" + first_line(e.what()) + ")";
      throw Error(message);
    }
  }
};

Distributed::Distributed(const DistributedEnv& env, const DistributedOptions& options, const torch::Device& device)
    : impl_(std::make_unique<Impl>()), rank_(env.rank), world_size_(env.world_size) {
  impl_->options = options;
  impl_->device = device;
  impl_->where = "rank " + std::to_string(rank_) + " of " + std::to_string(world_size_);
  std::string nccl_missing;
  const bool have_nccl = nccl_available(nccl_missing);
  if (options.backend == "nccl" || (options.backend == "auto" && device.is_cuda())) {
    if (!have_nccl) {
      throw ConfigError("train.distributed.backend = \"" + options.backend + "\"" +
                        (device.is_cuda() ? " on a CUDA device" : "") + " needs NCCL, but " + nccl_missing +
                        "; use backend = \"gloo\" with a CPU backend");
    }
    if (!device.is_cuda()) {
      throw ConfigError("train.distributed.backend = \"nccl\" all-reduces CUDA tensors, but the backend's "
                        "device is " + device.str() + "; use backend = \"gloo\"");
    }
    backend_name_ = "nccl";
  } else {
    if (device.is_cuda()) {
      throw ConfigError("train.distributed.backend = \"gloo\": vaelab's Gloo path all-reduces CPU tensors, "
                        "but the backend's device is " + device.str() + "; use backend = \"nccl\" (or \"auto\")");
    }
    backend_name_ = "gloo";
  }

  // Rendezvous: rank 0 serves the store and waits for the others to connect.
  const std::string rendezvous = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(env.master_port);
    store_options.isServer = rank_ == 0;
    store_options.numWorkers = static_cast<std::size_t>(world_size_);
    store_options.waitWorkers = true;
    store_options.timeout = options.timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    throw Error(impl_->where + ": rendezvous at MASTER_ADDR:MASTER_PORT = " + rendezvous + " failed within " +
                fmt::format("{:g}", impl_->timeout_seconds()) + " s (train.distributed.timeout_seconds): " +
                first_line(e.what()) +
                (rank_ == 0 ? " (rank 0 serves the rendezvous: is the port free, and did every rank start?)"
                            : " (is rank 0 running, and MASTER_ADDR reachable from here?)"));
  }

  try {
    if (backend_name_ == "gloo") {
#if defined(VAELAB_HAVE_GLOO)
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
      const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
      if (interface != nullptr && *interface != '\0') {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      } else if (is_loopback(env.master_addr)) {
        // One machine: stay on the loopback interface whatever the host name resolves to.
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      gloo_options->threads = 2;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(
          c10::make_intrusive<c10d::PrefixStore>("vaelab/gloo", impl_->store), rank_, world_size_, gloo_options);
#else
      throw ConfigError("data-parallel training on the CPU needs Gloo, but this vaelab was built against a "
                        "LibTorch without it (USE_C10D_GLOO) or without the Gloo headers (libgloo-dev)");
#endif
    } else {
#if defined(VAELAB_HAVE_NCCL)
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = options.timeout;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          c10::make_intrusive<c10d::PrefixStore>("vaelab/nccl", impl_->store), rank_, world_size_, nccl_options);
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(impl_->where + ": the " + backend_name_ + " process group could not be formed within " +
                fmt::format("{:g}", impl_->timeout_seconds()) + " s: " + first_line(e.what()));
  }
  logger().info("distributed: {} joined through {} ({}), timeout {:g} s", impl_->where, rendezvous,
                backend_name_, impl_->timeout_seconds());
}

Distributed::~Distributed() {
  // The group first: its threads may still talk to the store.
  impl_->group.reset();
  impl_->store.reset();
}

std::string Distributed::failure_hint() const {
  // What a rank that failed with an error left in the store (best effort: the store lives in rank
  // 0's process, which may be the one that is gone).
  std::string hint;
  try {
    for (int r = 0; r < world_size_; ++r) {
      if (r == rank_) continue;
      const std::string key = "vaelab/failed/" + std::to_string(r);
      if (impl_->store->check({key})) {
        hint += (hint.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " reported: " +
                text_of(impl_->store->get(key));
      }
    }
  } catch (const std::exception&) {
    if (rank_ != 0) hint = "the rendezvous store (in rank 0) is gone too, so rank 0 has probably stopped";
  }
  if (hint.empty()) hint = "the stopped rank's own output says why";
  return hint;
}

void Distributed::all_reduce_gradients(const std::vector<torch::Tensor>& parameters,
                                       std::vector<double>& scalars, int64_t step) {
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  // Buckets: consecutive parameters of one dtype, up to bucket_bytes each.
  struct Bucket {
    std::vector<size_t> members;
    torch::Tensor flat;
  };
  std::vector<Bucket> buckets;
  int64_t bytes = 0;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const torch::Tensor& p = parameters[i];
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    if (buckets.empty() || bytes + size > impl_->options.bucket_bytes ||
        parameters[buckets.back().members.front()].scalar_type() != p.scalar_type()) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().members.push_back(i);
    bytes += size;
  }
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (Bucket& bucket : buckets) {
    std::vector<torch::Tensor> pieces;
    for (size_t i : bucket.members) {
      const torch::Tensor& p = parameters[i];
      pieces.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.options()));
    }
    bucket.flat = pieces.size() == 1 ? pieces[0].clone() : torch::cat(pieces);
    std::vector<torch::Tensor> tensors = {bucket.flat};
    works.push_back(impl_->group->allreduce(tensors));
  }
  torch::Tensor sums;
  if (!scalars.empty()) {
    sums = torch::tensor(scalars, torch::dtype(torch::kFloat64)).to(impl_->device);
    std::vector<torch::Tensor> tensors = {sums};
    works.push_back(impl_->group->allreduce(tensors));
  }
  const std::string what = "the gradient all-reduce of step " + std::to_string(step);
  for (const auto& work : works) {
    try {
      impl_->wait(work, what);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "; " + failure_hint());
    }
  }
  for (const Bucket& bucket : buckets) {
    int64_t offset = 0;
    for (size_t i : bucket.members) {
      torch::Tensor p = parameters[i];
      const int64_t n = p.numel();
      const torch::Tensor sum = bucket.flat.slice(0, offset, offset + n).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(sum);
      } else {
        p.mutable_grad() = sum.clone();
      }
      offset += n;
    }
  }
  if (sums.defined()) {
    const torch::Tensor cpu = sums.to(torch::kCPU).contiguous();
    for (size_t i = 0; i < scalars.size(); ++i) scalars[i] = cpu.data_ptr<double>()[i];
  }
  gradient_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void Distributed::all_reduce_sum(std::vector<double>& values, const std::string& what) {
  if (values.empty()) return;
  std::vector<torch::Tensor> tensors = {torch::tensor(values, torch::dtype(torch::kFloat64)).to(impl_->device)};
  try {
    impl_->wait(impl_->group->allreduce(tensors), what);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + "; " + failure_hint());
  }
  const torch::Tensor cpu = tensors[0].to(torch::kCPU).contiguous();
  for (size_t i = 0; i < values.size(); ++i) values[i] = cpu.data_ptr<double>()[i];
}

void Distributed::broadcast_from_rank0(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  torch::NoGradGuard no_grad;
  // One flat tensor per dtype, in order of first appearance.
  std::vector<std::pair<c10::ScalarType, std::vector<size_t>>> groups;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].defined() || tensors[i].numel() == 0) continue;
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == tensors[i].scalar_type(); });
    if (it == groups.end()) {
      groups.emplace_back(tensors[i].scalar_type(), std::vector<size_t>{});
      it = std::prev(groups.end());
    }
    it->second.push_back(i);
  }
  for (const auto& [dtype, members] : groups) {
    std::vector<torch::Tensor> pieces;
    for (size_t i : members) pieces.push_back(tensors[i].detach().reshape({-1}));
    std::vector<torch::Tensor> flat = {torch::cat(pieces).contiguous()};
    try {
      impl_->wait(impl_->group->broadcast(flat), what);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "; " + failure_hint());
    }
    int64_t offset = 0;
    for (size_t i : members) {
      torch::Tensor t = tensors[i];
      const int64_t n = t.numel();
      t.copy_(flat[0].slice(0, offset, offset + n).view(t.sizes()));
      offset += n;
    }
  }
}

void Distributed::agree(const std::string& step, const std::string& error) {
  const std::string prefix = "vaelab/agree/" + std::to_string(agree_round_++) + "/";
  std::vector<std::string> keys;
  std::vector<std::string> read_keys;
  for (int r = 0; r < world_size_; ++r) {
    keys.push_back(prefix + std::to_string(r));
    read_keys.push_back(prefix + "read/" + std::to_string(r));
  }
  if (!error.empty()) {
    // This rank failed: the caller rethrows its own error. It leaves the message for the others
    // and, as rank 0 holds the store, stays until they have read it (or the timeout).
    try {
      impl_->store->set(keys[static_cast<size_t>(rank_)], bytes_of("failed: " + first_line(error)));
      if (rank_ == 0) {
        std::vector<std::string> others;
        for (int r = 1; r < world_size_; ++r) others.push_back(read_keys[static_cast<size_t>(r)]);
        impl_->store->wait(others, impl_->options.timeout);
      }
    } catch (const std::exception&) {
    }
    return;
  }
  try {
    impl_->store->set(keys[static_cast<size_t>(rank_)], bytes_of("ok"));
    impl_->store->wait(keys, impl_->options.timeout);
  } catch (const std::exception& e) {
    throw Error(impl_->where + ": not every rank reached '" + step + "' within train.distributed.timeout_seconds = " +
                fmt::format("{:g}", impl_->timeout_seconds()) + " s (" + first_line(e.what()) + "); " +
                failure_hint());
  }
  std::string failed;
  for (int r = 0; r < world_size_ && failed.empty(); ++r) {
    const std::string value = text_of(impl_->store->get(keys[static_cast<size_t>(r)]));
    if (value != "ok") {
      failed = impl_->where + ": stopping because rank " + std::to_string(r) + " failed at '" + step + "': " +
               value.substr(std::min<size_t>(value.size(), 8));
    }
  }
  impl_->store->set(read_keys[static_cast<size_t>(rank_)], bytes_of("read"));
  if (!failed.empty()) throw Error(failed);
}

void Distributed::check_same(const std::string& what, const std::string& value) {
  const std::string key = "vaelab/same/" + std::to_string(agree_round_) + "/0";
  std::string mismatch;
  try {
    if (rank_ == 0) impl_->store->set(key, bytes_of(value));
    impl_->store->wait({key}, impl_->options.timeout);
    if (text_of(impl_->store->get(key)) != value) {
      mismatch = "rank " + std::to_string(rank_) + "'s " + what + " differs from rank 0's: every rank must run "
                 "the same config, overrides and vaelab build";
    }
  } catch (const std::exception& e) {
    throw Error(impl_->where + ": " + what + " could not be compared with rank 0's within the timeout (" +
                first_line(e.what()) + "); " + failure_hint());
  }
  agree("compare " + what, mismatch);
  if (!mismatch.empty()) throw Error(impl_->where + ": " + mismatch);
}

void Distributed::report_failure(const std::string& message) noexcept {
  try {
    impl_->store->set("vaelab/failed/" + std::to_string(rank_), bytes_of(first_line(message)));
  } catch (...) {
  }
}

}  // namespace vaelab
