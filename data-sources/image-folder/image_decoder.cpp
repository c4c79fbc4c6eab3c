#include "image_decoder.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>

#include <vaelab/error.hpp>
#include <vaelab/io/binary_file.hpp>

// stb_image (Debian's libstb-dev), PNG and JPEG only, compiled here and nowhere else, with
// internal linkage so that none of its symbols leave the plugin.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace vaelab::plugins::image_folder {
namespace {

struct StbiFree {
  void operator()(stbi_uc* pixels) const noexcept { stbi_image_free(pixels); }
};

/// stb_image's short reasons, in words.
std::string reason(const char* stb_reason) {
  const std::string text = stb_reason != nullptr ? stb_reason : "unknown error";
  if (text == "unknown image type") return "not a PNG or JPEG file";
  if (text == "outofdata") return "the file ends early (truncated)";
  // Some reasons quote bytes of the file ("XXXX PNG chunk not known"): escaped, so that the
  // message stays one line.
  std::string shown;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f) {
      shown += c;
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      shown += escaped;
    }
  }
  return shown + " (the file is corrupt, truncated, or a variant stb_image does not read)";
}

/// For one output coordinate: the first input index and the normalised weights from there on.
struct Taps {
  int64_t first = 0;
  std::vector<float> weights;
};

std::vector<Taps> triangle_taps(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = std::max(scale, 1.0);
  std::vector<Taps> taps(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const double centre = (static_cast<double>(o) + 0.5) * scale;
    const auto lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(centre - support)));
    const auto hi = std::min<int64_t>(in, static_cast<int64_t>(std::ceil(centre + support)));
    Taps& t = taps[static_cast<size_t>(o)];
    t.first = lo;
    double sum = 0;
    std::vector<double> w;
    for (int64_t i = lo; i < hi; ++i) {
      const double distance = std::fabs((static_cast<double>(i) + 0.5 - centre) / support);
      w.push_back(std::max(0.0, 1.0 - distance));
      sum += w.back();
    }
    for (const double v : w) t.weights.push_back(static_cast<float>(v / sum));
  }
  return taps;
}

/// stb_image as Debian 12 ships it (git 2022-09-08) trusts the code counts of a JPEG Huffman
/// table: a DHT segment declaring more than 256 codes makes it write past its tables
/// (nothings/stb#1289, fixed upstream by refusing such a table). The same refusal here, before
/// stb_image sees the file: the markers are walked as stb_image walks them (segments by their
/// lengths, scan data byte by byte up to the next marker) and every Huffman table is checked.
void check_jpeg_huffman_tables(const std::string& path, const std::vector<uint8_t>& bytes) {
  const size_t size = bytes.size();
  // SOI: FF D8, where stb_image, as for any marker, takes any number of FF fill bytes for the FF.
  size_t soi = 0;
  while (soi < size && bytes[soi] == 0xFF) ++soi;
  if (soi == 0 || soi >= size || bytes[soi] != 0xD8) return;  // not a JPEG
  // stb_image reads zeros past the end of the data.
  const auto at = [&](size_t i) -> size_t { return i < size ? bytes[i] : 0; };
  size_t pos = soi + 1;
  while (pos + 1 < size) {
    const uint8_t marker = bytes[pos + 1];
    if (bytes[pos] != 0xFF || marker == 0xFF) {
      ++pos;  // scan data, padding or a fill byte: on to the next marker
      continue;
    }
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
      pos += 2;  // a stuffed zero, TEM, a restart marker or SOI: no length follows
      continue;
    }
    if (marker == 0xD9) return;  // end of image
    const size_t length = (at(pos + 2) << 8) | at(pos + 3);
    if (marker == 0xC4) {
      // One or more tables: a class/id byte, 16 code counts, then that many symbols.
      int64_t left = static_cast<int64_t>(length) - 2;
      size_t table = pos + 4;
      while (left > 0) {
        size_t codes = 0;
        for (size_t i = 1; i <= 16; ++i) codes += at(table + i);
        if (codes > 256) {
          throw Error(path + ": cannot decode image: the JPEG Huffman table at byte " +
                      std::to_string(table) + " declares " + std::to_string(codes) +
                      " codes, more than 256 (the file is corrupt)");
        }
        table += 17 + codes;
        left -= static_cast<int64_t>(17 + codes);
      }
    }
    pos += 2 + length;
  }
}

/// stb_image allocates room for a PNG data chunk (IDAT) of the length its header declares before
/// reading it: a 100-byte file declaring a 2 GB chunk makes it allocate 2 GB, only to find the data
/// missing. Every chunk's declared length is checked against the bytes left in the file first.
void check_png_chunks(const std::string& path, const std::vector<uint8_t>& bytes) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  const size_t size = bytes.size();
  if (size < sizeof kSignature || std::memcmp(bytes.data(), kSignature, sizeof kSignature) != 0) {
    return;  // not a PNG
  }
  size_t pos = sizeof kSignature;
  while (size - pos >= 8) {  // a chunk's length and type
    const uint64_t length = (uint64_t{bytes[pos]} << 24) | (uint64_t{bytes[pos + 1]} << 16) |
                            (uint64_t{bytes[pos + 2]} << 8) | uint64_t{bytes[pos + 3]};
    const std::string type(reinterpret_cast<const char*>(bytes.data() + pos + 4), 4);
    const uint64_t left = size - pos - 8;
    if (length > left) {
      std::string shown;
      for (const char c : type) shown += (c >= 'A' && c <= 'z') ? c : '?';
      throw Error(path + ": cannot decode image: the file ends early (truncated): its PNG chunk '" +
                  shown + "' at byte " + std::to_string(pos) + " declares " +
                  std::to_string(length) + " bytes, only " + std::to_string(left) + " follow");
    }
    if (type == "IEND") return;
    pos += 8 + static_cast<size_t>(length) + std::min<uint64_t>(4, left - length);  // + its CRC
  }
}

}  // namespace

