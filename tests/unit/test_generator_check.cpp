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
#include <vaelab/gen/frechet.hpp>
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

  // One copy in ten: ten times the held-out rate.
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

// ---- The memorization rule's statistics ------------------------------------------------------

TEST_CASE("copy excess p-value: the exact distribution of every interleaving, the edges",
          "[check]") {
  // Brute force: every way to interleave 3 samples with 5 held-out images is equally likely;
  // J = samples before the (k + 1)-th held-out image. The tail must match the count.
  const int n1 = 3, n2 = 5;
  for (int k = 0; k < n2; ++k) {
    std::vector<int> at_least(n1 + 2, 0);
    int arrangements = 0;
    for (int mask = 0; mask < (1 << (n1 + n2)); ++mask) {
      if (__builtin_popcount(static_cast<unsigned>(mask)) != n1) continue;  // bit set = a sample
      ++arrangements;
      int held_seen = 0, j = 0;
      for (int pos = 0; pos < n1 + n2 && held_seen <= k; ++pos) {
        if (mask & (1 << pos)) {
          ++j;
        } else {
          ++held_seen;
        }
      }
      for (int t = 0; t <= j; ++t) ++at_least[t];
    }
    REQUIRE(arrangements == 56);  // C(8, 3)
    for (int w = 1; w <= n1; ++w) {
      INFO("k = " << k << ", within = " << w);
      REQUIRE(vaelab::copy_excess_p_value(w, n1, k, n2) ==
              Approx(static_cast<double>(at_least[w]) / arrangements).epsilon(1e-12));
    }
  }
  REQUIRE(vaelab::copy_excess_p_value(0, 50, 1, 100) == 1.0);
  REQUIRE(vaelab::copy_excess_p_value(51, 50, 1, 100) == 0.0);
  REQUIRE(vaelab::copy_excess_p_value(5, 50, 100, 100) == 1.0);  // threshold above every held-out image
  // 1,000 samples against 1,000 held-out images with 10 within: 20 within is not rare once the
  // threshold's own noise counts (a binomial test at 1 % would give p ≈ 0.003), 40 is.
  REQUIRE(vaelab::copy_excess_p_value(20, 1000, 10, 1000) > 0.01);
  REQUIRE(vaelab::copy_excess_p_value(40, 1000, 10, 1000) < 1e-4);
}

TEST_CASE("memorization: samples as close as held-out images are not flagged, a few copies are",
          "[check]") {
  const ImageSet train = blobs(1000, 40);
  const ImageSet test = blobs(400, 41);
  // Fresh draws of the data distribution: within the threshold at about the held-out rate.
  const vaelab::MemorizationCheck fresh =
      vaelab::memorization_check(blobs(400, 42), train, test, fast_options());
  REQUIRE(fresh.test_within_fraction >= 0.01);
  REQUIRE(fresh.test_within_fraction < 0.02);
  REQUIRE(fresh.samples_within_p_value > 0.01);
  REQUIRE_FALSE(fresh.suspected);
  // 3 % copies among 400 fresh samples: three times the held-out rate, significant.
  ImageSet mixed = blobs(400, 43);
  for (int64_t i = 0; i < 12; ++i) {
    std::copy_n(train.pixels.begin() + (50 + i) * 256, 256, mixed.pixels.begin() + i * 256);
  }
  const vaelab::MemorizationCheck some =
      vaelab::memorization_check(mixed, train, test, fast_options());
  REQUIRE(some.exact_copies == 12);
  REQUIRE(some.test_exact_copies == 0);
  REQUIRE(some.samples_within_fraction >= 0.03);
  REQUIRE(some.samples_within_p_value < 0.01);
  REQUIRE(some.suspected);
}

// ---- The Fréchet distance ----------------------------------------------------------------------

namespace {

/// `n` labelled 1x16x16 images of three classes: a bright disc (0), a bright horizontal bar (1),
/// a dark disc on a bright ground (2), each at a random place and size.
ImageSet shapes(int64_t n, uint64_t seed) {
  ImageSet s = blobs(n, seed);
  std::mt19937_64 rng(seed + 1000);
  std::uniform_real_distribution<double> centre(3.0, 13.0), half(1.0, 2.5);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = i % 3;
    s.labels[static_cast<size_t>(i)] = label;
    uint8_t* img = s.pixels.data() + i * 256;
    if (label == 1) {
      const double cy = centre(rng), h = half(rng);
      for (int y = 0; y < 16; ++y) {
        for (int x = 0; x < 16; ++x) {
          const bool inside = std::abs(y - cy) <= h;
          img[y * 16 + x] = static_cast<uint8_t>(inside ? 220 : img[y * 16 + x] % 40);
        }
      }
    } else if (label == 2) {
      for (int k = 0; k < 256; ++k) img[k] = static_cast<uint8_t>(255 - img[k]);
    }
  }
  return s;
}

