#include <vaelab/io/torchscript_vae.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <zlib.h>

#include <vaelab/error.hpp>

namespace vaelab {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxFileBytes = uint64_t{16} << 30;

std::string hex32(uint64_t value) {
  char text[9];
  std::snprintf(text, sizeof text, "%08llx", static_cast<unsigned long long>(value & 0xffffffffu));
  return text;
}

uint32_t crc32_of(const std::string& bytes) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const size_t step = size_t{1} << 30;
  for (size_t at = 0; at < bytes.size(); at += step) {
    const size_t n = std::min(step, bytes.size() - at);
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + at), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(crc);
}

std::string shape_of(at::IntArrayRef sizes) { return c10::str(sizes); }

/// The line of a LibTorch error a user needs: for a failure inside the TorchScript interpreter
/// the last line (the Python-side exception, after the TorchScript traceback), else the first.
std::string torch_message(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t") != std::string::npos) lines.push_back(line);
  }
  if (lines.empty()) return text;
  if (text.find("TorchScript interpreter") != std::string::npos) return lines.back();
  return lines.front();
}

/// The module that carries the TorchScript module's tensors for vaelab: train()/eval() reach
/// the TorchScript module too (its `training` flags decide what dropout and batch norm do).
class ScriptedTensors final : public torch::nn::Module {
 public:
  explicit ScriptedTensors(torch::jit::Module scripted)
      : torch::nn::Module("TorchScriptVae"), scripted_(std::move(scripted)) {}
  void train(bool on) override {
    torch::nn::Module::train(on);
    scripted_.train(on);
  }

 private:
  torch::jit::Module scripted_;
};

/// A tensor attribute of the TorchScript module, as vaelab's module holds it.
struct Shared {
  torch::jit::Module owner;
  std::string attribute;
  std::string name;  ///< dotted, as in named_parameters()
  const c10::TensorImpl* impl;
};

/// Registers `from`'s own parameters and buffers in `to` (the same tensors), then its children.
void mirror(const torch::jit::Module& from, torch::nn::Module& to, const std::string& prefix,
            std::vector<Shared>& shared) {
  for (const auto& p : from.named_parameters(/*recurse=*/false)) {
    to.register_parameter(p.name, p.value, /*requires_grad=*/true);
    shared.push_back({from, p.name, prefix + p.name, p.value.unsafeGetTensorImpl()});
  }
  for (const auto& b : from.named_buffers(/*recurse=*/false)) {
    to.register_buffer(b.name, b.value);
    shared.push_back({from, b.name, prefix + b.name, b.value.unsafeGetTensorImpl()});
  }
  for (const auto& child : from.named_children()) {
    auto module = std::make_shared<torch::nn::Module>();
    to.register_module(child.name, module);
    mirror(child.value, *module, prefix + child.name + ".", shared);
  }
}

}  // namespace

struct TorchScriptVae::Impl {
  std::string who;
  std::string path;
  uint64_t bytes = 0;
  uint32_t crc = 0;
  torch::jit::Module scripted;
  std::shared_ptr<ScriptedTensors> tensors;
  torch::Tensor record;         ///< kFileBuffer, as registered
  int64_t record_version = -1;  ///< record's version when it was last compared with the file
  std::vector<Shared> shared;   ///< every parameter and buffer of the TorchScript module
  std::vector<int64_t> latent;  ///< empty before check()
  ModelSpec spec;

  std::string what() const { return who + ": " + path; }

  /// `name`(input) in the TorchScript interpreter without the graph executor's optimizations:
  /// every op runs as in PyTorch's eager mode, so the results (gradients included) do not depend
  /// on how often the method ran before (a resumed run repeats the uninterrupted one bit for bit).
  torch::jit::IValue call(const char* name, const char* argument, const torch::Tensor& input) {
    torch::jit::GraphOptimizerEnabledGuard eager_like(false);
    torch::jit::IValue out;
    try {
      out = scripted.get_method(name)({input});
    } catch (const std::exception& e) {
      throw Error(what() + ": " + name + "(" + argument + ") failed on " + argument + " " +
                  shape_of(input.sizes()) + ": " + torch_message(e));
    }
    // A tensor the method assigned anew (self.x = ...) is no longer the one vaelab trains,
    // checkpoints and moves.
    for (const Shared& s : shared) {
      if (s.owner.attr(s.attribute).toTensor().unsafeGetTensorImpl() != s.impl) {
        throw Error(what() + ": " + name + "(" + argument + ") replaced the tensor '" + s.name +
                    "' with a new one; update it in place (e.g. self." + s.attribute +
                    ".copy_(...)) so vaelab's optimizer and checkpoints keep seeing it");
      }
    }
    return out;
  }

