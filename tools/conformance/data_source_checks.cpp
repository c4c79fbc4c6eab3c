// The contract of a DataSource plugin (core/include/vaelab/data_source.hpp). Torch-free.

#include <algorithm>
#include <cctype>
#include <cmath>

#include <vaelab/data_source.hpp>
#include <vaelab/registry.hpp>

#include "conformance.hpp"

namespace vaelab::conformance {
namespace {

std::string shape_of(const ImageSet& s) {
  return std::to_string(s.channels) + "x" + std::to_string(s.height) + "x" + std::to_string(s.width);
}

void check_split_buffers(const ImageSet& s, const std::string& split) {
  require(s.count >= 1, split + " split is empty");
  require(s.channels >= 1 && s.height >= 1 && s.width >= 1, split + " images are " + shape_of(s));
  const auto expected = static_cast<size_t>(s.count * s.image_bytes());
  if (s.continuous()) {
    require(s.pixels.empty(), split + ": both pixels and values are filled");
    require(s.values.size() == expected, split + ": " + std::to_string(s.values.size()) + " values for " +
                                             std::to_string(s.count) + " images of " + shape_of(s));
  } else {
    require(s.pixels.size() == expected, split + ": " + std::to_string(s.pixels.size()) + " bytes for " +
                                             std::to_string(s.count) + " images of " + shape_of(s));
  }
}

void check_split_labels(const ImageSet& s, int64_t num_classes, const std::string& split) {
  require(s.labels.size() == static_cast<size_t>(s.count),
          split + ": " + std::to_string(s.labels.size()) + " labels for " + std::to_string(s.count) + " images");
  for (size_t i = 0; i < s.labels.size(); ++i) {
    const int64_t l = s.labels[i];
    if (num_classes == 0) {
      require(l == -1, split + " label " + std::to_string(i) + " is " + std::to_string(l) +
                           " although num_classes is 0 (unlabelled images have -1)");
    } else {
      require(l >= -1 && l < num_classes, split + " label " + std::to_string(i) + " is " + std::to_string(l) +
                                              ", outside [0, " + std::to_string(num_classes) + ")");
    }
  }
}

void check_split_values(const ImageSet& s, const std::string& split) {
  if (s.continuous()) {
    for (size_t i = 0; i < s.values.size(); ++i) {
      require(std::isfinite(s.values[i]), split + " value " + std::to_string(i) + " is not finite");
    }
    const auto [lo, hi] = std::minmax_element(s.values.begin(), s.values.end());
    require(*lo < *hi, split + ": every value is " + std::to_string(*lo));
  } else {
    const auto [lo, hi] = std::minmax_element(s.pixels.begin(), s.pixels.end());
    require(*lo < *hi, split + ": every pixel is " + std::to_string(*lo) + " (blank images)");
  }
}

bool same_images(const ImageSet& a, const ImageSet& b) {
  return a.count == b.count && a.channels == b.channels && a.height == b.height && a.width == b.width &&
         a.pixels == b.pixels && a.values == b.values && a.labels == b.labels;
}

}  // namespace

void check_data_source(const Context& context, CheckList& checks) {
  PluginPtr<DataSource> source;
  Dataset data;
  checks.run("data.open", [&] {
    source = context.registry.create<DataSource>(context.record.name, context.config_toml);
    data = source->open();
    return "'" + data.name + "': " + std::to_string(data.train.count) + " train and " +
           std::to_string(data.test.count) + " test images of " + shape_of(data.train) + ", " +
           (data.train.continuous() ? "continuous" : "8-bit") + ", " + std::to_string(data.num_classes) + " classes";
  }, {"create.defaults"});

  checks.run("data.shapes", [&] {
    check_split_buffers(data.train, "train");
    check_split_buffers(data.test, "test");
    require(shape_of(data.train) == shape_of(data.test),
            "train images are " + shape_of(data.train) + ", test images " + shape_of(data.test));
    require(data.train.continuous() == data.test.continuous(), "one split is 8-bit, the other continuous");
    return "both splits " + shape_of(data.train) + ", buffers sized count × C × H × W";
  }, {"data.open"});

  checks.run("data.labels", [&] {
    require(data.num_classes >= 0, "num_classes is " + std::to_string(data.num_classes));
    check_split_labels(data.train, data.num_classes, "train");
    check_split_labels(data.test, data.num_classes, "test");
    return data.num_classes == 0 ? std::string("unlabelled (-1)")
                                 : "every label in [0, " + std::to_string(data.num_classes) + ")";
  }, {"data.shapes"});

  checks.run("data.values", [&] {
    check_split_values(data.train, "train");
    check_split_values(data.test, "test");
    return std::string(data.train.continuous() ? "finite, not constant" : "8-bit, not blank");
  }, {"data.shapes"});

  checks.run("data.provenance", [&] {
    require(!data.name.empty(), "the dataset has no name");
    for (const SourceFile& f : data.files) {
      require(!f.path.empty(), "a source file has no path");
      require(f.crc32.size() == 8 && std::all_of(f.crc32.begin(), f.crc32.end(), [](char c) {
                return std::isxdigit(static_cast<unsigned char>(c)) != 0;
              }),
              f.path + ": crc32 '" + f.crc32 + "' is not 8 hex digits");
    }
    return "'" + data.name + "', " + std::to_string(data.files.size()) + " source files with size and CRC-32";
  }, {"data.open"});

  checks.run("data.deterministic", [&] {
    PluginPtr<DataSource> again = context.registry.create<DataSource>(context.record.name, context.config_toml);
    const Dataset second = again->open();
    require(second.name == data.name && second.num_classes == data.num_classes,
            "a second open() names another dataset");
    require(same_images(second.train, data.train), "a second instance's open() gives other train images or labels");
    require(same_images(second.test, data.test), "a second instance's open() gives other test images or labels");
    return std::string("a second instance opens the same images and labels");
  }, {"data.shapes"});

  checks.run("data.exact_log_likelihood", [&] {
    ImageSet some = data.test;
    const int64_t n = std::min<int64_t>(some.count, 16);
    std::vector<int64_t> first(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) first[static_cast<size_t>(i)] = i;
    keep_images(some, first);
    const std::vector<double> exact = source->exact_log_likelihood(some);
    if (exact.empty()) return std::string("not known (empty), as for a real dataset");
    require(exact.size() == static_cast<size_t>(n),
            std::to_string(exact.size()) + " log-densities for " + std::to_string(n) + " images");
    for (const double v : exact) require(std::isfinite(v), "a log-density is not finite");
    return std::to_string(n) + " finite log-densities";
  }, {"data.shapes"});
}

}  // namespace vaelab::conformance
