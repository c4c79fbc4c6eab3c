#include <catch2/catch.hpp>

#include <stdlib.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>

#include "idx_reader.hpp"
#include "idx_source.hpp"

namespace fs = std::filesystem;
using vaelab::plugins::IdxArray;
using vaelab::plugins::IdxSource;
using vaelab::plugins::read_idx;

namespace {

constexpr uint64_t kMaxBytes = uint64_t{1} << 30;
const char* const kFashionDir = "/usr/share/datasets/fashion-mnist";

/// A fresh folder under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vaelab-test-idx-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void put_u32(std::vector<uint8_t>& out, uint32_t value) {
  out.push_back(static_cast<uint8_t>(value >> 24));
  out.push_back(static_cast<uint8_t>(value >> 16));
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

/// The bytes of an IDX file: magic 0x0000 <type> <dims.size()>, the dims, then `data`.
std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                               uint8_t type = 0x08) {
  std::vector<uint8_t> out = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (const uint32_t dim : dims) put_u32(out, dim);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// count images of height×width whose pixel (i, y, x) is (i * 7 + y * 3 + x) mod 256.
std::vector<uint8_t> pattern(uint32_t count, uint32_t height, uint32_t width) {
  std::vector<uint8_t> pixels;
  for (uint32_t i = 0; i < count; ++i)
    for (uint32_t y = 0; y < height; ++y)
      for (uint32_t x = 0; x < width; ++x) pixels.push_back(static_cast<uint8_t>(i * 7 + y * 3 + x));
  return pixels;
}

std::vector<uint8_t> labels_of(uint32_t count, uint32_t num_classes) {
  std::vector<uint8_t> labels;
  for (uint32_t i = 0; i < count; ++i) labels.push_back(static_cast<uint8_t>(i % num_classes));
  return labels;
}

std::string write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
  return path;
}

std::string write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile out = gzopen(path.c_str(), "wb");
  REQUIRE(out != nullptr);
  if (!bytes.empty()) {
    REQUIRE(gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size())) ==
            static_cast<int>(bytes.size()));
  }
  REQUIRE(gzclose(out) == Z_OK);
  return path;
}

/// A full config table for IdxSource (the host would merge defaults.toml; tests spell it out).
vaelab::ConfigTable source_config(const std::string& train_images, const std::string& train_labels,
                                  const std::string& test_images, const std::string& test_labels,
                                  int64_t pad_to, int64_t num_classes = 10) {
  const std::string text = "train_images = '" + train_images + "'\n" +
                           "train_labels = '" + train_labels + "'\n" +
                           "test_images = '" + test_images + "'\n" +
                           "test_labels = '" + test_labels + "'\n" +
                           "name = 'test-set'\n" +
                           "num_classes = " + std::to_string(num_classes) + "\n" +
                           "pad_to = " + std::to_string(pad_to) + "\n" +
                           "max_bytes = " + std::to_string(kMaxBytes) + "\n";
  return vaelab::ConfigTable::parse(text, "data.config");
}

}  // namespace

TEST_CASE("a 3-D IDX file round-trips, raw and gzip-compressed", "[idx]") {
  TempDir dir;
  const std::vector<uint8_t> pixels = pattern(3, 28, 28);
  const std::vector<uint8_t> bytes = idx_bytes({3, 28, 28}, pixels);
  const std::string raw = write_raw(dir.file("images-idx3-ubyte"), bytes);
  // Named without .gz on purpose: compression is recognised by content.
  const std::string gz = write_gz(dir.file("images-compressed"), bytes);

  for (const std::string& path : {raw, gz}) {
    const IdxArray array = read_idx(path, kMaxBytes);
    CHECK(array.dims == std::vector<int64_t>{3, 28, 28});
    CHECK(array.data == pixels);
    CHECK(array.data_offset_bytes() == 16);
  }
}

TEST_CASE("a label file round-trips", "[idx]") {
  TempDir dir;
  const std::vector<uint8_t> labels = labels_of(25, 10);
  const std::string raw = write_raw(dir.file("labels"), idx_bytes({25}, labels));
  const std::string gz = write_gz(dir.file("labels.gz"), idx_bytes({25}, labels));
  for (const std::string& path : {raw, gz}) {
    const IdxArray array = read_idx(path, kMaxBytes, "label");
    CHECK(array.dims == std::vector<int64_t>{25});
    CHECK(array.data == labels);
  }
}

