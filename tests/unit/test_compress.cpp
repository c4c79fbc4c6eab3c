// The bits-back ANS coder without LibTorch (docs/compression.md): the rANS stack, the quantized
// frequencies, the BB-ANS chain with small stand-in models, the file format and its refusals, and
// the comparison compressors.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <catch2/catch.hpp>

#include <vaelab/compress/baselines.hpp>
#include <vaelab/compress/bbans.hpp>
#include <vaelab/compress/container.hpp>
#include <vaelab/compress/quantize.hpp>
#include <vaelab/compress/rans.hpp>

using namespace vaelab::compress;

namespace {

/// A random distribution over `n` symbols as frequencies out of 2^precision, each >= 1.
std::vector<uint32_t> random_frequencies(std::mt19937_64& rng, int n, int precision) {
  std::vector<double> w(static_cast<size_t>(n));
  std::exponential_distribution<double> e(1.0);
  for (auto& v : w) v = std::pow(e(rng), 3.0);
  double sum = 0;
  for (double v : w) sum += v;
  const uint64_t total = uint64_t{1} << precision;
  std::vector<uint32_t> f(static_cast<size_t>(n));
  uint64_t used = 0;
  for (int i = 0; i < n; ++i) {
    f[static_cast<size_t>(i)] = 1 + static_cast<uint32_t>(std::floor(w[static_cast<size_t>(i)] / sum * (total - n)));
    used += f[static_cast<size_t>(i)];
  }
  f[0] += static_cast<uint32_t>(total - used);
  return f;
}

std::vector<uint32_t> starts_of(const std::vector<uint32_t>& f) {
  std::vector<uint32_t> s(f.size());
  uint32_t c = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    s[i] = c;
    c += f[i];
  }
  return s;
}

/// A deterministic stand-in for a VAE: the posterior mean is a fixed linear function of the
/// image, the log-variance a constant; the likelihood parameters a fixed linear function of z.
class LinearModel final : public CodingModel {
 public:
  explicit LinearModel(const CodecSettings& s) : s_(s) {}
  void posterior(const uint8_t* x, int64_t n, float* mean, float* log_var) override {
    ++posterior_calls;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < s_.latent_dims; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < s_.image_symbols(); ++p) {
          acc += (((p * 7 + j * 3) % 5) - 2.0) * x[i * s_.image_symbols() + p] /
                 (s_.likelihood == LikelihoodKind::bernoulli ? 1.0 : 255.0);
        }
        mean[i * s_.latent_dims + j] = static_cast<float>(0.3 * acc / std::sqrt(double(s_.image_symbols())));
        log_var[i * s_.latent_dims + j] = static_cast<float>(-2.0 - 0.5 * j);
      }
    }
  }
  void likelihood_params(const float* z, int64_t n, float* params) override {
    const int64_t per = s_.param_channels() * s_.height * s_.width;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t q = 0; q < per; ++q) {
        double acc = 0.1 * ((q % 11) - 5.0);
        for (int64_t j = 0; j < s_.latent_dims; ++j) acc += (((q + 2 * j) % 7) - 3.0) * 0.4 * z[i * s_.latent_dims + j];
        params[i * per + q] = static_cast<float>(acc);
      }
    }
  }
  int posterior_calls = 0;

 private:
  CodecSettings s_;
};

CodecSettings small_settings(LikelihoodKind kind, int64_t channels = 1) {
  CodecSettings s;
  s.likelihood = kind;
  s.mixtures = kind == LikelihoodKind::mol ? 3 : 0;
  s.channels = channels;
  s.height = 4;
  s.width = 5;
  s.latent_dims = 3;
  s.latent_precision = 8;
  s.posterior_precision = 20;
  s.likelihood_precision = 16;
  s.lanes = 3;
  return s;
}

std::vector<uint8_t> random_images(std::mt19937_64& rng, const CodecSettings& s, int64_t count) {
  std::vector<uint8_t> x(static_cast<size_t>(count * s.image_symbols()));
  for (auto& v : x) v = static_cast<uint8_t>(s.likelihood == LikelihoodKind::bernoulli ? rng() % 2 : rng() % 256);
  return x;
}

std::string scratch(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("vaelab-test-compress-" + name)).string();
}

}  // namespace

