#include <catch2/catch.hpp>

#include <stdlib.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/data_source.hpp>
#include <vaelab/error.hpp>
#include <vaelab/registry.hpp>

#include "cifar10_batch.hpp"
#include "cifar10_source.hpp"

namespace fs = std::filesystem;
using vaelab::plugins::cifar10::Cifar10Batch;
using vaelab::plugins::cifar10::Cifar10Source;
using vaelab::plugins::cifar10::read_cifar10_batch;
using vaelab::plugins::cifar10::read_class_names;

namespace {

constexpr uint64_t kMaxBytes = uint64_t{1} << 30;
constexpr size_t kImageBytes = 3072;
constexpr size_t kRecordBytes = 3073;
const char* const kInstalledDir = "/usr/share/datasets/cifar10/cifar-10-batches-bin";

/// A fresh folder under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vaelab-test-cifar10-XXXXXX").string();
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

/// Image i of a batch whose pixels start at `seed`: byte c*1024 + y*32 + x is
/// (seed + 11 * i + 5 * c + 3 * y + x) mod 256, so channels, rows and images all differ.
std::vector<uint8_t> image(int seed, int i) {
  std::vector<uint8_t> pixels(kImageBytes);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x)
        pixels[static_cast<size_t>((c * 32 + y) * 32 + x)] =
            static_cast<uint8_t>(seed + 11 * i + 5 * c + 3 * y + x);
  return pixels;
}

/// The bytes of a batch: one record (label, image) per label.
std::vector<uint8_t> batch_bytes(const std::vector<uint8_t>& labels, int seed) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < labels.size(); ++i) {
    out.push_back(labels[i]);
    const std::vector<uint8_t> pixels = image(seed, static_cast<int>(i));
    out.insert(out.end(), pixels.begin(), pixels.end());
  }
  return out;
}

/// The pixels of the images of batch_bytes(labels, seed), concatenated.
std::vector<uint8_t> batch_pixels(size_t count, int seed) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < count; ++i) {
    const std::vector<uint8_t> pixels = image(seed, static_cast<int>(i));
    out.insert(out.end(), pixels.begin(), pixels.end());
  }
  return out;
}

std::string write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
  return path;
}

std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  REQUIRE(out.good());
  return path;
}

std::string crc_of(const std::vector<uint8_t>& bytes) {
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), bytes.data(), static_cast<uInt>(bytes.size()));
  char text[16];
  std::snprintf(text, sizeof text, "%08lx", static_cast<unsigned long>(crc));
  return text;
}

const char* const kClassNames =
    "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";

/// A full config table for Cifar10Source (the host would merge defaults.toml; tests spell it out).
vaelab::ConfigTable source_config(const std::string& folder, const std::string& extra = "",
                                  const std::string& train_files = "['a.bin', 'b.bin']",
                                  int64_t pad_to = 0) {
  const std::string text = "folder = '" + folder + "'\n" + "train_files = " + train_files + "\n" +
                           "test_files = ['t.bin']\n" + "name = 'tiny-cifar'\n" +
                           "pad_to = " + std::to_string(pad_to) + "\n" +
                           "max_bytes = " + std::to_string(kMaxBytes) + "\n" +
                           (extra.find("class_names_file") == std::string::npos
                                ? "class_names_file = 'batches.meta.txt'\n"
                                : "") +
                           extra;
  return vaelab::ConfigTable::parse(text, "data.config");
}

}  // namespace

TEST_CASE("a batch file round-trips: planes, labels, size and CRC-32", "[cifar10]") {
  TempDir dir;
  const std::vector<uint8_t> bytes = batch_bytes({3, 0, 9}, 17);
  const std::string path = write_file(dir.file("data_batch_1.bin"), bytes);
  const Cifar10Batch batch = read_cifar10_batch(path, kMaxBytes);
  CHECK(batch.count == 3);
  CHECK(batch.labels == std::vector<int64_t>{3, 0, 9});
  REQUIRE(batch.pixels.size() == 3 * kImageBytes);
  CHECK(batch.pixels == batch_pixels(3, 17));
  // The green plane of image 1 starts right after its red plane: byte 1 + 3073 + 1024 of the file.
  CHECK(batch.pixels[kImageBytes + 1024] == bytes[kRecordBytes + 1 + 1024]);
  CHECK(batch.size_bytes == bytes.size());
  CHECK(batch.crc32 == crc_of(bytes));
}

