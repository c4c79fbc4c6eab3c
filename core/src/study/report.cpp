// `vaelab report DIR`: report.md and report.html from DIR/study.sqlite alone. The numbers come
// from report_analysis.cpp; this file lays them out (docs/report.md describes every section).

#include <vaelab/study/report.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include <vaelab/build_info.h>
#include <vaelab/error.hpp>
#include <vaelab/io/run_store.hpp>

#include "report_document.hpp"
#include "report_model.hpp"
#include "report_plots.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace vaelab {
namespace {

using report::Aggregate;
using report::Analysis;
using report::Document;
using report::fixed;
using report::signed_fixed;
using report::Stat;
using report::StudyRecord;

/// "mean ± std", "mean" with one seed, "—" when missing; "(n=k)" when fewer runs than the
/// aggregate's have the key.
std::string stat_cell(const Stat* s, int digits, int64_t runs) {
  if (s == nullptr) return "—";
  std::string text = fixed(s->mean, digits);
  if (s->std) text += " ± " + fixed(*s->std, digits);
  if (s->n != runs) text += " (n=" + std::to_string(s->n) + ")";
  return text;
}

std::string stat_cell(const std::optional<Stat>& s, int digits, int64_t runs) {
  return stat_cell(s ? &*s : nullptr, digits, runs);
}

std::string opt_cell(const std::optional<double>& v, int digits, bool sign = false) {
  if (!v) return "—";
  return sign ? signed_fixed(*v, digits) : fixed(*v, digits);
}

/// A Δ cell: the value, marked * within the seed spread and † with one seed.
std::string delta_cell(const report::Delta& d, int digits = 2) {
  if (!d.value) return "—";
  std::string text = signed_fixed(*d.value, digits);
  if (d.verdict == report::Delta::Spread::within) text += " *";
  if (d.verdict == report::Delta::Spread::unknown) text += " †";
  return text;
}

std::string duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char text[64];
  std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return text;
}

std::string first_line(const std::string& text, size_t limit) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > limit) line = line.substr(0, limit) + "…";
  return line;
}

/// Markdown link of a file a row names: relative to the study folder when stored that way.
std::string link_of(const std::string& stored, const std::string& file) {
  return (fs::path(stored) / file).generic_string();
}

/// Everything a section needs besides the analysis.
struct Context {
  const StudyRecord& study;
  const Analysis& an;
  std::map<std::string, report::PlotOutcome> plots;  ///< by plot name
  bool gnuplot = false;
  std::vector<std::string> empty_sections;

  void plot(Document& doc, const std::optional<report::Plot>& p) {
    if (!p) return;
    const auto it = plots.find(p->name);
    if (it != plots.end() && !it->second.png.empty()) {
      doc.image(p->caption, it->second.png, "plots/" + p->name + ".png");
    } else if (it != plots.end() && !it->second.problem.empty()) {
      doc.paragraph("Plot `plots/" + p->name + ".png` is missing: " + it->second.problem + ".");
    } else {
      doc.paragraph("Plot: `plots/" + p->name + ".gp` with `plots/" + p->name + ".csv` (" +
                    p->caption + ").");
    }
  }
  /// Says in place why the section is empty, and lists it at the end.
  void empty(Document& doc, const std::string& section, const std::string& why) {
    doc.paragraph("Empty: " + why + ".");
    empty_sections.push_back(section + ": " + why);
  }
};

std::string base_point_text(const StudyRecord& study) {
  std::string text;
  for (const auto& axis : study.axes) {
    if (!study.base_point.contains(axis)) continue;
    text += (text.empty() ? "" : ", ") + std::string("`") + axis +
            "` = " + report::value_text(study.base_point.at(axis));
  }
  return text.empty() ? "(no axis besides the regime and the seed)" : text;
}

std::string axes_text(const StudyRecord& study) {
  std::string text;
  for (const auto& a : study.axes) text += (text.empty() ? "`" : ", `") + a + "`";
  return text.empty() ? "none" : text;
}