TEST_CASE("rANS: random symbol streams round trip and cost -log2 p within the renormalization overhead",
          "[compress]") {
  std::mt19937_64 rng(42);
  for (int precision : {1, 8, 16, 24, 31}) {
    const int n = precision == 1 ? 2 : 50;
    const std::vector<uint32_t> f = random_frequencies(rng, n, precision);
    const std::vector<uint32_t> start = starts_of(f);
    std::vector<int> symbols(20000);
    std::discrete_distribution<int> pick(f.begin(), f.end());
    for (auto& s : symbols) s = pick(rng);

    RansStack stack(0x12345678u);
    const double before = stack.bits();
    double ideal = 0;
    for (int s : symbols) {
      stack.push(start[static_cast<size_t>(s)], f[static_cast<size_t>(s)], precision);
      ideal += precision - std::log2(f[static_cast<size_t>(s)]);
    }
    const double coded = stack.bits() - before;
    // The state's fill varies by up to 32 bits; each push rounds x / f, whose relative error is
    // below f / x <= 2^(precision - 32) after renormalization.
    const double n_pushes = static_cast<double>(symbols.size());
    const double rel = std::ldexp(1.0, precision - 32);
    CHECK(coded >= ideal - 33.0 + n_pushes * std::log2(1.0 - rel));
    CHECK(coded <= ideal + 33.0 + n_pushes * std::log2(1.0 + rel));
    if (precision <= 24) CHECK(std::abs(coded - ideal) < 33.0 + 0.001 * n_pushes);
    for (size_t i = symbols.size(); i-- > 0;) {
      const uint32_t c = stack.peek(precision);
      const auto it = std::upper_bound(start.begin(), start.end(), c) - 1;
      const int s = static_cast<int>(it - start.begin());
      REQUIRE(s == symbols[i]);
      stack.pop(start[static_cast<size_t>(s)], f[static_cast<size_t>(s)], precision);
    }
    CHECK(stack.words().empty());
    CHECK(stack.state() == (RansStack::kLow | 0x12345678u));
  }
}

TEST_CASE("rANS: popping past the bottom draws from the random stream, pushing gives it back", "[compress]") {
  RandomWords random(7);
  RansStack stack(random.next(), &random);
  std::vector<uint32_t> got;
  for (int i = 0; i < 100; ++i) got.push_back(stack.pop_bits(20));
  CHECK(random.drawn() > 60);  // 2000 bits popped from a 64-bit state
  for (size_t i = got.size(); i-- > 0;) stack.push_bits(got[i], 20);
  RandomWords replay(7);
  CHECK(stack.state() == (RansStack::kLow | replay.next()));
  REQUIRE(stack.words().size() == random.drawn() - 1);
  for (size_t i = stack.words().size(); i-- > 0;) CHECK(stack.words()[i] == replay.next());
  RansStack empty;
  CHECK_THROWS_AS(empty.pop_bits(31) + empty.pop_bits(31) + empty.pop_bits(31), vaelab::Error);
}

TEST_CASE("quantized posteriors: frequencies sum exactly to the total, all > 0, and track q", "[compress]") {
  const GaussianBuckets buckets(10);
  REQUIRE(buckets.count() == 1024);
  CHECK(buckets.centre(512) > 0.0f);
  CHECK(std::abs(buckets.centre(511) + buckets.centre(512)) < 1e-6);
  CHECK(std::abs(buckets.edge(512)) < 1e-12);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> n01;
  for (int trial = 0; trial < 50; ++trial) {
    const float mean = trial == 0 ? NAN : 2.0f * n01(rng);
    const float log_var = trial == 1 ? -INFINITY : trial == 2 ? 40.0f : -6.0f + 6.0f * std::abs(n01(rng));
    const GaussianPosteriorCode q(buckets, 22, mean, log_var);
    uint64_t sum = 0, expected_start = 0;
    double mass_error = 0;
    for (uint32_t k = 0; k < buckets.count(); ++k) {
      const Interval iv = q.interval(k);
      REQUIRE(iv.freq >= 1);
      REQUIRE(iv.start == expected_start);
      expected_start += iv.freq;
      sum += iv.freq;
      if (trial > 2 && k > 0 && k + 1 < buckets.count()) {
        const double sigma = std::exp(0.5 * log_var);
        const double lo = 0.5 * std::erfc(-(buckets.edge(k) - mean) / sigma / std::sqrt(2.0));
        const double hi = 0.5 * std::erfc(-(buckets.edge(k + 1) - mean) / sigma / std::sqrt(2.0));
        mass_error = std::max(mass_error, std::abs(iv.freq / std::ldexp(1.0, 22) - (hi - lo)));
      }
    }
    CHECK(sum == (uint64_t{1} << 22));
    CHECK(mass_error < 2e-3);  // 1024 buckets of at least one count each, plus table interpolation
    for (uint32_t c : {0u, 1u, 12345u, (1u << 21), (1u << 22) - 1}) {
      Interval iv;
      const uint32_t k = q.find(c, iv);
      CHECK(iv.start <= c);
      CHECK(c < iv.start + iv.freq);
      CHECK(q.interval(k).start == iv.start);
    }
  }
}