TEST_CASE("a file that is not whole records is refused at its incomplete record", "[cifar10]") {
  TempDir dir;
  std::vector<uint8_t> bytes = batch_bytes({1, 2, 3}, 0);
  bytes.resize(2 * kRecordBytes + 100);
  const std::string cut = write_file(dir.file("cut.bin"), bytes);
  REQUIRE_THROWS_WITH(read_cifar10_batch(cut, kMaxBytes),
                      Catch::Contains(cut + ": byte 6146: incomplete record 2: the file ends after "
                                            "100 of its 3073 bytes") &&
                          Catch::Contains("not a multiple of 3073"));

  SECTION("a CIFAR-100 file is recognised in the message") {
    const std::string hundred =
        write_file(dir.file("train.bin"), std::vector<uint8_t>(3 * 3074, 1));
    REQUIRE_THROWS_WITH(read_cifar10_batch(hundred, kMaxBytes),
                        Catch::Contains(hundred + ": byte 9219: incomplete record 3") &&
                            Catch::Contains("CIFAR-100"));
  }
  SECTION("an empty file") {
    const std::string empty = write_file(dir.file("empty.bin"), {});
    REQUIRE_THROWS_WITH(read_cifar10_batch(empty, kMaxBytes),
                        Catch::Contains(empty + ": byte 0: empty file"));
  }
}

TEST_CASE("a label above 9 is refused naming its record and offset", "[cifar10]") {
  TempDir dir;
  const std::string path = write_file(dir.file("bad-label.bin"), batch_bytes({0, 4, 10, 2}, 0));
  REQUIRE_THROWS_WITH(read_cifar10_batch(path, kMaxBytes),
                      Catch::Contains(path + ": byte 6146: record 2 has label 10; CIFAR-10 labels "
                                             "are 0 to 9"));
  const std::string last = write_file(dir.file("last.bin"), batch_bytes({0, 1, 2, 255}, 0));
  REQUIRE_THROWS_WITH(read_cifar10_batch(last, kMaxBytes),
                      Catch::Contains(last + ": byte 9219: record 3 has label 255"));
}

TEST_CASE("files that cannot be batches are refused naming them", "[cifar10]") {
  TempDir dir;
  const std::string missing = dir.file("no-such.bin");
  REQUIRE_THROWS_WITH(read_cifar10_batch(missing, kMaxBytes),
                      Catch::Contains(missing + ": cannot open: No such file"));
  REQUIRE_THROWS_WITH(read_cifar10_batch(dir.path(), kMaxBytes),
                      Catch::Contains(dir.path() + ": is a folder"));
  const std::string big = write_file(dir.file("big.bin"), batch_bytes({1, 2}, 0));
  REQUIRE_THROWS_WITH(read_cifar10_batch(big, 6000),
                      Catch::Contains(big + ": byte 0: file is 6146 bytes, more than max_bytes = "
                                            "6000"));
}

TEST_CASE("class names: ten non-blank lines", "[cifar10]") {
  TempDir dir;
  const std::string good = write_text(dir.file("batches.meta.txt"), kClassNames);
  const std::vector<std::string> names = read_class_names(good);
  REQUIRE(names.size() == 10);
  CHECK(names.front() == "airplane");
  CHECK(names.back() == "truck");
  // Windows line ends and trailing blanks are not part of a name.
  const std::string crlf =
      write_text(dir.file("crlf.txt"), "a \r\nb\r\nc\nd\ne\nf\ng\nh\ni\nj\r\n");
  CHECK(read_class_names(crlf)[0] == "a");

  const std::string nine = write_text(dir.file("nine.txt"), "a\nb\nc\nd\ne\nf\ng\nh\ni\n");
  REQUIRE_THROWS_WITH(read_class_names(nine),
                      Catch::Contains(nine + ": names 9 classes; CIFAR-10 has 10"));
  const std::string eleven =
      write_text(dir.file("eleven.txt"), "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\nk\n");
  REQUIRE_THROWS_WITH(read_class_names(eleven),
                      Catch::Contains(eleven + ":12: an 11th class name ('k')"));
}

