#include <catch2/catch.hpp>

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/data_source.hpp>
#include <vaelab/error.hpp>
#include <vaelab/registry.hpp>

#include "image_decoder.hpp"
#include "image_folder_source.hpp"

// stb_image_write (Debian's libstb-dev), to write the test images; internal linkage.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace fs = std::filesystem;
using vaelab::plugins::image_folder::DecodedImage;
using vaelab::plugins::image_folder::ImageFolderSource;
using vaelab::plugins::image_folder::resize_bilinear;

namespace {

/// A fresh folder under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vaelab-test-image-folder-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ignored);
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path() const { return path_.string(); }
  /// `name` under the folder, its parent folders created.
  std::string file(const std::string& name) const {
    const fs::path path = path_ / name;
    fs::create_directories(path.parent_path());
    return path.string();
  }

 private:
  fs::path path_;
};

/// An interleaved image: height × width × channels bytes.
struct Picture {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;
};

/// Pixel (y, x, c) = (seed + 13 y + 5 x + 70 c) mod 256: rows, columns and channels all differ.
Picture picture(int width, int height, int channels, int seed) {
  Picture p{width, height, channels, {}};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c)
        p.pixels.push_back(static_cast<uint8_t>(seed + 13 * y + 5 * x + 70 * c));
  return p;
}

Picture flat(int width, int height, std::vector<uint8_t> colour) {
  Picture p{width, height, static_cast<int>(colour.size()), {}};
  for (int i = 0; i < width * height; ++i)
    p.pixels.insert(p.pixels.end(), colour.begin(), colour.end());
  return p;
}

std::string write_png(const std::string& path, const Picture& p) {
  REQUIRE(stbi_write_png(path.c_str(), p.width, p.height, p.channels, p.pixels.data(),
                         p.width * p.channels) != 0);
  return path;
}

std::string write_jpg(const std::string& path, const Picture& p) {
  REQUIRE(stbi_write_jpg(path.c_str(), p.width, p.height, p.channels, p.pixels.data(), 100) != 0);
  return path;
}

std::string write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
  return path;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}

/// The picture as `channels` planes (C × H × W), grey replicated or RGB turned into stb_image's
/// luma, alpha dropped: what the source must deliver for it.
std::vector<uint8_t> planes(const Picture& p, int channels) {
  std::vector<uint8_t> out;
  for (int c = 0; c < channels; ++c) {
    for (int i = 0; i < p.width * p.height; ++i) {
      const uint8_t* px = p.pixels.data() + i * p.channels;
      if (p.channels >= 3 && channels == 1) {
        out.push_back(static_cast<uint8_t>((77 * px[0] + 150 * px[1] + 29 * px[2]) >> 8));
      } else {
        out.push_back(px[p.channels >= 3 ? c : 0]);
      }
    }
  }
  return out;
}

std::vector<uint8_t> concat(const std::vector<std::vector<uint8_t>>& parts) {
  std::vector<uint8_t> out;
  for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

/// A full config table for ImageFolderSource (the host would merge defaults.toml; tests spell it
/// out): RGB 4x3 images, fit = "none", unless `extra` says otherwise.
vaelab::ConfigTable source_config(const std::string& root, const std::string& extra = "") {
  std::string text = "root = '" + root + "'\n" + extra;
  const auto add_default = [&](const std::string& key, const std::string& value) {
    if (extra.find(key + " =") == std::string::npos) text += key + " = " + value + "\n";
  };
  add_default("split", "'folders'");
  add_default("test_fraction", "0.1");
  add_default("split_seed", "0");
  add_default("channels", "3");
  add_default("width", "4");
  add_default("height", "3");
  add_default("fit", "'none'");
  add_default("extensions", "['png', 'JPG', '.jpeg']");
  add_default("name", "'pictures'");
  add_default("max_image_pixels", "67108864");
  add_default("max_bytes", "1073741824");
  return vaelab::ConfigTable::parse(text, "data.config");
}

vaelab::Dataset open(const std::string& root, const std::string& extra = "") {
  ImageFolderSource source(source_config(root, extra));
  return source.open();
}

}  // namespace

