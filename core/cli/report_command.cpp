// Placeholder for `vaelab report DIR [--json]`.
#include "commands.hpp"
namespace vaelab::cli {
int report_command(const std::string& /*study_dir*/, bool /*json*/) { return 1; }
}  // namespace vaelab::cli
