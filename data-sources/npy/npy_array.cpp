#include "npy_array.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

#include <vaelab/io/binary_file.hpp>
#include <vaelab/error.hpp>

namespace vaelab::plugins::npy {
namespace {

constexpr uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
// Magic, two version bytes and a 4-byte header length (versions 2 and 3).
constexpr size_t kLongestPreambleBytes = 12;
// Version 1's header length has 2 bytes, so its headers stay under 64 KiB; a later version's
// header is allowed this much (NumPy itself writes a few hundred bytes at most).
constexpr uint64_t kMaxHeaderBytes = uint64_t{1} << 20;
// Data is read in chunks of this size, so a file that shrinks while it is read is noticed.
constexpr size_t kChunkBytes = size_t{4} << 20;

std::string printable(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f) {
      out += c;
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    }
  }
  return out;
}

/// Where the header starts and how long it is, from the preamble (magic, version, length).
struct Preamble {
  int major_version = 0;
  int minor_version = 0;
  uint64_t header_offset = 0;
  uint64_t header_bytes = 0;
};

Preamble read_preamble(const std::string& path, const uint8_t* bytes, uint64_t size) {
  const uint64_t magic_got = std::min<uint64_t>(size, sizeof kMagic);
  // An empty file may come with no buffer at all: memcmp must not see a null pointer.
  if (magic_got > 0 && std::memcmp(bytes, kMagic, magic_got) != 0) {
    fail_at(path, 0,
            "bad magic \"" +
                printable(std::string_view(reinterpret_cast<const char*>(bytes),
                                           static_cast<size_t>(magic_got))) +
                "\": expected a NumPy .npy file, which starts with \"\\x93NUMPY\"");
  }
  if (size < 8) {
    fail_at(path, 0,
            "file ends after " + std::to_string(size) +
                " bytes, inside the magic and version (8 bytes)");
  }
  Preamble preamble;
  preamble.major_version = bytes[6];
  preamble.minor_version = bytes[7];
  if (preamble.major_version < 1 || preamble.major_version > 3 || preamble.minor_version != 0) {
    fail_at(path, 6,
            "format version " + std::to_string(preamble.major_version) + "." +
                std::to_string(preamble.minor_version) +
                " is not supported; versions 1.0, 2.0 and 3.0 are");
  }
  const uint64_t length_bytes = preamble.major_version == 1 ? 2 : 4;
  if (size < 8 + length_bytes) {
    fail_at(path, 8,
            "file ends after " + std::to_string(size) + " bytes, inside the " +
                std::to_string(length_bytes) + "-byte header length");
  }
  for (uint64_t i = 0; i < length_bytes; ++i) {
    preamble.header_bytes |= uint64_t{bytes[8 + i]} << (8 * i);
  }
  preamble.header_offset = 8 + length_bytes;
  if (preamble.header_bytes > kMaxHeaderBytes) {
    fail_at(path, 8,
            "header length " + std::to_string(preamble.header_bytes) + " bytes is more than the " +
                std::to_string(kMaxHeaderBytes) + " this reader accepts");
  }
  return preamble;
}

/// A recursive-descent parser for the header's dict literal. Positions are offsets in the file.
class HeaderParser {
 public:
  HeaderParser(const std::string& path, std::string_view text, uint64_t offset)
      : path_(path), text_(text), offset_(offset) {}

