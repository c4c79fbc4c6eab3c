// Results: checkpoints as safetensors files, readable from Python.
#include <vaelab/io/safetensors.hpp>

#include <cstring>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/io/run_store.hpp>

namespace vaelab {
namespace {

struct DtypeName {
  torch::ScalarType type;
  const char* name;
};

constexpr DtypeName kDtypes[] = {
    {torch::kFloat32, "F32"}, {torch::kFloat64, "F64"}, {torch::kFloat16, "F16"},
    {torch::kBFloat16, "BF16"}, {torch::kInt64, "I64"},  {torch::kInt32, "I32"},
    {torch::kInt16, "I16"},   {torch::kInt8, "I8"},     {torch::kUInt8, "U8"},
    {torch::kBool, "BOOL"},
};

const char* dtype_name(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.type == type) return d.name;
  }
  throw Error(std::string("safetensors: unsupported dtype ") + c10::toString(type));
}

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

/// kTrainingStatePrefix of train/checkpoint.hpp.
constexpr const char* kTrainingStatePrefixName = "_train.";

}  // namespace

void save_safetensors(const std::filesystem::path& file, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(std::move(t));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  std::string out;
  out.reserve(8 + text.size() + offset);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  for (const auto& t : data) {
    out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
  }
  write_file_atomic(file, out);
}

NamedTensors load_safetensors(const std::filesystem::path& file,
                              std::map<std::string, std::string>* metadata) {
  const std::string where = file.string() + ": ";
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(where + "cannot open");
  in.seekg(0, std::ios::end);
  const auto file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8) throw Error(where + "byte 0: file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | len_bytes[i];
  if (header_size > kMaxHeaderBytes || header_size > file_size - 8) {
    throw Error(where + "byte 0: header length " + std::to_string(header_size) +
                " does not fit in the file (" + std::to_string(file_size) + " bytes)");
  }
  std::string text(header_size, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_size));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(where + "byte " + std::to_string(8 + (e.byte > 0 ? e.byte - 1 : 0)) + ": header is not JSON");
  }
  if (!header.is_object()) throw Error(where + "byte 8: header is not a JSON object");
  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = file_size - data_start;

  NamedTensors out;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (metadata != nullptr && entry.is_object()) {
        for (const auto& [k, v] : entry.items()) {
          if (v.is_string()) (*metadata)[k] = v.get<std::string>();
        }
      }
      continue;
    }
    const std::string what = where + "tensor '" + name + "': ";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      throw Error(what + "needs dtype, shape and data_offsets");
    }
    torch::ScalarType type = torch::kFloat32;
    bool known = false;
    for (const auto& d : kDtypes) {
      if (entry["dtype"] == d.name) {
        type = d.type;
        known = true;
      }
    }
    if (!known) throw Error(what + "unsupported dtype " + entry["dtype"].dump());
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& s : entry["shape"]) {
      if (!s.is_number_unsigned()) throw Error(what + "shape must hold non-negative integers");
      const auto dim = s.get<uint64_t>();
      if (dim != 0 && numel > data_size / dim) throw Error(what + "shape is larger than the file");
      numel *= dim;
      shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      throw Error(what + "data_offsets must be [begin, end]");
    }
    const auto begin = offsets[0].get<uint64_t>();
    const auto end = offsets[1].get<uint64_t>();
    const uint64_t bytes = numel * c10::elementSize(type);
    if (begin > end || end > data_size || end - begin != bytes) {
      throw Error(what + "byte " + std::to_string(data_start + begin) + ": data_offsets [" +
                  std::to_string(begin) + ", " + std::to_string(end) + "] do not match " +
                  std::to_string(bytes) + " bytes of data within the file's " +
                  std::to_string(data_size));
    }
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(type));
    in.seekg(static_cast<std::streamoff>(data_start + begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
    if (!in) throw Error(what + "byte " + std::to_string(data_start + begin) + ": read failed");
    out.emplace_back(name, std::move(t));
  }
  return out;
}

NamedTensors module_state(const torch::nn::Module& module) {
  NamedTensors state;
  for (const auto& p : module.named_parameters(true)) state.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) state.emplace_back(b.key(), b.value());
  return state;
}

void load_module_state(torch::nn::Module& module, const NamedTensors& state,
                       const std::string& source) {
  std::map<std::string, torch::Tensor> by_name;
  for (const auto& [name, tensor] : state) {
    // A training checkpoint's optimizer, random and stream state (train/checkpoint.hpp).
    if (name.rfind(kTrainingStatePrefixName, 0) == 0) continue;
    by_name.emplace(name, tensor);
  }
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  const auto copy_into = [&](const std::string& name, torch::Tensor& target) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) throw Error(source + ": no tensor '" + name + "' for the model");
    if (it->second.sizes() != target.sizes()) {
      throw Error(source + ": tensor '" + name + "' has shape " + c10::str(it->second.sizes()) +
                  ", the model expects " + c10::str(target.sizes()));
    }
    target.copy_(it->second);
    used.insert(name);
  };
  for (auto& p : module.named_parameters(true)) copy_into(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) copy_into(b.key(), b.value());
  for (const auto& [name, tensor] : by_name) {
    if (used.count(name) == 0) throw Error(source + ": tensor '" + name + "' is not in the model");
  }
}

}  // namespace vaelab
