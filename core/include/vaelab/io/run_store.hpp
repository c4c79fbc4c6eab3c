#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace vaelab {

/// Writes `content` to a temporary file beside `file`, flushes it to disk and renames it into
/// place: readers see the old file or the new one, never half of one.
/// On any failure the temporary file is removed and `file` is left as it was.
void write_file_atomic(const std::filesystem::path& file, const std::string& content);

/// Throws the vaelab::Error write_file_atomic(file, ...) would throw if its temporary file cannot
/// be made (an unwritable or read-only folder), and changes nothing.
void check_writable(const std::filesystem::path& file);

/// A run directory (docs/architecture.md, "The run folder"): config.toml (resolved), metrics.jsonl (one JSON object per
/// evaluation), summary.json, checkpoints/ and the run's log. This is where a run's numbers are
/// written.
class RunStore {
 public:
  /// Creates `dir` for a new run. Refuses a folder that already holds a run (a config.toml or a
  /// metrics.jsonl), so nothing already written is lost.
  static RunStore create(const std::filesystem::path& dir);
  /// Opens an existing run for reading (vaelab eval). Throws vaelab::Error if it is not one.
  static RunStore open(const std::filesystem::path& dir);
  /// Reopens a stopped run to continue it (vaelab train --resume): checks that its checkpoint can
  /// be rewritten, then replaces metrics.jsonl (atomically) by `records` (a JSON array: the
  /// records up to the checkpoint) and appends from there.
  static RunStore resume(const std::filesystem::path& dir, const nlohmann::json& records);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path config_path() const { return dir_ / "config.toml"; }
  std::filesystem::path metrics_path() const { return dir_ / "metrics.jsonl"; }
  std::filesystem::path summary_path() const { return dir_ / "summary.json"; }
  std::filesystem::path log_path() const { return dir_ / "train.log"; }
  std::filesystem::path checkpoint_path(const std::string& name) const {
    return dir_ / "checkpoints" / (name + ".safetensors");
  }

  void write_config(const std::string& toml_text) const;
  /// Appends one line to metrics.jsonl and flushes it.
  void append_metrics(const nlohmann::json& record);
  void write_summary(const nlohmann::json& summary) const;

 private:
  explicit RunStore(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;
  std::ofstream metrics_;
};

}  // namespace vaelab