TEST_CASE("a truncated file is refused at the data offset", "[idx]") {
  TempDir dir;
  std::vector<uint8_t> bytes = idx_bytes({3, 28, 28}, pattern(3, 28, 28));
  bytes.resize(16 + 1000);
  const std::string raw = write_raw(dir.file("short"), bytes);
  const std::string gz = write_gz(dir.file("short.gz"), bytes);
  for (const std::string& path : {raw, gz}) {
    REQUIRE_THROWS_WITH(read_idx(path, kMaxBytes, "image"),
                        Catch::Contains(path + ": byte 16: file ends after 1000 of 2352 image bytes"));
  }

  SECTION("a header cut short") {
    const std::vector<uint8_t> header = {0, 0, 8, 3, 0, 0};
    const std::string cut = write_raw(dir.file("cut-header"), header);
    REQUIRE_THROWS_WITH(read_idx(cut, kMaxBytes),
                        Catch::Contains(cut + ": byte 4: file ends after 2 of 12 dimension bytes"));
    const std::string empty = write_raw(dir.file("empty"), {});
    REQUIRE_THROWS_WITH(read_idx(empty, kMaxBytes),
                        Catch::Contains(empty + ": byte 0: file ends after 0 of 4 header bytes"));
  }

  SECTION("a .gz file cut in the middle of its compressed stream") {
    // Incompressible pixels, so that cutting the .gz file cuts the decoded data too.
    std::vector<uint8_t> noise(64 * 64 * 4);
    uint32_t state = 12345;
    for (uint8_t& byte : noise) {
      state = state * 1664525u + 1013904223u;
      byte = static_cast<uint8_t>(state >> 24);
    }
    const std::string whole = write_gz(dir.file("whole.gz"), idx_bytes({4, 64, 64}, noise));
    std::ifstream in(whole, std::ios::binary);
    std::vector<uint8_t> compressed((std::istreambuf_iterator<char>(in)), {});
    compressed.resize(compressed.size() / 2);
    const std::string cut = write_raw(dir.file("cut.gz"), compressed);
    REQUIRE_THROWS_WITH(read_idx(cut, kMaxBytes, "image"),
                        Catch::Contains(cut + ": byte 16: file ends after") &&
                            Catch::Contains("of 16384 image bytes") &&
                            Catch::Contains("the .gz file is truncated"));
  }
}

TEST_CASE("a wrong magic is refused at byte 0", "[idx]") {
  TempDir dir;
  const std::string png = write_raw(dir.file("picture.png"),
                                    {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0});
  REQUIRE_THROWS_WITH(read_idx(png, kMaxBytes),
                      Catch::Contains(png + ": byte 0: bad magic 0x89504e47"));
  // A gzip file whose decoded content is not IDX: the offset is in the decoded stream.
  const std::string text = write_gz(dir.file("text.gz"), {'h', 'e', 'l', 'l', 'o', '\n'});
  REQUIRE_THROWS_WITH(read_idx(text, kMaxBytes),
                      Catch::Contains(text + ": byte 0: bad magic 0x68656c6c"));
  // Starts like gzip but is not.
  const std::string fake = write_raw(dir.file("fake.gz"), {0x1f, 0x8b, 0x42, 0, 1, 2, 3, 4, 5});
  REQUIRE_THROWS_WITH(read_idx(fake, kMaxBytes),
                      Catch::Contains(fake + ": byte 0: cannot decompress gzip data: unknown "
                                             "compression method"));
}

TEST_CASE("a missing file is refused naming it", "[idx]") {
  TempDir dir;
  const std::string missing = dir.file("no-such-file");
  REQUIRE_THROWS_WITH(read_idx(missing, kMaxBytes),
                      Catch::Contains(missing + ": cannot open"));
}

TEST_CASE("an unsupported data type is refused at byte 2, named", "[idx]") {
  TempDir dir;
  const std::string floats =
      write_raw(dir.file("floats"), idx_bytes({2}, {0, 0, 0, 0, 0, 0, 0, 0}, 0x0D));
  REQUIRE_THROWS_WITH(read_idx(floats, kMaxBytes),
                      Catch::Contains(floats + ": byte 2: data type 0x0d (float32) is not supported"));
  const std::string odd = write_raw(dir.file("odd"), idx_bytes({2}, {0, 0}, 0x42));
  REQUIRE_THROWS_WITH(read_idx(odd, kMaxBytes),
                      Catch::Contains(odd + ": byte 2: data type 0x42 (unknown)"));
}

