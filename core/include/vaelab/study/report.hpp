#pragma once
// `vaelab report DIR`: the report of a study, read from DIR/study.sqlite alone
// (docs/study-database.md is its input; docs/report.md describes every section and number).

#include <filesystem>

#include <nlohmann/json_fwd.hpp>

namespace vaelab {

/// The numbers behind every table of the report:
/// {"study": {..}, "runs": [{"id", "regime", "purpose", "axes", "summary", "costs", ..}, ..],
///  "aggregates": [{"regime", "axes" (without the seed), "n", "mean": {key: v}, "std": {key: v},
///  ..}], "gap_table", "curves", "size_axes", "paths", "generators", "downstream", "return_table":
///  [..], "conclusion": "..", "findings": [..]}.
/// Throws vaelab::Error naming DIR/study.sqlite when it is missing, of another schema version or
/// malformed.
nlohmann::json report_json(const std::filesystem::path& study_dir);

/// Writes DIR/report.md, DIR/report.html (self-contained: images as data URIs) and DIR/plots/
/// (per plot a gnuplot script and its CSV data, and the PNG where gnuplot is on PATH). Returns
/// the path of report.md; report.html lies beside it. Throws vaelab::Error as report_json does,
/// or naming a file it cannot write.
std::filesystem::path write_report(const std::filesystem::path& study_dir);

}  // namespace vaelab