std::vector<uint8_t> read_image_file(const std::string& path) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (error) throw Error(path + ": cannot read: " + error.message());
  if (size > static_cast<uintmax_t>(INT_MAX)) {
    throw Error(path + ": file of " + std::to_string(size) +
                " bytes is larger than an image file can be here (2 GiB)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<uintmax_t>(in.gcount()) != size) {
    fail_at(path, static_cast<uint64_t>(in.gcount()),
            "read error: the file ends before its size of " + std::to_string(size) + " bytes (is it being written?)");
  }
  return bytes;
}

DecodedImage decode_image(const std::string& path, const std::vector<uint8_t>& bytes, int channels,
                          int64_t max_pixels) {
  if (bytes.empty()) throw Error(path + ": cannot decode image: empty file");
  if (bytes.size() > static_cast<size_t>(INT_MAX)) {
    throw Error(path + ": file of " + std::to_string(bytes.size()) +
                " bytes is larger than an image file can be here (2 GiB)");
  }
  const int length = static_cast<int>(bytes.size());
  check_jpeg_huffman_tables(path, bytes);
  check_png_chunks(path, bytes);

  int width = 0;
  int height = 0;
  int stored = 0;
  if (stbi_info_from_memory(bytes.data(), length, &width, &height, &stored) == 0) {
    throw Error(path + ": cannot decode image: " + reason(stbi_failure_reason()));
  }
  if (static_cast<int64_t>(width) * height > max_pixels) {
    throw Error(path + ": image is " + std::to_string(width) + "x" + std::to_string(height) +
                " pixels, more than max_image_pixels = " + std::to_string(max_pixels));
  }
  int w = 0;
  int h = 0;
  const std::unique_ptr<stbi_uc, StbiFree> decoded(
      stbi_load_from_memory(bytes.data(), length, &w, &h, &stored, channels));
  if (decoded == nullptr) {
    throw Error(path + ": cannot decode image: " + reason(stbi_failure_reason()));
  }
  DecodedImage image;
  image.width = w;
  image.height = h;
  image.channels = channels;
  image.stored_channels = stored;
  const auto size = static_cast<size_t>(image.width * image.height * channels);
  image.pixels.assign(decoded.get(), decoded.get() + size);
  return image;
}

DecodedImage resize_bilinear(const DecodedImage& image, int64_t width, int64_t height) {
  if (image.width == width && image.height == height) return image;
  const int64_t c_count = image.channels;
  const std::vector<Taps> across = triangle_taps(image.width, width);
  const std::vector<Taps> down = triangle_taps(image.height, height);

  // Rows first (source height × target width), then columns.
  std::vector<float> rows(static_cast<size_t>(image.height * width * c_count));
  for (int64_t y = 0; y < image.height; ++y) {
    const uint8_t* src = image.pixels.data() + y * image.width * c_count;
    float* dst = rows.data() + y * width * c_count;
    for (int64_t x = 0; x < width; ++x) {
      const Taps& t = across[static_cast<size_t>(x)];
      for (int64_t c = 0; c < c_count; ++c) {
        float sum = 0;
        for (size_t k = 0; k < t.weights.size(); ++k) {
          sum += t.weights[k] *
                 static_cast<float>(src[(t.first + static_cast<int64_t>(k)) * c_count + c]);
        }
        dst[x * c_count + c] = sum;
      }
    }
  }
  DecodedImage out;
  out.width = width;
  out.height = height;
  out.channels = c_count;
  out.stored_channels = image.stored_channels;
  out.pixels.resize(static_cast<size_t>(height * width * c_count));
  for (int64_t y = 0; y < height; ++y) {
    const Taps& t = down[static_cast<size_t>(y)];
    for (int64_t i = 0; i < width * c_count; ++i) {
      float sum = 0;
      for (size_t k = 0; k < t.weights.size(); ++k) {
        sum += t.weights[k] *
               rows[static_cast<size_t>((t.first + static_cast<int64_t>(k)) * width * c_count + i)];
      }
      out.pixels[static_cast<size_t>(y * width * c_count + i)] =
          static_cast<uint8_t>(std::clamp(std::lround(sum), 0L, 255L));
    }
  }
  return out;
}

void place_centred(const DecodedImage& image, int64_t canvas_width, int64_t canvas_height,
                   uint8_t* planes) {
  const int64_t top = (canvas_height - image.height) / 2;
  const int64_t left = (canvas_width - image.width) / 2;
  for (int64_t c = 0; c < image.channels; ++c) {
    for (int64_t y = 0; y < image.height; ++y) {
      uint8_t* dst = planes + (c * canvas_height + top + y) * canvas_width + left;
      const uint8_t* src = image.pixels.data() + y * image.width * image.channels + c;
      for (int64_t x = 0; x < image.width; ++x) dst[x] = src[x * image.channels];
    }
  }
}

}  // namespace vaelab::plugins::image_folder