void header(Document& doc, Context& cx) {
  const StudyRecord& study = cx.study;
  int64_t counts[5] = {0, 0, 0, 0, 0};  // done, failed, pending, running, other
  double wall = 0, generator_seconds = 0;
  for (const auto& r : study.runs) {
    const int slot = r.status == "done"      ? 0
                     : r.status == "failed"  ? 1
                     : r.status == "pending" ? 2
                     : r.status == "running" ? 3
                                             : 4;
    ++counts[slot];
    if (r.wall_seconds) wall += *r.wall_seconds;
  }
  for (const auto& g : study.generators)
    generator_seconds += g.fit_seconds.value_or(0) + g.sample_seconds.value_or(0);
  doc.heading(1, "Study report: " + study.name);
  std::vector<std::string> lines = {
      "Runs: " + std::to_string(study.runs.size()) + " — " + std::to_string(counts[0]) + " done, " +
          std::to_string(counts[1]) + " failed, " + std::to_string(counts[2]) + " pending" +
          (counts[3] ? ", " + std::to_string(counts[3]) + " running" : "") +
          (counts[4] ? ", " + std::to_string(counts[4]) + " in another state" : ""),
      "Total wall time: " + fixed(wall, 1) + " s (" + duration(wall) + ") of training runs, plus " +
          fixed(generator_seconds, 1) + " s (" + duration(generator_seconds) +
          ") fitting and sampling " + std::to_string(study.generators.size()) + " generator(s)",
      "vaelab version: " +
          (study.vaelab_version.empty() ? std::string("(not recorded)") : study.vaelab_version) +
          " made the database" + (study.created_utc.empty() ? "" : " on " + study.created_utc) +
          "; vaelab " + VAELAB_VERSION + " wrote this report",
      "Axes: " + axes_text(study),
      "Base point: " + base_point_text(study),
  };
  int64_t unpriced = 0;
  for (const auto& r : study.runs) {
    unpriced +=
        r.status == "done" && !r.generator_key && (r.regime == "synthetic" || r.regime == "mixed");
  }
  if (unpriced > 0) {
    lines.push_back(
        std::to_string(unpriced) +
        " finished run(s) of the synthetic or mixed regime name no generator "
        "(a pool given directly): their costs leave out the generator's fit and sampling");
  }
  if (cx.an.duplicate_runs > 0) {
    lines.push_back(
        std::to_string(cx.an.duplicate_runs) +
        " finished run(s) repeat a point and seed already counted (a point on two paths); each "
        "aggregate counts a seed once, its lowest-ordinal run");
  }
  doc.bullets(lines);
  doc.paragraph(
      "Every number is a mean over seeds ± the sample standard deviation (n − 1), with n the "
      "number of "
      "seeds; runs with `purpose = 'main'` and `status = 'done'` only, unless a section says "
      "otherwise. "
      "ELBOs are in nats per image; \"—\" marks a value no run recorded.");
  if (!cx.gnuplot) {
    doc.paragraph(
        "**No plots:** gnuplot is not on PATH: install gnuplot (Debian: gnuplot-nox) and rerun "
        "vaelab report " +
        study.dir.string() +
        " for the plots. The scripts and their CSV data are in `plots/` either way.");
  }
  std::vector<std::string> failed;
  for (const auto& r : study.runs) {
    if (r.status == "failed") {
      failed.push_back("`" + r.id + "` " + r.label + ": " +
                       (r.error ? first_line(*r.error, 200) : std::string("(no message)")));
    }
  }
  if (!failed.empty()) {
    doc.paragraph("Failed runs:");
    doc.bullets(failed);
  }
}

void gap_section(Document& doc, Context& cx) {
  doc.heading(2, "Gaps per regime at the base point");
  doc.paragraph(
      "The paper's Table 7 layout. G_g = train ELBO − test ELBO (both on real images; Eq. 3); "
      "G_a = q*-ELBO − test ELBO, with q* optimized per test image and the decoder frozen (Eq. 4); "
      "G_r = MS-SSIM of inputs − MS-SSIM of reconstructions under an attack on the encoder (Eq. "
      "5).");
  std::vector<std::vector<std::string>> rows;
  for (const auto& regime : cx.an.regimes) {
    const Aggregate* a = cx.an.at_base(regime);
    if (a == nullptr) continue;
    rows.push_back({regime, std::to_string(a->n()), stat_cell(a->stat("elbo_test_nats"), 2, a->n()),
                    stat_cell(a->stat("elbo_train_nats"), 2, a->n()),
                    stat_cell(a->stat("generalization_gap_nats"), 2, a->n()),
                    stat_cell(a->stat("amortization_gap_nats"), 2, a->n()),
                    stat_cell(a->stat("robustness_gap"), 3, a->n()),
                    stat_cell(a->stat("elbo_star_test_nats"), 2, a->n()),
                    a->mean("params_total") ? fixed(*a->mean("params_total"), 0) : "—"});
  }
  if (rows.empty()) {
    cx.empty(doc, "Gaps", "no finished main run at the base point");
    return;
  }
  doc.table({"regime", "n", "test ELBO", "train ELBO", "G_g", "G_a", "G_r", "q*-ELBO", "params"},
            rows, {false, true, true, true, true, true, true, true, true});
  cx.plot(doc, report::gap_plot(cx.an));
}

