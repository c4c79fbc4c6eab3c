// Generator checks (vaelab/gen/check.hpp) on image sets whose answer is known: draws from one
// distribution, an obviously different set, exact copies of training images. Also the PNG grid.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include <vaelab/error.hpp>
#include <vaelab/gen/check.hpp>
#include <vaelab/io/image_grid.hpp>

namespace fs = std::filesystem;
using Catch::Contains;
using vaelab::ImageSet;

namespace {

/// `n` 1x16x16 images from one distribution: a bright disc of random centre, radius and
/// brightness on a noisy dark background. `seed` picks the draw, not the distribution.
ImageSet blobs(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> centre(4.0, 12.0), radius(2.0, 5.0), bright(150.0, 250.0);
  std::uniform_int_distribution<int> noise(0, 40);
  ImageSet s;
  s.count = n;
  s.channels = 1;
  s.height = 16;
  s.width = 16;
  s.pixels.resize(static_cast<size_t>(n * 256));
  s.labels.assign(static_cast<size_t>(n), -1);
  for (int64_t i = 0; i < n; ++i) {
    const double cx = centre(rng), cy = centre(rng), r = radius(rng), b = bright(rng);
    for (int y = 0; y < 16; ++y) {
      for (int x = 0; x < 16; ++x) {
        const bool inside = std::hypot(x - cx, y - cy) <= r;
        const int v = (inside ? static_cast<int>(b) : 0) + noise(rng);
        s.pixels[static_cast<size_t>(i * 256 + y * 16 + x)] =
            static_cast<uint8_t>(std::min(v, 255));
      }
    }
  }
  return s;
}

ImageSet inverted(ImageSet s) {
  for (auto& p : s.pixels) p = static_cast<uint8_t>(255 - p);
  return s;
}

ImageSet first(const ImageSet& s, int64_t n) {
  ImageSet out = s;
  out.count = n;
  out.pixels.resize(static_cast<size_t>(n * s.image_bytes()));
  out.labels.resize(static_cast<size_t>(n));
  return out;
}

vaelab::GeneratorCheckOptions fast_options() {
  vaelab::GeneratorCheckOptions o;
  o.seed = 7;
  o.c2st_epochs = 15;
  return o;
}

}  // namespace

TEST_CASE("nearest-neighbour distances are exact, and 0 for a copy", "[check]") {
  const ImageSet reference = blobs(300, 1);
  ImageSet queries = blobs(20, 2);
  std::copy_n(reference.pixels.begin() + 17 * 256, 256,
              queries.pixels.begin() + 5 * 256);  // query 5 = ref 17
  const std::vector<double> d = vaelab::nearest_neighbour_l2(queries, reference);
  REQUIRE(d.size() == 20);
  for (int64_t i = 0; i < 20; ++i) {
    double best = 1e300;
    for (int64_t j = 0; j < 300; ++j) {
      double sum = 0;
      for (int k = 0; k < 256; ++k) {
        const double diff = (queries.pixels[static_cast<size_t>(i * 256 + k)] -
                             reference.pixels[static_cast<size_t>(j * 256 + k)]) /
                            255.0;
        sum += diff * diff;
      }
      best = std::min(best, std::sqrt(sum));
    }
    REQUIRE(d[static_cast<size_t>(i)] == Approx(best).epsilon(1e-12));
  }
  REQUIRE(d[5] == 0.0);
  REQUIRE_THROWS_WITH(vaelab::nearest_neighbour_l2(queries, inverted(first(blobs(3, 1), 0))),
                      Contains("at least one reference image"));
}

TEST_CASE("distance summaries interpolate between ranks", "[check]") {
  std::vector<double> v;
  for (int i = 100; i >= 0; --i) v.push_back(i);  // 0..100, unsorted
  const vaelab::DistanceSummary s = vaelab::summarize_distances(v);
  REQUIRE(s.count == 101);
  REQUIRE(s.min == 0);
  REQUIRE(s.q01 == Approx(1.0));
  REQUIRE(s.q05 == Approx(5.0));
  REQUIRE(s.median == Approx(50.0));
  REQUIRE(s.q95 == Approx(95.0));
  REQUIRE(s.max == 100);
  REQUIRE(s.mean == Approx(50.0));
}

TEST_CASE("C2ST: two draws of one distribution are indistinguishable, inverted images are not",
          "[check]") {
  const ImageSet real = blobs(600, 10);
  const vaelab::C2stResult same =
      vaelab::classifier_two_sample_test(real, blobs(600, 11), fast_options());
  INFO("same-distribution accuracy " << same.accuracy);
  REQUIRE(same.train_per_class == 300);
  REQUIRE(same.test_per_class == 300);
  REQUIRE(same.accuracy > 0.4);
  REQUIRE(same.accuracy < 0.6);
  REQUIRE(same.p_value > 0.001);

  const vaelab::C2stResult different =
      vaelab::classifier_two_sample_test(real, inverted(blobs(600, 11)), fast_options());
  INFO("inverted accuracy " << different.accuracy);
  REQUIRE(different.accuracy > 0.97);
  REQUIRE(different.p_value < 1e-6);
  REQUIRE_THAT(different.classifier, Contains("MLP 256-256-256-1"));

  // Seeded: the same seed gives the same answer.
  REQUIRE(vaelab::classifier_two_sample_test(real, blobs(600, 11), fast_options()).accuracy ==
          same.accuracy);
}

