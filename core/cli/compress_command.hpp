#pragma once
// `vaelab compress` and `vaelab decompress` (compress_command.cpp).

#include <string>

#include <CLI/CLI.hpp>

#include <vaelab/compress/run_codec.hpp>

namespace vaelab::cli {

struct CompressCommands {
  CLI::App* compress = nullptr;
  CLI::App* decompress = nullptr;
  std::string run_dir;
  compress::CompressOptions options;
  std::string file;
  std::string out;
  bool json = false;
};

/// Adds both subcommands to `app`; `c` (which must outlive the parse) receives their options.
void add_compress_commands(CLI::App& app, CompressCommands& c);
/// Runs the one that was parsed; returns the exit code.
int run_compress_commands(const CompressCommands& commands);

}  // namespace vaelab::cli