TEST_CASE("0 or 5 dimensions are refused at byte 3", "[idx]") {
  TempDir dir;
  const std::string none = write_raw(dir.file("zero-dims"), idx_bytes({}, {7}));
  REQUIRE_THROWS_WITH(read_idx(none, kMaxBytes),
                      Catch::Contains(none + ": byte 3: 0 dimensions; expected 1 to 4"));
  const std::string five = write_raw(dir.file("five-dims"), idx_bytes({1, 1, 1, 1, 1}, {7}));
  REQUIRE_THROWS_WITH(read_idx(five, kMaxBytes),
                      Catch::Contains(five + ": byte 3: 5 dimensions; expected 1 to 4"));
}

TEST_CASE("a dimension of 0 is refused at its own offset", "[idx]") {
  TempDir dir;
  const std::string path = write_raw(dir.file("empty-dim"), idx_bytes({3, 0, 28}, {}));
  REQUIRE_THROWS_WITH(read_idx(path, kMaxBytes),
                      Catch::Contains(path + ": byte 8: dimension 1 is 0"));
}

TEST_CASE("huge declared dimensions fail fast without allocating", "[idx]") {
  TempDir dir;
  // 1e27 bytes: overflows 64 bits.
  const std::string overflow =
      write_raw(dir.file("overflow"), idx_bytes({1000000000, 1000000000, 1000000000}, {}));
  REQUIRE_THROWS_WITH(
      read_idx(overflow, kMaxBytes),
      Catch::Contains(overflow + ": byte 4: dimensions 1000000000x1000000000x1000000000 declare "
                                 "more than 2^64"));
  const std::string four = write_raw(
      dir.file("four-max"), idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {}));
  REQUIRE_THROWS_WITH(read_idx(four, kMaxBytes),
                      Catch::Contains(four + ": byte 4: dimensions") &&
                          Catch::Contains("more than 2^64"));
  // 1e18 bytes: fits in 64 bits but is over max_bytes.
  const std::string big = write_raw(dir.file("big"), idx_bytes({1000000000, 1000000000}, {1, 2}));
  REQUIRE_THROWS_WITH(read_idx(big, kMaxBytes, "image"),
                      Catch::Contains(big + ": byte 4: dimensions 1000000000x1000000000 declare "
                                            "1000000000000000000 image bytes, more than "
                                            "max_bytes = 1073741824"));
  // Under max_bytes but a lie about what follows: refused as truncated, not allocated up front.
  const std::string liar = write_raw(dir.file("liar"), idx_bytes({1000, 1000, 1000}, {1, 2, 3}));
  REQUIRE_THROWS_WITH(read_idx(liar, kMaxBytes, "image"),
                      Catch::Contains(liar + ": byte 16: file ends after 3 of 1000000000 image "
                                             "bytes"));
}

TEST_CASE("trailing bytes after the declared data are refused", "[idx]") {
  TempDir dir;
  std::vector<uint8_t> bytes = idx_bytes({2, 4, 4}, pattern(2, 4, 4));
  bytes.insert(bytes.end(), {9, 9, 9});
  const std::string raw = write_raw(dir.file("trailing"), bytes);
  const std::string gz = write_gz(dir.file("trailing.gz"), bytes);
  for (const std::string& path : {raw, gz}) {
    // Data starts at byte 16 and is 32 bytes long.
    REQUIRE_THROWS_WITH(read_idx(path, kMaxBytes),
                        Catch::Contains(path + ": byte 48: 3 trailing bytes after the declared 32"));
  }
}

TEST_CASE("the digest of a file is its stored size and CRC-32", "[idx]") {
  TempDir dir;
  const std::string path = write_raw(dir.file("digits"), {'1', '2', '3', '4', '5', '6', '7', '8', '9'});
  const vaelab::plugins::FileDigest digest = vaelab::plugins::digest_file(path);
  CHECK(digest.size_bytes == 9);
  CHECK(digest.crc32 == "cbf43926");  // the standard CRC-32 check value of "123456789"
}

