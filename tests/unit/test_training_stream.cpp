// The training regimes: what each stream's batches are made of, measured over many draws.

#include <catch2/catch.hpp>

#include <cmath>
#include <mutex>
#include <set>
#include <utility>

#include <toml++/toml.h>
#include <torch/torch.h>

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/augment.hpp>
#include <vaelab/train/training_stream.hpp>

using Catch::Contains;

namespace {

/// A [n, 1, 8, 8] set whose image i is filled with `value` and carries its index in pixel 0.
torch::Tensor marked(int64_t n, float value) {
  torch::Tensor t = torch::full({n, 1, 8, 8}, value);
  t.select(1, 0).select(1, 0).select(1, 0).copy_(torch::arange(n).to(torch::kFloat32));
  return t;
}

/// The [train] table with the framework defaults (core/defaults.toml), plus `extra` TOML.
toml::table train_table(const std::string& extra = "") {
  return vaelab::parse_toml(
      "regime = \"normal\"\n"
      "[augment]\np = 0.12\nops = []\ntranslate_px = 0\nscale_std = 0.0\nrotate_deg = 0.0\n"
      "aniso_std = 0.0\naniso_rotate_prob = 0.0\nbrightness_std = 0.0\ncontrast_std = 0.0\n"
      "hue_max = 0.0\nsaturation_std = 0.0\n"
      "[synthetic]\nk = 10\nfirst_seed = 0\n"
      "[mixed]\nreal_fraction = 0.5\n" + extra,
      "train");
}

/// An AugmentSettings with nothing enabled but probability p.
vaelab::AugmentSettings only(double p) {
  vaelab::AugmentSettings s;
  s.p = p;
  return s;
}

}  // namespace

TEST_CASE("a mixed stream holds the configured fraction of real images, exactly over an epoch", "[regimes]") {
  const torch::Tensor real = marked(1000, 1.0f);
  const torch::Tensor synthetic = marked(3000, 0.0f);
  for (const double fraction : {0.0, 0.2, 0.5, 0.7, 1.0}) {
    vaelab::SyntheticStream stream("mixed", real, synthetic, fraction, 64, 3);
    REQUIRE(stream.epoch_size() == 1000);
    for (int epoch = 0; epoch < 2; ++epoch) {
      stream.begin_epoch(epoch);
      torch::Tensor batch;
      int64_t images = 0;
      int64_t real_images = 0;
      while (stream.next_batch(batch)) {
        const int64_t n = batch.size(0);
        const int64_t r = batch.select(2, 7).select(2, 7).eq(1.0f).sum().item<int64_t>();
        // Every batch holds the ratio to within one image.
        REQUIRE(std::abs(static_cast<double>(r) - fraction * static_cast<double>(n)) <= 1.0);
        images += n;
        real_images += r;
      }
      REQUIRE(images == 1000);
      REQUIRE(real_images == std::llround(fraction * 1000));
    }
  }
}

TEST_CASE("a synthetic pool of k x |D| images is cycled: each image once per k epochs", "[regimes]") {
  const torch::Tensor real = marked(100, 1.0f);
  const torch::Tensor pool = marked(300, 0.0f);  // k = 3
  vaelab::SyntheticStream stream("synthetic", real, pool, 0.0, 32, 5);
  std::vector<int> uses(300, 0);
  for (int epoch = 0; epoch < 3; ++epoch) {
    stream.begin_epoch(epoch);
    torch::Tensor batch;
    while (stream.next_batch(batch)) {
      REQUIRE(batch.select(2, 7).select(2, 7).eq(0.0f).all().item<bool>());  // never a real image
      const torch::Tensor ids = batch.select(2, 0).select(2, 0).flatten().to(torch::kLong);
      for (int64_t i = 0; i < ids.size(0); ++i) ++uses[static_cast<size_t>(ids[i].item<int64_t>())];
    }
  }
  REQUIRE(stream.real_served() == 0);
  REQUIRE(std::all_of(uses.begin(), uses.end(), [](int u) { return u == 1; }));
}

