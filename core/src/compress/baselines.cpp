#include <vaelab/compress/baselines.hpp>

#include <csetjmp>
#include <functional>

#include <bzlib.h>
#include <lzma.h>
#include <png.h>
#include <zlib.h>
#include <zstd.h>

#include <vaelab/error.hpp>

namespace vaelab::compress {

namespace {

uint64_t gzip_size(const std::vector<uint8_t>& in) {
  z_stream s{};
  // windowBits 15 + 16: a gzip member, as `gzip -9` writes (without a file name).
  if (deflateInit2(&s, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw Error("zlib: deflateInit2 failed");
  std::vector<uint8_t> out(deflateBound(&s, in.size()) + 64);
  s.next_in = const_cast<Bytef*>(in.data());
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&s, Z_FINISH);
  const uint64_t size = s.total_out;
  deflateEnd(&s);
  if (rc != Z_STREAM_END) throw Error("zlib: deflate failed");
  return size;
}

uint64_t bzip2_size(const std::vector<uint8_t>& in) {
  auto cap = static_cast<unsigned int>(in.size() + in.size() / 100 + 600);
  std::vector<char> out(cap);
  const int rc = BZ2_bzBuffToBuffCompress(out.data(), &cap, reinterpret_cast<char*>(const_cast<uint8_t*>(in.data())),
                                          static_cast<unsigned int>(in.size()), 9, 0, 0);
  if (rc != BZ_OK) throw Error("bzip2: compression failed (" + std::to_string(rc) + ")");
  return cap;
}

uint64_t xz_size(const std::vector<uint8_t>& in, uint32_t preset) {
  std::vector<uint8_t> out(lzma_stream_buffer_bound(in.size()));
  size_t pos = 0;
  const lzma_ret rc = lzma_easy_buffer_encode(preset, LZMA_CHECK_CRC64, nullptr, in.data(), in.size(), out.data(),
                                              &pos, out.size());
  if (rc != LZMA_OK) throw Error("xz: compression failed (" + std::to_string(static_cast<int>(rc)) + ")");
  return pos;
}

uint64_t zstd_size(const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out(ZSTD_compressBound(in.size()));
  const size_t rc = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 19);
  if (ZSTD_isError(rc) != 0U) throw Error(std::string("zstd: ") + ZSTD_getErrorName(rc));
  return rc;
}

void png_append(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + length);
}
void png_no_flush(png_structp) {}

/// Writes `rows` rows through libpng into `out`; false on a libpng error (its longjmp lands here,
/// so nothing with a destructor lives in this frame).
bool png_write_rows(std::vector<uint8_t>* out, uint32_t width, uint32_t rows, int bit_depth, int color,
                    const std::function<const uint8_t*(uint32_t)>* row_at) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, out, png_append, png_no_flush);
  png_set_compression_level(png, 9);
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_ALL_FILTERS);
  png_set_IHDR(png, info, width, rows, bit_depth, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_BASE,
               PNG_FILTER_TYPE_BASE);
  png_write_info(png, info);
  for (uint32_t r = 0; r < rows; ++r) png_write_row(png, const_cast<png_bytep>((*row_at)(r)));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

/// The images as one PNG of count·H rows: 1-bit when `one_bit` (binary gray images), else 8-bit.
uint64_t png_size(const PixelBlock& b, bool one_bit) {
  const auto width = static_cast<uint32_t>(b.width);
  const auto rows = static_cast<uint32_t>(b.count * b.height);
  const int64_t plane = b.height * b.width;
  const int64_t row_bytes = one_bit ? (b.width + 7) / 8 : b.width * b.channels;
  std::vector<uint8_t> row(static_cast<size_t>(row_bytes));
  const std::function<const uint8_t*(uint32_t)> row_at = [&](uint32_t r) {
    const int64_t image = r / b.height;
    const int64_t y = r % b.height;
    const uint8_t* base = b.symbols + image * b.channels * plane + y * b.width;
    std::fill(row.begin(), row.end(), 0);
    for (int64_t x = 0; x < b.width; ++x) {
      if (one_bit) {
        if (base[x] != 0) row[static_cast<size_t>(x / 8)] |= static_cast<uint8_t>(0x80 >> (x % 8));
      } else {
        for (int64_t c = 0; c < b.channels; ++c) {
          const uint8_t v = base[c * plane + x];
          row[static_cast<size_t>(x * b.channels + c)] = b.binary ? static_cast<uint8_t>(v != 0 ? 255 : 0) : v;
        }
      }
    }
    return row.data();
  };
  std::vector<uint8_t> out;
  const int color = b.channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY;
  if (!png_write_rows(&out, width, rows, one_bit ? 1 : 8, color, &row_at)) throw Error("libpng: writing failed");
  return out.size();
}

}  // namespace

std::vector<uint8_t> pack_bits(const PixelBlock& b) {
  const int64_t row_bytes = (b.width + 7) / 8;
  const int64_t rows = b.count * b.channels * b.height;
  std::vector<uint8_t> out(static_cast<size_t>(rows * row_bytes), 0);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in = b.symbols + r * b.width;
    uint8_t* o = out.data() + r * row_bytes;
    for (int64_t x = 0; x < b.width; ++x) {
      if (in[x] != 0) o[x / 8] |= static_cast<uint8_t>(0x80 >> (x % 8));
    }
  }
  return out;
}

std::vector<BaselineResult> run_baselines(const PixelBlock& block) {
  const auto bytes = static_cast<size_t>(block.count * block.channels * block.height * block.width);
  const std::vector<uint8_t> raw(block.symbols, block.symbols + bytes);
  std::vector<uint8_t> packed;
  if (block.binary) packed = pack_bits(block);
  std::vector<BaselineResult> results;
  const auto both = [&](const std::string& name, const std::function<uint64_t(const std::vector<uint8_t>&)>& f) {
    BaselineResult r{name, "raw bytes", f(raw)};
    if (block.binary) {
      const uint64_t p = f(packed);
      if (p < r.bytes) r = {name, "bit-packed", p};
    }
    results.push_back(r);
  };
  both("gzip -9", gzip_size);
  both("bzip2 -9", bzip2_size);
  both("xz -9", [](const std::vector<uint8_t>& in) { return xz_size(in, 9); });
  both("xz -9e", [](const std::vector<uint8_t>& in) { return xz_size(in, 9 | LZMA_PRESET_EXTREME); });
  both("zstd -19", zstd_size);
  BaselineResult png{"png", "8-bit", png_size(block, false)};
  if (block.binary && block.channels == 1) {
    const uint64_t p = png_size(block, true);
    if (p < png.bytes) png = {"png", "1-bit", p};
  }
  results.push_back(png);
  return results;
}

}  // namespace vaelab::compress