TEST_CASE("train/ and test/ class folders: sorted classes, path order, exact pixels",
          "[image-folder]") {
  TempDir dir;
  const std::vector<Picture> p = {picture(4, 3, 3, 0),  picture(4, 3, 3, 10), picture(4, 3, 3, 20),
                                  picture(4, 3, 3, 30), picture(4, 3, 3, 40), picture(4, 3, 3, 50)};
  write_png(dir.file("train/dog/b.png"), p[1]);
  write_png(dir.file("train/dog/a.png"), p[2]);
  write_png(dir.file("train/cat/x.PNG"), p[3]);
  write_png(dir.file("train/cat/nested/y.png"), p[4]);
  write_bytes(dir.file("train/cat/notes.txt"), {'h', 'i'});
  write_bytes(dir.file("train/cat/.DS_Store"), {0, 1, 2});
  write_bytes(dir.file("train/.cache/junk.png"), {0, 1, 2});
  write_png(dir.file("test/cat/t.png"), p[5]);
  write_png(dir.file("test/dog/u.png"), p[0]);

  const vaelab::Dataset dataset = open(dir.path());
  CHECK(dataset.name == "pictures");
  CHECK(dataset.num_classes == 2);
  REQUIRE(dataset.train.count == 4);
  CHECK(dataset.train.channels == 3);
  CHECK(dataset.train.height == 3);
  CHECK(dataset.train.width == 4);
  // cat (0): nested/y.png before x.PNG; dog (1): a.png before b.png.
  CHECK(dataset.train.labels == std::vector<int64_t>{0, 0, 1, 1});
  CHECK(dataset.train.pixels ==
        concat({planes(p[4], 3), planes(p[3], 3), planes(p[2], 3), planes(p[1], 3)}));
  CHECK(dataset.test.labels == std::vector<int64_t>{0, 1});
  CHECK(dataset.test.pixels == concat({planes(p[5], 3), planes(p[0], 3)}));

  REQUIRE(dataset.files.size() == 2);
  CHECK(dataset.files[0].path == dir.file("train"));
  CHECK(dataset.files[0].bytes == fs::file_size(dir.file("train/dog/b.png")) +
                                      fs::file_size(dir.file("train/dog/a.png")) +
                                      fs::file_size(dir.file("train/cat/x.PNG")) +
                                      fs::file_size(dir.file("train/cat/nested/y.png")));
  CHECK(dataset.files[1].path == dir.file("test"));
  CHECK(dataset.files[0].crc32.size() == 8);
  // The checksum is stable, and changes with an image's content.
  CHECK(open(dir.path()).files[0].crc32 == dataset.files[0].crc32);
  write_png(dir.file("train/dog/a.png"), p[3]);
  CHECK(open(dir.path()).files[0].crc32 != dataset.files[0].crc32);
  CHECK(open(dir.path()).files[1].crc32 == dataset.files[1].crc32);
}

TEST_CASE("channels: grey replicated to RGB, RGB to luma, alpha dropped", "[image-folder]") {
  TempDir dir;
  const Picture grey = picture(4, 3, 1, 7);
  const Picture rgb = picture(4, 3, 3, 11);
  const Picture rgba = picture(4, 3, 4, 23);
  const Picture grey_alpha = picture(4, 3, 2, 99);
  write_png(dir.file("train/a/1.png"), grey);
  write_png(dir.file("train/a/2.png"), rgb);
  write_png(dir.file("train/a/3.png"), rgba);
  write_png(dir.file("train/a/4.png"), grey_alpha);
  write_png(dir.file("test/a/1.png"), rgb);

  const vaelab::Dataset colour = open(dir.path());
  CHECK(colour.train.pixels ==
        concat({planes(grey, 3), planes(rgb, 3), planes(rgba, 3), planes(grey_alpha, 3)}));
  const vaelab::Dataset mono = open(dir.path(), "channels = 1\n");
  CHECK(mono.train.channels == 1);
  CHECK(mono.train.pixels ==
        concat({planes(grey, 1), planes(rgb, 1), planes(rgba, 1), planes(grey_alpha, 1)}));
  CHECK(mono.test.pixels == planes(rgb, 1));
}

