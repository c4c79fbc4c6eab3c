#pragma once
// `vaelab report DIR`: the report of a study, read from DIR/study.sqlite alone (docs/study-database.md).

#include <filesystem>

#include <nlohmann/json_fwd.hpp>

namespace vaelab {

/// The numbers behind every table of the report:
/// {"runs": [{"id", "regime", "axes": {..}, "summary": {summary.json keys}}, ...],
///  "aggregates": [...]}.
nlohmann::json report_json(const std::filesystem::path& study_dir);

/// Writes DIR/report.md, DIR/report.html (self-contained) and DIR/plots/ (gnuplot scripts, their
/// CSV data and, where gnuplot is installed, PNGs). Returns the path of report.md.
std::filesystem::path write_report(const std::filesystem::path& study_dir);

}  // namespace vaelab
