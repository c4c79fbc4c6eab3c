#include "npy_source.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

#include <vaelab/error.hpp>
#include <vaelab/plugin.hpp>

#include "npy_array.hpp"

namespace vaelab::plugins::npy {
namespace {

constexpr int64_t kMaxChannels = 4;
constexpr int64_t kMaxClasses = int64_t{1} << 24;
constexpr int64_t kMaxPadPixels = 1 << 16;

std::string required_string(const ConfigTable& config, std::string_view key) {
  std::string value = config.get_string(key);
  if (value.empty()) throw ConfigError(config.key_path(key) + ": must not be empty");
  return value;
}

std::string shape_words(int64_t channels, int64_t height, int64_t width) {
  return std::to_string(channels) + "x" + std::to_string(height) + "x" + std::to_string(width);
}

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

}  // namespace

/// One split's images with what is needed to point at their file in messages.
struct NpySource::Split {
  std::string path;
  ImageSet set;
  std::string dtype;  ///< e.g. "float32"
  uint64_t descr_offset = 0;
  uint64_t shape_offset = 0;
  SourceFile file;
};

NpySource::NpySource(const ConfigTable& config)
    : train_(required_string(config, "train")),
      train_labels_(config.get_string("train_labels")),
      test_(required_string(config, "test")),
      test_labels_(config.get_string("test_labels")),
      channels_last_(config.get_bool("channels_last")),
      float_to_8bit_(config.get_choice("float_images", {"continuous", "8bit"}) == "8bit"),
      num_classes_(config.get_int_in("num_classes", 0, kMaxClasses)),
      name_(required_string(config, "name")),
      pad_to_(config.get_int_in("pad_to", 0, kMaxPadPixels)),
      max_bytes_(static_cast<uint64_t>(
          config.get_int_in("max_bytes", 1, std::numeric_limits<int64_t>::max()))) {
  if (train_labels_.empty() != test_labels_.empty()) {
    const std::string_view given = train_labels_.empty() ? "test_labels" : "train_labels";
    const std::string_view missing = train_labels_.empty() ? "train_labels" : "test_labels";
    throw ConfigError(config.key_path(missing) + ": empty while " + config.key_path(given) +
                      " names a file; give labels for both splits or for neither");
  }
}

NpySource::Split NpySource::read_images(const std::string& path, const char* split) const {
  Split out;
  out.path = path;
  ImageSet& set = out.set;
  // The header alone decides whether the file can hold images: checked before the data is read.
  const auto check = [&](const NpyHeader& header) {
    const std::vector<int64_t>& shape = header.shape;
    const std::string found = "found " + header.shape_text();
    if (shape.size() != 3 && shape.size() != 4) {
      fail_at(path, header.shape_offset,
              std::string(split) + " images must have shape (N, H, W) or " +
                  (channels_last_ ? "(N, H, W, C) (channels_last = true)"
                                  : "(N, C, H, W) (or (N, H, W, C) with channels_last = true)") +
                  ", " + found);
    }
    if (shape[0] == 0) {
      fail_at(path, header.shape_offset,
              "holds no " + std::string(split) + " images (" + found + ")");
    }
    if (std::find(shape.begin(), shape.end(), 0) != shape.end()) {
      fail_at(path, header.shape_offset,
              std::string(split) + " images have an empty dimension (" + found + ")");
    }
    set.count = shape[0];
    if (shape.size() == 3) {
      set.channels = 1;
      set.height = shape[1];
      set.width = shape[2];
    } else if (channels_last_) {
      set.height = shape[1];
      set.width = shape[2];
      set.channels = shape[3];
    } else {
      set.channels = shape[1];
      set.height = shape[2];
      set.width = shape[3];
    }
    if (set.channels > kMaxChannels) {
      std::string hint;
      if (!channels_last_ && shape[3] <= kMaxChannels) {
        hint = "; the array looks like (N, H, W, C): set channels_last = true";
      } else if (channels_last_ && shape[1] <= kMaxChannels) {
        hint = "; the array looks like (N, C, H, W): set channels_last = false";
      }
      fail_at(path, header.shape_offset,
              std::string(split) + " images would have " + std::to_string(set.channels) +
                  " channels (" + found + "); at most " + std::to_string(kMaxChannels) +
                  " are supported" + hint);
    }
    const NpyDtype& dtype = header.dtype;
    if (!(dtype.kind == 'u' && dtype.item_bytes == 1) && dtype.kind != 'f') {
      fail_at(path, header.descr_offset,
              std::string(split) + " images have dtype " + dtype.name() + " ('" + dtype.descr +
                  "'); images must be uint8, float32 or float64");
    }
  };
  const NpyArray array = read_npy(path, max_bytes_, check);
  const NpyHeader& header = array.header;
  out.dtype = header.dtype.name();
  out.descr_offset = header.descr_offset;
  out.shape_offset = header.shape_offset;
  out.file = SourceFile{path, array.size_bytes, array.crc32};
  const bool bytes = header.dtype.kind == 'u';
  const auto total = static_cast<uint64_t>(header.element_count());
  const auto c_count = static_cast<uint64_t>(set.channels);
  const auto h = static_cast<uint64_t>(set.height);
  const auto w = static_cast<uint64_t>(set.width);
  // Where stored element i goes in N×C×H×W order.
  const auto destination = [&](uint64_t i) -> uint64_t {
    if (!channels_last_ || header.shape.size() == 3) return i;
    const uint64_t c = i % c_count;
    const uint64_t x = (i / c_count) % w;
    const uint64_t y = (i / (c_count * w)) % h;
    const uint64_t n = i / (c_count * w * h);
    return ((n * c_count + c) * h + y) * w + x;
  };
  const auto image_of = [&](uint64_t i) { return std::to_string(i / (c_count * h * w)); };

  if (bytes) {
    set.pixels.resize(static_cast<size_t>(total));
    for (uint64_t i = 0; i < total; ++i) set.pixels[destination(i)] = array.data[i];
    return out;
  }
  if (float_to_8bit_) {
    set.pixels.resize(static_cast<size_t>(total));
  } else {
    set.values.resize(static_cast<size_t>(total));
  }
  for (uint64_t i = 0; i < total; ++i) {
    const double v = array.float_at(i);
    if (!std::isfinite(v)) {
      fail_at(path, array.offset_of(i),
              "element " + std::to_string(i) + " (" + split + " image " + image_of(i) + ") is " +
                  number(v) + "; image values must be finite");
    }
    if (float_to_8bit_) {
      if (v < 0.0 || v > 1.0) {
        fail_at(path, array.offset_of(i),
                "element " + std::to_string(i) + " (" + split + " image " + image_of(i) + ") is " +
                    number(v) +
                    ", outside [0, 1]; float_images = \"8bit\" maps [0, 1] to 0..255 (use "
                    "float_images = \"continuous\" to keep values as they are)");
      }
      set.pixels[destination(i)] = static_cast<uint8_t>(std::lround(v * 255.0));
    } else {
      if (std::fabs(v) > static_cast<double>(FLT_MAX)) {
        fail_at(path, array.offset_of(i),
                "element " + std::to_string(i) + " (" + split + " image " + image_of(i) + ") is " +
                    number(v) + ", beyond the range of float32");
      }
      set.values[destination(i)] = static_cast<float>(v);
    }
  }
  return out;
}

SourceFile NpySource::read_labels(const std::string& path, Split& images, const char* split) const {
  const auto check = [&](const NpyHeader& header) {
    if (!header.dtype.is_integer()) {
      fail_at(path, header.descr_offset,
              std::string(split) + " labels have dtype " + header.dtype.name() + " ('" +
                  header.dtype.descr + "'); labels must be integers (e.g. int64 or uint8)");
    }
    if (header.shape.size() != 1) {
      fail_at(path, header.shape_offset,
              std::string(split) + " labels must have shape (N,), found " + header.shape_text());
    }
    if (header.shape[0] != images.set.count) {
      fail_at(path, header.shape_offset,
              "holds " + std::to_string(header.shape[0]) + " " + split + " labels but " +
                  images.path + " holds " + std::to_string(images.set.count) + " " + split +
                  " images; there must be one label per image");
    }
  };
  const NpyArray array = read_npy(path, max_bytes_, check);
  std::vector<int64_t>& labels = images.set.labels;
  labels.resize(static_cast<size_t>(images.set.count));
  for (uint64_t i = 0; i < labels.size(); ++i) {
    int64_t label = 0;
    const bool fits = array.int_at(i, label);
    if (!fits || label < 0) {
      fail_at(path, array.offset_of(i),
              "label of " + std::string(split) + " image " + std::to_string(i) + " is " +
                  (fits ? std::to_string(label) : std::string("2^63 or more")) +
                  "; labels must be 0 or more");
    }
    if (num_classes_ > 0 && label >= num_classes_) {
      fail_at(path, array.offset_of(i),
              "label " + std::to_string(label) + " of " + split + " image " + std::to_string(i) +
                  " is not below num_classes = " + std::to_string(num_classes_));
    }
    labels[i] = label;
  }
  const auto largest = std::max_element(labels.begin(), labels.end());
  if (num_classes_ == 0 && *largest >= kMaxClasses) {
    fail_at(path, array.offset_of(static_cast<uint64_t>(largest - labels.begin())),
            "label " + std::to_string(*largest) + " would make more than " +
                std::to_string(kMaxClasses) + " classes (num_classes = 0 counts largest + 1)");
  }
  return SourceFile{path, array.size_bytes, array.crc32};
}

Dataset NpySource::open() {
  Split train = read_images(train_, "train");
  Split test = read_images(test_, "test");
  const ImageSet& a = train.set;
  const ImageSet& b = test.set;
  if (a.channels != b.channels || a.height != b.height || a.width != b.width) {
    fail_at(test_, test.shape_offset,
            "test images are " + shape_words(b.channels, b.height, b.width) +
                " (channels x height x width) but the train images in " + train_ + " are " +
                shape_words(a.channels, a.height, a.width));
  }
  if (a.continuous() != b.continuous()) {
    const auto kind = [](const Split& s) {
      return s.dtype + (s.set.continuous() ? " (continuous values)" : " (8-bit pixels)");
    };
    fail_at(test_, test.descr_offset,
            "test images are " + kind(test) + " but the train images in " + train_ + " are " +
                kind(train) +
                "; both splits must be of one kind (float_images = \"8bit\" turns "
                "float images in [0, 1] into 8-bit pixels)");
  }

  Dataset dataset;
  dataset.name = name_;
  dataset.files.push_back(train.file);
  dataset.files.push_back(test.file);
  if (train_labels_.empty()) {
    train.set.labels.assign(static_cast<size_t>(train.set.count), -1);
    test.set.labels.assign(static_cast<size_t>(test.set.count), -1);
    dataset.num_classes = num_classes_;
  } else {
    dataset.files.push_back(read_labels(train_labels_, train, "train"));
    dataset.files.push_back(read_labels(test_labels_, test, "test"));
    if (num_classes_ > 0) {
      dataset.num_classes = num_classes_;
    } else {
      const int64_t largest =
          std::max(*std::max_element(train.set.labels.begin(), train.set.labels.end()),
                   *std::max_element(test.set.labels.begin(), test.set.labels.end()));
      dataset.num_classes = largest + 1;
    }
  }

  const int64_t stored_height = a.height;
  const int64_t stored_width = a.width;
  dataset.train = std::move(train.set);
  dataset.test = std::move(test.set);
  if (pad_to_ > 0) {
    try {
      pad_images(dataset.train, pad_to_, pad_to_);
      pad_images(dataset.test, pad_to_, pad_to_);
    } catch (const Error& e) {
      throw Error(train_ + ": pad_to = " + std::to_string(pad_to_) + ": " + e.what());
    }
  }

  sdk::log().info(
      "{}: {} train and {} test {} images of {} channel(s), {}x{} pixels{}, {}, from {} "
      "and {}",
      name_, dataset.train.count, dataset.test.count,
      dataset.train.continuous() ? "continuous" : "8-bit", dataset.train.channels, stored_height,
      stored_width,
      pad_to_ > 0 ? " padded to " + std::to_string(pad_to_) + "x" + std::to_string(pad_to_)
                  : std::string(),
      dataset.num_classes > 0 ? std::to_string(dataset.num_classes) + " classes"
                              : std::string("unlabelled"),
      train_, test_);
  return dataset;
}

}  // namespace vaelab::plugins::npy