void curve_section(Document& doc, Context& cx) {
  doc.heading(2, "Train and test ELBO over effective epochs");
  const auto p = report::elbo_curve_plot(cx.an);
  if (!p) {
    cx.empty(doc, "ELBO curves", "no finished run at the base point has metric points");
    return;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : cx.an.curves) {
    if (c.epochs.empty()) continue;
    const auto last = c.epochs.size() - 1;
    std::string tail = "—";
    if (c.tail_change) {
      tail = (*c.tail_change >= 0 ? "+" : "") + fixed(*c.tail_change, 2) + " since epoch " +
             std::to_string(c.tail_from_epoch) + " (" + c.trend + ")";
    }
    rows.push_back({c.regime, std::to_string(c.runs), std::to_string(c.epochs.size()),
                    std::to_string(c.epochs.back()), opt_cell(c.elbo_train_nats[last], 2),
                    opt_cell(c.elbo_test_nats[last], 2), tail});
  }
  doc.paragraph(
      "The paper's Figs. 2, 10 and 11: means over seeds at each evaluation point (the `metrics` "
      "table). The last point of each regime, and how the test ELBO ends: its least-squares "
      "change over the last 20 % of the epochs, *rising* or *falling* when that is more than 10 % "
      "of the range of its second half (and more than 0.25 % of its last value), else *flat*. A curve still rising at the end has not "
      "converged: a longer horizon would move its numbers.");
  doc.table({"regime", "runs", "points", "last epoch", "train ELBO", "test ELBO",
             "test ELBO, last 20 %"},
            rows, {false, true, true, true, true, true, true});
  cx.plot(doc, p);
}

void sweep_table(Document& doc, Context& cx, const report::AxisSweep& s, bool k_axis) {
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < s.values.size(); ++i) {
    for (const auto& regime : cx.an.regimes) {
      const auto it = s.cells.find({i, regime});
      if (it == s.cells.end()) continue;
      const Aggregate& a = *it->second;
      std::vector<std::string> row = {report::value_text(s.values[i]), regime,
                                      std::to_string(a.n()),
                                      stat_cell(a.stat("elbo_test_nats"), 2, a.n()),
                                      stat_cell(a.stat("generalization_gap_nats"), 2, a.n())};
      if (!k_axis) {
        row.push_back(stat_cell(a.stat("amortization_gap_nats"), 2, a.n()));
        row.push_back(a.mean("params_total") ? fixed(*a.mean("params_total"), 0) : "—");
      }
      rows.push_back(row);
    }
  }
  const std::string name = report::short_axis_name(s.axis, cx.study.axes);
  if (k_axis) {
    doc.table({name, "regime", "n", "test ELBO", "G_g"}, rows, {true, false, true, true, true});
  } else {
    doc.table({name, "regime", "n", "test ELBO", "G_g", "G_a", "params"}, rows,
              {s.numeric, false, true, true, true, true, true});
  }
}

void size_section(Document& doc, Context& cx) {
  doc.heading(2, "Model and data sizes");
  doc.paragraph(
      "The paper's Fig. 7: test ELBO and the gaps against each axis other than the regime and the "
      "seed, "
      "per regime, every other axis at its base value.");
  bool any_axis = false, any_value = false;
  for (const auto& s : cx.an.sweeps) {
    if (s.axis == "train.synthetic.k") continue;
    any_axis = true;
    any_value = any_value || !s.values.empty();
    doc.heading(3, "`" + s.axis + "`");
    if (s.values.empty()) {
      doc.paragraph("No finished run has this axis with the other axes at their base values.");
      continue;
    }
    sweep_table(doc, cx, s, false);
    if (s.values.size() < 2) {
      doc.paragraph("Only its base value was run with the other axes at base: nothing to plot.");
      continue;
    }
    cx.plot(doc, report::sweep_plot(cx.an, s, cx.study.axes));
  }
  if (!any_axis) {
    cx.empty(doc, "Sizes", "no axis other than the regime, the seed and k in this study");
  } else if (!any_value) {
    cx.empty(doc, "Sizes",
             "no finished main run has any of these axes with the other axes at their base values");
  }
}

