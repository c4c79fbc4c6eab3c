#include "cifar10_source.hpp"

#include <filesystem>
#include <limits>
#include <system_error>
#include <utility>

#include <vaelab/error.hpp>
#include <vaelab/plugin.hpp>

#include "cifar10_batch.hpp"

namespace vaelab::plugins::cifar10 {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxPadPixels = 1 << 16;

const char* const kWhereToGetIt =
    "vaelab does not ship CIFAR-10: download the binary version (cifar-10-binary.tar.gz) from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, unpack it, and set the data source's `folder` "
    "to its cifar-10-batches-bin folder";

std::string required_string(const ConfigTable& config, std::string_view key) {
  std::string value = config.get_string(key);
  if (value.empty()) throw ConfigError(config.key_path(key) + ": must not be empty");
  return value;
}

std::vector<std::string> file_list(const ConfigTable& config, std::string_view key) {
  std::vector<std::string> files = config.get_string_array(key);
  if (files.empty()) throw ConfigError(config.key_path(key) + ": must name at least one file");
  for (size_t i = 0; i < files.size(); ++i) {
    if (files[i].empty()) {
      throw ConfigError(config.key_path(key) + "[" + std::to_string(i) + "]: must not be empty");
    }
  }
  return files;
}

std::string join(const std::vector<std::string>& words) {
  std::string text;
  for (const std::string& word : words) text += (text.empty() ? "" : ", ") + word;
  return text;
}

}  // namespace

Cifar10Source::Cifar10Source(const ConfigTable& config)
    : folder_(required_string(config, "folder")),
      train_files_(file_list(config, "train_files")),
      test_files_(file_list(config, "test_files")),
      class_names_file_(config.get_string("class_names_file")),
      name_(required_string(config, "name")),
      pad_to_(config.get_int_in("pad_to", 0, kMaxPadPixels)),
      max_bytes_(static_cast<uint64_t>(
          config.get_int_in("max_bytes", 1, std::numeric_limits<int64_t>::max()))) {
  if (pad_to_ > 0 && pad_to_ < kSide) {
    throw ConfigError(config.key_path("pad_to") + ": " + std::to_string(pad_to_) +
                      " is smaller than CIFAR-10's 32x32 images (0 = no padding)");
  }
}

std::string Cifar10Source::resolve(const std::string& file) const {
  return (fs::path(folder_) / file).string();
}

ImageSet Cifar10Source::read_split(const std::vector<std::string>& files, const char* split,
                                   std::vector<SourceFile>& provenance) const {
  ImageSet set;
  set.channels = kChannels;
  set.height = kSide;
  set.width = kSide;
  for (const std::string& file : files) {
    const std::string path = resolve(file);
    std::error_code error;
    if (!fs::exists(path, error)) {
      throw Error(path + ": " + split + " batch file not found in " + folder_ + " (" +
                  kWhereToGetIt + ")");
    }
    Cifar10Batch batch = read_cifar10_batch(path, max_bytes_);
    set.count += batch.count;
    set.pixels.insert(set.pixels.end(), batch.pixels.begin(), batch.pixels.end());
    set.labels.insert(set.labels.end(), batch.labels.begin(), batch.labels.end());
    provenance.push_back(SourceFile{path, batch.size_bytes, batch.crc32});
  }
  return set;
}

Dataset Cifar10Source::open() {
  std::error_code error;
  if (!fs::is_directory(folder_, error)) {
    throw Error(folder_ + ": " +
                (fs::exists(folder_, error) ? "is not a folder" : "folder not found") + "; " +
                kWhereToGetIt);
  }

  Dataset dataset;
  dataset.name = name_;
  dataset.num_classes = kClasses;
  dataset.train = read_split(train_files_, "train", dataset.files);
  dataset.test = read_split(test_files_, "test", dataset.files);

  std::string classes;
  if (!class_names_file_.empty()) {
    const std::string path = resolve(class_names_file_);
    if (fs::exists(path, error)) {
      classes = ": " + join(read_class_names(path));
    } else {
      sdk::log().debug("{}: no class names ({} not found)", name_, path);
    }
  }

  if (pad_to_ > 0) {
    pad_images(dataset.train, pad_to_, pad_to_);
    pad_images(dataset.test, pad_to_, pad_to_);
  }

  sdk::log().info("{}: {} train and {} test RGB images of 32x32 pixels{}, 10 classes{}, from {}",
                  name_, dataset.train.count, dataset.test.count,
                  pad_to_ > 0
                      ? " padded to " + std::to_string(pad_to_) + "x" + std::to_string(pad_to_)
                      : std::string(),
                  classes, folder_);
  return dataset;
}

}  // namespace vaelab::plugins::cifar10
