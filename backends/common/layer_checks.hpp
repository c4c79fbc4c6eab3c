#pragma once
// Checks of the layer factory's options that every backend makes the same way (header-only, no
// torch): a bad size is refused when the model is built, naming the layer, not at its first use.

#include <string>

#include <vaelab/backend.hpp>
#include <vaelab/error.hpp>

namespace vaelab::backend_checks {

/// Refuses convolution sizes no backend can run; `label` names the layer in the message.
inline void check_conv(const Conv2dOptions& o, const std::string& label, bool transposed) {
  const auto require = [&](bool ok, const std::string& message) {
    if (!ok) throw Error(label + ": " + message);
  };
  require(o.in_channels >= 1 && o.out_channels >= 1,
          "channels must be positive, got in " + std::to_string(o.in_channels) + ", out " +
              std::to_string(o.out_channels));
  require(o.kernel_size >= 1, "kernel_size must be positive, got " + std::to_string(o.kernel_size));
  require(o.stride >= 1, "stride must be positive, got " + std::to_string(o.stride));
  require(o.padding >= 0, "padding must not be negative, got " + std::to_string(o.padding));
  if (transposed) {
    require(o.output_padding >= 0 && o.output_padding < o.stride,
            "output_padding must be in [0, stride), got " + std::to_string(o.output_padding));
  } else {
    require(o.output_padding == 0,
            "output_padding is for transposed convolutions only, got " + std::to_string(o.output_padding));
  }
}

}  // namespace vaelab::backend_checks