TEST_CASE("JPEG files decode close to what was written, whatever their name", "[image-folder]") {
  TempDir dir;
  write_jpg(dir.file("train/a/photo.jpg"), flat(16, 16, {200, 100, 50}));
  // A PNG named .jpeg: recognised by content.
  write_png(dir.file("train/a/really-a-png.jpeg"), flat(16, 16, {1, 2, 3}));
  write_jpg(dir.file("test/a/grey.JPEG"), flat(16, 16, {77}));
  const vaelab::Dataset dataset = open(dir.path(), "width = 16\nheight = 16\n");
  REQUIRE(dataset.train.count == 2);
  for (int c = 0; c < 3; ++c) {
    const auto first = dataset.train.pixels.begin() + c * 256;
    const auto [lo, hi] = std::minmax_element(first, first + 256);
    const int expected = std::vector<int>{200, 100, 50}[static_cast<size_t>(c)];
    CHECK(std::abs(int{*lo} - expected) <= 3);
    CHECK(std::abs(int{*hi} - expected) <= 3);
    CHECK(int{dataset.train.pixels[static_cast<size_t>(3 * 256 + c * 256 + 5)]} == c + 1);
  }
  for (const uint8_t v : dataset.test.pixels) CHECK(std::abs(int{v} - 77) <= 3);
}

TEST_CASE("resize_bilinear: a triangle filter that widens when shrinking",
          "[image-folder][resize]") {
  const auto row = [](std::vector<uint8_t> values) {
    DecodedImage image;
    image.width = static_cast<int64_t>(values.size());
    image.height = 1;
    image.channels = 1;
    image.pixels = std::move(values);
    return image;
  };
  // Shrinking 4 → 2: each output pixel weighs the 3 nearest source pixels 0.75, 0.75, 0.25 (the
  // fourth falls off the edge): (0.75·0 + 0.75·100 + 0.25·200) / 1.75 = 71.4.
  CHECK(resize_bilinear(row({0, 100, 200, 255}), 2, 1).pixels == std::vector<uint8_t>{71, 209});
  // Growing 2 → 4: plain linear interpolation between pixel centres, clamped at the edges.
  CHECK(resize_bilinear(row({0, 200}), 4, 1).pixels == std::vector<uint8_t>{0, 50, 150, 200});
  // The same along columns.
  DecodedImage column = row({0, 200});
  column.width = 1;
  column.height = 2;
  CHECK(resize_bilinear(column, 1, 4).pixels == std::vector<uint8_t>{0, 50, 150, 200});
  // Channels stay apart and a flat image stays flat.
  DecodedImage colour;
  colour.width = 7;
  colour.height = 5;
  colour.channels = 3;
  for (int i = 0; i < 35; ++i) colour.pixels.insert(colour.pixels.end(), {10, 128, 250});
  const DecodedImage small = resize_bilinear(colour, 3, 2);
  REQUIRE(small.pixels.size() == 3u * 2 * 3);
  for (size_t i = 0; i < small.pixels.size(); i += 3) {
    CHECK(small.pixels[i] == 10);
    CHECK(small.pixels[i + 1] == 128);
    CHECK(small.pixels[i + 2] == 250);
  }
  CHECK(resize_bilinear(colour, 7, 5).pixels == colour.pixels);
}