void path_section(Document& doc, Context& cx) {
  doc.heading(2, "Paths");
  if (cx.an.paths.empty()) {
    cx.empty(doc, "Paths", "no path axis in this study (no finished main run has a path_name)");
    return;
  }
  doc.paragraph(
      "The paper's Fig. 8: −test ELBO against the total parameter count along each named path, in "
      "path order.");
  for (const auto& path : cx.an.paths) {
    doc.heading(3, "Path `" + path + "`");
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : cx.an.path_steps) {
      if (s.path != path) continue;
      const Aggregate& a = s.aggregate;
      const Stat* e = a.stat("elbo_test_nats");
      std::string neg = "—";
      if (e) {
        neg = fixed(-e->mean, 2) + (e->std ? " ± " + fixed(*e->std, 2) : "");
      }
      rows.push_back({std::to_string(s.step), s.regime, a.point, std::to_string(a.n()),
                      a.mean("params_total") ? fixed(*a.mean("params_total"), 0) : "—", neg});
    }
    doc.table({"step", "regime", "point", "n", "params", "−test ELBO"}, rows,
              {true, false, false, true, true, true});
    cx.plot(doc, report::path_plot(cx.an, path));
  }
}

void k_section(Document& doc, Context& cx) {
  doc.heading(2, "Synthetic pool size k");
  const report::AxisSweep* k = nullptr;
  for (const auto& s : cx.an.sweeps) {
    if (s.axis == "train.synthetic.k") k = &s;
  }
  if (k == nullptr) {
    cx.empty(doc, "k curve", "`train.synthetic.k` is not an axis of this study");
    return;
  }
  doc.paragraph(
      "The paper's Fig. 4 (right): test ELBO and G_g against k, the pool size in multiples of "
      "|D_train|, "
      "the other axes at base.");
  if (k->values.empty()) {
    doc.paragraph("No finished run has k with the other axes at their base values.");
    return;
  }
  sweep_table(doc, cx, *k, true);
  cx.plot(doc, report::k_plot(cx.an, *k));
}