TEST_CASE("quantized likelihoods: Bernoulli and the mixture of logistics cover the total exactly", "[compress]") {
  for (float logit : {-100.0f, -5.0f, 0.0f, 0.3f, 7.0f, 100.0f, NAN}) {
    const Interval zero = bernoulli_interval(logit, 16, 0);
    const Interval one = bernoulli_interval(logit, 16, 1);
    CHECK(zero.freq >= 1);
    CHECK(one.freq >= 1);
    CHECK(zero.start == 0);
    CHECK(one.start == zero.freq);
    CHECK(zero.freq + one.freq == (1u << 16));
  }
  CHECK(bernoulli_interval(0.0f, 16, 1).freq == (1u << 15));
  CHECK(std::abs(bernoulli_interval(2.0f, 24, 1).freq / std::ldexp(1.0, 24) - 1.0 / (1.0 + std::exp(-2.0))) < 1e-6);

  std::mt19937_64 rng(9);
  std::normal_distribution<float> n01;
  for (int channels : {1, 3}) {
    const int k = 4;
    const int p = channels == 1 ? 3 * k : 10 * k;
    MolPixelCode code(channels, k, 18);
    for (int trial = 0; trial < 30; ++trial) {
      std::vector<float> params(static_cast<size_t>(p));
      for (auto& v : params) v = n01(rng);
      if (trial == 0) params[static_cast<size_t>(k)] = NAN;
      code.start(params.data(), 1);
      for (int c = 0; c < channels; ++c) {
        uint64_t sum = 0;
        for (int v = 0; v < 256; ++v) {
          const Interval iv = code.interval(static_cast<uint8_t>(v));
          REQUIRE(iv.freq >= 1);
          REQUIRE(iv.start == sum);
          sum += iv.freq;
        }
        CHECK(sum == (1u << 18));
        Interval iv;
        const uint8_t v = code.find(static_cast<uint32_t>(rng() % (1u << 18)), iv);
        CHECK(code.interval(v).start == iv.start);
        code.next(v);
      }
    }
  }
}

TEST_CASE("mixture of logistics: the quantized masses follow the likelihood's bins", "[compress]") {
  // One component, mean 0.2 on [-1, 1], log-scale -3: the mass of each value against the
  // logistic CDF at the bin edges (edge bins open).
  const float params[3] = {0.0f, 0.2f, -3.0f};
  MolPixelCode code(1, 1, 24);
  code.start(params, 1);
  const double s = std::exp(-3.0);
  const auto cdf = [&](double e) { return 1.0 / (1.0 + std::exp(-(e - 0.2) / s)); };
  double worst = 0;
  for (int v = 0; v < 256; ++v) {
    const double lo = v == 0 ? 0.0 : cdf((2.0 * v - 1.0) / 255.0 - 1.0);
    const double hi = v == 255 ? 1.0 : cdf((2.0 * v + 1.0) / 255.0 - 1.0);
    worst = std::max(worst, std::abs(code.interval(static_cast<uint8_t>(v)).freq / std::ldexp(1.0, 24) - (hi - lo)));
  }
  CHECK(worst < 1e-5);
}

