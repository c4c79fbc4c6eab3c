#pragma once
/// A reader for NumPy .npy files (format versions 1.0, 2.0 and 3.0). Needs only zlib and
/// vaelab::Error: no torch, no plugin machinery.
///
/// The format: the magic "\x93NUMPY", a major and a minor version byte, the header length (2
/// bytes little-endian in version 1, 4 bytes in versions 2 and 3), then the header, a Python dict
/// literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), } padded
/// with spaces and ended by a newline; the data follows.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <vaelab/io/binary_file.hpp>  // fail_at

namespace vaelab::plugins::npy {

/// An element type this reader knows: unsigned or signed integers of 1, 2, 4 or 8 bytes, and
/// float32 and float64, all little-endian.
struct NpyDtype {
  char kind = 0;       ///< 'u' unsigned integer, 'i' signed integer, 'f' floating point
  int item_bytes = 0;  ///< 1, 2, 4 or 8
  std::string descr;   ///< as written in the header, e.g. "<f4"

  /// NumPy's name for it, e.g. "uint8", "float32".
  std::string name() const;
  bool is_integer() const { return kind == 'u' || kind == 'i'; }
};

/// What a header declares, with the offsets of its parts for error messages.
struct NpyHeader {
  int major_version = 0;
  int minor_version = 0;
  NpyDtype dtype;
  std::vector<int64_t> shape;  ///< empty for a 0-d array
  uint64_t descr_offset = 0;   ///< of the 'descr' value
  uint64_t shape_offset = 0;   ///< of the 'shape' value
  uint64_t data_offset = 0;    ///< of the first data byte
  uint64_t data_bytes = 0;     ///< the product of the shape, times item_bytes

  uint64_t element_count() const;
  /// "(60000, 28, 28)", as NumPy writes a shape.
  std::string shape_text() const;
};

/// A whole .npy file: its header and its data bytes as stored (little-endian, C order).
struct NpyArray {
  std::string path;
  NpyHeader header;
  std::vector<uint8_t> data;  ///< header.data_bytes bytes
  uint64_t size_bytes = 0;    ///< of the file
  std::string crc32;          ///< of the whole file, zlib's CRC-32, 8 lowercase hex digits

  /// The byte offset of element `index` in the file.
  uint64_t offset_of(uint64_t index) const {
    return header.data_offset + index * static_cast<uint64_t>(header.dtype.item_bytes);
  }
  /// Element `index` of a float array, as a double.
  double float_at(uint64_t index) const;
  /// Element `index` of an integer array; false when it does not fit in an int64 (a uint64 of
  /// 2^63 or more).
  bool int_at(uint64_t index, int64_t& value) const;
};

/// Parses the header at the start of `bytes` (`size` bytes of the file, which must hold the whole
/// header). The data is not looked at. Throws vaelab::Error "<path>: byte <offset>: <what is
/// wrong>" for a wrong magic, an unknown version, a malformed dict, a structured, big-endian or
/// unsupported dtype, fortran_order = True, or a shape whose size overflows 64 bits.
NpyHeader parse_npy_header(const std::string& path, const uint8_t* bytes, uint64_t size);

/// Reads a .npy file. The header is parsed and the declared data size checked against
/// `max_bytes` and against the file's actual size (neither short nor followed by trailing bytes)
/// before anything is allocated; `check`, when given, then sees the header and may throw, before
/// the data is read. Throws vaelab::Error "<path>: byte <offset>: <what is wrong>", or
/// "<path>: <what>" when the file cannot be opened.
NpyArray read_npy(const std::string& path, uint64_t max_bytes,
                  const std::function<void(const NpyHeader&)>& check = {});

}  // namespace vaelab::plugins::npy
