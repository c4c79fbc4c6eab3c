#pragma once

#include <cstdint>
#include <string>

#include <vaelab/config.hpp>
#include <vaelab/data_source.hpp>

namespace vaelab::plugins {

/// The `idx` data source: MNIST-family IDX files (an image and a label file per split), raw or
/// gzip-compressed. Images are read as one channel and optionally zero-padded to pad_to×pad_to.
class IdxSource final : public vaelab::DataSource {
 public:
  /// Reads and checks the keys of defaults.toml; opens no file (that is open()'s job).
  /// Throws vaelab::ConfigError naming the key.
  explicit IdxSource(const vaelab::ConfigTable& config);

  /// Reads and validates the four files: images N×H×W, labels N, one label per image, every
  /// label below num_classes, train and test images of one size. Throws vaelab::Error naming the
  /// file and the byte offset at fault.
  vaelab::Dataset open() override;

 private:
  /// One split: images and labels checked against each other; `split` is "train" or "test".
  vaelab::ImageSet read_split(const std::string& images_path, const std::string& labels_path,
                              const char* split) const;

  std::string train_images_;
  std::string train_labels_;
  std::string test_images_;
  std::string test_labels_;
  std::string name_;
  int64_t num_classes_ = 0;
  int64_t pad_to_ = 0;  ///< pixels; 0 = no padding
  uint64_t max_bytes_ = 0;
};

}  // namespace vaelab::plugins