TEST_CASE("fresh synthetic images: epoch e trains on seeds first + e·m, made ahead", "[regimes]") {
  const torch::Tensor real = marked(100, 1.0f);
  std::vector<std::pair<uint64_t, int64_t>> calls;
  std::mutex mutex;
  // Image with seed s is filled with -s, so every batch tells which seeds it came from.
  const vaelab::SyntheticStream::Producer producer = [&](uint64_t first, int64_t n) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      calls.emplace_back(first, n);
    }
    torch::Tensor t = torch::arange(static_cast<int64_t>(first), static_cast<int64_t>(first) + n)
                          .to(torch::kFloat32)
                          .neg()
                          .view({n, 1, 1, 1})
                          .expand({n, 1, 8, 8})
                          .contiguous();
    return t;
  };
  auto owned = std::make_unique<vaelab::SyntheticStream>("mixed", real, producer, 1000, 0.25, 16, 4);
  vaelab::SyntheticStream& stream = *owned;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    stream.begin_epoch(epoch);
    std::set<int64_t> seeds;
    torch::Tensor batch;
    int64_t real_images = 0;
    while (stream.next_batch(batch)) {
      const torch::Tensor corner = batch.select(1, 0).select(1, 7).select(1, 7);
      for (int64_t i = 0; i < corner.size(0); ++i) {
        const float v = corner[i].item<float>();
        if (v == 1.0f) {
          ++real_images;
        } else {
          seeds.insert(static_cast<int64_t>(-v));
        }
      }
    }
    REQUIRE(real_images == 25);
    // 75 synthetic images per epoch, each used once: seeds 1000 + 75e ... 1000 + 75e + 74.
    REQUIRE(seeds.size() == 75);
    REQUIRE(*seeds.begin() == 1000 + 75 * epoch);
    REQUIRE(*seeds.rbegin() == 1000 + 75 * epoch + 74);
  }
  // Epochs 0-2 consumed, epoch 3 made ahead in the background (the destructor waits for it).
  owned.reset();
  std::lock_guard<std::mutex> lock(mutex);
  REQUIRE(calls.size() == 4);
  REQUIRE(calls.back() == std::make_pair<uint64_t, int64_t>(1000 + 3 * 75, 75));
}

TEST_CASE("make_training_stream knows every regime and names what is missing", "[regimes]") {
  const toml::table t = train_table();
  const vaelab::ConfigTable train(t, "train");
  vaelab::StreamInputs in;
  in.train = marked(50, 1.0f);
  in.batch_size = 16;
  for (const std::string regime : {"normal", "augment-naive", "augment-tuned"}) {
    in.regime = regime;
    REQUIRE(vaelab::make_training_stream(in, train)->regime() == regime);
  }
  in.regime = "synthetic";
  REQUIRE_THROWS_WITH(vaelab::make_training_stream(in, train), Contains("generator.directory"));
  in.synthetic = marked(100, 0.0f);
  REQUIRE(vaelab::make_training_stream(in, train)->regime() == "synthetic");
  in.synthetic = torch::zeros({100, 3, 8, 8});
  REQUIRE_THROWS_WITH(vaelab::make_training_stream(in, train), Contains("3x8x8") && Contains("1x8x8"));
  in.regime = "augment-tuneed";
  REQUIRE_THROWS_WITH(vaelab::make_training_stream(in, train), Contains("did you mean 'augment-tuned'?"));
}

TEST_CASE("each augmentation fires with probability p per image", "[augment]") {
  // An image that is not symmetric: a flip always changes it.
  torch::Tensor x = torch::zeros({4000, 1, 8, 8});
  x.select(3, 0).fill_(1.0f);  // left column lit
  at::Generator gen = vaelab::shim::make_cpu_generator(7);
  vaelab::AugmentSettings s = only(0.3);
  s.xflip = true;  // fires with p, then flips with probability 1/2 (as in ADA)
  const torch::Tensor y = vaelab::augment_batch(x, s, vaelab::PixelGrid::continuous, gen);
  const double flipped = y.select(3, 7).select(2, 0).select(1, 0).eq(1.0f).to(torch::kFloat64).mean().item<double>();
  // Binomial(4000, 0.15): standard error 0.0056.
  REQUIRE(flipped == Approx(0.15).margin(0.025));
  // A flip is exact: the flipped images are the mirror image, the others untouched.
  REQUIRE(torch::equal(y.sum(), x.sum()));

  SECTION("p = 0 leaves the batch as it is; p = 1 with a translation moves every image") {
    vaelab::AugmentSettings t = only(0.0);
    t.translate_px = 2;
    t.rotate_deg = 10;
    REQUIRE(torch::allclose(vaelab::augment_batch(x, t, vaelab::PixelGrid::continuous, gen), x, 0, 1e-6));
    t.p = 1.0;
    t.rotate_deg = 0;
    const torch::Tensor moved = vaelab::augment_batch(x, t, vaelab::PixelGrid::continuous, gen);
    // Integer shifts resample exactly: every pixel is still 0 or 1.
    REQUIRE(torch::logical_or(moved.eq(0.0f), moved.eq(1.0f)).all().item<bool>());
    // 4 of 5 horizontal shifts move the lit column (reflection keeps it lit at x = 0 only for 0).
    const double stayed = moved.select(3, 0).select(2, 3).select(1, 0).eq(1.0f).to(torch::kFloat64).mean().item<double>();
    REQUIRE(stayed < 0.5);
  }
}