TEST_CASE("Cifar10Source reads both splits in order and records provenance", "[cifar10][source]") {
  TempDir dir;
  const std::vector<uint8_t> a = batch_bytes({0, 1, 2}, 10);
  const std::vector<uint8_t> b = batch_bytes({9, 8}, 20);
  const std::vector<uint8_t> t = batch_bytes({5, 6}, 30);
  write_file(dir.file("a.bin"), a);
  write_file(dir.file("b.bin"), b);
  write_file(dir.file("t.bin"), t);
  write_text(dir.file("batches.meta.txt"), kClassNames);

  SECTION("as stored") {
    Cifar10Source source(source_config(dir.path()));
    const vaelab::Dataset dataset = source.open();
    CHECK(dataset.name == "tiny-cifar");
    CHECK(dataset.num_classes == 10);
    CHECK(dataset.train.count == 5);
    CHECK(dataset.train.channels == 3);
    CHECK(dataset.train.height == 32);
    CHECK(dataset.train.width == 32);
    CHECK_FALSE(dataset.train.continuous());
    std::vector<uint8_t> train_pixels = batch_pixels(3, 10);
    const std::vector<uint8_t> b_pixels = batch_pixels(2, 20);
    train_pixels.insert(train_pixels.end(), b_pixels.begin(), b_pixels.end());
    CHECK(dataset.train.pixels == train_pixels);
    CHECK(dataset.train.labels == std::vector<int64_t>{0, 1, 2, 9, 8});
    CHECK(dataset.test.count == 2);
    CHECK(dataset.test.pixels == batch_pixels(2, 30));
    CHECK(dataset.test.labels == std::vector<int64_t>{5, 6});
    REQUIRE(dataset.files.size() == 3);
    CHECK(dataset.files[0].path == dir.file("a.bin"));
    CHECK(dataset.files[1].bytes == b.size());
    CHECK(dataset.files[2].path == dir.file("t.bin"));
    CHECK(dataset.files[2].crc32 == crc_of(t));
  }

  SECTION("padded to 36, an absolute batch path, no class names file") {
    Cifar10Source source(
        source_config(dir.path(), "class_names_file = ''\n", "['" + dir.file("b.bin") + "']", 36));
    const vaelab::Dataset dataset = source.open();
    REQUIRE(dataset.train.count == 2);
    REQUIRE(dataset.train.height == 36);
    REQUIRE(dataset.train.pixels.size() == 2u * 3 * 36 * 36);
    const auto at = [&](int64_t i, int64_t c, int64_t y, int64_t x) {
      return int{dataset.train.pixels[static_cast<size_t>(((i * 3 + c) * 36 + y) * 36 + x)]};
    };
    const std::vector<uint8_t> stored = image(20, 1);
    CHECK(at(1, 2, 0, 0) == 0);
    CHECK(at(1, 2, 2, 1) == 0);
    CHECK(at(1, 2, 2, 2) == int{stored[2 * 1024]});
    CHECK(at(1, 1, 33, 33) == int{stored[1024 + 31 * 32 + 31]});
    CHECK(at(1, 1, 34, 34) == 0);
  }

  SECTION("a malformed class names file is an error naming it") {
    const std::string meta = write_text(dir.file("batches.meta.txt"), "cat\ndog\n");
    Cifar10Source source(source_config(dir.path()));
    REQUIRE_THROWS_WITH(source.open(), Catch::Contains(meta + ": names 2 classes"));
  }
}

TEST_CASE("Cifar10Source says where to get the data when it is missing", "[cifar10][source]") {
  TempDir dir;
  const std::string nowhere = dir.file("cifar-10-batches-bin");
  Cifar10Source missing(source_config(nowhere));
  REQUIRE_THROWS_WITH(missing.open(),
                      Catch::StartsWith(nowhere + ": folder not found") &&
                          Catch::Contains("cifar-10-binary.tar.gz") &&
                          Catch::Contains("https://www.cs.toronto.edu/~kriz/cifar.html"));

  // The folder exists but lacks a batch: the error names the file.
  write_file(dir.file("a.bin"), batch_bytes({1}, 0));
  Cifar10Source partial(source_config(dir.path()));
  REQUIRE_THROWS_WITH(
      partial.open(),
      Catch::StartsWith(dir.file("b.bin") + ": train batch file not found in " + dir.path()) &&
          Catch::Contains("cifar-10-binary.tar.gz"));

  // A broken batch among good ones is named with its offset.
  write_file(dir.file("b.bin"), batch_bytes({1, 2}, 0));
  std::vector<uint8_t> test_bytes = batch_bytes({1, 2}, 0);
  test_bytes.pop_back();
  write_file(dir.file("t.bin"), test_bytes);
  Cifar10Source truncated(source_config(dir.path()));
  REQUIRE_THROWS_WITH(truncated.open(),
                      Catch::Contains(dir.file("t.bin") + ": byte 3073: incomplete record 1"));
}

