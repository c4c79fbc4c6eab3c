#include "idx_source.hpp"

#include <limits>
#include <utility>

#include <vaelab/error.hpp>
#include <vaelab/plugin.hpp>

#include "idx_reader.hpp"

namespace vaelab::plugins {
namespace {

// Labels are stored as unsigned bytes, so more classes than this could never be used.
constexpr int64_t kMaxClasses = 256;
constexpr int64_t kMaxPadPixels = 1 << 16;
// Offsets of the dimension fields in an IDX header.
constexpr uint64_t kDimCountOffset = 3;
constexpr uint64_t kFirstDimOffset = 4;

std::string required_string(const ConfigTable& config, std::string_view key) {
  std::string value = config.get_string(key);
  if (value.empty()) throw ConfigError(config.key_path(key) + ": must not be empty");
  return value;
}

}  // namespace

IdxSource::IdxSource(const ConfigTable& config)
    : train_images_(required_string(config, "train_images")),
      train_labels_(required_string(config, "train_labels")),
      test_images_(required_string(config, "test_images")),
      test_labels_(required_string(config, "test_labels")),
      name_(required_string(config, "name")),
      num_classes_(config.get_int_in("num_classes", 1, kMaxClasses)),
      pad_to_(config.get_int_in("pad_to", 0, kMaxPadPixels)),
      max_bytes_(static_cast<uint64_t>(
          config.get_int_in("max_bytes", 1, std::numeric_limits<int64_t>::max()))) {}

ImageSet IdxSource::read_split(const std::string& images_path, const std::string& labels_path,
                               const char* split) const {
  IdxArray images = read_idx(images_path, max_bytes_, "image");
  if (images.dims.size() != 3) {
    fail_at(images_path, kDimCountOffset,
         std::string(split) + " images must have 3 dimensions (count x height x width), found " +
             std::to_string(images.dims.size()) + " (" + join_dims(images.dims) + ")");
  }
  const IdxArray labels = read_idx(labels_path, max_bytes_, "label");
  if (labels.dims.size() != 1) {
    fail_at(labels_path, kDimCountOffset,
         std::string(split) + " labels must have 1 dimension (count), found " +
             std::to_string(labels.dims.size()) + " (" + join_dims(labels.dims) + ")");
  }
  if (labels.dims[0] != images.dims[0]) {
    fail_at(labels_path, kFirstDimOffset,
         "holds " + std::to_string(labels.dims[0]) + " " + split + " labels but " + images_path +
             " holds " + std::to_string(images.dims[0]) + " " + split +
             " images; there must be one label per image");
  }

  ImageSet set;
  set.count = images.dims[0];
  set.channels = 1;
  set.height = images.dims[1];
  set.width = images.dims[2];
  set.labels.reserve(labels.data.size());
  for (size_t i = 0; i < labels.data.size(); ++i) {
    const int64_t label = labels.data[i];
    if (label >= num_classes_) {
      fail_at(labels_path, labels.data_offset_bytes() + i,
           "label " + std::to_string(label) + " of " + split + " image " + std::to_string(i) +
               " is not below num_classes = " + std::to_string(num_classes_));
    }
    set.labels.push_back(label);
  }
  set.pixels = std::move(images.data);
  return set;
}

Dataset IdxSource::open() {
  Dataset dataset;
  dataset.name = name_;
  dataset.num_classes = num_classes_;
  dataset.train = read_split(train_images_, train_labels_, "train");
  dataset.test = read_split(test_images_, test_labels_, "test");
  const ImageSet& train = dataset.train;
  const ImageSet& test = dataset.test;
  if (test.height != train.height || test.width != train.width) {
    // Byte 8 is the height field of an idx3 header.
    fail_at(test_images_, kFirstDimOffset + 4,
         "test images are " + std::to_string(test.height) + "x" + std::to_string(test.width) +
             " but the train images in " + train_images_ + " are " +
             std::to_string(train.height) + "x" + std::to_string(train.width));
  }

  for (const std::string* path : {&train_images_, &train_labels_, &test_images_, &test_labels_}) {
    const FileDigest digest = digest_file(*path);
    dataset.files.push_back(SourceFile{*path, digest.size_bytes, digest.crc32});
  }

  const int64_t stored_height = train.height;
  const int64_t stored_width = train.width;
  if (pad_to_ > 0) {
    try {
      pad_images(dataset.train, pad_to_, pad_to_);
      pad_images(dataset.test, pad_to_, pad_to_);
    } catch (const Error& e) {
      throw Error(train_images_ + ": pad_to = " + std::to_string(pad_to_) + ": " + e.what());
    }
  }

  sdk::log().info("{}: {} train and {} test images of {}x{} pixels{}, {} classes, from {} and {}",
                  name_, dataset.train.count, dataset.test.count, stored_height, stored_width,
                  pad_to_ > 0 ? " padded to " + std::to_string(pad_to_) + "x" +
                                    std::to_string(pad_to_)
                              : std::string(),
                  num_classes_, train_images_, test_images_);
  return dataset;
}

}  // namespace vaelab::plugins