void grid_section(Document& doc, Context& cx) {
  doc.heading(2, "Samples, reconstructions and generators");
  doc.heading(3, "Runs at the base point");
  bool any_run = false;
  for (const auto& regime : cx.an.regimes) {
    const Aggregate* a = cx.an.at_base(regime);
    if (a == nullptr) continue;
    any_run = true;
    const report::RunRecord& r = *a->runs.front();
    if (!r.run_dir) {
      doc.paragraph(regime + " (`" + r.id + "`, seed " + std::to_string(r.seed) +
                    "): no run folder recorded.");
      continue;
    }
    std::vector<std::string> missing;
    std::vector<std::pair<std::string, fs::path>> found;
    for (const char* file : {"samples.png", "reconstructions.png"}) {
      const fs::path path = report::resolve(cx.study, *r.run_dir) / file;
      std::error_code ec;
      if (fs::is_regular_file(path, ec)) {
        found.emplace_back(file, path);
      } else {
        missing.push_back(file);
      }
    }
    doc.paragraph("**" + regime + "** (`" + r.id + "`, seed " + std::to_string(r.seed) + ", `" +
                  *r.run_dir + "`)" +
                  (missing.empty() ? ""
                                   : ": no " + missing.front() +
                                         (missing.size() > 1 ? " nor " + missing.back() : "") +
                                         " in the run folder"));
    for (const auto& [file, path] : found) {
      doc.image(
          regime + ": " + (file == std::string("samples.png") ? "samples" : "reconstructions"),
          path, link_of(*r.run_dir, file));
    }
  }
  if (!any_run) doc.paragraph("No finished main run at the base point.");

  doc.heading(3, "Generators");
  if (cx.study.generators.empty()) {
    cx.empty(doc, "Generators", "no generator in this study (no run trains on synthetic data)");
    return;
  }
  doc.paragraph(
      "Fidelity from `vaelab generator check` on each pool: the C2ST accuracy of a classifier "
      "telling real training images from samples (0.5 = indistinguishable); the Fréchet distance "
      "between samples and held-out test images in a classifier's features, beside what real "
      "training images score against the same held-out images (the floor at that sample size); "
      "nearest-neighbour L2 distances to the training set for samples and for held-out test "
      "images; the share of samples within the copy threshold (the distance only 1 % of "
      "held-out images come to a training image) and exact copies. A generator whose samples "
      "fall within the threshold significantly more often than held-out images do is flagged for "
      "memorization, and no synthetic-data finding is called reproduced on it.");
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : cx.study.generators) {
    int64_t used = 0;
    for (const auto& r : cx.study.runs) used += r.generator_key == g.key;
    const json& c = g.check;
    const auto num = [&](const char* key, int digits) {
      return c.is_object() && c.contains(key) && c[key].is_number()
                 ? fixed(c[key].get<double>(), digits)
                 : std::string("—");
    };
    const auto median = [&](const char* key) {
      return c.is_object() && c.contains(key) && c[key].is_object() && c[key].contains("median") &&
                     c[key]["median"].is_number()
                 ? fixed(c[key]["median"].get<double>(), 3)
                 : std::string("—");
    };
    std::string c2st = num("c2st_accuracy", 3);
    if (c2st != "—" && num("c2st_accuracy_stderr", 3) != "—")
      c2st += " ± " + num("c2st_accuracy_stderr", 3);
    std::string suspected = "—";
    if (c.is_object() && c.contains("memorization_suspected") &&
        c["memorization_suspected"].is_boolean()) {
      suspected = c["memorization_suspected"].get<bool>() ? "yes" : "no";
    }
    std::string frechet = num("frechet_distance", 2);
    if (frechet != "—" && num("frechet_distance_real", 2) != "—")
      frechet += " (" + num("frechet_distance_real", 2) + ")";
    std::string within = num("samples_within_threshold_fraction", 3);
    if (within != "—" && num("test_within_threshold_fraction", 3) != "—")
      within += " vs " + num("test_within_threshold_fraction", 3);
    rows.push_back({"`" + g.key + "`", g.plugin, g.status,
                    g.pool_images ? std::to_string(*g.pool_images) : "—",
                    opt_cell(g.fit_seconds, 1), opt_cell(g.sample_seconds, 1), std::to_string(used),
                    c2st, num("c2st_p_value", 3), frechet, median("nn_l2_sample_to_train"),
                    median("nn_l2_test_to_train"), within, num("exact_copies", 0), suspected});
  }
  doc.table(
      {"generator", "plugin", "status", "pool images", "fit s", "sample s", "runs", "C2ST accuracy",
       "C2ST p", "Fréchet distance (real)", "NN L2 sample→train (median)",
       "NN L2 test→train (median)", "within copy threshold (samples vs held-out)", "exact copies",
       "memorization suspected"},
      rows,
      {false, false, false, true, true, true, true, true, true, true, true, true, true, true,
       false});
  // The feature network behind the Fréchet distances (one per dataset; the first check names it).
  for (const auto& g : cx.study.generators) {
    const json& c = g.check;
    if (!c.is_object() || !c.contains("frechet_feature_net") ||
        !c["frechet_feature_net"].is_object())
      continue;
    const json& net = c["frechet_feature_net"];
    const std::string accuracy = net.contains("test_accuracy") && net["test_accuracy"].is_number()
                                     ? fixed(100 * net["test_accuracy"].get<double>(), 1) + " %"
                                     : std::string("unknown");
    doc.paragraph("Fréchet distances are in the " + std::to_string(net.value("features", 0)) +
                  " features of a classifier trained on " +
                  std::to_string(net.value("train_images", 0)) + " labelled training images of " +
                  net.value("dataset", std::string("the data")) + " (" +
                  net.value("network", std::string("?")) + "), test accuracy " + accuracy + ".");
    break;
  }
  for (const auto& g : cx.study.generators) {
    if (g.check.is_null()) {
      doc.paragraph("`" + g.key + "`: no check was run on its pool.");
    }
    const fs::path grid = report::resolve(cx.study, g.pool + ".check") / "samples.png";
    std::error_code ec;
    if (fs::is_regular_file(grid, ec)) {
      doc.image("generator " + g.key + " (" + g.plugin + "): samples", grid,
                link_of(g.pool + ".check", "samples.png"));
    }
  }
}