vaelab::FeatureNetOptions small_net() {
  vaelab::FeatureNetOptions o;
  o.hidden = 64;
  o.features = 16;
  o.epochs = 8;
  o.batch = 64;
  o.seed = 3;
  return o;
}

/// Row-major d×d matrix product a·b.
std::vector<double> matmul(const std::vector<double>& a, const std::vector<double>& b, int d) {
  std::vector<double> c(static_cast<size_t>(d * d), 0.0);
  for (int i = 0; i < d; ++i)
    for (int k = 0; k < d; ++k)
      for (int j = 0; j < d; ++j) c[i * d + j] += a[i * d + k] * b[k * d + j];
  return c;
}

}  // namespace

TEST_CASE("Fréchet distance between Gaussians: closed forms", "[check][frechet]") {
  // Diagonal covariances commute: |Δμ|² + Σ (√a_i − √b_i)².
  const std::vector<double> ma = {0.5, -1.0, 2.0}, mb = {1.5, 0.0, 2.0};
  const std::vector<double> ca = {4, 0, 0, 0, 1, 0, 0, 0, 9}, cb = {1, 0, 0, 0, 1, 0, 0, 0, 0.25};
  const double diagonal = 1.0 + 1.0 + 0.0 + 1.0 + 0.0 + 2.5 * 2.5;
  REQUIRE(vaelab::frechet_distance_gaussians(ma, ca, mb, cb, 3) == Approx(diagonal).epsilon(1e-10));
  REQUIRE(vaelab::frechet_distance_gaussians(mb, cb, ma, ca, 3) == Approx(diagonal).epsilon(1e-10));
  REQUIRE(vaelab::frechet_distance_gaussians(ma, ca, ma, ca, 3) == Approx(0.0).margin(1e-9));

  // Two 2×2 covariances that do not commute: for M = A^½ B A^½, tr √M = √(tr M + 2 √det M),
  // with tr M = tr(AB) and det M = det A · det B.
  const std::vector<double> a = {2.0, 0.8, 0.8, 1.0}, b = {0.5, -0.3, -0.3, 1.5};
  const std::vector<double> ab = matmul(a, b, 2);
  REQUIRE(std::abs(ab[1] - matmul(b, a, 2)[1]) > 0.1);  // they really do not commute
  const double det_a = a[0] * a[3] - a[1] * a[2], det_b = b[0] * b[3] - b[1] * b[2];
  const double cross = std::sqrt(ab[0] + ab[3] + 2 * std::sqrt(det_a * det_b));
  const std::vector<double> m1 = {1.0, 2.0}, m2 = {-1.0, 2.5};
  const double expected = 4.0 + 0.25 + (a[0] + a[3]) + (b[0] + b[3]) - 2 * cross;
  REQUIRE(vaelab::frechet_distance_gaussians(m1, a, m2, b, 2) == Approx(expected).epsilon(1e-10));
  REQUIRE(vaelab::frechet_distance_gaussians(m2, b, m1, a, 2) == Approx(expected).epsilon(1e-10));

  REQUIRE_THROWS_WITH(vaelab::frechet_distance_gaussians(m1, a, m2, b, 3), Contains("3x3"));
}

TEST_CASE("Fréchet distance of feature rows: fitted moments, a shift adds its square",
          "[check][frechet]") {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal;
  const int64_t n = 20000, d = 4;
  std::vector<double> x(static_cast<size_t>(n * d)), y(x.size());
  for (auto& v : x) v = normal(rng);
  for (auto& v : y) v = normal(rng);
  // Same distribution: near 0 (the estimate's bias is of order d² / n).
  REQUIRE(vaelab::frechet_distance(x, n, y, n, d) < 0.02);
  // Shifted by c in every coordinate, and the second coordinate scaled by 3.
  std::vector<double> z = y;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) z[static_cast<size_t>(i * d + j)] += 0.5;
    z[static_cast<size_t>(i * d + 1)] *= 3;
  }
  // |Δμ|² = 3 · 0.25 + 1.5² (the scaled shift), plus (√9 − 1)² = 4 from the scale.
  REQUIRE(vaelab::frechet_distance(x, n, z, n, d) == Approx(0.75 + 2.25 + 4.0).epsilon(0.03));
  REQUIRE_THROWS_WITH(vaelab::frechet_distance(x, 1, y, n, d), Contains("at least 2 rows"));
}

