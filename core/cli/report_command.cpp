// `vaelab report DIR [--json]`.

#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include <vaelab/study/report.hpp>

#include "commands.hpp"

namespace fs = std::filesystem;

namespace vaelab::cli {

int report_command(const std::string& study_dir, bool json) {
  if (json) {
    std::cout << report_json(study_dir).dump(2) << "\n";
    return 0;
  }
  const fs::path md = write_report(study_dir);
  std::printf("report: %s\n        %s\n", md.string().c_str(),
              (md.parent_path() / "report.html").string().c_str());
  return 0;
}

}  // namespace vaelab::cli