TEST_CASE("IdxSource reads both splits, pads 28 to 32 and records provenance", "[idx][source]") {
  TempDir dir;
  const std::vector<uint8_t> train_pixels = pattern(5, 28, 28);
  const std::vector<uint8_t> test_pixels = pattern(3, 28, 28);
  const std::string train_images = write_gz(dir.file("train-images"), idx_bytes({5, 28, 28}, train_pixels));
  const std::string train_labels = write_gz(dir.file("train-labels"), idx_bytes({5}, labels_of(5, 10)));
  const std::string test_images = write_raw(dir.file("test-images"), idx_bytes({3, 28, 28}, test_pixels));
  const std::string test_labels = write_raw(dir.file("test-labels"), idx_bytes({3}, labels_of(3, 10)));

  SECTION("unpadded") {
    IdxSource source(source_config(train_images, train_labels, test_images, test_labels, 0));
    const vaelab::Dataset dataset = source.open();
    CHECK(dataset.name == "test-set");
    CHECK(dataset.num_classes == 10);
    CHECK(dataset.train.count == 5);
    CHECK(dataset.train.channels == 1);
    CHECK(dataset.train.height == 28);
    CHECK(dataset.train.width == 28);
    CHECK(dataset.train.pixels == train_pixels);
    CHECK(dataset.train.labels == std::vector<int64_t>{0, 1, 2, 3, 4});
    CHECK(dataset.test.count == 3);
    CHECK(dataset.test.pixels == test_pixels);
    REQUIRE(dataset.files.size() == 4);
    CHECK(dataset.files[0].path == train_images);
    CHECK(dataset.files[0].bytes == fs::file_size(train_images));
    CHECK(dataset.files[0].crc32 == vaelab::plugins::digest_file(train_images).crc32);
    for (const vaelab::SourceFile& file : dataset.files) CHECK(file.crc32.size() == 8);
  }

  SECTION("pad_to = 32") {
    IdxSource source(source_config(train_images, train_labels, test_images, test_labels, 32));
    const vaelab::Dataset dataset = source.open();
    REQUIRE(dataset.train.height == 32);
    REQUIRE(dataset.train.width == 32);
    REQUIRE(dataset.test.height == 32);
    REQUIRE(dataset.train.pixels.size() == 5u * 32 * 32);
    // Two rows and columns of zeros on every side; the original image in the middle.
    const auto at = [&](int64_t i, int64_t y, int64_t x) {
      return int{dataset.train.pixels[static_cast<size_t>((i * 32 + y) * 32 + x)]};
    };
    CHECK(at(0, 0, 0) == 0);
    CHECK(at(4, 31, 31) == 0);
    CHECK(at(1, 1, 16) == 0);
    CHECK(at(1, 2, 2) == int{train_pixels[28 * 28 + 0]});
    CHECK(at(4, 29, 29) == int{train_pixels[4 * 28 * 28 + 27 * 28 + 27]});
    CHECK(dataset.train.labels.size() == 5);
  }
}

TEST_CASE("IdxSource refuses a label count that does not match the image count", "[idx][source]") {
  TempDir dir;
  const std::string images = write_raw(dir.file("train-images"), idx_bytes({4, 28, 28}, pattern(4, 28, 28)));
  const std::string labels = write_raw(dir.file("train-labels"), idx_bytes({3}, labels_of(3, 10)));
  const std::string test_images = write_raw(dir.file("test-images"), idx_bytes({2, 28, 28}, pattern(2, 28, 28)));
  const std::string test_labels = write_raw(dir.file("test-labels"), idx_bytes({2}, labels_of(2, 10)));
  IdxSource source(source_config(images, labels, test_images, test_labels, 0));
  REQUIRE_THROWS_WITH(source.open(),
                      Catch::Contains(labels + ": byte 4: holds 3 train labels but " + images +
                                      " holds 4 train images"));
}

