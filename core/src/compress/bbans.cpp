#include <vaelab/compress/bbans.hpp>

#include <algorithm>
#include <cmath>
#include <memory>

#include <vaelab/compress/quantize.hpp>

namespace vaelab::compress {

int64_t CodecSettings::param_channels() const {
  if (likelihood == LikelihoodKind::bernoulli) return channels;
  return channels == 3 ? 10 * mixtures : 3 * mixtures;
}

void CodecSettings::check() const {
  const auto bad = [](const std::string& what) { throw Error("compression settings: " + what); };
  if (likelihood != LikelihoodKind::bernoulli && likelihood != LikelihoodKind::mol) {
    bad("unknown likelihood code " + std::to_string(static_cast<int>(likelihood)));
  }
  if (likelihood == LikelihoodKind::mol && (channels != 1 && channels != 3)) {
    bad("the mixture of logistics codes 1 or 3 channels, not " + std::to_string(channels));
  }
  if (likelihood == LikelihoodKind::mol && (mixtures < 1 || mixtures > 1024)) {
    bad("mixtures must be 1 to 1024, got " + std::to_string(mixtures));
  }
  if (channels < 1 || height < 1 || width < 1 || channels > 4096 || height > 65536 || width > 65536 ||
      channels * height * width > (int64_t{1} << 26)) {
    bad("image shape " + std::to_string(channels) + "x" + std::to_string(height) + "x" +
        std::to_string(width) + " is out of range");
  }
  if (latent_dims < 1 || latent_dims > (1 << 20)) bad("latent dimensions out of range: " + std::to_string(latent_dims));
  if (latent_precision < 1 || latent_precision > 16) {
    bad("latent_precision must be 1 to 16, got " + std::to_string(latent_precision));
  }
  if (posterior_precision <= latent_precision || posterior_precision > 31) {
    bad("posterior_precision must exceed latent_precision (" + std::to_string(latent_precision) +
        ") and be at most 31, got " + std::to_string(posterior_precision));
  }
  const int least = likelihood == LikelihoodKind::mol ? 9 : 1;
  if (likelihood_precision < least || likelihood_precision > 31) {
    bad("likelihood_precision must be " + std::to_string(least) + " to 31, got " +
        std::to_string(likelihood_precision));
  }
  if (lanes < 1 || lanes > 65536) bad("lanes must be 1 to 65536, got " + std::to_string(lanes));
}

uint64_t lane_seed(uint64_t seed, int64_t lane) {
  RandomWords mix(seed ^ (0xd1b54a32d192ed03ULL * static_cast<uint64_t>(lane + 1)));
  return (static_cast<uint64_t>(mix.next()) << 32) | mix.next();
}

namespace {

double bits_of(uint32_t freq, int precision) {
  return precision - std::log2(static_cast<double>(freq));
}

/// p(x|z) of one image at a time: the symbols' intervals in decode order (pixel by pixel,
/// channels in order within a pixel), pushed in reverse and popped forward.
class ImageCoder {
 public:
  explicit ImageCoder(const CodecSettings& s)
      : s_(s),
        plane_(s.height * s.width),
        intervals_(static_cast<size_t>(s.image_symbols())) {
    if (s.likelihood == LikelihoodKind::mol) {
      mol_ = std::make_unique<MolPixelCode>(static_cast<int>(s.channels), s.mixtures, s.likelihood_precision);
    }
  }

  /// Pushes image `x` given its parameters; returns its code length in bits when `bits` is set.
  void push(RansStack& stack, const uint8_t* x, const float* params, double* bits) {
    const int m = s_.likelihood_precision;
    const int64_t symbols = s_.image_symbols();
    if (s_.likelihood == LikelihoodKind::bernoulli) {
      for (int64_t i = 0; i < symbols; ++i) {
        intervals_[static_cast<size_t>(i)] = bernoulli_interval(params[i], m, x[i]);
      }
    } else {
      size_t n = 0;
      for (int64_t p = 0; p < plane_; ++p) {
        mol_->start(params + p, plane_);
        for (int64_t c = 0; c < s_.channels; ++c) {
          const uint8_t v = x[c * plane_ + p];
          intervals_[n++] = mol_->interval(v);
          if (c + 1 < s_.channels) mol_->next(v);
        }
      }
    }
    for (size_t i = intervals_.size(); i-- > 0;) {
      stack.push(intervals_[i].start, intervals_[i].freq, m);
      if (bits != nullptr) *bits += bits_of(intervals_[i].freq, m);
    }
  }

