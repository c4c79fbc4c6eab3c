#pragma once
// The `vaelab` subcommands; each returns the process exit code.

#include <string>
#include <vector>

namespace vaelab::cli {

int plugins_list(const std::vector<std::string>& extra_paths, bool json);
int plugins_show(const std::vector<std::string>& extra_paths, const std::string& name);
int bench_threads(const std::string& config_file, const std::vector<std::string>& overrides,
                  int steps, int repeats);

}  // namespace vaelab::cli