TEST_CASE("fit = resize and fit = pad bring every image to height x width", "[image-folder]") {
  TempDir dir;
  write_png(dir.file("train/a/wide.png"), Picture{2, 1, 1, {0, 200}});
  write_png(dir.file("train/a/big.png"), flat(8, 6, {30, 60, 90}));
  write_png(dir.file("test/a/small.png"), Picture{2, 2, 1, {1, 2, 3, 4}});

  SECTION("resize") {
    const vaelab::Dataset dataset = open(dir.path(), "fit = 'resize'\nwidth = 4\nheight = 1\n");
    REQUIRE(dataset.train.pixels.size() == 2u * 3 * 4);
    // big.png, flat, stays flat.
    CHECK(std::vector<uint8_t>(dataset.train.pixels.begin(), dataset.train.pixels.begin() + 12) ==
          std::vector<uint8_t>{30, 30, 30, 30, 60, 60, 60, 60, 90, 90, 90, 90});
    // wide.png, 2x1 grey, replicated into three channels and interpolated to 4x1.
    CHECK(std::vector<uint8_t>(dataset.train.pixels.begin() + 12, dataset.train.pixels.end()) ==
          std::vector<uint8_t>{0, 50, 150, 200, 0, 50, 150, 200, 0, 50, 150, 200});
  }
  SECTION("pad centres the image on black, the smaller margins left and top") {
    const std::string small = dir.file("test/a/small.png");
    fs::remove(dir.file("train/a/big.png"));
    const vaelab::Dataset dataset =
        open(dir.path(), "fit = 'pad'\nwidth = 4\nheight = 3\nchannels = 1\n");
    CHECK(dataset.test.pixels == std::vector<uint8_t>{0, 1, 2, 0,  //
                                                      0, 3, 4, 0,  //
                                                      0, 0, 0, 0});
    CHECK(dataset.train.pixels == std::vector<uint8_t>{0, 0, 0, 0,    //
                                                       0, 0, 200, 0,  //
                                                       0, 0, 0, 0});
    REQUIRE_THROWS_WITH(open(dir.path(), "fit = 'pad'\nwidth = 4\nheight = 1\n"),
                        Catch::StartsWith(small + ": image is 2x2 pixels (width x height), larger "
                                                  "than 4x1; fit = \"pad\" only adds borders"));
  }
  SECTION("none requires the exact size") {
    REQUIRE_THROWS_WITH(open(dir.path(), "width = 2\nheight = 1\n"),
                        Catch::StartsWith(dir.file("train/a/big.png") +
                                          ": image is 8x6 pixels (width x height), not 2x1 as fit "
                                          "= \"none\" requires"));
  }
}

TEST_CASE("split = fraction holds out a seeded share of every class", "[image-folder]") {
  TempDir dir;
  // 1x1 grey images whose only pixel is their identity: a0..a9 = 0..9, b0..b9 = 100..109, c0 = 200.
  std::vector<uint8_t> all;
  for (int i = 0; i < 10; ++i) {
    write_png(dir.file("a/" + std::to_string(i) + ".png"),
              Picture{1, 1, 1, {static_cast<uint8_t>(i)}});
    write_png(dir.file("b/" + std::to_string(i) + ".png"),
              Picture{1, 1, 1, {static_cast<uint8_t>(100 + i)}});
    all.push_back(static_cast<uint8_t>(i));
    all.push_back(static_cast<uint8_t>(100 + i));
  }
  write_png(dir.file("c/only.png"), Picture{1, 1, 1, {200}});
  all.push_back(200);
  const std::string options =
      "split = 'fraction'\ntest_fraction = 0.3\nwidth = 1\nheight = 1\nchannels = 1\n";

  const vaelab::Dataset dataset = open(dir.path(), options);
  CHECK(dataset.num_classes == 3);
  REQUIRE(dataset.train.count == 15);  // 7 of a, 7 of b, the one c
  REQUIRE(dataset.test.count == 6);    // round(0.3 × 10) of a and of b, none of c
  CHECK(std::count(dataset.test.labels.begin(), dataset.test.labels.end(), 0) == 3);
  CHECK(std::count(dataset.test.labels.begin(), dataset.test.labels.end(), 1) == 3);
  CHECK(dataset.train.labels.back() == 2);
  // Every image once, in one split or the other, each split in listing order, labels matching.
  std::vector<uint8_t> seen = dataset.train.pixels;
  seen.insert(seen.end(), dataset.test.pixels.begin(), dataset.test.pixels.end());
  std::sort(seen.begin(), seen.end());
  std::sort(all.begin(), all.end());
  CHECK(seen == all);
  CHECK(std::is_sorted(dataset.train.pixels.begin(), dataset.train.pixels.end()));
  CHECK(std::is_sorted(dataset.test.pixels.begin(), dataset.test.pixels.end()));
  for (size_t i = 0; i < dataset.test.pixels.size(); ++i) {
    CHECK(dataset.test.labels[i] == dataset.test.pixels[i] / 100);
  }
  REQUIRE(dataset.files.size() == 1);
  CHECK(dataset.files[0].path == dir.path());

  // The seed decides the split, reproducibly.
  CHECK(open(dir.path(), options).test.pixels == dataset.test.pixels);
  CHECK(open(dir.path(), options + "split_seed = 1\n").test.pixels != dataset.test.pixels);

  REQUIRE_THROWS_WITH(open(dir.path(),
                           "split = 'fraction'\ntest_fraction = 0.01\nwidth = 1\n"
                           "height = 1\nchannels = 1\n"),
                      Catch::StartsWith(dir.path() + ": test_fraction = 0.01 of 21 images "
                                                     "holds out no test image"));
}