TEST_CASE("feature network: learns the classes, saves and loads bit for bit, is cached",
          "[check][frechet]") {
  const ImageSet train = shapes(900, 50);
  const ImageSet test = shapes(300, 51);
  const vaelab::FeatureNet net = vaelab::FeatureNet::train("shapes", train, test, small_net());
  const nlohmann::json& info = net.info();
  INFO(info.dump());
  REQUIRE(info["classes"] == 3);
  REQUIRE(info["train_images"] == 900);
  REQUIRE(info["test_images"] == 300);
  REQUIRE(info["test_accuracy"].get<double>() > 0.9);
  REQUIRE(net.dims() == 16);
  const std::vector<double> f = net.features(first(test, 10));
  REQUIRE(f.size() == 160);

  const fs::path dir = fs::temp_directory_path() / ("vaelab-fnet-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  net.save(dir / "net.pt");
  REQUIRE(vaelab::FeatureNet::load(dir / "net.pt").features(first(test, 10)) == f);
  {
    std::ofstream(dir / "junk.pt") << "not a network";
  }
  REQUIRE_THROWS_WITH(vaelab::FeatureNet::load(dir / "junk.pt"),
                      Contains("junk.pt") && Contains("not a feature network"));

  bool trained = false;
  const vaelab::FeatureNet first_call =
      vaelab::cached_feature_net(dir / "cache", "shapes", train, test, small_net(), &trained);
  REQUIRE(trained);
  const vaelab::FeatureNet second =
      vaelab::cached_feature_net(dir / "cache", "shapes", train, test, small_net(), &trained);
  REQUIRE_FALSE(trained);
  REQUIRE(second.features(first(test, 10)) == first_call.features(first(test, 10)));
  // Other training images are another network.
  vaelab::cached_feature_net(dir / "cache", "shapes", shapes(900, 52), test, small_net(), &trained);
  REQUIRE(trained);
  fs::remove_all(dir);

  ImageSet unlabelled = blobs(50, 1);
  REQUIRE_THROWS_WITH(vaelab::FeatureNet::train("blobs", unlabelled, unlabelled, small_net()),
                      Contains("labelled"));
  ImageSet wide = blobs(10, 1);
  wide.width = 32;
  wide.height = 8;
  REQUIRE_THROWS_WITH(net.features(wide), Contains("1x16x16") && Contains("1x8x32"));
}

TEST_CASE("the generator check's Fréchet distance: near the real floor for fresh draws, far for "
          "another distribution",
          "[check][frechet]") {
  const ImageSet train = shapes(900, 60);
  const ImageSet test = shapes(600, 61);
  const vaelab::FeatureNet net = vaelab::FeatureNet::train("shapes", train, test, small_net());
  const vaelab::GeneratorCheck same =
      vaelab::check_generator(shapes(300, 62), train, test, fast_options(), &net);
  REQUIRE(same.frechet.measured);
  REQUIRE(same.frechet.samples == 300);
  REQUIRE(same.frechet.held_out == 600);
  REQUIRE(same.frechet.reference_images == 300);
  INFO("same " << same.frechet.distance << ", real " << same.frechet.real_reference);
  REQUIRE(same.frechet.distance < 2 * same.frechet.real_reference + 1e-3);

  // Only one class (bars): the features' mean and covariance move.
  ImageSet squares = shapes(900, 63);
  std::vector<int64_t> keep;
  for (int64_t i = 1; i < 900; i += 3) keep.push_back(i);
  vaelab::keep_images(squares, keep);
  const vaelab::GeneratorCheck other =
      vaelab::check_generator(squares, train, test, fast_options(), &net);
  INFO("one class " << other.frechet.distance);
  REQUIRE(other.frechet.distance > 10 * same.frechet.real_reference);

  const nlohmann::json j = vaelab::to_json(other);
  REQUIRE(j["frechet_distance"].get<double>() == other.frechet.distance);
  REQUIRE(j["frechet_feature_net"]["classes"] == 3);
  REQUIRE(j["frechet_missing"].is_null());
  REQUIRE_THAT(vaelab::to_markdown(other, "Check", {}, ""), Contains("## Fréchet distance"));

  const vaelab::GeneratorCheck without =
      vaelab::check_generator(squares, train, test, fast_options());
  REQUIRE_FALSE(without.frechet.measured);
  const nlohmann::json k = vaelab::to_json(without);
  REQUIRE(k["frechet_distance"].is_null());
  REQUIRE(k["frechet_missing"] == "no feature network");
}