void downstream_section(Document& doc, Context& cx) {
  doc.heading(2, "Downstream");
  doc.paragraph(
      "Per regime at the base point: linear-probe and 5-NN accuracy on the encoder's means, "
      "anomaly AUROC "
      "(from the runs that hold a class out of training), and bits per dimension on the test set.");
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> notes;
  std::map<std::string, std::vector<std::string>> bits_notes;  // note → regimes
  bool any = false;
  bool compressed = false;  // a discrete likelihood: the test set's real compressed size
  for (const auto& d : cx.an.downstream) compressed = compressed || d.compressed_bits_per_dim_test.has_value();
  for (const auto& d : cx.an.downstream) {
    const int64_t n = d.aggregate ? d.aggregate->n() : 0;
    if (d.aggregate || d.anomaly_auroc) any = true;
    rows.push_back({d.regime, d.aggregate ? std::to_string(n) : "0",
                    stat_cell(d.probe_accuracy, 3, n), stat_cell(d.knn_accuracy, 3, n),
                    d.anomaly_auroc ? stat_cell(d.anomaly_auroc, 3, d.anomaly_auroc->n) : "—",
                    d.bits_per_dim_test ? stat_cell(d.bits_per_dim_test, 3, n) : "n/a"});
    if (compressed) {
      rows.back().push_back(d.compressed_bits_per_dim_test ? stat_cell(d.compressed_bits_per_dim_test, 4, n) : "—");
    }
    notes.push_back(d.regime + ": " + d.anomaly_source);
    if (!d.bits_per_dim_test) bits_notes[d.bits_per_dim_note].push_back(d.regime);
  }
  if (!any) {
    cx.empty(doc, "Downstream", "no finished run at the base point");
    return;
  }
  std::vector<std::string> columns = {"regime", "n", "probe accuracy", "kNN accuracy", "anomaly AUROC",
                                      "bits/dim (test)"};
  std::vector<bool> numeric = {false, true, true, true, true, true};
  if (compressed) {
    columns.push_back("compressed bits/dim (test)");
    numeric.push_back(true);
    notes.push_back("compressed bits/dim: the size of the file `vaelab compress` wrote for the whole test set "
                    "(bits-back ANS, initial bits included; docs/compression.md), against bits/dim, the negative "
                    "ELBO it approaches");
  }
  doc.table(columns, rows, numeric);
  for (const auto& [note, regimes] : bits_notes) {
    std::string who;
    for (const auto& regime : regimes) who += (who.empty() ? "" : ", ") + regime;
    notes.push_back("bits/dim " + note +
                    (regimes.size() == cx.an.downstream.size() ? "" : " (" + who + ")"));
  }
  doc.bullets(notes);
}

void return_section(Document& doc, Context& cx) {
  doc.heading(2, "Return on cost against normal training");
  const Analysis& an = cx.an;
  if (an.baseline == nullptr) {
    cx.empty(doc, "Return table", an.baseline_missing);
    doc.paragraph("**Conclusion:** " + an.conclusion.text);
    return;
  }
  const Aggregate& b = *an.baseline;
  doc.paragraph("Baseline: `normal` at the base point, n = " + std::to_string(b.n()) +
                ", test ELBO " + stat_cell(b.stat("elbo_test_nats"), 2, b.n()) + " nats, cost " +
                stat_cell(b.stat("cost_seconds"), 1, b.n()) + " s, " +
                stat_cell(b.stat("cost_cpu_minutes"), 2, b.n()) + " CPU-minutes, " +
                (b.mean("params_total") ? fixed(*b.mean("params_total"), 0) : "—") +
                " parameters.");
  doc.paragraph(
      "Each row: an aggregate minus the baseline, mean against mean. Δ test ELBO > 0 and Δ G_g, Δ "
      "G_a < 0 are "
      "better. Cost = the run's wall seconds plus, for a run on synthetic data, its generator's "
      "fit and "
      "sampling seconds (the whole fit, as if it served this run alone); CPU-minutes = cost × the "
      "run's "
      "threads / 60. Ratios divide Δ test ELBO by the extra cost; — where the extra is ≤ 0. "
      "* the difference is within the seed spread (|Δ| ≤ √(std_a² + std_b²)); † one seed: spread "
      "unknown. "
      "A gain whose extra CPU time is within the seed spread of the costs counts as free in the "
      "conclusion.");
  if (an.return_table.empty()) {
    cx.empty(doc, "Return table", "the baseline is the only aggregate");
  } else {
    // A discrete likelihood adds the change in the test set's real compressed size.
    bool compressed = false;
    for (const auto& r : an.return_table) compressed = compressed || r.compressed_bits_per_dim.value.has_value();
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : an.return_table) {
      const Aggregate& a = *r.aggregate;
      rows.push_back({a.regime, a.point, report::lever_name(r.lever), std::to_string(a.n()),
                      delta_cell(r.test_elbo), delta_cell(r.generalization_gap),
                      delta_cell(r.amortization_gap), delta_cell(r.extra_seconds, 1),
                      delta_cell(r.extra_cpu_minutes, 2), opt_cell(r.extra_params, 0, true),
                      opt_cell(r.nats_per_cpu_minute, 3), opt_cell(r.nats_per_million_params, 3)});
      if (compressed) rows.back().insert(rows.back().begin() + 7, delta_cell(r.compressed_bits_per_dim, 4));
    }
    std::vector<std::string> columns = {"regime", "point", "lever", "n", "Δ test ELBO", "Δ G_g", "Δ G_a",
                                        "extra s", "extra CPU-min", "extra params", "nats / extra CPU-min",
                                        "nats / extra M params"};
    std::vector<bool> numeric = {false, false, false, true, true, true, true, true, true, true, true, true};
    if (compressed) {
      columns.insert(columns.begin() + 7, "Δ bits/dim (compressed)");
      numeric.insert(numeric.begin() + 7, true);
    }
    doc.table(columns, rows, numeric);
    if (compressed) {
      doc.paragraph("Δ bits/dim (compressed): the change in the real size of the test set's file written by "
                    "`vaelab compress` (bits-back ANS; docs/compression.md); < 0 is better.");
    }
  }
  doc.paragraph("**Conclusion:** " + an.conclusion.text);
}

