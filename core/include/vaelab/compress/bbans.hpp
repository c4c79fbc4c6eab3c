#pragma once
// Bits-back coding with asymmetric numeral systems (BB-ANS; Townsend, Bird & Barber 2019) of a
// sequence of images under a VAE, chained from image to image. Torch-free: the model is reached
// through CodingModel, so the coder is tested with small stand-in models and fuzzed without
// LibTorch. docs/compression.md describes the algorithm and what makes it exact.

#include <cstdint>
#include <string>
#include <vector>

#include <vaelab/compress/rans.hpp>

namespace vaelab::compress {

/// A chain's stream does not decode: `lane()` says which, so the file layer can name its bytes.
class ChainError : public Error {
 public:
  ChainError(int64_t lane, const std::string& message) : Error(message), lane_(lane) {}
  int64_t lane() const { return lane_; }

 private:
  int64_t lane_;
};

/// What p(x|z) is over the symbols of an image.
enum class LikelihoodKind : uint8_t {
  bernoulli = 1,  ///< one bit per value (binarized images); the decoder outputs logits
  mol = 2,        ///< 8-bit values under a discretized mixture of logistics (likelihood.hpp)
};

/// Everything the coder's arithmetic depends on besides the model; the file header records it.
struct CodecSettings {
  LikelihoodKind likelihood = LikelihoodKind::bernoulli;
  int mixtures = 0;  ///< K for mol, 0 for bernoulli
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t latent_dims = 0;
  int latent_precision = 12;      ///< each latent dimension: 2^this equal-mass prior buckets
  int posterior_precision = 24;   ///< q(z|x) frequencies out of 2^this
  int likelihood_precision = 18;  ///< p(x|z) frequencies out of 2^this
  int64_t lanes = 16;             ///< images coded side by side, one chain each

  int64_t image_symbols() const { return channels * height * width; }
  /// Decoder output channels: C for bernoulli, 3K (C = 1) or 10K (C = 3) for mol.
  int64_t param_channels() const;
  /// Throws vaelab::Error naming the first setting out of range.
  void check() const;
};

/// The VAE as the coder sees it. Both calls must be deterministic functions of their inputs and
/// of the batch size n (the coder calls them with the same batches when coding and decoding).
class CodingModel {
 public:
  virtual ~CodingModel() = default;
  /// q(z|x) of n images given as symbols (n × C×H×W bytes: 0/1 for bernoulli, 0..255 for mol):
  /// writes n × latent_dims means and log-variances.
  virtual void posterior(const uint8_t* symbols, int64_t n, float* mean, float* log_var) = 0;
  /// p(x|z) of n latent codes (n × latent_dims): writes n × param_channels × H × W parameters.
  virtual void likelihood_params(const float* z, int64_t n, float* params) = 0;
};

/// One chain's stack as it ends up in the file.
struct LaneStream {
  uint64_t state = 0;
  std::vector<uint32_t> words;
  uint64_t borrowed_words = 0;  ///< words the chain drew from its initial random stream
};

/// Bits of the coding, summed over images (ideal code lengths of the quantized probabilities).
struct CodingStats {
  double likelihood_bits = 0;  ///< −log2 p(x|z), pushed
  double prior_bits = 0;       ///< −log2 p(z) = latent_precision per dimension, pushed
  double posterior_bits = 0;   ///< −log2 q(z|x), popped (the bits got back)
  double initial_bits = 0;     ///< drawn from the initial random streams (32 per word, plus 32 per chain's initial state)
};

/// The initial random stream of chain `lane`: seeded from the file's seed and the lane.
uint64_t lane_seed(uint64_t seed, int64_t lane);

/// Codes `count` images (count × C×H×W symbols) with BB-ANS. Image i goes to chain i mod lanes;
/// step t codes images [t·lanes, t·lanes + lanes) as one batch of the model.
std::vector<LaneStream> bbans_encode(const CodecSettings& settings, CodingModel& model,
                                     const uint8_t* symbols, int64_t count, uint64_t seed,
                                     CodingStats* stats = nullptr);

/// Decodes what bbans_encode wrote, batch by batch in reverse, into `symbols` (count × C×H×W).
/// Each chain must end exactly where its encoder started (its initial state and the words it
/// borrowed from its random stream), else ChainError: a stream that does not decode to the
/// images it was made from is never returned as images.
void bbans_decode(const CodecSettings& settings, CodingModel& model,
                  const std::vector<LaneStream>& lanes, int64_t count, uint64_t seed,
                  uint8_t* symbols);

}  // namespace vaelab::compress