  void pop(RansStack& stack, const float* params, uint8_t* x) {
    const int m = s_.likelihood_precision;
    Interval iv;
    if (s_.likelihood == LikelihoodKind::bernoulli) {
      for (int64_t i = 0; i < s_.image_symbols(); ++i) {
        x[i] = bernoulli_find(params[i], m, stack.peek(m), iv);
        stack.pop(iv.start, iv.freq, m);
      }
      return;
    }
    for (int64_t p = 0; p < plane_; ++p) {
      mol_->start(params + p, plane_);
      for (int64_t c = 0; c < s_.channels; ++c) {
        const uint8_t v = mol_->find(stack.peek(m), iv);
        stack.pop(iv.start, iv.freq, m);
        x[c * plane_ + p] = v;
        if (c + 1 < s_.channels) mol_->next(v);
      }
    }
  }

 private:
  const CodecSettings& s_;
  int64_t plane_;
  std::vector<Interval> intervals_;
  std::unique_ptr<MolPixelCode> mol_;
};

/// What both directions derive from the settings: sizes, precisions, the latent buckets.
struct Geometry {
  explicit Geometry(const CodecSettings& s)
      : d(s.latent_dims),
        image(s.image_symbols()),
        params_per_image(s.param_channels() * s.height * s.width),
        mq(s.posterior_precision),
        mz(s.latent_precision),
        buckets(s.latent_precision) {}
  int64_t d, image, params_per_image;
  int mq, mz;
  GaussianBuckets buckets;
};

struct Buffers {
  Buffers(const CodecSettings& s, int64_t lanes)
      : mean(static_cast<size_t>(lanes * s.latent_dims)),
        log_var(mean.size()),
        z(mean.size()),
        index(mean.size()),
        params(static_cast<size_t>(lanes * s.param_channels() * s.height * s.width)) {}
  std::vector<float> mean, log_var, z;
  std::vector<uint32_t> index;
  std::vector<float> params;
};

}  // namespace

std::vector<LaneStream> bbans_encode(const CodecSettings& settings, CodingModel& model,
                                     const uint8_t* symbols, int64_t count, uint64_t seed,
                                     CodingStats* stats) {
  settings.check();
  const int64_t lanes = std::min(settings.lanes, count);
  const Geometry g(settings);
  const int64_t d = g.d, image = g.image, params_per_image = g.params_per_image;
  const int mq = g.mq, mz = g.mz;
  const GaussianBuckets& buckets = g.buckets;
  std::vector<RandomWords> random;
  random.reserve(static_cast<size_t>(lanes));
  std::vector<RansStack> stacks;
  stacks.reserve(static_cast<size_t>(lanes));
  for (int64_t b = 0; b < lanes; ++b) {
    random.emplace_back(lane_seed(seed, b));
    stacks.emplace_back(random.back().next(), &random.back());
  }
  Buffers buf(settings, lanes);
  ImageCoder coder(settings);
  CodingStats local;
  for (int64_t first = 0; first < count; first += lanes) {
    const int64_t n = std::min(lanes, count - first);
    model.posterior(symbols + first * image, n, buf.mean.data(), buf.log_var.data());
    // Pop z ~ q(z|x) from each chain: the bits got back.
    for (int64_t b = 0; b < n; ++b) {
      RansStack& stack = stacks[static_cast<size_t>(b)];
      for (int64_t j = 0; j < d; ++j) {
        const auto at = static_cast<size_t>(b * d + j);
        const GaussianPosteriorCode q(buckets, mq, buf.mean[at], buf.log_var[at]);
        Interval iv;
        const uint32_t k = q.find(stack.peek(mq), iv);
        stack.pop(iv.start, iv.freq, mq);
        buf.index[at] = k;
        buf.z[at] = buckets.centre(k);
        local.posterior_bits += bits_of(iv.freq, mq);
      }
    }
    model.likelihood_params(buf.z.data(), n, buf.params.data());
    // Push x under p(x|z), then z under the prior (uniform over the buckets).
    for (int64_t b = 0; b < n; ++b) {
      RansStack& stack = stacks[static_cast<size_t>(b)];
      coder.push(stack, symbols + (first + b) * image, buf.params.data() + b * params_per_image,
                 &local.likelihood_bits);
      for (int64_t j = d; j-- > 0;) stack.push_bits(buf.index[static_cast<size_t>(b * d + j)], mz);
      local.prior_bits += static_cast<double>(d * mz);
    }
  }
  std::vector<LaneStream> out(static_cast<size_t>(lanes));
  for (int64_t b = 0; b < lanes; ++b) {
    auto& lane = out[static_cast<size_t>(b)];
    lane.state = stacks[static_cast<size_t>(b)].state();
    lane.words = std::move(stacks[static_cast<size_t>(b)].words());
    lane.borrowed_words = random[static_cast<size_t>(b)].drawn();
    local.initial_bits += 32.0 * static_cast<double>(lane.borrowed_words);
  }
  if (stats != nullptr) *stats = local;
  return out;
}

void bbans_decode(const CodecSettings& settings, CodingModel& model,
                  const std::vector<LaneStream>& lanes_in, int64_t count, uint64_t seed,
                  uint8_t* symbols) {
  settings.check();
  const int64_t lanes = std::min(settings.lanes, count);
  if (static_cast<int64_t>(lanes_in.size()) != lanes) {
    throw Error("the file holds " + std::to_string(lanes_in.size()) + " chains where " +
                std::to_string(lanes) + " are needed");
  }
  const Geometry g(settings);
  const int64_t d = g.d, image = g.image, params_per_image = g.params_per_image;
  const int mq = g.mq, mz = g.mz;
  const GaussianBuckets& buckets = g.buckets;
  std::vector<RansStack> stacks;
  stacks.reserve(static_cast<size_t>(lanes));
  for (const LaneStream& lane : lanes_in) {
    if (lane.state < RansStack::kLow) throw Error("a chain's state is below 2^32");
    stacks.emplace_back(lane.state, lane.words);
  }
  Buffers buf(settings, lanes);
  ImageCoder coder(settings);
  const int64_t steps = (count + lanes - 1) / lanes;
  for (int64_t t = steps; t-- > 0;) {
    const int64_t first = t * lanes;
    const int64_t n = std::min(lanes, count - first);
    for (int64_t b = 0; b < n; ++b) {
      RansStack& stack = stacks[static_cast<size_t>(b)];
      try {
        for (int64_t j = 0; j < d; ++j) {
          const auto at = static_cast<size_t>(b * d + j);
          buf.index[at] = stack.pop_bits(mz);
          buf.z[at] = buckets.centre(buf.index[at]);
        }
      } catch (const Error& e) {
        throw ChainError(b, "chain " + std::to_string(b) + ", image " + std::to_string(first + b) + ": " + e.what());
      }
    }
    model.likelihood_params(buf.z.data(), n, buf.params.data());
    for (int64_t b = 0; b < n; ++b) {
      try {
        coder.pop(stacks[static_cast<size_t>(b)], buf.params.data() + b * params_per_image,
                  symbols + (first + b) * image);
      } catch (const Error& e) {
        throw ChainError(b, "chain " + std::to_string(b) + ", image " + std::to_string(first + b) + ": " + e.what());
      }
    }
    model.posterior(symbols + first * image, n, buf.mean.data(), buf.log_var.data());
    for (int64_t b = 0; b < n; ++b) {
      RansStack& stack = stacks[static_cast<size_t>(b)];
      for (int64_t j = d; j-- > 0;) {
        const auto at = static_cast<size_t>(b * d + j);
        const GaussianPosteriorCode q(buckets, mq, buf.mean[at], buf.log_var[at]);
        const Interval iv = q.interval(buf.index[at]);
        stack.push(iv.start, iv.freq, mq);
      }
    }
  }
  // Each chain must be back at its start: its initial state and the words it borrowed.
  for (int64_t b = 0; b < lanes; ++b) {
    const RansStack& stack = stacks[static_cast<size_t>(b)];
    const LaneStream& lane = lanes_in[static_cast<size_t>(b)];
    RandomWords random(lane_seed(seed, b));
    bool ok = stack.state() == (RansStack::kLow | random.next()) && lane.borrowed_words >= 1 &&
              stack.words().size() == lane.borrowed_words - 1;
    for (size_t i = stack.words().size(); ok && i-- > 0;) ok = stack.words()[i] == random.next();
    if (!ok) {
      throw ChainError(b, "chain " + std::to_string(b) +
                  " does not decode back to its initial state: the data is corrupt or was coded "
                  "with other probabilities");
    }
  }
}

}  // namespace vaelab::compress