  void parse(NpyHeader& header) {
    bool has_descr = false;
    bool has_fortran_order = false;
    bool has_shape = false;
    skip_space();
    expect('{', "the header to start with '{' (a Python dict literal)");
    for (;;) {
      skip_space();
      if (peek('}')) break;
      const size_t key_pos = pos_;
      const std::string key = parse_string("a quoted key");
      skip_space();
      expect(':', "':' after the key '" + printable(key) + "'");
      skip_space();
      if (key == "descr") {
        if (has_descr) fail(key_pos, "'descr' appears twice");
        has_descr = true;
        header.descr_offset = offset_ + pos_;
        header.dtype = parse_descr();
      } else if (key == "fortran_order") {
        if (has_fortran_order) fail(key_pos, "'fortran_order' appears twice");
        has_fortran_order = true;
        const size_t value_pos = pos_;
        if (parse_bool()) {
          fail(value_pos,
               "fortran_order is True: the array is stored column-major, which this reader does "
               "not transpose; save it in C order (np.save(f, np.ascontiguousarray(a)))");
        }
      } else if (key == "shape") {
        if (has_shape) fail(key_pos, "'shape' appears twice");
        has_shape = true;
        header.shape_offset = offset_ + pos_;
        header.shape = parse_shape();
      } else {
        fail(key_pos, "unexpected key '" + printable(key) +
                          "'; a .npy header holds 'descr', 'fortran_order' and 'shape'");
      }
      skip_space();
      if (peek(',')) {
        ++pos_;
        continue;
      }
      if (!peek('}')) fail(pos_, "expected ',' or '}' in the header dict");
    }
    ++pos_;  // the '}'
    skip_space();
    if (pos_ < text_.size()) {
      fail(pos_,
           "unexpected text after the header dict: \"" + printable(text_.substr(pos_, 16)) + "\"");
    }
    const char* missing = !has_descr           ? "descr"
                          : !has_fortran_order ? "fortran_order"
                          : !has_shape         ? "shape"
                                               : nullptr;
    if (missing != nullptr) fail(0, std::string("the header lacks the key '") + missing + "'");
  }

 private:
  [[noreturn]] void fail(size_t pos, const std::string& message) const {
    fail_at(path_, offset_ + pos, message);
  }

  bool peek(char c) const { return pos_ < text_.size() && text_[pos_] == c; }

  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  void expect(char c, const std::string& what) {
    if (!peek(c)) {
      fail(pos_, "expected " + what +
                     (pos_ < text_.size() ? ", found '" + printable(text_.substr(pos_, 1)) + "'"
                                          : ", found the end of the header"));
    }
    ++pos_;
  }

  std::string parse_string(const std::string& what) {
    if (!peek('\'') && !peek('"')) expect('\'', what);
    const char quote = text_[pos_];
    const size_t start = pos_;
    ++pos_;
    std::string value;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
      value += text_[pos_++];
    }
    if (pos_ >= text_.size()) fail(start, "unterminated string in the header");
    ++pos_;
    return value;
  }

  bool parse_bool() {
    for (const auto& [word, value] : {std::pair<std::string_view, bool>{"True", true},
                                      std::pair<std::string_view, bool>{"False", false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    fail(pos_, "expected True or False");
  }

  NpyDtype parse_descr() {
    const size_t start = pos_;
    if (peek('[')) {
      fail(start,
           "a structured dtype (a list of fields) is not supported; save a plain array of "
           "uint8, float32 or float64");
    }
    NpyDtype dtype;
    dtype.descr = parse_string("a dtype string such as '<f4'");
    const std::string& d = dtype.descr;
    const std::string quoted = "'" + printable(d) + "'";
    if (d.size() < 3 || (d[0] != '<' && d[0] != '>' && d[0] != '|' && d[0] != '=')) {
      fail(start, "dtype " + quoted + " is not supported; use uint8, float32 or float64");
    }
    int item_bytes = 0;
    for (size_t i = 2; i < d.size(); ++i) {
      if (d[i] < '0' || d[i] > '9' || item_bytes > 1000) {
        fail(start, "dtype " + quoted + " is not supported; use uint8, float32 or float64");
      }
      item_bytes = item_bytes * 10 + (d[i] - '0');
    }
    dtype.kind = d[1];
    dtype.item_bytes = item_bytes;
    const bool known =
        ((dtype.kind == 'u' || dtype.kind == 'i') &&
         (item_bytes == 1 || item_bytes == 2 || item_bytes == 4 || item_bytes == 8)) ||
        (dtype.kind == 'f' && (item_bytes == 4 || item_bytes == 8));
    if (!known) {
      fail(start, "dtype " + quoted + (dtype.kind == 'f' && item_bytes == 2 ? " (float16)" : "") +
                      " is not supported; images must be uint8, float32 or float64 and labels "
                      "an integer type");
    }
    if (item_bytes > 1 && d[0] == '>') {
      fail(start, "dtype " + quoted +
                      " is big-endian, which is not supported; save it "
                      "little-endian (np.save(f, a.astype('<" +
                      d.substr(1) + "')))");
    }
    if (item_bytes > 1 && d[0] != '<') {
      fail(start, "dtype " + quoted + " does not say its byte order; expected '<" + d.substr(1) +
                      "' (little-endian)");
    }
    return dtype;
  }

  std::vector<int64_t> parse_shape() {
    expect('(', "a shape tuple such as (60000, 28, 28)");
    std::vector<int64_t> shape;
    for (;;) {
      skip_space();
      if (peek(')')) break;
      const size_t start = pos_;
      uint64_t value = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        const auto digit = static_cast<uint64_t>(text_[pos_] - '0');
        if (value > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - digit) / 10) {
          fail(start, "shape dimension " + std::to_string(shape.size()) + " is too large");
        }
        value = value * 10 + digit;
        ++pos_;
      }
      if (pos_ == start) fail(pos_, "expected a non-negative integer in the shape");
      if (peek('L')) ++pos_;  // Python 2's long integers, as old NumPy versions wrote them
      shape.push_back(static_cast<int64_t>(value));
      skip_space();
      if (peek(',')) {
        ++pos_;
        continue;
      }
      if (!peek(')')) fail(pos_, "expected ',' or ')' in the shape");
    }
    ++pos_;  // the ')'
    return shape;
  }

  const std::string& path_;
  std::string_view text_;
  uint64_t offset_;
  size_t pos_ = 0;
};

}  // namespace

