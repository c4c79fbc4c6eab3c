#include <catch2/catch.hpp>

#include <numeric>

#include <vaelab/data_source.hpp>

namespace {

vaelab::ImageSet numbered(int64_t count, int64_t h, int64_t w) {
  vaelab::ImageSet s;
  s.count = count;
  s.channels = 1;
  s.height = h;
  s.width = w;
  s.pixels.resize(static_cast<size_t>(count * h * w));
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t p = 0; p < h * w; ++p) s.pixels[static_cast<size_t>(i * h * w + p)] = static_cast<uint8_t>(i + 1);
  }
  s.labels.resize(static_cast<size_t>(count));
  std::iota(s.labels.begin(), s.labels.end(), 0);
  return s;
}

}  // namespace

TEST_CASE("pad_images centres each image in a zero border", "[data]") {
  vaelab::ImageSet s = numbered(2, 28, 28);
  vaelab::pad_images(s, 32, 32);
  REQUIRE(s.height == 32);
  REQUIRE(s.width == 32);
  REQUIRE(s.pixels.size() == 2u * 32 * 32);
  const auto at = [&](int64_t i, int64_t y, int64_t x) { return s.pixels[static_cast<size_t>((i * 32 + y) * 32 + x)]; };
  REQUIRE(at(0, 0, 0) == 0);
  REQUIRE(at(0, 1, 1) == 0);
  REQUIRE(at(0, 2, 2) == 1);
  REQUIRE(at(0, 29, 29) == 1);
  REQUIRE(at(0, 30, 30) == 0);
  REQUIRE(at(1, 15, 15) == 2);
  const long nonzero = std::count_if(s.pixels.begin(), s.pixels.end(), [](uint8_t v) { return v != 0; });
  REQUIRE(nonzero == 2 * 28 * 28);
}

TEST_CASE("pad_images refuses to shrink", "[data]") {
  vaelab::ImageSet s = numbered(1, 40, 40);
  REQUIRE_THROWS_WITH(vaelab::pad_images(s, 32, 32), Catch::Contains("cannot pad 40x40"));
}

TEST_CASE("select_subset is seeded, keeps order and keeps labels with their images", "[data]") {
  vaelab::ImageSet a = numbered(100, 2, 2);
  vaelab::ImageSet b = numbered(100, 2, 2);
  vaelab::ImageSet c = numbered(100, 2, 2);
  vaelab::select_subset(a, 10, 7);
  vaelab::select_subset(b, 10, 7);
  vaelab::select_subset(c, 10, 8);
  REQUIRE(a.count == 10);
  REQUIRE(a.pixels == b.pixels);
  REQUIRE(a.pixels != c.pixels);
  for (int64_t i = 0; i < a.count; ++i) {
    REQUIRE(a.pixels[static_cast<size_t>(i * 4)] == a.labels[static_cast<size_t>(i)] + 1);
    if (i > 0) REQUIRE(a.labels[static_cast<size_t>(i)] > a.labels[static_cast<size_t>(i - 1)]);
  }
  vaelab::ImageSet all = numbered(5, 2, 2);
  vaelab::select_subset(all, 0, 1);
  REQUIRE(all.count == 5);
}

TEST_CASE("take_label moves one class out and keeps the rest in order", "[data]") {
  vaelab::ImageSet s = numbered(10, 2, 2);
  for (int64_t i = 0; i < s.count; ++i) s.labels[static_cast<size_t>(i)] = i % 3;
  const vaelab::ImageSet held = vaelab::take_label(s, 1);
  REQUIRE(held.count == 3);  // images 1, 4, 7
  REQUIRE(s.count == 7);
  CHECK(held.labels == std::vector<int64_t>{1, 1, 1});
  CHECK(held.pixels[0] == 2);
  CHECK(held.pixels[4] == 5);
  CHECK(held.pixels[8] == 8);
  CHECK(s.labels == std::vector<int64_t>{0, 2, 0, 2, 0, 2, 0});
  CHECK(s.pixels.size() == 7 * 4);
  CHECK(s.pixels[4] == 3);  // image 2 follows image 0
  const vaelab::ImageSet none = vaelab::take_label(s, 9);
  CHECK(none.count == 0);
  CHECK(s.count == 7);
}