TEST_CASE("a folder of images without class folders is unlabelled", "[image-folder]") {
  TempDir dir;
  write_png(dir.file("train/1.png"), picture(4, 3, 3, 1));
  write_png(dir.file("train/2.png"), picture(4, 3, 3, 2));
  write_png(dir.file("test/1.png"), picture(4, 3, 3, 3));
  const vaelab::Dataset dataset = open(dir.path());
  CHECK(dataset.num_classes == 0);
  CHECK(dataset.train.labels == std::vector<int64_t>{-1, -1});
  CHECK(dataset.test.labels == std::vector<int64_t>{-1});
  CHECK(dataset.train.pixels ==
        concat({planes(picture(4, 3, 3, 1), 3), planes(picture(4, 3, 3, 2), 3)}));

  SECTION("while the other split has class folders") {
    write_png(dir.file("test/cat/1.png"), picture(4, 3, 3, 3));
    fs::remove(dir.file("test/1.png"));
    REQUIRE_THROWS_WITH(open(dir.path()),
                        Catch::StartsWith(dir.file("train") +
                                          ": holds images but no class folders, "
                                          "while " +
                                          dir.file("test") + " holds class folders"));
  }
}

TEST_CASE("folder errors name the folder or file at fault", "[image-folder]") {
  TempDir dir;
  const std::string root = dir.file("data");
  write_png(dir.file("data/train/cat/1.png"), picture(4, 3, 3, 0));
  write_png(dir.file("data/test/cat/1.png"), picture(4, 3, 3, 0));
  REQUIRE_NOTHROW(open(root));

  SECTION("a missing root") {
    REQUIRE_THROWS_WITH(open(dir.file("nope")),
                        Catch::StartsWith(dir.file("nope") + ": folder not found; set the data "
                                                             "source's `root`"));
    REQUIRE_THROWS_WITH(open(dir.file("data/train/cat/1.png")),
                        Catch::StartsWith(dir.file("data/train/cat/1.png") + ": is not a folder"));
  }
  SECTION("a missing test folder") {
    fs::remove_all(dir.file("data/test"));
    REQUIRE_THROWS_WITH(open(root),
                        Catch::StartsWith(dir.file("data/test") + ": folder not found; "
                                                                  "split = \"folders\""));
  }
  SECTION("an empty class folder") {
    fs::create_directories(dir.file("data/train/dog"));
    write_bytes(dir.file("data/train/dog/readme.txt"), {'x'});
    REQUIRE_THROWS_WITH(
        open(root), Catch::StartsWith(dir.file("data/train/dog") + ": class folder holds no "
                                                                   "images (.png, .jpg, .jpeg)"));
  }
  SECTION("zero images") {
    fs::remove_all(dir.file("data/test/cat"));
    REQUIRE_THROWS_WITH(open(root),
                        Catch::StartsWith(dir.file("data/test") + ": holds no images "
                                                                  "(.png, .jpg, .jpeg) "
                                                                  "and no class folders"));
  }
  SECTION("a test class the train split lacks") {
    write_png(dir.file("data/test/dog/1.png"), picture(4, 3, 3, 0));
    REQUIRE_THROWS_WITH(open(root),
                        Catch::StartsWith(dir.file("data/test/dog") +
                                          ": class 'dog' has "
                                          "no folder in " +
                                          dir.file("data/train") + " (train classes: cat)"));
  }
  SECTION("an image beside class folders") {
    write_png(dir.file("data/train/stray.png"), picture(4, 3, 3, 0));
    REQUIRE_THROWS_WITH(
        open(root),
        Catch::StartsWith(dir.file("data/train/stray.png") + ": an image directly in " +
                          dir.file("data/train") + ", which also holds class folders (cat, ...)"));
  }
  SECTION("an unreadable folder") {
    const std::string cat = dir.file("data/train/cat");
    fs::permissions(cat, fs::perms::none);
    std::error_code error;
    fs::directory_iterator probe(cat, error);
    if (!error) {
      WARN("running with permission to read any folder (root?); unreadable folder not tested");
    } else {
      REQUIRE_THROWS_WITH(open(root),
                          Catch::StartsWith(cat + ": cannot read folder: Permission denied"));
    }
    fs::permissions(cat, fs::perms::owner_all);
  }
  SECTION("too many bytes for max_bytes, before decoding") {
    write_bytes(dir.file("data/train/cat/2.png"), {'n', 'o', 't'});
    REQUIRE_THROWS_WITH(open(root, "max_bytes = 100\n"),
                        Catch::StartsWith(root + ": 3 images of 3x3x4 would take 108 bytes, more "
                                                 "than max_bytes = 100"));
  }
}