TEST_CASE("augmented images keep the values the likelihood needs", "[augment]") {
  at::Generator gen = vaelab::shim::make_cpu_generator(8);
  const torch::Tensor x = torch::rand({256, 3, 8, 8});
  const toml::table t = train_table("");
  vaelab::AugmentSettings s = vaelab::AugmentSettings::from_config("augment-naive", 3, vaelab::ConfigTable(t, "train").sub("augment"));
  s.p = 1.0;
  const torch::Tensor cont = vaelab::augment_batch(x, s, vaelab::PixelGrid::continuous, gen);
  REQUIRE(cont.min().item<float>() >= 0.0f);
  REQUIRE(cont.max().item<float>() <= 1.0f);
  REQUIRE(!torch::allclose(cont, x));
  const torch::Tensor bytes = vaelab::augment_batch(x, s, vaelab::PixelGrid::bytes, gen);
  REQUIRE(torch::allclose(bytes * 255, (bytes * 255).round(), 0, 1e-4));
  const torch::Tensor binary = vaelab::augment_batch(x, s, vaelab::PixelGrid::binary, gen);
  REQUIRE(torch::logical_or(binary.eq(0.0f), binary.eq(1.0f)).all().item<bool>());
  // The same seed gives the same augmentations.
  at::Generator a = vaelab::shim::make_cpu_generator(9);
  at::Generator b = vaelab::shim::make_cpu_generator(9);
  REQUIRE(torch::equal(vaelab::augment_batch(x, s, vaelab::PixelGrid::continuous, a),
                       vaelab::augment_batch(x, s, vaelab::PixelGrid::continuous, b)));
}

TEST_CASE("augmentation presets follow the paper's tables and the config overrides them", "[augment]") {
  const toml::table t = train_table();
  const vaelab::ConfigTable aug = vaelab::ConfigTable(t, "train").sub("augment");
  const auto naive = vaelab::AugmentSettings::from_config("augment-naive", 1, aug);
  REQUIRE(naive.xflip);
  REQUIRE(naive.translate_px == 3);
  REQUIRE(naive.hue_max == 0);  // grayscale: no hue or saturation
  const auto tuned_gray = vaelab::AugmentSettings::from_config("augment-tuned", 1, aug);
  REQUIRE(!tuned_gray.xflip);
  REQUIRE(tuned_gray.scale_std == 0.15);
  REQUIRE(tuned_gray.aniso_rotate_prob == 0.4);
  const auto tuned_rgb = vaelab::AugmentSettings::from_config("augment-tuned", 3, aug);
  REQUIRE(tuned_rgb.yflip);
  REQUIRE(tuned_rgb.rotate_deg == 360);

  const toml::table custom = train_table();
  toml::table edited = custom;
  edited["augment"].as_table()->insert_or_assign("ops", toml::array{"rotate", "contrast"});
  edited["augment"].as_table()->insert_or_assign("rotate_deg", 30.0);
  const auto chosen = vaelab::AugmentSettings::from_config("augment-naive", 1, vaelab::ConfigTable(edited, "train").sub("augment"));
  REQUIRE(chosen.rotate_deg == 30);
  REQUIRE(chosen.contrast_std == 0.25);
  REQUIRE(!chosen.xflip);
  REQUIRE(chosen.translate_px == 0);
  edited["augment"].as_table()->insert_or_assign("ops", toml::array{"rotat"});
  REQUIRE_THROWS_WITH(vaelab::AugmentSettings::from_config("augment-naive", 1, vaelab::ConfigTable(edited, "train").sub("augment")),
                      Contains("train.augment.ops") && Contains("did you mean 'rotate'?"));
}
