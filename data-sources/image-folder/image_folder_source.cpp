#include "image_folder_source.hpp"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <random>
#include <system_error>
#include <tuple>
#include <utility>

#include <vaelab/error.hpp>
#include <vaelab/io/binary_file.hpp>
#include <vaelab/plugin.hpp>

#include "image_decoder.hpp"

namespace vaelab::plugins::image_folder {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxSide = 1 << 16;

/// An image file and its label (-1 when the folder has no class folders).
struct ImageFile {
  fs::path path;
  std::string relative;  ///< to the split's folder, for provenance
  int64_t label = -1;
};

/// What a split's folder holds.
struct Listing {
  fs::path folder;
  std::vector<std::string> classes;  ///< sorted; empty when the images are unlabelled
  std::vector<ImageFile> files;      ///< by class, then by path
  int64_t skipped = 0;               ///< files that are not images by their extension
  std::string skipped_example;
};

std::string required_string(const ConfigTable& config, std::string_view key) {
  std::string value = config.get_string(key);
  if (value.empty()) throw ConfigError(config.key_path(key) + ": must not be empty");
  return value;
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::vector<std::string> extension_list(const ConfigTable& config) {
  std::vector<std::string> list = config.get_string_array("extensions");
  if (list.empty()) throw ConfigError(config.key_path("extensions") + ": must name at least one");
  for (std::string& extension : list) {
    if (!extension.empty() && extension.front() == '.') extension.erase(0, 1);
    if (extension.empty()) {
      throw ConfigError(config.key_path("extensions") + ": an extension must not be empty");
    }
    extension = lower(extension);
  }
  return list;
}

std::string extension_words(const std::vector<std::string>& extensions) {
  std::string text;
  for (const std::string& e : extensions) text += (text.empty() ? "." : ", .") + e;
  return text;
}

bool hidden(const fs::path& path) {
  const std::string name = path.filename().string();
  return !name.empty() && name.front() == '.';
}

/// The entries of a folder, sorted by name, hidden ones left out.
std::vector<fs::directory_entry> entries_of(const fs::path& folder) {
  std::error_code error;
  fs::directory_iterator it(folder, error);
  if (error) throw Error(folder.string() + ": cannot read folder: " + error.message());
  std::vector<fs::directory_entry> entries;
  for (; it != fs::directory_iterator(); it.increment(error)) {
    if (error) throw Error(folder.string() + ": cannot read folder: " + error.message());
    if (!hidden(it->path())) entries.push_back(*it);
  }
  if (error) throw Error(folder.string() + ": cannot read folder: " + error.message());
  std::sort(entries.begin(), entries.end(),
            [](const fs::directory_entry& a, const fs::directory_entry& b) {
              return a.path().filename().string() < b.path().filename().string();
            });
  return entries;
}

class Lister {
 public:
  explicit Lister(const std::vector<std::string>& extensions) : extensions_(extensions) {}

  /// A split's folder: class folders of images, or images and no folders (unlabelled).
  Listing list(const fs::path& folder) const {
    Listing listing;
    listing.folder = folder;
    std::vector<fs::path> class_folders;
    std::vector<fs::path> loose;
    for (const fs::directory_entry& entry : entries_of(folder)) {
      std::error_code error;
      if (entry.is_directory(error)) {
        class_folders.push_back(entry.path());
      } else if (is_image(entry.path())) {
        loose.push_back(entry.path());
      } else {
        note_skipped(listing, entry.path());
      }
    }
    if (!class_folders.empty() && !loose.empty()) {
      throw Error(loose.front().string() + ": an image directly in " + folder.string() +
                  ", which also holds class folders (" + class_folders.front().filename().string() +
                  ", ...); move it into its class folder");
    }
    if (class_folders.empty()) {
      if (loose.empty()) {
        throw Error(folder.string() + ": holds no images (" + extension_words(extensions_) +
                    ") and no class folders");
      }
      for (const fs::path& path : loose) {
        listing.files.push_back(ImageFile{path, path.filename().string(), -1});
      }
      return listing;
    }
    for (const fs::path& class_folder : class_folders) {
      const auto label = static_cast<int64_t>(listing.classes.size());
      listing.classes.push_back(class_folder.filename().string());
      const size_t before = listing.files.size();
      collect(class_folder, class_folder.filename().string(), label, listing);
      if (listing.files.size() == before) {
        throw Error(class_folder.string() + ": class folder holds no images (" +
                    extension_words(extensions_) + ")");
      }
    }
    return listing;
  }

 private:
  bool is_image(const fs::path& path) const {
    std::string extension = path.extension().string();
    if (extension.empty()) return false;
    extension = lower(extension.substr(1));
    return std::find(extensions_.begin(), extensions_.end(), extension) != extensions_.end();
  }

  static void note_skipped(Listing& listing, const fs::path& path) {
    if (listing.skipped++ == 0) listing.skipped_example = path.string();
  }

  /// Every image under `folder`, depth first, each level in name order.
  void collect(const fs::path& folder, const std::string& relative, int64_t label,
               Listing& listing) const {
    for (const fs::directory_entry& entry : entries_of(folder)) {
      std::error_code error;
      const std::string name = relative + "/" + entry.path().filename().string();
      if (entry.is_directory(error)) {
        collect(entry.path(), name, label, listing);
      } else if (is_image(entry.path())) {
        listing.files.push_back(ImageFile{entry.path(), name, label});
      } else {
        note_skipped(listing, entry.path());
      }
    }
  }

  const std::vector<std::string>& extensions_;
};

/// Splits `all` per class (or as a whole when unlabelled): round(fraction × n) images of each
/// group, chosen by a generator seeded with `seed`, go to test, but at least one stays in train.
/// Both parts keep the listing's order.
std::pair<std::vector<ImageFile>, std::vector<ImageFile>> split_by_fraction(
    const std::vector<ImageFile>& all, double fraction, uint64_t seed) {
  std::vector<ImageFile> train;
  std::vector<ImageFile> test;
  std::mt19937_64 rng(seed);
  size_t begin = 0;
  while (begin < all.size()) {
    size_t end = begin;
    while (end < all.size() && all[end].label == all[begin].label) ++end;
    const auto n = static_cast<int64_t>(end - begin);
    const int64_t held = std::min<int64_t>(std::llround(fraction * static_cast<double>(n)), n - 1);
    // A fixed algorithm (a Fisher-Yates shuffle), not std::shuffle, whose result differs between
    // standard libraries.
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
    for (int64_t i = n - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
      std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
    }
    std::vector<bool> to_test(static_cast<size_t>(n), false);
    for (int64_t k = 0; k < held; ++k)
      to_test[static_cast<size_t>(order[static_cast<size_t>(k)])] = true;
    for (int64_t i = 0; i < n; ++i) {
      (to_test[static_cast<size_t>(i)] ? test : train)
          .push_back(all[begin + static_cast<size_t>(i)]);
    }
    begin = end;
  }
  return {std::move(train), std::move(test)};
}

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

/// "a, b, c", or the first `limit` words and how many more.
std::string join(const std::vector<std::string>& words, size_t limit = 20) {
  std::string text;
  for (size_t i = 0; i < words.size() && i < limit; ++i) text += (i == 0 ? "" : ", ") + words[i];
  if (words.size() > limit) text += " and " + std::to_string(words.size() - limit) + " more";
  return text;
}

}  // namespace

ImageFolderSource::ImageFolderSource(const ConfigTable& config)
    : root_(required_string(config, "root")),
      split_by_folders_(config.get_choice("split", {"folders", "fraction"}) == "folders"),
      test_fraction_(config.get_double("test_fraction")),
      split_seed_(static_cast<uint64_t>(
          config.get_int_in("split_seed", 0, std::numeric_limits<int64_t>::max()))),
      channels_(config.get_int("channels")),
      height_(config.get_int_in("height", 1, kMaxSide)),
      width_(config.get_int_in("width", 1, kMaxSide)),
      extensions_(extension_list(config)),
      name_(required_string(config, "name")),
      max_image_pixels_(
          config.get_int_in("max_image_pixels", 1, std::numeric_limits<int64_t>::max())),
      max_bytes_(static_cast<uint64_t>(
          config.get_int_in("max_bytes", 1, std::numeric_limits<int64_t>::max()))) {
  if (channels_ != 1 && channels_ != 3) {
    throw ConfigError(config.key_path("channels") + ": " + std::to_string(channels_) +
                      " is not 1 (grey) or 3 (RGB)");
  }
  if (!(test_fraction_ > 0.0 && test_fraction_ < 1.0)) {
    throw ConfigError(config.key_path("test_fraction") + ": " + number(test_fraction_) +
                      " is not strictly between 0 and 1");
  }
  const std::string fit = config.get_choice("fit", {"resize", "pad", "none"});
  fit_ = fit == "resize" ? Fit::resize : fit == "pad" ? Fit::pad : Fit::none;
}

Dataset ImageFolderSource::open() {
  const fs::path root(root_);
  std::error_code error;
  if (!fs::is_directory(root, error)) {
    throw Error(root_ + ": " + (fs::exists(root, error) ? "is not a folder" : "folder not found") +
                "; set the data source's `root` to a folder holding train/ and test/, each with a "
                "folder of images per class (split = \"folders\"), or holding the class folders "
                "themselves (split = \"fraction\")");
  }

  const Lister lister(extensions_);
  std::vector<Listing> listings;
  std::vector<std::string> classes;
  std::vector<ImageFile> train_files;
  std::vector<ImageFile> test_files;
  if (split_by_folders_) {
    for (const char* split : {"train", "test"}) {
      const fs::path folder = root / split;
      if (!fs::is_directory(folder, error)) {
        throw Error(folder.string() +
                    ": folder not found; split = \"folders\" reads train/ and "
                    "test/ under root (split = \"fraction\" holds out test images instead)");
      }
      listings.push_back(lister.list(folder));
    }
    Listing& train = listings[0];
    Listing& test = listings[1];
    if (train.classes.empty() != test.classes.empty()) {
      const Listing& flat = train.classes.empty() ? train : test;
      throw Error(flat.folder.string() + ": holds images but no class folders, while " +
                  (train.classes.empty() ? test : train).folder.string() +
                  " holds class folders; both splits must be labelled or neither");
    }
    classes = train.classes;
    for (ImageFile& file : test.files) {
      if (file.label < 0) continue;
      const std::string& name = test.classes[static_cast<size_t>(file.label)];
      const auto it = std::find(classes.begin(), classes.end(), name);
      if (it == classes.end()) {
        throw Error((test.folder / name).string() + ": class '" + name + "' has no folder in " +
                    train.folder.string() + " (train classes: " + join(classes) + ")");
      }
      file.label = it - classes.begin();
    }
    train_files = train.files;
    test_files = test.files;
  } else {
    listings.push_back(lister.list(root));
    classes = listings[0].classes;
    std::tie(train_files, test_files) =
        split_by_fraction(listings[0].files, test_fraction_, split_seed_);
    if (test_files.empty()) {
      throw Error(root_ + ": test_fraction = " + number(test_fraction_) + " of " +
                  std::to_string(listings[0].files.size()) +
                  " images holds out no test image; raise it or add images");
    }
  }
  for (const Listing& listing : listings) {
    if (listing.skipped > 0) {
      sdk::log().warn("{}: skipped {} file(s) that are not {}, e.g. {}", listing.folder.string(),
                      listing.skipped, extension_words(extensions_), listing.skipped_example);
    }
  }

  const uint64_t image_bytes = static_cast<uint64_t>(channels_ * height_ * width_);
  const uint64_t total = static_cast<uint64_t>(train_files.size() + test_files.size());
  if (total > max_bytes_ / image_bytes) {
    throw Error(root_ + ": " + std::to_string(total) + " images of " + std::to_string(channels_) +
                "x" + std::to_string(height_) + "x" + std::to_string(width_) + " would take " +
                std::to_string(total * image_bytes) +
                " bytes, more than max_bytes = " + std::to_string(max_bytes_));
  }

  // Provenance: one record per listed folder, its CRC-32 over each image's path (relative to the
  // folder) and bytes, in reading order.
  std::vector<uLong> crcs(listings.size(), crc32(0L, Z_NULL, 0));
  std::vector<uint64_t> sizes(listings.size(), 0);
  const auto decode_split = [&](const std::vector<ImageFile>& files, size_t listing) {
    ImageSet set;
    set.count = static_cast<int64_t>(files.size());
    set.channels = channels_;
    set.height = height_;
    set.width = width_;
    set.pixels.assign(static_cast<size_t>(files.size() * image_bytes), 0);
    set.labels.reserve(files.size());
    for (size_t i = 0; i < files.size(); ++i) {
      const std::string path = files[i].path.string();
      const std::vector<uint8_t> bytes = read_image_file(path);
      uLong& crc = crcs[listing];
      crc = crc32(crc, reinterpret_cast<const Bytef*>(files[i].relative.c_str()),
                  static_cast<uInt>(files[i].relative.size() + 1));
      crc = crc32(crc, bytes.data(), static_cast<uInt>(bytes.size()));
      sizes[listing] += bytes.size();

      DecodedImage image =
          decode_image(path, bytes, static_cast<int>(channels_), max_image_pixels_);
      const std::string size_words =
          std::to_string(image.width) + "x" + std::to_string(image.height);
      const std::string target = std::to_string(width_) + "x" + std::to_string(height_);
      if (fit_ == Fit::resize) {
        image = resize_bilinear(image, width_, height_);
      } else if (fit_ == Fit::pad && (image.width > width_ || image.height > height_)) {
        throw Error(path + ": image is " + size_words + " pixels (width x height), larger than " +
                    target + "; fit = \"pad\" only adds borders (fit = \"resize\" scales)");
      } else if (fit_ == Fit::none && (image.width != width_ || image.height != height_)) {
        throw Error(path + ": image is " + size_words + " pixels (width x height), not " + target +
                    " as fit = \"none\" requires (fit = \"resize\" scales, \"pad\" adds borders)");
      }
      place_centred(image, width_, height_, set.pixels.data() + i * image_bytes);
      set.labels.push_back(files[i].label);
    }
    return set;
  };

  Dataset dataset;
  dataset.name = name_;
  dataset.num_classes = static_cast<int64_t>(classes.size());
  dataset.train = decode_split(train_files, 0);
  dataset.test = decode_split(test_files, split_by_folders_ ? 1 : 0);
  for (size_t i = 0; i < listings.size(); ++i) {
    dataset.files.push_back(SourceFile{listings[i].folder.string(), sizes[i], crc32_hex(crcs[i])});
  }

  const char* const fit_words = fit_ == Fit::resize ? "resized" : fit_ == Fit::pad ? "padded" : "";
  sdk::log().info(
      "{}: {} train and {} test images as {} channel(s) of {}x{} pixels{}{}, {}, from {}", name_,
      dataset.train.count, dataset.test.count, channels_, width_, height_,
      *fit_words != '\0' ? " " : "", fit_words,
      classes.empty() ? std::string("unlabelled")
                      : std::to_string(classes.size()) + " classes (" + join(classes) + ")",
      root_);
  return dataset;
}

}  // namespace vaelab::plugins::image_folder
