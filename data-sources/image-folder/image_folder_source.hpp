#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/data_source.hpp>

namespace vaelab::plugins::image_folder {

/// The `image-folder` data source: PNG and JPEG files in a folder per class (labels are the
/// positions of the class names in sorted order), split into train and test by `train/` and
/// `test/` folders or by a seeded held-out fraction of each class. Images are decoded to 1 or 3
/// channels and resized, padded or required to be height×width.
class ImageFolderSource final : public vaelab::DataSource {
 public:
  /// How images are brought to height×width.
  enum class Fit { resize, pad, none };

  /// Reads and checks the keys of defaults.toml; opens no file (that is open()'s job).
  /// Throws vaelab::ConfigError naming the key.
  explicit ImageFolderSource(const vaelab::ConfigTable& config);

  /// Lists the folders and decodes every image. Throws vaelab::Error naming the folder or file at
  /// fault: a missing or unreadable folder, an empty class folder, a split with no images, a
  /// test class without a train folder, an image that does not decode or does not fit.
  vaelab::Dataset open() override;

 private:
  std::string root_;
  bool split_by_folders_ = true;  ///< split = "folders"; false: split = "fraction"
  double test_fraction_ = 0;
  uint64_t split_seed_ = 0;
  int64_t channels_ = 0;
  int64_t height_ = 0;
  int64_t width_ = 0;
  Fit fit_ = Fit::resize;
  std::vector<std::string> extensions_;  ///< lower case, without the dot
  std::string name_;
  int64_t max_image_pixels_ = 0;
  uint64_t max_bytes_ = 0;
};

}  // namespace vaelab::plugins::image_folder
