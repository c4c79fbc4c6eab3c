#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <vaelab/config.hpp>
#include <vaelab/data_source.hpp>

namespace vaelab::plugins::cifar10 {

/// The `cifar10` data source: CIFAR-10's binary batch files, 32×32 RGB images (3 channels) with
/// labels 0 to 9, optionally zero-padded to pad_to×pad_to.
class Cifar10Source final : public vaelab::DataSource {
 public:
  /// Reads and checks the keys of defaults.toml; opens no file (that is open()'s job).
  /// Throws vaelab::ConfigError naming the key.
  explicit Cifar10Source(const vaelab::ConfigTable& config);

  /// Reads and validates every batch file of both splits (see read_cifar10_batch) and, when it
  /// exists, the class-names file. A missing folder is an error that names it and says where the
  /// data comes from; a bad file is a vaelab::Error naming it and the byte offset at fault.
  vaelab::Dataset open() override;

 private:
  /// The batches of one split, concatenated in order; `split` is "train" or "test".
  vaelab::ImageSet read_split(const std::vector<std::string>& files, const char* split,
                              std::vector<vaelab::SourceFile>& provenance) const;
  /// `file` inside the folder (or as is, when absolute).
  std::string resolve(const std::string& file) const;

  std::string folder_;
  std::vector<std::string> train_files_;
  std::vector<std::string> test_files_;
  std::string class_names_file_;  ///< "" = none
  std::string name_;
  int64_t pad_to_ = 0;  ///< pixels; 0 = no padding
  uint64_t max_bytes_ = 0;
};

}  // namespace vaelab::plugins::cifar10