TEST_CASE("IdxSource refuses bad shapes and labels", "[idx][source]") {
  TempDir dir;
  const std::string images = write_raw(dir.file("images"), idx_bytes({2, 28, 28}, pattern(2, 28, 28)));
  const std::string labels = write_raw(dir.file("labels"), idx_bytes({2}, {1, 2}));

  SECTION("a label not below num_classes, at its byte") {
    const std::string bad = write_raw(dir.file("bad-labels"), idx_bytes({2}, {3, 10}));
    IdxSource source(source_config(images, bad, images, labels, 0));
    REQUIRE_THROWS_WITH(source.open(),
                        Catch::Contains(bad + ": byte 9: label 10 of train image 1 is not below "
                                              "num_classes = 10"));
  }
  SECTION("images that are not 3-D") {
    const std::string flat = write_raw(dir.file("flat"), idx_bytes({2, 784}, pattern(2, 28, 28)));
    IdxSource source(source_config(flat, labels, images, labels, 0));
    REQUIRE_THROWS_WITH(source.open(),
                        Catch::Contains(flat + ": byte 3: train images must have 3 dimensions"));
  }
  SECTION("labels that are not 1-D") {
    const std::string square = write_raw(dir.file("square"), idx_bytes({2, 1}, {1, 2}));
    IdxSource source(source_config(images, labels, images, square, 0));
    REQUIRE_THROWS_WITH(source.open(),
                        Catch::Contains(square + ": byte 3: test labels must have 1 dimension"));
  }
  SECTION("train and test images of different sizes") {
    const std::string small = write_raw(dir.file("small"), idx_bytes({2, 14, 14}, pattern(2, 14, 14)));
    IdxSource source(source_config(images, labels, small, labels, 0));
    REQUIRE_THROWS_WITH(source.open(),
                        Catch::Contains(small + ": byte 8: test images are 14x14 but the train "
                                                "images in " + images + " are 28x28"));
  }
  SECTION("pad_to smaller than the images") {
    IdxSource source(source_config(images, labels, images, labels, 20));
    REQUIRE_THROWS_WITH(source.open(), Catch::Contains("pad_to = 20"));
  }
}

TEST_CASE("IdxSource checks its config without opening files", "[idx][source]") {
  const std::string nowhere = "/nonexistent/vaelab-idx-test";
  CHECK_NOTHROW(IdxSource(source_config(nowhere, nowhere, nowhere, nowhere, 32)));
  REQUIRE_THROWS_AS(IdxSource(source_config("", nowhere, nowhere, nowhere, 32)),
                    vaelab::ConfigError);
  REQUIRE_THROWS_WITH(IdxSource(source_config("", nowhere, nowhere, nowhere, 32)),
                      Catch::Contains("data.config.train_images"));
  REQUIRE_THROWS_AS(IdxSource(source_config(nowhere, nowhere, nowhere, nowhere, -1)),
                    vaelab::ConfigError);
  REQUIRE_THROWS_AS(IdxSource(source_config(nowhere, nowhere, nowhere, nowhere, 0, 0)),
                    vaelab::ConfigError);
  IdxSource source(source_config(nowhere, nowhere, nowhere, nowhere, 32));
  REQUIRE_THROWS_WITH(source.open(), Catch::Contains(nowhere + ": cannot open"));
}

TEST_CASE("the Fashion-MNIST test split reads as 10000 28x28 images", "[idx][data]") {
  const std::string images = std::string(kFashionDir) + "/t10k-images-idx3-ubyte.gz";
  const std::string labels = std::string(kFashionDir) + "/t10k-labels-idx1-ubyte.gz";
  if (!fs::exists(images) || !fs::exists(labels)) {
    WARN("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist); skipped");
    return;
  }
  const IdxArray image_array = read_idx(images, kMaxBytes, "image");
  CHECK(image_array.dims == std::vector<int64_t>{10000, 28, 28});
  const IdxArray label_array = read_idx(labels, kMaxBytes, "label");
  REQUIRE(label_array.dims == std::vector<int64_t>{10000});
  const uint8_t max_label = *std::max_element(label_array.data.begin(), label_array.data.end());
  CHECK(int{max_label} == 9);
  std::vector<int> per_class(256, 0);
  for (const uint8_t label : label_array.data) ++per_class[label];
  // Fashion-MNIST's test split holds exactly 1000 images of each of its 10 classes.
  per_class.resize(10);
  CHECK(per_class == std::vector<int>(10, 1000));

  // The same files through the plugin, as both splits, padded as the paper does.
  IdxSource source(source_config(images, labels, images, labels, 32));
  const vaelab::Dataset dataset = source.open();
  CHECK(dataset.test.count == 10000);
  CHECK(dataset.test.height == 32);
  CHECK(dataset.test.pixels.size() == 10000u * 32 * 32);
  CHECK(dataset.files.size() == 4);
}