  /// Compares kFileBuffer with the file when it changed since the last comparison (a checkpoint
  /// was loaded into it).
  void compare_record(const std::string& source) {
    const int64_t version = record._version();
    if (version == record_version) return;
    const torch::Tensor got = record.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    const torch::Tensor want =
        torch::tensor({static_cast<int64_t>(bytes), static_cast<int64_t>(crc)}, torch::kInt64)
            .to(record.scalar_type())
            .to(torch::kFloat64);
    if (got.numel() != 2 || !torch::equal(got, want)) {
      std::string recorded = "a record of " + std::to_string(got.numel()) + " numbers";
      if (got.numel() == 2) {
        const auto* v = got.data_ptr<double>();
        recorded = std::to_string(static_cast<uint64_t>(v[0])) + " bytes, crc32 " +
                   hex32(static_cast<uint64_t>(v[1]));
      }
      throw Error(what() + " changed since the run started: " + source + " records " + recorded +
                  ", the file now has " + std::to_string(bytes) + " bytes, crc32 " + hex32(crc) +
                  " (restore the file the run was trained with, or start a new run)");
    }
    record_version = version;
  }
};

TorchScriptVae::TorchScriptVae(const fs::path& file, torch::Device device, const std::string& who)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.who = who;
  if (file.empty()) throw Error(who + ": no TorchScript file given (config key `path`)");
  std::error_code ec;
  const fs::path absolute = fs::absolute(file, ec);
  m.path = ec ? file.string() : absolute.lexically_normal().string();
  if (!fs::is_regular_file(m.path, ec)) {
    throw Error(m.what() + ": no such file" +
                (file.is_relative() ? " (a relative path is taken from the working directory, " +
                                          fs::current_path(ec).string() + ")"
                                    : std::string()));
  }
  const uint64_t size = fs::file_size(m.path, ec);
  if (ec || size > kMaxFileBytes)
    throw Error(m.what() + ": cannot read its size, or larger than 16 GiB");
  std::string content(size, '\0');
  {
    std::ifstream in(m.path, std::ios::binary);
    if (!in.read(content.data(), static_cast<std::streamsize>(size)))
      throw Error(m.what() + ": cannot read it");
  }
  m.bytes = size;
  m.crc = crc32_of(content);  // the checksum and the module come from the same bytes
  try {
    std::istringstream stream(content);
    m.scripted = torch::jit::load(stream, device);
  } catch (const std::exception& e) {
    throw Error(m.what() + ": not a TorchScript file (torch.jit.save): " + torch_message(e));
  }

  for (const char* name : {"encode", "decode"}) {
    const auto method = m.scripted.find_method(name);
    if (!method) {
      throw Error(
          m.what() + ": the module has no method " + name +
          " (define it in the nn.Module and mark it @torch.jit.export before torch.jit.script)");
    }
    const size_t arguments = method->function().getSchema().arguments().size();  // with self
    if (arguments != 2) {
      throw Error(m.what() + ": " + name + " takes " + std::to_string(arguments - 1) +
                  " argument(s); vaelab calls " + name + (name[0] == 'e' ? "(x)" : "(z)") +
                  " with one tensor");
    }
  }

  m.tensors = std::make_shared<ScriptedTensors>(m.scripted);
  mirror(m.scripted, *m.tensors, "", m.shared);
  std::map<const void*, std::string> seen;
  int64_t parameters = 0;
  for (const auto& p : m.tensors->named_parameters(true)) {
    const auto [it, fresh] = seen.emplace(p.value().unsafeGetTensorImpl(), p.key());
    if (!fresh) {
      throw Error(m.what() + ": parameters '" + it->second + "' and '" + p.key() +
                  "' are the same tensor (tied weights), which vaelab cannot train as one");
    }
    if (!p.value().is_floating_point()) {
      throw Error(m.what() + ": parameter '" + p.key() + "' is " +
                  std::string(c10::toString(p.value().scalar_type())) + ", not floating point");
    }
    parameters += p.value().numel();
  }
  if (parameters == 0) {
    throw Error(m.what() +
                ": the module has no parameters, so there is nothing to train "
                "(register the weights as nn.Parameter)");
  }
  if (m.scripted.hasattr(kFileBuffer)) {
    throw Error(m.what() + ": the module has an attribute '" + kFileBuffer +
                "', a name vaelab reserves");
  }
  m.record = m.tensors->register_buffer(
      kFileBuffer,
      torch::tensor({static_cast<int64_t>(m.bytes), static_cast<int64_t>(m.crc)}, torch::kInt64)
          .to(device));
  m.record_version = m.record._version();
}

TorchScriptVae::~TorchScriptVae() = default;

const std::string& TorchScriptVae::path() const { return impl_->path; }
uint64_t TorchScriptVae::bytes() const { return impl_->bytes; }
std::string TorchScriptVae::crc32() const { return hex32(impl_->crc); }
torch::nn::Module& TorchScriptVae::module() { return *impl_->tensors; }