TEST_CASE("image errors name the file", "[image-folder]") {
  TempDir dir;
  const std::vector<uint8_t> png = read_bytes(write_png(dir.file("good.png"), picture(4, 3, 3, 0)));
  write_png(dir.file("data/test/cat/1.png"), picture(4, 3, 3, 0));
  const std::string root = dir.file("data");
  const auto refused = [&](const std::string& name, const std::vector<uint8_t>& bytes,
                           const std::string& message, const std::string& extra = "") {
    const std::string path = write_bytes(dir.file("data/train/cat/" + name), bytes);
    REQUIRE_THROWS_WITH(open(root, extra), Catch::StartsWith(path + ": " + message));
    fs::remove(path);
  };
  refused("text.png", {'h', 'e', 'l', 'l', 'o'}, "cannot decode image: not a PNG or JPEG file");
  refused("empty.jpg", {}, "cannot decode image: empty file");
  std::vector<uint8_t> cut = png;
  cut.resize(png.size() - 20);
  refused("cut.png", cut, "cannot decode image: the file ends early (truncated)");
  std::vector<uint8_t> corrupt = png;
  for (size_t i = 41; i < corrupt.size() - 12; ++i) corrupt[i] ^= 0x5a;
  refused("corrupt.png", corrupt, "cannot decode image: bad zlib header (the file is corrupt");
  refused("huge.png", png, "image is 4x3 pixels, more than max_image_pixels = 11",
          "max_image_pixels = 11\n");
}

TEST_CASE("ImageFolderSource checks its config without opening files", "[image-folder]") {
  const std::string nowhere = "/nonexistent/vaelab-image-folder-test";
  CHECK_NOTHROW(ImageFolderSource(source_config(nowhere)));
  const auto refused = [&](const std::string& extra, const std::string& message) {
    REQUIRE_THROWS_AS(ImageFolderSource(source_config(nowhere, extra)), vaelab::ConfigError);
    REQUIRE_THROWS_WITH(ImageFolderSource(source_config(nowhere, extra)), Catch::Contains(message));
  };
  refused("channels = 2\n", "data.config.channels: 2 is not 1 (grey) or 3 (RGB)");
  refused("test_fraction = 1.0\n", "data.config.test_fraction");
  refused("test_fraction = 0\n", "data.config.test_fraction");
  refused("fit = 'crop'\n", "data.config.fit: 'crop' is not one of resize, pad, none");
  refused("split = 'folder'\n", "did you mean 'folders'");
  refused("extensions = []\n", "data.config.extensions");
  refused("width = 0\n", "data.config.width");
  REQUIRE_THROWS_WITH(ImageFolderSource(source_config("")),
                      Catch::Contains("data.config.root: must not be empty"));
}

