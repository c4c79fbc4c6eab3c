#pragma once
// The report's plots: one CSV of the numbers and one gnuplot script per plot in DIR/plots/, each
// script runnable there (`gnuplot NAME.gp` writes NAME.png with the png terminal of gnuplot-nox).

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "report_model.hpp"

namespace vaelab::report {

struct Plot {
  std::string name;     ///< file stem: NAME.gp, NAME.csv, NAME.png
  std::string caption;  ///< what the plot shows
  std::string csv;      ///< the data, a header line first
  std::string script;   ///< the gnuplot commands after the common preamble (terminal, output, CSV)
};

/// The plots of a study, in report order; a plot whose data is empty is not made.
std::optional<Plot> gap_plot(const Analysis& an);
std::optional<Plot> elbo_curve_plot(const Analysis& an);
std::optional<Plot> sweep_plot(const Analysis& an, const AxisSweep& sweep,
                               const std::vector<std::string>& axes);
std::optional<Plot> path_plot(const Analysis& an, const std::string& path);
std::optional<Plot> k_plot(const Analysis& an, const AxisSweep& k);

/// What became of one plot.
struct PlotOutcome {
  std::string name;
  std::filesystem::path png;  ///< set when gnuplot wrote it
  std::string problem;  ///< why no PNG: gnuplot's exit status, or "" when it worked or was not run
};

/// `program` (no slash) looked up on PATH: the first executable file of that name.
std::optional<std::filesystem::path> find_on_path(const std::string& program);

/// Writes each plot's NAME.gp and NAME.csv into `dir` (created), removes a stale NAME.png, and
/// runs `gnuplot` on each script when given. Throws vaelab::Error when a file cannot be written.
std::vector<PlotOutcome> render_plots(const std::vector<Plot>& plots,
                                      const std::filesystem::path& dir,
                                      const std::optional<std::filesystem::path>& gnuplot);

}  // namespace vaelab::report