std::vector<int64_t> TorchScriptVae::check(const ModelSpec& spec) {
  Impl& m = *impl_;
  m.spec = spec;
  m.latent.clear();
  const bool was_training = m.tensors->is_training();
  m.tensors->eval();
  try {
    torch::NoGradGuard no_grad;
    const torch::Tensor first = m.tensors->parameters().front();
    const torch::Tensor x =
        torch::zeros({2, spec.channels, spec.height, spec.width}, first.options());
    const Posterior q = encode(x);
    m.latent.assign(q.mean.sizes().begin() + 1, q.mean.sizes().end());
    decode(q.mean);
  } catch (...) {
    m.latent.clear();
    m.tensors->train(was_training);
    throw;
  }
  m.tensors->train(was_training);
  return m.latent;
}

Posterior TorchScriptVae::encode(const torch::Tensor& x) {
  Impl& m = *impl_;
  m.compare_record("the checkpoint loaded into the model");
  const torch::jit::IValue out = m.call("encode", "x", x);
  const std::string returned = m.what() + ": encode(x) returned ";
  if (!out.isTuple())
    throw Error(returned + "a " + out.tagKind() + "; vaelab needs a tuple (mean, log_var)");
  const auto tuple = out.toTuple();
  const auto& items = tuple->elements();
  if (items.size() != 2 || !items[0].isTensor() || !items[1].isTensor()) {
    throw Error(returned + "a tuple of " + std::to_string(items.size()) +
                " item(s); vaelab needs two tensors (mean, log_var)");
  }
  Posterior q{items[0].toTensor(), items[1].toTensor()};
  std::vector<int64_t> want{x.size(0)};
  want.insert(want.end(), m.latent.begin(), m.latent.end());
  const bool shapes_ok =
      m.latent.empty()
          ? q.mean.dim() >= 2 && q.mean.size(0) == x.size(0) && q.mean.sizes() == q.log_var.sizes()
          : q.mean.sizes() == at::IntArrayRef(want) && q.log_var.sizes() == at::IntArrayRef(want);
  if (!shapes_ok) {
    throw Error(returned + "mean " + shape_of(q.mean.sizes()) + " and log_var " +
                shape_of(q.log_var.sizes()) + " for x " + shape_of(x.sizes()) + "; both must be " +
                (m.latent.empty()
                     ? std::string("[B, latent...] with B = ") + std::to_string(x.size(0))
                     : shape_of(want)));
  }
  if (!q.mean.is_floating_point() || !q.log_var.is_floating_point()) {
    throw Error(returned + "tensors that are not floating point");
  }
  return q;
}

torch::Tensor TorchScriptVae::decode(const torch::Tensor& z) {
  Impl& m = *impl_;
  m.compare_record("the checkpoint loaded into the model");
  const torch::jit::IValue out = m.call("decode", "z", z);
  const std::string returned = m.what() + ": decode(z) returned ";
  if (!out.isTensor()) throw Error(returned + "a " + out.tagKind() + ", not a tensor");
  torch::Tensor params = out.toTensor();
  const std::vector<int64_t> want{z.size(0), m.spec.param_channels, m.spec.height, m.spec.width};
  if (params.sizes() != at::IntArrayRef(want)) {
    throw Error(returned + shape_of(params.sizes()) + " for z " + shape_of(z.sizes()) +
                "; the likelihood needs " + shape_of(want) + " ([B, param_channels, H, W] " +
                "with param_channels = " + std::to_string(m.spec.param_channels) + ")");
  }
  if (!params.is_floating_point()) throw Error(returned + "a tensor that is not floating point");
  return params;
}

int64_t TorchScriptVae::reset_parameters() {
  torch::NoGradGuard no_grad;
  const auto named = impl_->tensors->named_parameters(true);
  int64_t drawn = 0;
  for (const auto& p : named) {
    const std::string& name = p.key();
    const size_t dot = name.rfind('.');
    const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
    const std::string owner = dot == std::string::npos ? "" : name.substr(0, dot + 1);
    torch::Tensor value = p.value();
    if (leaf == "weight" && value.dim() >= 2) {
      torch::nn::init::kaiming_uniform_(value, std::sqrt(5.0));
      ++drawn;
    } else if (leaf == "bias" && value.dim() == 1) {
      const torch::Tensor* weight = named.find(owner + "weight");
      if (weight == nullptr || weight->dim() < 2) continue;
      const int64_t fan_in = weight->numel() / weight->size(0);
      const double bound = 1 / std::sqrt(static_cast<double>(fan_in));
      torch::nn::init::uniform_(value, -bound, bound);
      ++drawn;
    }
  }
  return drawn;
}

void TorchScriptVae::require_same_file(const std::string& source) const {
  impl_->compare_record(source);
}

void TorchScriptVae::save(const fs::path& file) {
  Impl& m = *impl_;
  const bool was_training = m.tensors->is_training();
  m.tensors->eval();
  const fs::path tmp = file.string() + ".tmp";
  try {
    m.scripted.save(tmp.string());
  } catch (const std::exception& e) {
    m.tensors->train(was_training);
    throw Error(file.string() + ": cannot write the TorchScript module: " + torch_message(e));
  }
  m.tensors->train(was_training);
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) throw Error(file.string() + ": cannot write it: " + ec.message());
}

}  // namespace vaelab