void findings_section(Document& doc, Context& cx) {
  doc.heading(2, "The paper's findings in this study");
  doc.paragraph(
      "Xiao, Zenn & Bamler (TMLR 2024), checked against the aggregates above. A difference counts "
      "as "
      "reproduced when its sign matches and it lies outside the seed spread; with one seed the "
      "sign decides and the spread is unknown. A synthetic-data finding that holds on a generator "
      "flagged for memorization is inconclusive.");
  std::vector<std::string> items;
  for (const auto& f : cx.an.findings) {
    items.push_back("**" + f.verdict + "** — " + f.claim + " (" + f.source + "). " + f.evidence +
                    ".");
  }
  doc.bullets(items);
}

}  // namespace

json report_json(const fs::path& study_dir) {
  const StudyRecord study = report::load_study(study_dir);
  const Analysis an = report::analyze(study);
  return report::to_json(study, an);
}

fs::path write_report(const fs::path& study_dir) {
  const StudyRecord study = report::load_study(study_dir);
  const Analysis an = report::analyze(study);

  std::vector<report::Plot> plots;
  const auto add = [&](std::optional<report::Plot> p) {
    if (p) plots.push_back(std::move(*p));
  };
  add(report::gap_plot(an));
  add(report::elbo_curve_plot(an));
  for (const auto& s : an.sweeps) {
    if (s.axis == "train.synthetic.k") {
      add(report::k_plot(an, s));
    } else {
      add(report::sweep_plot(an, s, study.axes));
    }
  }
  for (const auto& path : an.paths) add(report::path_plot(an, path));

  const std::optional<fs::path> gnuplot = report::find_on_path("gnuplot");
  Context cx{study, an, {}, gnuplot.has_value(), {}};
  for (auto& o : report::render_plots(plots, study_dir / "plots", gnuplot)) cx.plots[o.name] = o;

  Document doc;
  header(doc, cx);
  gap_section(doc, cx);
  curve_section(doc, cx);
  size_section(doc, cx);
  path_section(doc, cx);
  k_section(doc, cx);
  grid_section(doc, cx);
  downstream_section(doc, cx);
  return_section(doc, cx);
  findings_section(doc, cx);
  doc.heading(2, "Empty sections");
  if (cx.empty_sections.empty()) {
    doc.paragraph("None: every section has data.");
  } else {
    doc.bullets(cx.empty_sections);
  }

  const fs::path md = study_dir / "report.md";
  write_file_atomic(md, doc.markdown());
  write_file_atomic(study_dir / "report.html", doc.html("vaelab study report: " + study.name));
  return md;
}

}  // namespace vaelab
