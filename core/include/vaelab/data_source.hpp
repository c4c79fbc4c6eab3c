#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <vaelab/plugin_kind.hpp>

namespace vaelab {

/// Images as stored: uint8, N×C×H×W, row-major, plus one integer label per image (-1 if none).
/// A dataset that is not 8-bit (a synthetic world with a known density, e.g. ppca-world) fills
/// `values` instead of `pixels`: continuous images that models see as they are, unscaled.
struct ImageSet {
  int64_t count = 0;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;  ///< count * channels * height * width bytes (8-bit images)
  std::vector<float> values;    ///< count * channels * height * width floats (continuous images)
  std::vector<int64_t> labels;  ///< count entries

  int64_t image_bytes() const { return channels * height * width; }
  /// True for continuous images (`values`), false for 8-bit ones (`pixels`).
  bool continuous() const { return !values.empty(); }
};

/// A file a dataset was read from, so a run records exactly what it trained on.
struct SourceFile {
  std::string path;
  uint64_t bytes = 0;
  std::string crc32;  ///< of the file as stored (compressed if it is), 8 hex digits
};

/// What a DataSource returns: a train and a test split of the same shape.
struct Dataset {
  std::string name;  ///< e.g. "fashion-mnist"
  ImageSet train;
  ImageSet test;
  int64_t num_classes = 0;  ///< 0 when unlabelled
  std::vector<SourceFile> files;
};

/// A dataset plugin (docs/architecture.md, "The interfaces"). Made by the plugin's `create` from its config table.
/// `open` reads and validates its input: a malformed file is a vaelab::Error naming the path and
/// the byte offset, never a crash or an absurd allocation.
class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual Dataset open() = 0;
  /// The exact log-density, in nats, of each image under the true data distribution, for a
  /// source that knows it (a synthetic world); empty when unknown, as for every real dataset.
  virtual std::vector<double> exact_log_likelihood(const ImageSet& images) const {
    (void)images;
    return {};
  }
};

template <>
struct PluginKindOf<DataSource> {
  static constexpr vl_plugin_kind value = VL_PLUGIN_KIND_DATA_SOURCE;
};

/// Zero-pads every image (8-bit or continuous) symmetrically to height×width (e.g. 28→32); the images must not be
/// larger. Throws vaelab::Error when they are.
void pad_images(ImageSet& images, int64_t height, int64_t width);

/// Keeps `count` images chosen without replacement by a generator seeded with `seed`, in their
/// original order. count == 0 or count >= images.count keeps all.
void select_subset(ImageSet& images, int64_t count, uint64_t seed);

/// Keeps the images at the given indices, in that order (labels follow).
void keep_images(ImageSet& images, const std::vector<int64_t>& indices);

/// Removes the images labelled `label` from `images` and returns them (data.holdout_label: a
/// class held out of training, the anomalies of anomaly detection).
ImageSet take_label(ImageSet& images, int64_t label);

}  // namespace vaelab