TEST_CASE("the image-folder plugin loads through the registry and opens a folder",
          "[image-folder][plugin]") {
  const vaelab::Registry registry({VAELAB_TEST_PLUGIN_DIR});
  const vaelab::PluginRecord& record = registry.find(VL_PLUGIN_KIND_DATA_SOURCE, "image-folder");
  REQUIRE(record.ok());
  const toml::table defaults = vaelab::parse_toml(record.defaults_toml, "defaults.toml");
  const auto config = [&](const std::string& overrides) {
    return vaelab::format_toml(
        vaelab::merge_tables(defaults, vaelab::parse_toml(overrides, "test")));
  };
  // The defaults make an instance without touching the disk (what `vaelab plugins` checks).
  CHECK(registry.create<vaelab::DataSource>("image-folder", config("")) != nullptr);

  TempDir dir;
  write_png(dir.file("train/b/1.png"), flat(64, 64, {10, 20, 30}));
  write_jpg(dir.file("train/a/1.jpg"), flat(40, 20, {250, 250, 250}));
  write_png(dir.file("test/b/1.png"), flat(32, 32, {1, 2, 3}));
  auto source =
      registry.create<vaelab::DataSource>("image-folder", config("root = '" + dir.path() + "'\n"));
  const vaelab::Dataset dataset = source->open();
  CHECK(dataset.name == "image-folder");
  CHECK(dataset.num_classes == 2);
  CHECK(dataset.train.labels == std::vector<int64_t>{0, 1});
  CHECK(dataset.train.height == 32);
  CHECK(dataset.train.width == 32);
  CHECK(dataset.train.pixels.size() == 2u * 3 * 32 * 32);
  CHECK(dataset.train.pixels[3 * 1024 + 2 * 1024 + 517] == 30);
  CHECK(dataset.test.pixels == planes(flat(32, 32, {1, 2, 3}), 3));

  auto missing = registry.create<vaelab::DataSource>("image-folder",
                                                     config("root = '" + dir.file("x") + "'\n"));
  REQUIRE_THROWS_WITH(missing->open(), Catch::StartsWith(dir.file("x") + ": folder not found"));
  REQUIRE_THROWS_WITH(registry.create<vaelab::DataSource>("image-folder", config("channels = 4\n")),
                      Catch::Contains("channels"));
}

// ---- Found by fuzzing (fuzz/fuzz_image.cpp)
// ------------------------------------------------------

TEST_CASE("a JPEG Huffman table of more than 256 codes is refused before stb_image reads it",
          "[image-folder][fuzz]") {
  // Debian's stb_image (2022-09-08) writes past its Huffman tables for such a table
  // (nothings/stb#1289); the decoder refuses it first, wherever the table is in the file.
  using vaelab::plugins::image_folder::decode_image;
  // SOI, then a DHT segment of one table: class/id 0x00 and code counts summing to 365.
  std::vector<uint8_t> header_table = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x13, 0x00};
  for (int i = 0; i < 14; ++i) header_table.push_back(0);
  header_table.push_back(255);
  header_table.push_back(110);
  REQUIRE_THROWS_WITH(decode_image("bad.jpg", header_table, 3, 1 << 20),
                      "bad.jpg: cannot decode image: the JPEG Huffman table at byte 6 declares 365 "
                      "codes, more than 256 (the file is corrupt)");

  // stb_image takes fill bytes (FF) before SOI as part of its marker: still a JPEG to it.
  std::vector<uint8_t> filled = header_table;
  filled.insert(filled.begin(), 3, uint8_t{0xFF});
  REQUIRE_THROWS_WITH(decode_image("filled.jpg", filled, 3, 1 << 20),
                      Catch::StartsWith("filled.jpg: cannot decode image: the JPEG Huffman table "
                                        "at byte 9 declares 365 codes"));

  // The same table after the scan data of a good JPEG, where a progressive JPEG puts its next
  // tables: found by walking past the entropy-coded bytes.
  TempDir dir;
  const std::vector<uint8_t> good =
      read_bytes(write_jpg(dir.file("good.jpg"), picture(16, 16, 3, 7)));
  REQUIRE(good.size() > 4);
  REQUIRE(good[good.size() - 2] == 0xFF);
  REQUIRE(good[good.size() - 1] == 0xD9);  // EOI
  CHECK(decode_image("good.jpg", good, 3, 1 << 20).width == 16);
  std::vector<uint8_t> late(good.begin(), good.end() - 2);
  const size_t table_at = late.size() + 4;
  late.insert(late.end(), header_table.begin() + 2, header_table.end());
  late.push_back(0xFF);
  late.push_back(0xD9);
  REQUIRE_THROWS_WITH(decode_image("late.jpg", late, 1, 1 << 20),
                      Catch::StartsWith("late.jpg: cannot decode image: the JPEG Huffman table at "
                                        "byte " +
                                        std::to_string(table_at) + " declares 365"));

  // Exactly 256 codes is a table stb_image may read (and refuse for its own reasons).
  std::vector<uint8_t> full = header_table;
  full[full.size() - 1] = 1;  // 255 + 1
  try {
    (void)decode_image("full.jpg", full, 3, 1 << 20);
  } catch (const vaelab::Error& e) {
    CHECK_THAT(e.what(), !Catch::Contains("more than 256"));
  }
}

