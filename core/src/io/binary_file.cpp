#include <vaelab/io/binary_file.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <vaelab/error.hpp>

namespace vaelab {

void fail_at(const std::string& path, uint64_t offset, const std::string& message) {
  throw Error(path + ": byte " + std::to_string(offset) + ": " + message);
}

OpenedFile open_for_reading(const std::string& path, const std::string& what) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) throw Error(path + ": is a folder, not " + what);
  OpenedFile opened;
  opened.file.reset(std::fopen(path.c_str(), "rb"));
  if (opened.file == nullptr) throw Error(path + ": cannot open: " + std::strerror(errno));
  if (std::fseek(opened.file.get(), 0, SEEK_END) != 0) throw Error(path + ": cannot seek: " + std::strerror(errno));
  const long end = std::ftell(opened.file.get());
  if (end < 0) throw Error(path + ": cannot tell its size: " + std::strerror(errno));
  std::rewind(opened.file.get());
  opened.size = static_cast<uint64_t>(end);
  return opened;
}

std::string crc32_hex(uint64_t crc) {
  char text[16];
  std::snprintf(text, sizeof text, "%08lx", static_cast<unsigned long>(crc & 0xffffffffUL));
  return text;
}

}  // namespace vaelab