TEST_CASE("BB-ANS: byte-exact round trip for Bernoulli and mixture images, any number of chains",
          "[compress]") {
  std::mt19937_64 rng(5);
  for (auto kind : {LikelihoodKind::bernoulli, LikelihoodKind::mol}) {
    for (int64_t channels : {int64_t{1}, int64_t{3}}) {
      if (kind == LikelihoodKind::bernoulli && channels == 3) continue;
      for (int64_t lanes : {int64_t{1}, int64_t{3}, int64_t{64}}) {
        CodecSettings s = small_settings(kind, channels);
        s.lanes = lanes;
        const int64_t count = 17;
        const std::vector<uint8_t> x = random_images(rng, s, count);
        LinearModel model(s);
        CodingStats stats;
        const std::vector<LaneStream> lanes_out = bbans_encode(s, model, x.data(), count, 99, &stats);
        CHECK(static_cast<int64_t>(lanes_out.size()) == std::min(lanes, count));
        CHECK(stats.initial_bits > 0);
        CHECK(stats.prior_bits == Approx(count * s.latent_dims * s.latent_precision));
        std::vector<uint8_t> back(x.size(), 0xee);
        LinearModel model2(s);
        bbans_decode(s, model2, lanes_out, count, 99, back.data());
        CHECK(back == x);
        CHECK(model2.posterior_calls == model.posterior_calls);  // the same batches both ways
      }
    }
  }
}

TEST_CASE("BB-ANS: the stream grows by the net code length, the bound bits-back approaches", "[compress]") {
  std::mt19937_64 rng(11);
  CodecSettings s = small_settings(LikelihoodKind::bernoulli);
  s.lanes = 1;
  const int64_t count = 400;
  const std::vector<uint8_t> x = random_images(rng, s, count);
  LinearModel model(s);
  CodingStats stats;
  const std::vector<LaneStream> lanes = bbans_encode(s, model, x.data(), count, 1, &stats);
  const double stored = 32.0 * static_cast<double>(lanes[0].words.size()) + std::log2(static_cast<double>(lanes[0].state));
  const double net = stats.likelihood_bits + stats.prior_bits - stats.posterior_bits;
  // What is stored is the net length plus the bits borrowed at the start, up to the state's fill.
  CHECK(stored == Approx(net + stats.initial_bits).margin(33.0));
  CHECK(stats.initial_bits < 0.1 * net);
}

TEST_CASE("BB-ANS: a decoder with other probabilities or a damaged stream is refused", "[compress]") {
  std::mt19937_64 rng(13);
  CodecSettings s = small_settings(LikelihoodKind::mol);
  const int64_t count = 9;
  const std::vector<uint8_t> x = random_images(rng, s, count);
  LinearModel model(s);
  std::vector<LaneStream> lanes = bbans_encode(s, model, x.data(), count, 5, nullptr);
  std::vector<uint8_t> back(x.size());
  CHECK_THROWS_AS(bbans_decode(s, model, lanes, count, 6, back.data()), ChainError);  // other seed
  CodecSettings other = s;
  other.likelihood_precision = 15;
  CHECK_THROWS_AS(bbans_decode(other, model, lanes, count, 5, back.data()), ChainError);
  lanes[1].words[lanes[1].words.size() / 2] ^= 0x400u;
  try {
    bbans_decode(s, model, lanes, count, 5, back.data());
    FAIL("a damaged stream decoded");
  } catch (const ChainError& e) {
    CHECK(e.lane() == 1);
  }
}

