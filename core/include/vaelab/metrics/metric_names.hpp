#pragma once

#include <string>
#include <vector>

namespace vaelab {

/// Every metric `vaelab eval --metrics` knows: elbo, iwae, amortization, robustness, probe. Each
/// but elbo runs every `eval.<name>.every_epochs` epochs (0 = never during training).
const std::vector<std::string>& metric_names();

/// Checks a list of metric names; throws ConfigError naming an unknown one (with a suggestion).
void check_metric_names(const std::vector<std::string>& names);

}  // namespace vaelab
