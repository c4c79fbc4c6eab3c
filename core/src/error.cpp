#include <vaelab/error.hpp>

namespace vaelab {

// Out-of-line so the type information lives in libvaelab-sdk and is shared by every plugin.
Error::Error(const std::string& message) : std::runtime_error(message) {}
Error::~Error() = default;
ConfigError::~ConfigError() = default;

}  // namespace vaelab