TEST_CASE("the memorization flag fires on copies of training images and not on fresh draws",
          "[check]") {
  const ImageSet train = blobs(1000, 20);
  const ImageSet test = blobs(300, 21);
  const vaelab::MemorizationCheck fresh =
      vaelab::memorization_check(blobs(200, 22), train, test, fast_options());
  INFO("fresh: " << fresh.samples_within_fraction << " within " << fresh.threshold_l2);
  REQUIRE_FALSE(fresh.suspected);
  REQUIRE(fresh.exact_copies == 0);
  REQUIRE(fresh.samples_within_fraction < 0.05);
  REQUIRE(fresh.threshold_l2 > 0);
  REQUIRE(fresh.test_to_train.count == 300);
  REQUIRE(fresh.sample_to_train.median == Approx(fresh.test_to_train.median).epsilon(0.25));

  const vaelab::MemorizationCheck copies =
      vaelab::memorization_check(first(train, 200), train, test, fast_options());
  REQUIRE(copies.suspected);
  REQUIRE(copies.exact_copies == 200);
  REQUIRE(copies.samples_within_fraction == 1.0);
  REQUIRE(copies.sample_to_train.max == 0.0);

  // One copy in ten is enough to fire the alarm (5 % by default).
  ImageSet mixed = blobs(200, 23);
  for (int64_t i = 0; i < 200; i += 10) {
    std::copy_n(train.pixels.begin() + i * 256, 256, mixed.pixels.begin() + i * 256);
  }
  const vaelab::MemorizationCheck some =
      vaelab::memorization_check(mixed, train, test, fast_options());
  REQUIRE(some.exact_copies == 20);
  REQUIRE(some.suspected);
}

TEST_CASE("check_generator reports both checks and refuses mismatched shapes", "[check]") {
  const ImageSet train = blobs(400, 30);
  const ImageSet test = blobs(100, 31);
  const vaelab::GeneratorCheck c =
      vaelab::check_generator(first(train, 100), train, test, fast_options());
  REQUIRE(c.samples == 100);
  REQUIRE(c.train_images == 400);
  REQUIRE(c.memorization.suspected);
  const nlohmann::json j = vaelab::to_json(c);
  for (const char* key :
       {"c2st_accuracy", "c2st_accuracy_stderr", "c2st_p_value", "copy_threshold_l2",
        "samples_within_threshold_fraction", "exact_copies", "memorization_suspected",
        "nn_l2_sample_to_train", "nn_l2_test_to_train", "seconds"}) {
    INFO(key);
    REQUIRE(j.contains(key));
  }
  REQUIRE(j["exact_copies"] == 100);
  REQUIRE(j["nn_l2_test_to_train"]["count"] == 100);
  const std::string md = vaelab::to_markdown(c, "Check", {"pool `p.bin`"}, "samples.png");
  REQUIRE_THAT(md, Contains("# Check") && Contains("- pool `p.bin`") &&
                       Contains("**Memorization suspected**") &&
                       Contains("![samples](samples.png)"));

  ImageSet wide = blobs(10, 1);
  wide.width = 32;
  wide.height = 8;
  REQUIRE_THROWS_WITH(vaelab::check_generator(wide, train, test),
                      Contains("1x8x32") && Contains("1x16x16"));
  ImageSet continuous = first(train, 10);
  continuous.values.assign(10 * 256, 0.5f);
  REQUIRE_THROWS_WITH(vaelab::check_generator(continuous, train, test),
                      Contains("needs 8-bit images, but the samples are continuous"));
  REQUIRE_THROWS_WITH(vaelab::check_generator(first(train, 3), train, test),
                      Contains("at least 4 samples"));
}

TEST_CASE("an image grid places images row by row with padding, and is written as a PNG",
          "[check]") {
  ImageSet s;
  s.count = 3;
  s.channels = 1;
  s.height = 2;
  s.width = 2;
  s.pixels = {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
  s.labels = {-1, -1, -1};
  vaelab::ImageGridOptions o;
  o.columns = 2;
  o.padding_px = 1;
  o.padding_value = 9;
  const vaelab::ImageGrid g = vaelab::make_image_grid(s, o);
  REQUIRE((g.width == 7 && g.height == 7 && g.channels == 1));
  const auto at = [&](int y, int x) { return g.pixels[static_cast<size_t>(y * 7 + x)]; };
  REQUIRE((at(0, 0) == 9 && at(1, 1) == 1 && at(2, 2) == 1 && at(1, 4) == 2 && at(4, 1) == 3 &&
           at(4, 4) == 9));

  const fs::path dir = fs::temp_directory_path() / ("vaelab-grid-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  vaelab::write_image_grid(dir / "grid.png", s, o);
  std::ifstream in(dir / "grid.png", std::ios::binary);
  std::string head(8, '\0');
  in.read(head.data(), 8);
  REQUIRE(head == std::string("\x89PNG\r\n\x1a\n", 8));
  REQUIRE_FALSE(fs::exists(dir / "grid.png.tmp"));
  fs::remove_all(dir);

  s.channels = 2;
  s.count = 1;
  s.pixels.resize(8);
  REQUIRE_THROWS_WITH(vaelab::make_image_grid(s), Contains("1 or 3 channels, not 2"));
}