TEST_CASE("a decoder message quoting bytes of the file stays one line", "[image-folder][fuzz]") {
  // stb_image names an unknown critical PNG chunk by its four type bytes, as they are: a newline
  // among them split the error in two (found by fuzz-image).
  using vaelab::plugins::image_folder::decode_image;
  TempDir dir;
  std::vector<uint8_t> png = read_bytes(write_png(dir.file("good.png"), picture(4, 3, 3, 0)));
  // After the signature (8 bytes) and IHDR (25): an empty chunk of type "\n111" (critical: bit 5
  // of its first byte is clear), with a checksum stb_image does not check.
  const std::vector<uint8_t> chunk = {0, 0, 0, 0, '\n', '1', '1', '1', 0, 0, 0, 0};
  png.insert(png.begin() + 33, chunk.begin(), chunk.end());
  try {
    (void)decode_image("chunk.png", png, 3, 1 << 20);
    FAIL("decoded");
  } catch (const vaelab::Error& e) {
    const std::string message = e.what();
    CHECK(message.find('\n') == std::string::npos);
    CHECK_THAT(message, Catch::StartsWith("chunk.png: cannot decode image: \\x0a111 PNG chunk "
                                          "not known"));
  }
}

TEST_CASE("a PNG chunk longer than the file is refused before stb_image allocates it",
          "[image-folder][fuzz]") {
  // stb_image allocated the length an IDAT chunk declares before reading it: a 97-byte file made
  // it ask for 1.9 GB (found by fuzz-image, as an allocation over the fuzzer's limit).
  using vaelab::plugins::image_folder::decode_image;
  TempDir dir;
  const std::vector<uint8_t> good =
      read_bytes(write_png(dir.file("good.png"), picture(5, 5, 3, 1)));
  // The first chunk after IHDR (signature 8 bytes, IHDR 25) is the first IDAT of stb_image_write.
  REQUIRE(std::string(good.begin() + 37, good.begin() + 41) == "IDAT");
  std::vector<uint8_t> huge = good;
  huge[33] = 0x74;  // its length: 0x74?????? bytes, about 1.9 GB
  const size_t left = good.size() - 33 - 8;
  REQUIRE_THROWS_WITH(decode_image("huge.png", huge, 3, 1 << 20),
                      Catch::StartsWith("huge.png: cannot decode image: the file ends early "
                                        "(truncated): its PNG chunk 'IDAT' at byte 33 declares ") &&
                          Catch::EndsWith(" bytes, only " + std::to_string(left) + " follow"));
  // A chunk that ends exactly at the end of the file is read (and this one is whole).
  CHECK(decode_image("good.png", good, 3, 1 << 20).width == 5);
}