TEST_CASE("Cifar10Source checks its config without opening files", "[cifar10][source]") {
  const std::string nowhere = "/nonexistent/vaelab-cifar10-test";
  CHECK_NOTHROW(Cifar10Source(source_config(nowhere)));
  REQUIRE_THROWS_WITH(Cifar10Source(source_config("")), Catch::Contains("data.config.folder"));
  REQUIRE_THROWS_WITH(Cifar10Source(source_config(nowhere, "", "[]")),
                      Catch::Contains("data.config.train_files: must name at least one file"));
  REQUIRE_THROWS_WITH(Cifar10Source(source_config(nowhere, "", "['a.bin', '']")),
                      Catch::Contains("data.config.train_files[1]: must not be empty"));
  REQUIRE_THROWS_AS(Cifar10Source(source_config(nowhere, "", "['a.bin']", 20)),
                    vaelab::ConfigError);
  REQUIRE_THROWS_WITH(Cifar10Source(source_config(nowhere, "", "['a.bin']", 20)),
                      Catch::Contains("data.config.pad_to: 20 is smaller than"));
}

TEST_CASE("the cifar10 plugin loads through the registry and opens a folder", "[cifar10][plugin]") {
  const vaelab::Registry registry({VAELAB_TEST_PLUGIN_DIR});
  const vaelab::PluginRecord& record = registry.find(VL_PLUGIN_KIND_DATA_SOURCE, "cifar10");
  REQUIRE(record.ok());
  const toml::table defaults = vaelab::parse_toml(record.defaults_toml, "defaults.toml");
  const auto config = [&](const std::string& overrides) {
    return vaelab::format_toml(
        vaelab::merge_tables(defaults, vaelab::parse_toml(overrides, "test")));
  };
  // The defaults make an instance without touching the disk (what `vaelab plugins` checks).
  CHECK(registry.create<vaelab::DataSource>("cifar10", config("")) != nullptr);

  TempDir dir;
  for (int i = 1; i <= 5; ++i) {
    write_file(dir.file("data_batch_" + std::to_string(i) + ".bin"),
               batch_bytes({static_cast<uint8_t>(i)}, i));
  }
  write_file(dir.file("test_batch.bin"), batch_bytes({7, 3}, 99));
  auto source =
      registry.create<vaelab::DataSource>("cifar10", config("folder = '" + dir.path() + "'\n"));
  const vaelab::Dataset dataset = source->open();
  CHECK(dataset.name == "cifar10");
  CHECK(dataset.train.labels == std::vector<int64_t>{1, 2, 3, 4, 5});
  CHECK(dataset.train.pixels.size() == 5 * kImageBytes);
  CHECK(dataset.test.pixels == batch_pixels(2, 99));
  CHECK(dataset.files.size() == 6);

  auto bad =
      registry.create<vaelab::DataSource>("cifar10", config("folder = '" + dir.file("x") + "'\n"));
  REQUIRE_THROWS_WITH(bad->open(), Catch::Contains(dir.file("x") + ": folder not found"));
  REQUIRE_THROWS_WITH(registry.create<vaelab::DataSource>("cifar10", config("pad_to = 8\n")),
                      Catch::Contains("pad_to"));
}

TEST_CASE("the installed CIFAR-10 test batch reads as 10000 images, 1000 per class",
          "[cifar10][data]") {
  const std::string test_batch = std::string(kInstalledDir) + "/test_batch.bin";
  if (!fs::exists(test_batch)) {
    WARN("CIFAR-10 is not installed in " << kInstalledDir << "; skipped");
    return;
  }
  const Cifar10Batch batch = read_cifar10_batch(test_batch, kMaxBytes);
  CHECK(batch.count == 10000);
  std::vector<int> per_class(10, 0);
  for (const int64_t label : batch.labels) ++per_class[static_cast<size_t>(label)];
  CHECK(per_class == std::vector<int>(10, 1000));
}
