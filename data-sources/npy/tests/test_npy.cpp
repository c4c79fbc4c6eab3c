#include <catch2/catch.hpp>

#include <stdlib.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/data_source.hpp>
#include <vaelab/error.hpp>
#include <vaelab/registry.hpp>

#include "npy_array.hpp"
#include "npy_source.hpp"

namespace fs = std::filesystem;
using vaelab::plugins::npy::NpyArray;
using vaelab::plugins::npy::NpySource;
using vaelab::plugins::npy::read_npy;

namespace {

constexpr uint64_t kMaxBytes = uint64_t{1} << 30;
// Where the data of the files npy_bytes() makes starts: their headers take 118 bytes, as NumPy's
// do.
constexpr uint64_t kData = 128;

/// A fresh folder under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vaelab-test-npy-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

/// The bytes of a .npy file as NumPy writes it: magic, version, header length (2 bytes for
/// version 1, 4 otherwise), the dict padded with spaces and ended by a newline so that the data
/// starts at a multiple of 64, then `data`. `dict` replaces the usual header when given.
std::vector<uint8_t> npy_bytes(const std::string& descr, const std::string& shape,
                               const std::vector<uint8_t>& data, int major = 1,
                               const std::string& dict = "") {
  std::string header =
      dict.empty() ? "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }"
                   : dict;
  const size_t preamble = major == 1 ? 10 : 12;
  while ((preamble + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  const size_t length_bytes = major == 1 ? 2 : 4;
  for (size_t i = 0; i < length_bytes; ++i)
    out.push_back(static_cast<uint8_t>(header.size() >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

template <typename T>
void put_le(std::vector<uint8_t>& out, T value) {
  uint8_t bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // the tests run on little-endian machines
  out.insert(out.end(), bytes, bytes + sizeof(T));
}

template <typename T>
std::vector<uint8_t> le_bytes(const std::vector<T>& values) {
  std::vector<uint8_t> out;
  for (const T v : values) put_le(out, v);
  return out;
}

/// count × size bytes whose byte i is (i * 7 + seed) mod 256.
std::vector<uint8_t> byte_pattern(size_t size, int seed = 0) {
  std::vector<uint8_t> out(size);
  for (size_t i = 0; i < size; ++i)
    out[i] = static_cast<uint8_t>(i * 7 + static_cast<size_t>(seed));
  return out;
}

std::string write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
  return path;
}

/// The offset in `bytes` of the first occurrence of `needle`.
uint64_t offset_of(const std::vector<uint8_t>& bytes, const std::string& needle) {
  const std::string text(bytes.begin(), bytes.end());
  const size_t at = text.find(needle);
  REQUIRE(at != std::string::npos);
  return at;
}

std::string at_byte(const std::string& path, uint64_t offset) {
  return path + ": byte " + std::to_string(offset) + ": ";
}

std::string crc_of(const std::vector<uint8_t>& bytes) {
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), bytes.data(), static_cast<uInt>(bytes.size()));
  char text[16];
  std::snprintf(text, sizeof text, "%08lx", static_cast<unsigned long>(crc));
  return text;
}

/// A full config table for NpySource (the host would merge defaults.toml; tests spell it out).
vaelab::ConfigTable source_config(const std::string& train, const std::string& test,
                                  const std::string& extra = "") {
  std::string text = "train = '" + train + "'\ntest = '" + test + "'\nname = 'arrays'\n" +
                     "max_bytes = " + std::to_string(kMaxBytes) + "\n" + extra;
  const auto add_default = [&](const std::string& key, const std::string& value) {
    if (extra.find(key + " =") == std::string::npos) text += key + " = " + value + "\n";
  };
  add_default("train_labels", "''");
  add_default("test_labels", "''");
  add_default("channels_last", "false");
  add_default("float_images", "'continuous'");
  add_default("num_classes", "0");
  add_default("pad_to", "0");
  return vaelab::ConfigTable::parse(text, "data.config");
}

}  // namespace

TEST_CASE("uint8 arrays round-trip in format versions 1.0, 2.0 and 3.0", "[npy]") {
  TempDir dir;
  const std::vector<uint8_t> data = byte_pattern(2 * 3 * 4);
  for (const int major : {1, 2, 3}) {
    const std::vector<uint8_t> bytes = npy_bytes("|u1", "(2, 3, 4)", data, major);
    const std::string path = write_file(dir.file("v" + std::to_string(major) + ".npy"), bytes);
    const NpyArray array = read_npy(path, kMaxBytes);
    CHECK(array.header.major_version == major);
    CHECK(array.header.shape == std::vector<int64_t>{2, 3, 4});
    CHECK(array.header.dtype.name() == "uint8");
    CHECK(array.header.data_offset == kData);
    CHECK(array.data == data);
    CHECK(array.size_bytes == bytes.size());
    CHECK(array.crc32 == crc_of(bytes));
  }
}

TEST_CASE("header variants NumPy has written are read", "[npy]") {
  TempDir dir;
  const std::vector<uint8_t> one = {42};
  // Keys in another order, double quotes, Python 2 long integers, a 1-tuple, no trailing comma.
  const std::string path =
      write_file(dir.file("old.npy"),
                 npy_bytes("", "", {1, 2, 3}, 1,
                           "{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"|u1\"}"));
  const NpyArray array = read_npy(path, kMaxBytes);
  CHECK(array.header.shape == std::vector<int64_t>{3});
  CHECK(array.header.shape_text() == "(3,)");
  CHECK(array.data == std::vector<uint8_t>{1, 2, 3});
  // A 0-d array: shape () holds one element.
  const std::string scalar = write_file(dir.file("scalar.npy"), npy_bytes("<u1", "()", one));
  CHECK(read_npy(scalar, kMaxBytes).header.shape.empty());
  CHECK(read_npy(scalar, kMaxBytes).data == one);
}

TEST_CASE("elements decode little-endian: floats and signed and unsigned integers", "[npy]") {
  TempDir dir;
  const std::string f4 = write_file(
      dir.file("f4.npy"), npy_bytes("<f4", "(3,)", le_bytes<float>({0.25f, -1.5f, 3e38f})));
  const NpyArray floats = read_npy(f4, kMaxBytes);
  CHECK(floats.float_at(0) == 0.25);
  CHECK(floats.float_at(1) == -1.5);
  CHECK(floats.float_at(2) == static_cast<double>(3e38f));
  const std::string f8 =
      write_file(dir.file("f8.npy"), npy_bytes("<f8", "(2,)", le_bytes<double>({1e-300, 0.1})));
  CHECK(read_npy(f8, kMaxBytes).float_at(0) == 1e-300);
  CHECK(read_npy(f8, kMaxBytes).float_at(1) == 0.1);

  const std::string i2 =
      write_file(dir.file("i2.npy"), npy_bytes("<i2", "(2,)", le_bytes<int16_t>({-2, 300})));
  int64_t value = 0;
  const NpyArray shorts = read_npy(i2, kMaxBytes);
  REQUIRE(shorts.int_at(0, value));
  CHECK(value == -2);
  REQUIRE(shorts.int_at(1, value));
  CHECK(value == 300);
  const std::string u8 = write_file(
      dir.file("u8.npy"), npy_bytes("<u8", "(2,)", le_bytes<uint64_t>({7, uint64_t{1} << 63})));
  const NpyArray longs = read_npy(u8, kMaxBytes);
  REQUIRE(longs.int_at(0, value));
  CHECK(value == 7);
  CHECK_FALSE(longs.int_at(1, value));
}

TEST_CASE("a wrong magic, version or truncated header is refused at its offset", "[npy]") {
  TempDir dir;
  const std::string png = write_file(dir.file("picture.npy"),
                                     {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0});
  REQUIRE_THROWS_WITH(read_npy(png, kMaxBytes),
                      Catch::Contains(at_byte(png, 0) + "bad magic \"\\x89PNG\\x0d\\x0a\"") &&
                          Catch::Contains("expected a NumPy .npy file"));
  std::vector<uint8_t> v4 = npy_bytes("|u1", "(1,)", {1});
  v4[6] = 4;
  const std::string four = write_file(dir.file("v4.npy"), v4);
  REQUIRE_THROWS_WITH(read_npy(four, kMaxBytes),
                      Catch::Contains(at_byte(four, 6) + "format version 4.0 is not supported"));
  const std::string empty = write_file(dir.file("empty.npy"), {});
  REQUIRE_THROWS_WITH(read_npy(empty, kMaxBytes),
                      Catch::Contains(at_byte(empty, 0) + "file ends after 0 bytes"));
  std::vector<uint8_t> cut = npy_bytes("|u1", "(1,)", {1});
  cut.resize(40);
  const std::string short_header = write_file(dir.file("cut-header.npy"), cut);
  REQUIRE_THROWS_WITH(
      read_npy(short_header, kMaxBytes),
      Catch::Contains(at_byte(short_header, 10) + "file ends after 30 of the 118 header bytes"));
}

TEST_CASE("malformed header dicts are refused at the offending byte", "[npy]") {
  TempDir dir;
  const auto refused = [&](const std::string& name, const std::string& dict,
                           const std::string& needle, const std::string& message) {
    const std::vector<uint8_t> bytes = npy_bytes("", "", {1}, 1, dict);
    const std::string path = write_file(dir.file(name), bytes);
    const uint64_t offset = needle.empty() ? 10 : offset_of(bytes, needle);
    REQUIRE_THROWS_WITH(read_npy(path, kMaxBytes),
                        Catch::Contains(at_byte(path, offset) + message));
  };
  refused("not-dict.npy", "['descr']", "[", "expected the header to start with '{'");
  refused("no-shape.npy", "{'descr': '|u1', 'fortran_order': False}", "",
          "the header lacks the key 'shape'");
  refused("extra-key.npy", "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), 'x': 1}", "'x'",
          "unexpected key 'x'");
  refused("twice.npy", "{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (1,)}",
          "'descr': '|u1', 'fortran", "'descr' appears twice");
  refused("bad-shape.npy", "{'descr': '|u1', 'fortran_order': False, 'shape': (1, x)}", "x)",
          "expected a non-negative integer in the shape");
  refused("negative.npy", "{'descr': '|u1', 'fortran_order': False, 'shape': (-1,)}", "-1",
          "expected a non-negative integer in the shape");
  refused("bool.npy", "{'descr': '|u1', 'fortran_order': 0, 'shape': (1,)}", "0,",
          "expected True or False");
  refused("trailing.npy", "{'descr': '|u1', 'fortran_order': False, 'shape': (1,)} junk", "junk",
          "unexpected text after the header dict");
  refused("huge-dim.npy",
          "{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999,)}", "99999",
          "shape dimension 0 is too large");
}

TEST_CASE("unsupported dtypes and layouts are refused clearly", "[npy]") {
  TempDir dir;
  SECTION("big-endian") {
    const std::vector<uint8_t> bytes = npy_bytes(">f4", "(2,)", std::vector<uint8_t>(8, 0));
    const std::string path = write_file(dir.file("big.npy"), bytes);
    REQUIRE_THROWS_WITH(read_npy(path, kMaxBytes),
                        Catch::Contains(at_byte(path, offset_of(bytes, "'>f4'")) +
                                        "dtype '>f4' is big-endian, which is not supported") &&
                            Catch::Contains("a.astype('<f4')"));
    // One byte has no byte order: '>u1' is fine.
    const std::string bytes_be = write_file(dir.file("u1.npy"), npy_bytes(">u1", "(1,)", {5}));
    CHECK(read_npy(bytes_be, kMaxBytes).data == std::vector<uint8_t>{5});
  }
  SECTION("fortran_order = True") {
    const std::vector<uint8_t> bytes = npy_bytes(
        "", "", {1, 2, 3, 4}, 1, "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2), }");
    const std::string path = write_file(dir.file("fortran.npy"), bytes);
    REQUIRE_THROWS_WITH(
        read_npy(path, kMaxBytes),
        Catch::Contains(at_byte(path, offset_of(bytes, "True")) + "fortran_order is True"));
  }
  SECTION("structured, complex, string and half-precision dtypes") {
    const std::vector<uint8_t> structured = npy_bytes(
        "", "", {}, 1, "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (0,), }");
    const std::string s = write_file(dir.file("structured.npy"), structured);
    REQUIRE_THROWS_WITH(
        read_npy(s, kMaxBytes),
        Catch::Contains(at_byte(s, offset_of(structured, "[")) + "a structured dtype"));
    for (const std::string descr : {"<c8", "<U5", "|b1", "<f2", "|O"}) {
      const std::vector<uint8_t> bytes = npy_bytes(descr, "(1,)", std::vector<uint8_t>(8, 0));
      const std::string path = write_file(dir.file("dtype.npy"), bytes);
      REQUIRE_THROWS_WITH(read_npy(path, kMaxBytes),
                          Catch::Contains(at_byte(path, offset_of(bytes, "'" + descr + "'")) +
                                          "dtype '" + descr + "'") &&
                              Catch::Contains("is not supported"));
    }
  }
}

TEST_CASE("absurd shapes are refused before anything is allocated", "[npy]") {
  TempDir dir;
  const std::vector<uint8_t> overflow =
      npy_bytes("<f8", "(4294967296, 4294967296, 4294967296)", {1, 2, 3});
  const std::string o = write_file(dir.file("overflow.npy"), overflow);
  REQUIRE_THROWS_WITH(read_npy(o, kMaxBytes),
                      Catch::Contains(at_byte(o, offset_of(overflow, "(4294967296")) +
                                      "shape (4294967296, 4294967296, 4294967296) of float64 "
                                      "declares more than 2^64 bytes"));
  const std::vector<uint8_t> big = npy_bytes("|u1", "(1000000, 1000, 1000)", {1, 2, 3});
  const std::string b = write_file(dir.file("big.npy"), big);
  REQUIRE_THROWS_WITH(
      read_npy(b, kMaxBytes),
      Catch::Contains(at_byte(b, offset_of(big, "(1000000")) +
                      "shape (1000000, 1000, 1000) of uint8 declares "
                      "1000000000000 data bytes, more than max_bytes = 1073741824"));
  // Under max_bytes but more than the file holds: refused as truncated, at the file's end.
  const std::vector<uint8_t> liar = npy_bytes("<f4", "(1000, 1000, 100)", {1, 2, 3});
  const std::string l = write_file(dir.file("liar.npy"), liar);
  REQUIRE_THROWS_WITH(
      read_npy(l, kMaxBytes),
      Catch::Contains(at_byte(l, kData + 3) + "file ends after 3 of the 400000000 data "
                                              "bytes of shape (1000, 1000, 100) of "
                                              "float32 (the data starts at byte 128)"));
}

TEST_CASE("truncated and overlong data are refused at their offsets", "[npy]") {
  TempDir dir;
  std::vector<uint8_t> bytes = npy_bytes("<f4", "(2, 3, 4)", std::vector<uint8_t>(96, 0));
  bytes.resize(kData + 50);
  const std::string cut = write_file(dir.file("cut.npy"), bytes);
  REQUIRE_THROWS_WITH(
      read_npy(cut, kMaxBytes),
      Catch::Contains(at_byte(cut, kData + 50) + "file ends after 50 of the 96 data bytes"));
  std::vector<uint8_t> longer = npy_bytes("|u1", "(2, 2)", {1, 2, 3, 4});
  longer.push_back(9);
  const std::string trailing = write_file(dir.file("trailing.npy"), longer);
  REQUIRE_THROWS_WITH(
      read_npy(trailing, kMaxBytes),
      Catch::Contains(at_byte(trailing, kData + 4) + "1 trailing bytes after the 4 data "
                                                     "bytes of shape (2, 2) of uint8"));
  const std::string missing = dir.file("missing.npy");
  REQUIRE_THROWS_WITH(read_npy(missing, kMaxBytes), Catch::Contains(missing + ": cannot open"));
  REQUIRE_THROWS_WITH(read_npy(dir.path(), kMaxBytes),
                      Catch::Contains(dir.path() + ": is a folder"));
}

TEST_CASE("NpySource reads uint8 N x H x W and N x C x H x W images with labels", "[npy][source]") {
  TempDir dir;
  const std::vector<uint8_t> train_pixels = byte_pattern(5 * 6 * 7, 1);
  const std::vector<uint8_t> test_pixels = byte_pattern(2 * 6 * 7, 2);
  const std::string train =
      write_file(dir.file("train.npy"), npy_bytes("|u1", "(5, 6, 7)", train_pixels));
  const std::string test =
      write_file(dir.file("test.npy"), npy_bytes("|u1", "(2, 6, 7)", test_pixels, 2));
  const std::vector<uint8_t> train_label_bytes =
      npy_bytes("<i8", "(5,)", le_bytes<int64_t>({0, 3, 1, 3, 2}));
  const std::string train_labels = write_file(dir.file("train-labels.npy"), train_label_bytes);
  const std::string test_labels =
      write_file(dir.file("test-labels.npy"), npy_bytes("|u1", "(2,)", {4, 0}, 3));

  SECTION("one channel, classes counted from the labels") {
    NpySource source(source_config(
        train, test,
        "train_labels = '" + train_labels + "'\ntest_labels = '" + test_labels + "'\n"));
    const vaelab::Dataset dataset = source.open();
    CHECK(dataset.name == "arrays");
    CHECK(dataset.train.count == 5);
    CHECK(dataset.train.channels == 1);
    CHECK(dataset.train.height == 6);
    CHECK(dataset.train.width == 7);
    CHECK(dataset.train.pixels == train_pixels);
    CHECK_FALSE(dataset.train.continuous());
    CHECK(dataset.train.labels == std::vector<int64_t>{0, 3, 1, 3, 2});
    CHECK(dataset.test.pixels == test_pixels);
    CHECK(dataset.test.labels == std::vector<int64_t>{4, 0});
    CHECK(dataset.num_classes == 5);
    REQUIRE(dataset.files.size() == 4);
    CHECK(dataset.files[0].path == train);
    CHECK(dataset.files[2].path == train_labels);
    CHECK(dataset.files[2].crc32 == crc_of(train_label_bytes));
    CHECK(dataset.files[3].path == test_labels);
  }
  SECTION("unlabelled, padded") {
    NpySource source(source_config(train, test, "pad_to = 9\n"));
    const vaelab::Dataset dataset = source.open();
    CHECK(dataset.num_classes == 0);
    CHECK(dataset.train.labels == std::vector<int64_t>(5, -1));
    REQUIRE(dataset.train.height == 9);
    REQUIRE(dataset.train.width == 9);
    // (9 - 6) / 2 = 1 row above, (9 - 7) / 2 = 1 column left.
    CHECK(dataset.train.pixels[static_cast<size_t>((4 * 9 + 1) * 9 + 1)] == train_pixels[4 * 42]);
    CHECK(dataset.train.pixels[static_cast<size_t>((4 * 9 + 0) * 9 + 1)] == 0);
    CHECK(dataset.files.size() == 2);
  }
  SECTION("three channels, N x C x H x W") {
    const std::vector<uint8_t> rgb = byte_pattern(2 * 3 * 4 * 5, 3);
    const std::string chw = write_file(dir.file("rgb.npy"), npy_bytes("|u1", "(2, 3, 4, 5)", rgb));
    NpySource source(source_config(chw, chw));
    const vaelab::Dataset dataset = source.open();
    CHECK(dataset.train.channels == 3);
    CHECK(dataset.train.height == 4);
    CHECK(dataset.train.width == 5);
    CHECK(dataset.train.pixels == rgb);
  }
}

TEST_CASE("NpySource transposes N x H x W x C with channels_last", "[npy][source]") {
  TempDir dir;
  // Element (n, y, x, c) = 100 n + 10 y + x + 50 c: every element tells where it came from.
  const int64_t n_count = 2, h = 3, w = 4, c_count = 3;
  std::vector<uint8_t> hwc;
  for (int64_t n = 0; n < n_count; ++n)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t c = 0; c < c_count; ++c)
          hwc.push_back(static_cast<uint8_t>(100 * n + 10 * y + x + 50 * c));
  const std::string path = write_file(dir.file("hwc.npy"), npy_bytes("|u1", "(2, 3, 4, 3)", hwc));
  NpySource source(source_config(path, path, "channels_last = true\n"));
  const vaelab::Dataset dataset = source.open();
  REQUIRE(dataset.train.channels == 3);
  REQUIRE(dataset.train.height == 3);
  REQUIRE(dataset.train.width == 4);
  for (int64_t n = 0; n < n_count; ++n)
    for (int64_t c = 0; c < c_count; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x)
          REQUIRE(
              int{dataset.train.pixels[static_cast<size_t>(((n * c_count + c) * h + y) * w + x)]} ==
              100 * n + 10 * y + x + 50 * c);

  SECTION("the same array without channels_last is refused with a hint") {
    // Read as (N, C, H, W), this array would have 8 channels of 8x3 pixels.
    const std::string wide = write_file(
        dir.file("wide.npy"), npy_bytes("|u1", "(1, 8, 8, 3)", std::vector<uint8_t>(192, 0)));
    NpySource refused(source_config(wide, wide));
    REQUIRE_THROWS_WITH(refused.open(), Catch::Contains(wide + ": byte") &&
                                            Catch::Contains("train images would have 8 channels") &&
                                            Catch::Contains("set channels_last = true"));
  }
}

TEST_CASE("NpySource reads float images as continuous values or as 8-bit pixels", "[npy][source]") {
  TempDir dir;
  const std::vector<float> f32 = {0.0f, 0.25f, 0.5f, 1.0f, 0.75f, 0.1f, 0.2f, 0.3f};
  const std::vector<double> f64 = {1.0, 0.0, 0.5, 0.003};
  const std::string train =
      write_file(dir.file("f32.npy"), npy_bytes("<f4", "(2, 2, 2)", le_bytes(f32)));
  const std::string test =
      write_file(dir.file("f64.npy"), npy_bytes("<f8", "(1, 2, 2)", le_bytes(f64)));

  SECTION("continuous") {
    NpySource source(source_config(train, test));
    const vaelab::Dataset dataset = source.open();
    REQUIRE(dataset.train.continuous());
    CHECK(dataset.train.pixels.empty());
    CHECK(dataset.train.values == f32);
    CHECK(dataset.test.values == std::vector<float>{1.0f, 0.0f, 0.5f, 0.003f});
  }
  SECTION("8bit: round(255 v)") {
    NpySource source(source_config(train, test, "float_images = '8bit'\n"));
    const vaelab::Dataset dataset = source.open();
    REQUIRE_FALSE(dataset.train.continuous());
    CHECK(dataset.train.pixels == std::vector<uint8_t>{0, 64, 128, 255, 191, 26, 51, 77});
    CHECK(dataset.test.pixels == std::vector<uint8_t>{255, 0, 128, 1});
  }
  SECTION("8bit refuses a value outside [0, 1] at its offset") {
    const std::string over = write_file(
        dir.file("over.npy"), npy_bytes("<f4", "(1, 1, 3)", le_bytes<float>({0.5f, 1.5f, 0.0f})));
    NpySource source(source_config(over, test, "float_images = '8bit'\n"));
    REQUIRE_THROWS_WITH(source.open(), Catch::Contains(at_byte(over, kData + 4) +
                                                       "element 1 (train image 0) is 1.5, "
                                                       "outside [0, 1]"));
  }
  SECTION("non-finite values are refused at their offset") {
    const std::string nan =
        write_file(dir.file("nan.npy"),
                   npy_bytes("<f8", "(2, 1, 2)", le_bytes<double>({0.0, 1.0, 2.0, std::nan("")})));
    NpySource source(source_config(train, nan));
    REQUIRE_THROWS_WITH(source.open(),
                        Catch::Contains(at_byte(nan, kData + 24) + "element 3 (test image 1) "
                                                                   "is nan; image values "
                                                                   "must be finite"));
    const std::string huge =
        write_file(dir.file("huge.npy"), npy_bytes("<f8", "(1, 1, 1)", le_bytes<double>({1e300})));
    NpySource beyond(source_config(huge, test));
    REQUIRE_THROWS_WITH(beyond.open(),
                        Catch::Contains(at_byte(huge, kData) + "element 0 (train image "
                                                               "0) is 1e+300, beyond "
                                                               "the range of float32"));
  }
  SECTION("a uint8 train split and a continuous test split do not mix") {
    const std::string bytes =
        write_file(dir.file("u1.npy"), npy_bytes("|u1", "(1, 2, 2)", {1, 2, 3, 4}));
    NpySource source(source_config(bytes, test));
    REQUIRE_THROWS_WITH(source.open(), Catch::Contains(at_byte(test, 20) +
                                                       "test images are float64 (continuous "
                                                       "values) but the train images in " +
                                                       bytes + " are uint8 (8-bit pixels)"));
    // With 8bit, both are pixels.
    NpySource mixed(source_config(bytes, test, "float_images = '8bit'\n"));
    CHECK(mixed.open().test.pixels == std::vector<uint8_t>{255, 0, 128, 1});
  }
}

TEST_CASE("NpySource refuses bad image shapes and dtypes naming the file", "[npy][source]") {
  TempDir dir;
  const std::string good =
      write_file(dir.file("good.npy"), npy_bytes("|u1", "(2, 4, 4)", std::vector<uint8_t>(32, 1)));
  const auto refused = [&](const std::string& name, const std::vector<uint8_t>& bytes,
                           const std::string& needle, const std::string& message) {
    const std::string path = write_file(dir.file(name), bytes);
    NpySource source(source_config(path, good));
    REQUIRE_THROWS_WITH(source.open(),
                        Catch::Contains(at_byte(path, offset_of(bytes, needle)) + message));
  };
  refused("flat.npy", npy_bytes("|u1", "(2, 16)", std::vector<uint8_t>(32, 1)), "(2, 16)",
          "train images must have shape (N, H, W) or (N, C, H, W)");
  refused("five.npy", npy_bytes("|u1", "(1, 1, 1, 2, 2)", std::vector<uint8_t>(4, 1)), "(1, 1",
          "train images must have shape (N, H, W) or (N, C, H, W) (or (N, H, W, C) with "
          "channels_last = true), found (1, 1, 1, 2, 2)");
  refused("none.npy", npy_bytes("|u1", "(0, 4, 4)", {}), "(0, 4, 4)",
          "holds no train images (found (0, 4, 4))");
  refused("empty-dim.npy", npy_bytes("|u1", "(2, 0, 4)", {}), "(2, 0, 4)",
          "train images have an empty dimension");
  refused("int.npy", npy_bytes("<i8", "(1, 2, 2)", std::vector<uint8_t>(32, 0)), "'<i8'",
          "train images have dtype int64 ('<i8'); images must be uint8, float32 or float64");

  const std::vector<uint8_t> small_bytes =
      npy_bytes("|u1", "(2, 3, 3)", std::vector<uint8_t>(18, 1));
  const std::string small = write_file(dir.file("small.npy"), small_bytes);
  NpySource mismatch(source_config(good, small));
  REQUIRE_THROWS_WITH(mismatch.open(),
                      Catch::Contains(at_byte(small, offset_of(small_bytes, "(2, 3, 3)")) +
                                      "test images are 1x3x3 (channels x height "
                                      "x width) but the train images in " +
                                      good + " are 1x4x4"));
}

TEST_CASE("NpySource refuses bad labels naming the file and offset", "[npy][source]") {
  TempDir dir;
  const std::string images = write_file(dir.file("images.npy"),
                                        npy_bytes("|u1", "(3, 2, 2)", std::vector<uint8_t>(12, 1)));
  const std::string good =
      write_file(dir.file("good-labels.npy"), npy_bytes("|u1", "(3,)", {0, 1, 2}));
  const auto open_with = [&](const std::string& train_labels, const std::string& extra = "") {
    NpySource source(source_config(
        images, images,
        "train_labels = '" + train_labels + "'\ntest_labels = '" + good + "'\n" + extra));
    return source.open();
  };
  SECTION("count mismatch") {
    const std::vector<uint8_t> bytes = npy_bytes("<i8", "(4,)", le_bytes<int64_t>({0, 1, 2, 3}));
    const std::string path = write_file(dir.file("four.npy"), bytes);
    REQUIRE_THROWS_WITH(open_with(path), Catch::Contains(at_byte(path, offset_of(bytes, "(4,)")) +
                                                         "holds 4 train labels but " + images +
                                                         " holds 3 train images"));
  }
  SECTION("negative") {
    const std::string path = write_file(dir.file("negative.npy"),
                                        npy_bytes("<i4", "(3,)", le_bytes<int32_t>({0, -1, 2})));
    REQUIRE_THROWS_WITH(open_with(path),
                        Catch::Contains(at_byte(path, kData + 4) + "label of train image 1 "
                                                                   "is -1; labels must be "
                                                                   "0 or more"));
  }
  SECTION("at or above num_classes") {
    const std::string path =
        write_file(dir.file("ten.npy"), npy_bytes("<u2", "(3,)", le_bytes<uint16_t>({0, 9, 10})));
    CHECK(open_with(path).num_classes == 11);
    REQUIRE_THROWS_WITH(
        open_with(path, "num_classes = 10\n"),
        Catch::Contains(at_byte(path, kData + 4) + "label 10 of train image 2 is not below "
                                                   "num_classes = 10"));
  }
  SECTION("a float dtype") {
    const std::vector<uint8_t> bytes = npy_bytes("<f4", "(3,)", le_bytes<float>({0, 1, 2}));
    const std::string path = write_file(dir.file("float-labels.npy"), bytes);
    REQUIRE_THROWS_WITH(open_with(path),
                        Catch::Contains(at_byte(path, 20) + "train labels have dtype "
                                                            "float32 ('<f4'); labels "
                                                            "must be integers"));
  }
  SECTION("not 1-D") {
    const std::string path =
        write_file(dir.file("column.npy"), npy_bytes("|u1", "(3, 1)", {0, 1, 2}));
    REQUIRE_THROWS_WITH(open_with(path),
                        Catch::Contains("train labels must have shape (N,), found (3, 1)"));
  }
}

TEST_CASE("NpySource checks its config without opening files", "[npy][source]") {
  const std::string nowhere = "/nonexistent/vaelab-npy-test.npy";
  CHECK_NOTHROW(NpySource(source_config(nowhere, nowhere)));
  REQUIRE_THROWS_WITH(NpySource(source_config("", nowhere)), Catch::Contains("data.config.train"));
  REQUIRE_THROWS_WITH(NpySource(source_config(nowhere, nowhere, "train_labels = 'a.npy'\n")),
                      Catch::Contains("data.config.test_labels: empty while "
                                      "data.config.train_labels names a file"));
  REQUIRE_THROWS_AS(NpySource(source_config(nowhere, nowhere, "float_images = '8-bit'\n")),
                    vaelab::ConfigError);
  REQUIRE_THROWS_WITH(NpySource(source_config(nowhere, nowhere, "float_images = '8-bit'\n")),
                      Catch::Contains("did you mean '8bit'"));
  NpySource source(source_config(nowhere, nowhere));
  REQUIRE_THROWS_WITH(source.open(), Catch::Contains(nowhere + ": cannot open"));
}

TEST_CASE("the npy plugin loads through the registry and opens arrays", "[npy][plugin]") {
  const vaelab::Registry registry({VAELAB_TEST_PLUGIN_DIR});
  const vaelab::PluginRecord& record = registry.find(VL_PLUGIN_KIND_DATA_SOURCE, "npy");
  REQUIRE(record.ok());
  const toml::table defaults = vaelab::parse_toml(record.defaults_toml, "defaults.toml");
  const auto config = [&](const std::string& overrides) {
    return vaelab::format_toml(
        vaelab::merge_tables(defaults, vaelab::parse_toml(overrides, "test")));
  };
  // The defaults make an instance without touching the disk (what `vaelab plugins` checks).
  CHECK(registry.create<vaelab::DataSource>("npy", config("")) != nullptr);

  TempDir dir;
  const std::vector<float> values = {0.5f, -2.0f, 3.25f, 8.0f};
  const std::string images =
      write_file(dir.file("x.npy"), npy_bytes("<f4", "(1, 1, 2, 2)", le_bytes(values)));
  const std::string labels =
      write_file(dir.file("y.npy"), npy_bytes("<i8", "(1,)", le_bytes<int64_t>({6})));
  auto source = registry.create<vaelab::DataSource>(
      "npy", config("train = '" + images + "'\ntest = '" + images + "'\ntrain_labels = '" + labels +
                    "'\ntest_labels = '" + labels + "'\n"));
  const vaelab::Dataset dataset = source->open();
  CHECK(dataset.name == "npy");
  CHECK(dataset.train.values == values);
  CHECK(dataset.test.labels == std::vector<int64_t>{6});
  CHECK(dataset.num_classes == 7);
  REQUIRE_THROWS_WITH(registry.create<vaelab::DataSource>("npy", config("test_labels = 'y.npy'\n")),
                      Catch::Contains("train_labels"));
}

// ---- Found by fuzzing (fuzz/fuzz_npy.cpp)
// --------------------------------------------------------

TEST_CASE("an empty file is refused without handing memcmp a null buffer", "[npy][fuzz]") {
  // An empty file reads into an empty buffer, whose data() may be null: the magic check compared
  // 0 bytes at a null pointer (undefined behaviour, reported by UBSan).
  REQUIRE_THROWS_WITH(vaelab::plugins::npy::parse_npy_header("empty.npy", nullptr, 0),
                      Catch::Contains("empty.npy: byte 0: file ends after 0 bytes"));
  TempDir dir;
  const std::string empty = write_file(dir.file("empty.npy"), {});
  REQUIRE_THROWS_WITH(
      read_npy(empty, kMaxBytes),
      Catch::Contains(empty + ": byte 0: file ends after 0 bytes, inside the magic"));
}