TEST_CASE("file format: round trip, and truncated or corrupt files are refused with a byte offset",
          "[compress]") {
  std::mt19937_64 rng(17);
  CompressedFile file;
  file.header.settings = small_settings(LikelihoodKind::bernoulli);
  file.header.binary_one = 255;
  file.header.count = 5;
  file.header.seed = 77;
  file.header.checkpoint_hash = 0x1234;
  file.header.numerics_hash = 0x5678;
  file.header.images_crc32 = 0x9abc;
  for (int b = 0; b < 3; ++b) {
    LaneStream lane;
    lane.state = RansStack::kLow + rng() % 1000;
    for (int i = 0; i < 10 + b; ++i) lane.words.push_back(static_cast<uint32_t>(rng()));
    lane.borrowed_words = 3;
    file.lanes.push_back(lane);
  }
  const std::vector<uint8_t> bytes = serialize(file);
  CHECK(bytes.size() == kFixedHeaderBytes + 3 * kLaneEntryBytes + 4 + 4 * (10 + 11 + 12));
  const CompressedFile back = parse_compressed("f.vlz", bytes.data(), bytes.size());
  CHECK(back.header.count == 5);
  CHECK(back.header.binary_one == 255);
  CHECK(back.header.settings.latent_precision == 8);
  CHECK(back.header.checkpoint_hash == 0x1234);
  REQUIRE(back.lanes.size() == 3);
  for (int b = 0; b < 3; ++b) {
    CHECK(back.lanes[static_cast<size_t>(b)].words == file.lanes[static_cast<size_t>(b)].words);
    CHECK(back.lanes[static_cast<size_t>(b)].state == file.lanes[static_cast<size_t>(b)].state);
  }

  const auto refusal = [&](const std::vector<uint8_t>& data) {
    try {
      parse_compressed("f.vlz", data.data(), data.size());
    } catch (const vaelab::Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  for (size_t cut : {size_t{0}, size_t{7}, size_t{50}, size_t{100}, bytes.size() - 1}) {
    const std::vector<uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    const std::string why = refusal(part);
    CHECK(why.find("f.vlz: byte ") == 0);
    CHECK(why.find('\n') == std::string::npos);
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  CHECK(refusal(longer).find("byte " + std::to_string(bytes.size())) != std::string::npos);
  std::vector<uint8_t> magic = bytes;
  magic[1] = 'X';
  CHECK(refusal(magic).find("byte 0: not a vaelab compressed file") != std::string::npos);
  std::vector<uint8_t> version = bytes;
  version[8] = 9;
  CHECK(refusal(version).find("byte 8: format version 9") != std::string::npos);
  // Every single-byte change is refused, with an offset.
  for (size_t at = 0; at < bytes.size(); ++at) {
    std::vector<uint8_t> bad = bytes;
    bad[at] ^= 0x10;
    const std::string why = refusal(bad);
    INFO("byte " << at << ": " << why);
    CHECK(why.find("f.vlz: byte ") == 0);
  }
}

TEST_CASE("decoded images that miss the header's CRC-32 are refused at byte 80", "[compress][fuzz]") {
  // fuzz/regressions/compressed/images-crc-field-changed.vlz: a file whose images CRC-32 field was
  // changed (and its header CRC fixed) decodes to the right images, which must still be refused.
  CompressedHeader h;
  const std::vector<uint8_t> images = {0, 1, 1, 0, 1};
  h.images_crc32 = crc32_of(images.data(), images.size());
  CHECK_NOTHROW(check_images_crc("f.vlz", h, images.data(), images.size()));
  h.images_crc32 ^= 0x01000000u;
  try {
    check_images_crc("f.vlz", h, images.data(), images.size());
    FAIL("accepted");
  } catch (const vaelab::Error& e) {
    CHECK(std::string(e.what()).find("f.vlz: byte 80: the decoded images' CRC-32") == 0);
  }
}

TEST_CASE("write_file_atomically replaces a file only with a complete one", "[compress]") {
  const std::string path = scratch("atomic.bin");
  write_file_atomically(path, {1, 2, 3});
  CHECK(std::filesystem::file_size(path) == 3);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  CHECK_THROWS_AS(write_file_atomically(scratch("no-such-dir") + "/x/y.bin", {1}), vaelab::Error);
  std::filesystem::remove(path);
}

TEST_CASE("comparison compressors: sizes of compressible and incompressible pixels", "[compress]") {
  std::mt19937_64 rng(23);
  std::vector<uint8_t> binary(200 * 16 * 16);
  for (size_t i = 0; i < binary.size(); ++i) binary[i] = ((i / 16) % 16 > 8) ? 1 : 0;  // half-filled images
  PixelBlock block{binary.data(), 200, 1, 16, 16, true};
  const std::vector<uint8_t> packed = pack_bits(block);
  REQUIRE(packed.size() == binary.size() / 8);
  CHECK(packed[0] == 0);
  CHECK(packed[2 * 9] == 0xff);  // row 9: all ones, two bytes per row
  const auto results = run_baselines(block);
  REQUIRE(results.size() == 6);
  for (const auto& r : results) {
    INFO(r.name);
    CHECK(r.bytes > 0);
    CHECK(r.bytes < 2000);  // 200 identical images compress far below their 6,400 packed bytes
  }
  std::vector<uint8_t> noise(100 * 3 * 8 * 8);
  for (auto& v : noise) v = static_cast<uint8_t>(rng());
  const auto noisy = run_baselines(PixelBlock{noise.data(), 100, 3, 8, 8, false});
  for (const auto& r : noisy) {
    INFO(r.name);
    CHECK(r.bytes >= noise.size() * 99 / 100);  // random bytes do not compress
    CHECK(r.input != "bit-packed");
  }
}
