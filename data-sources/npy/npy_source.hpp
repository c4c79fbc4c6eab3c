#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/data_source.hpp>

namespace vaelab::plugins::npy {

/// The `npy` data source: a .npy array of images per split (uint8 pixels or float values, N×H×W,
/// N×C×H×W or N×H×W×C) and optionally a .npy array of integer labels per split.
class NpySource final : public vaelab::DataSource {
 public:
  /// Reads and checks the keys of defaults.toml; opens no file (that is open()'s job).
  /// Throws vaelab::ConfigError naming the key.
  explicit NpySource(const vaelab::ConfigTable& config);

  /// Reads and validates the files of both splits: shapes, dtypes, labels (one per image, none
  /// negative or at or above num_classes), float values (finite; in [0, 1] for float_images =
  /// "8bit"), and train and test images of one kind and shape. Throws vaelab::Error naming the
  /// file and the byte offset at fault.
  vaelab::Dataset open() override;

 private:
  struct Split;
  /// The images of one split; `split` is "train" or "test".
  Split read_images(const std::string& path, const char* split) const;
  /// Fills the labels of `images` from `path`, checked against the image count and num_classes;
  /// returns the file's provenance.
  vaelab::SourceFile read_labels(const std::string& path, Split& images, const char* split) const;

  std::string train_;
  std::string train_labels_;  ///< "" = unlabelled
  std::string test_;
  std::string test_labels_;  ///< "" = unlabelled
  bool channels_last_ = false;
  bool float_to_8bit_ = false;
  int64_t num_classes_ = 0;  ///< 0 = inferred from the labels
  std::string name_;
  int64_t pad_to_ = 0;  ///< pixels; 0 = no padding
  uint64_t max_bytes_ = 0;
};

}  // namespace vaelab::plugins::npy