std::string NpyDtype::name() const {
  const std::string bits = std::to_string(8 * item_bytes);
  switch (kind) {
    case 'u':
      return "uint" + bits;
    case 'i':
      return "int" + bits;
    case 'f':
      return "float" + bits;
    default:
      return descr;
  }
}

uint64_t NpyHeader::element_count() const {
  uint64_t count = 1;
  for (const int64_t dim : shape) count *= static_cast<uint64_t>(dim);
  return count;
}

std::string NpyHeader::shape_text() const {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + (shape.size() == 1 ? ",)" : ")");
}

double NpyArray::float_at(uint64_t index) const {
  const uint8_t* p = data.data() + index * static_cast<uint64_t>(header.dtype.item_bytes);
  if (header.dtype.item_bytes == 4) {
    const uint32_t bits =
        uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
    float value = 0;
    std::memcpy(&value, &bits, sizeof value);
    return value;
  }
  uint64_t bits = 0;
  for (int b = 0; b < 8; ++b) bits |= uint64_t{p[b]} << (8 * b);
  double value = 0;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

bool NpyArray::int_at(uint64_t index, int64_t& value) const {
  const int bytes = header.dtype.item_bytes;
  const uint8_t* p = data.data() + index * static_cast<uint64_t>(bytes);
  uint64_t bits = 0;
  for (int b = 0; b < bytes; ++b) bits |= uint64_t{p[b]} << (8 * b);
  if (header.dtype.kind == 'u') {
    if (bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    value = static_cast<int64_t>(bits);
    return true;
  }
  // Sign-extend from the element's width.
  const int shift = 64 - 8 * bytes;
  value = static_cast<int64_t>(bits << shift) >> shift;
  return true;
}

NpyHeader parse_npy_header(const std::string& path, const uint8_t* bytes, uint64_t size) {
  const Preamble preamble = read_preamble(path, bytes, size);
  if (size < preamble.header_offset + preamble.header_bytes) {
    fail_at(path, preamble.header_offset,
            "file ends after " + std::to_string(size - preamble.header_offset) + " of the " +
                std::to_string(preamble.header_bytes) + " header bytes");
  }
  NpyHeader header;
  header.major_version = preamble.major_version;
  header.minor_version = preamble.minor_version;
  header.data_offset = preamble.header_offset + preamble.header_bytes;
  const std::string_view text(reinterpret_cast<const char*>(bytes + preamble.header_offset),
                              static_cast<size_t>(preamble.header_bytes));
  HeaderParser(path, text, preamble.header_offset).parse(header);

  uint64_t bytes_declared = static_cast<uint64_t>(header.dtype.item_bytes);
  for (const int64_t dim : header.shape) {
    const auto d = static_cast<uint64_t>(dim);
    if (d != 0 && bytes_declared > std::numeric_limits<uint64_t>::max() / d) {
      fail_at(path, header.shape_offset,
              "shape " + header.shape_text() + " of " + header.dtype.name() +
                  " declares more than 2^64 bytes");
    }
    bytes_declared *= d;
  }
  header.data_bytes = bytes_declared;
  return header;
}

NpyArray read_npy(const std::string& path, uint64_t max_bytes,
                  const std::function<void(const NpyHeader&)>& check) {
  const OpenedFile opened = open_for_reading(path, "a .npy file");
  const auto& file = opened.file;
  const uint64_t size = opened.size;

  // Read exactly what is known to be needed, step by step: preamble, header, data.
  const auto read_exactly = [&](uint8_t* out, uint64_t count, uint64_t offset) {
    const size_t got = std::fread(out, 1, static_cast<size_t>(count), file.get());
    if (got < count) {
      if (std::ferror(file.get()) != 0) {
        fail_at(path, offset + got, std::string("read error: ") + std::strerror(errno));
      }
      fail_at(path, offset + got,
              "file ends early: it was " + std::to_string(size) +
                  " bytes when opened (is it being written?)");
    }
  };
  std::vector<uint8_t> head(static_cast<size_t>(std::min<uint64_t>(size, kLongestPreambleBytes)));
  read_exactly(head.data(), head.size(), 0);
  const Preamble preamble = read_preamble(path, head.data(), head.size());
  const uint64_t head_bytes = std::min(size, preamble.header_offset + preamble.header_bytes);
  const uint64_t already = head.size();
  head.resize(static_cast<size_t>(std::max(head_bytes, already)));
  if (head_bytes > already) read_exactly(head.data() + already, head_bytes - already, already);

  NpyArray array;
  array.path = path;
  array.header = parse_npy_header(path, head.data(), head.size());
  array.size_bytes = size;
  const NpyHeader& header = array.header;
  const std::string what = "shape " + header.shape_text() + " of " + header.dtype.name();
  if (header.data_bytes > max_bytes) {
    fail_at(path, header.shape_offset,
            what + " declares " + std::to_string(header.data_bytes) +
                " data bytes, more than max_bytes = " + std::to_string(max_bytes));
  }
  const uint64_t stored = size - header.data_offset;
  if (stored < header.data_bytes) {
    fail_at(path, size,
            "file ends after " + std::to_string(stored) + " of the " +
                std::to_string(header.data_bytes) + " data bytes of " + what +
                " (the data starts at byte " + std::to_string(header.data_offset) + ")");
  }
  if (stored > header.data_bytes) {
    fail_at(path, header.data_offset + header.data_bytes,
            std::to_string(stored - header.data_bytes) + " trailing bytes after the " +
                std::to_string(header.data_bytes) + " data bytes of " + what);
  }

  if (check) check(header);

  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, head.data(), static_cast<uInt>(head.size()));
  array.data.resize(static_cast<size_t>(header.data_bytes));
  uint64_t have = 0;
  while (have < header.data_bytes) {
    const uint64_t want = std::min<uint64_t>(header.data_bytes - have, kChunkBytes);
    read_exactly(array.data.data() + have, want, header.data_offset + have);
    crc = crc32(crc, array.data.data() + have, static_cast<uInt>(want));
    have += want;
  }
  array.crc32 = crc32_hex(crc);
  return array;
}

}  // namespace vaelab::plugins::npy
