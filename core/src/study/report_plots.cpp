#include "report_plots.hpp"

#include <sys/wait.h>

#include <unistd.h>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <vaelab/error.hpp>

namespace fs = std::filesystem;

namespace vaelab::report {
namespace {

const char* const kTestElbo = "elbo_test_nats";
const char* const kGg = "generalization_gap_nats";
const char* const kGa = "amortization_gap_nats";

/// A CSV field: numbers with full precision, missing as NaN (gnuplot's missing marker here).
std::string number(const std::optional<double>& v) {
  if (!v || !std::isfinite(*v)) return "NaN";
  char text[64];
  std::snprintf(text, sizeof text, "%.10g", *v);
  return text;
}

/// A CSV text field: commas and quotes would split or confuse it.
std::string text_field(std::string s) {
  for (char& c : s) {
    if (c == ',' || c == '"' || c == '\n') c = c == ',' ? ' ' : '\'';
  }
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ' ' && i > 0 && s[i - 1] == ' ') continue;
    out += s[i];
  }
  return out;
}

/// A gnuplot single-quoted string.
std::string gp_string(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

/// A shell single-quoted word.
std::string shell_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::optional<double> stat_mean(const Aggregate* a, const std::string& key) {
  if (a == nullptr) return std::nullopt;
  return a->mean(key);
}
std::optional<double> stat_std(const Aggregate* a, const std::string& key) {
  if (a == nullptr || a->stat(key) == nullptr) return std::nullopt;
  return a->stat(key)->std;
}

int color_of(const Analysis& an, const std::string& regime) {
  const auto it = std::find(an.regimes.begin(), an.regimes.end(), regime);
  return static_cast<int>(it - an.regimes.begin()) + 1;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

/// Log-scale an axis whose positive values span at least `ratio`.
bool wants_log(const std::vector<double>& xs, double ratio) {
  if (xs.empty()) return false;
  const auto [lo, hi] = std::minmax_element(xs.begin(), xs.end());
  return *lo > 0 && *hi / *lo >= ratio;
}

}  // namespace

std::optional<Plot> gap_plot(const Analysis& an) {
  std::ostringstream csv;
  csv << "regime,G_g_mean_nats,G_g_std_nats,G_a_mean_nats,G_a_std_nats,n\n";
  bool any = false, any_ga = false, negative = false;
  for (const std::string& regime : an.regimes) {
    const Aggregate* a = an.at_base(regime);
    if (a == nullptr || (!a->mean(kGg) && !a->mean(kGa))) continue;
    any = true;
    any_ga = any_ga || a->mean(kGa).has_value();
    negative = negative || a->mean(kGg).value_or(0) < 0 || a->mean(kGa).value_or(0) < 0;
    csv << text_field(regime) << ',' << number(stat_mean(a, kGg)) << ',' << number(stat_std(a, kGg))
        << ',' << number(stat_mean(a, kGa)) << ',' << number(stat_std(a, kGa)) << ',' << a->n()
        << "\n";
  }
  if (!any) return std::nullopt;
  Plot p;
  p.name = "gaps";
  p.caption =
      "Generalization gap G_g and amortization gap G_a per regime at the base point (mean and std "
      "over seeds)";
  p.csv = csv.str();
  std::ostringstream s;
  s << "set title 'Gaps at the base point (bars: mean over seeds; whiskers: std)'\n"
    << "set ylabel 'nats'\n"
    << "set style data histogram\n"
    << "set style histogram errorbars gap 2 lw 1\n"
    << "set style fill solid 0.6 border -1\n"
    << (negative ? "set xzeroaxis\n" : "set yrange [0:*]\n")
    << "plot 'gaps.csv' skip 1 using 2:(sd(3)):xtic(1) title 'G_g (generalization gap)'"
    << (any_ga ? ", '' skip 1 using 4:(sd(5)) title 'G_a (amortization gap)'" : "") << "\n";
  p.script = s.str();
  return p;
}

std::optional<Plot> elbo_curve_plot(const Analysis& an) {
  std::vector<const Curve*> curves;
  std::vector<int64_t> epochs;
  for (const Curve& c : an.curves) {
    if (c.epochs.empty()) continue;
    curves.push_back(&c);
    epochs.insert(epochs.end(), c.epochs.begin(), c.epochs.end());
  }
  if (curves.empty()) return std::nullopt;
  std::sort(epochs.begin(), epochs.end());
  epochs.erase(std::unique(epochs.begin(), epochs.end()), epochs.end());
  std::ostringstream csv;
  csv << "epoch";
  for (const Curve* c : curves)
    csv << ',' << text_field(c->regime) << " train," << text_field(c->regime) << " test";
  csv << "\n";
  for (int64_t e : epochs) {
    csv << e;
    for (const Curve* c : curves) {
      const auto it = std::find(c->epochs.begin(), c->epochs.end(), e);
      if (it == c->epochs.end()) {
        csv << ",NaN,NaN";
      } else {
        const auto i = static_cast<size_t>(it - c->epochs.begin());
        csv << ',' << number(c->elbo_train_nats[i]) << ',' << number(c->elbo_test_nats[i]);
      }
    }
    csv << "\n";
  }
  Plot p;
  p.name = "elbo_curves";
  p.caption =
      "Train (thin, open circles; on the real training set) and test (thick) ELBO over effective "
      "epochs per regime at "
      "the base point, mean over seeds";
  p.csv = csv.str();
  std::vector<std::string> series;
  for (size_t i = 0; i < curves.size(); ++i) {
    const int lc = color_of(an, curves[i]->regime);
    const size_t col = 2 + 2 * i;
    series.push_back("'elbo_curves.csv' skip 1 using 1:" + std::to_string(col) +
                     " with linespoints lc " + std::to_string(lc) + " pt 6 ps 0.7 title " +
                     gp_string(curves[i]->regime + " train"));
    series.push_back("'' skip 1 using 1:" + std::to_string(col + 1) + " with lines lc " +
                     std::to_string(lc) + " lw 2 title " + gp_string(curves[i]->regime + " test"));
  }
  p.script =
      "set title 'ELBO over effective epochs (base point, mean over seeds)'\n"
      "set xlabel 'effective epoch'\nset ylabel 'ELBO (nats per image)'\nset key below\n"
      "plot " +
      join(series, ", \\\n     ") + "\n";
  return p;
}

std::optional<Plot> sweep_plot(const Analysis& an, const AxisSweep& sweep,
                               const std::vector<std::string>& axes) {
  if (sweep.values.size() < 2) return std::nullopt;
  std::vector<std::string> regimes;
  for (const std::string& regime : an.regimes) {
    for (size_t i = 0; i < sweep.values.size(); ++i) {
      if (sweep.cells.count({i, regime})) {
        regimes.push_back(regime);
        break;
      }
    }
  }
  const std::string name = short_axis_name(sweep.axis, axes);
  std::string stem = "size_";
  for (char c : sweep.axis) stem += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';

  std::ostringstream csv;
  csv << "x,value";
  for (const auto& r : regimes) {
    const std::string f = text_field(r);
    csv << ',' << f << " test ELBO," << f << " test ELBO std," << f << " G_g," << f << " G_g std,"
        << f << " G_a," << f << " G_a std";
  }
  csv << "\n";
  std::vector<double> xs;
  bool any_ga = false;
  for (size_t i = 0; i < sweep.values.size(); ++i) {
    const double x = sweep.numeric ? sweep.values[i].get<double>() : static_cast<double>(i);
    xs.push_back(x);
    csv << number(x) << ',' << text_field(value_text(sweep.values[i]));
    for (const auto& r : regimes) {
      const auto it = sweep.cells.find({i, r});
      const Aggregate* a = it == sweep.cells.end() ? nullptr : it->second;
      any_ga = any_ga || stat_mean(a, kGa).has_value();
      for (const char* key : {kTestElbo, kGg, kGa})
        csv << ',' << number(stat_mean(a, key)) << ',' << number(stat_std(a, key));
    }
    csv << "\n";
  }
  Plot p;
  p.name = stem;
  p.caption = "Test ELBO (left) and G_g (thick), G_a (thin, open circles) (right) against " + name +
              " per regime, the other axes at their base values (mean and std over seeds)";
  p.csv = csv.str();
  const std::string file = gp_string(stem + ".csv");
  const std::string x_spec = "1";  // the value, or its index when the values are not numbers
  const std::string tics = sweep.numeric ? "" : ":xtic(2)";
  std::vector<std::string> left, right;
  for (size_t r = 0; r < regimes.size(); ++r) {
    const size_t base = 3 + 6 * r;
    const std::string lc = " lc " + std::to_string(color_of(an, regimes[r]));
    left.push_back(file + " skip 1 using " + x_spec + ":" + std::to_string(base) + ":(sd(" +
                   std::to_string(base + 1) + "))" + tics + " with yerrorlines" + lc +
                   " lw 2 pt 7 title " + gp_string(regimes[r]));
    right.push_back(file + " skip 1 using " + x_spec + ":" + std::to_string(base + 2) + ":(sd(" +
                    std::to_string(base + 3) + "))" + tics + " with yerrorlines" + lc +
                    " lw 2 pt 7 title " + gp_string(regimes[r] + " G_g"));
    if (any_ga) {
      right.push_back(file + " skip 1 using " + x_spec + ":" + std::to_string(base + 4) + ":(sd(" +
                      std::to_string(base + 5) + "))" + tics + " with yerrorlines" + lc +
                      " pt 6 title " + gp_string(regimes[r] + " G_a"));
    }
  }
  std::ostringstream s;
  s << "set multiplot layout 1,2 title "
    << gp_string("Against " + sweep.axis + " (other axes at base)") << "\n"
    << "set xlabel " << gp_string(name) << "\n"
    << "set key below\n";
  if (sweep.numeric && wants_log(xs, 8)) s << "set logscale x 2\n";
  s << "set ylabel 'test ELBO (nats)'\nplot " << join(left, ", \\\n     ") << "\n"
    << "set ylabel 'gap (nats)'\nplot " << join(right, ", \\\n     ") << "\n"
    << "unset multiplot\n";
  p.script = s.str();
  return p;
}

std::optional<Plot> path_plot(const Analysis& an, const std::string& path) {
  std::vector<std::string> regimes;
  int64_t steps = 0;
  for (const PathStep& s : an.path_steps) {
    if (s.path != path) continue;
    if (std::find(regimes.begin(), regimes.end(), s.regime) == regimes.end())
      regimes.push_back(s.regime);
    steps = std::max(steps, s.step + 1);
  }
  if (regimes.empty()) return std::nullopt;
  std::string stem = "path_";
  for (char c : path) stem += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  std::ostringstream csv;
  csv << "step";
  for (const auto& r : regimes) {
    const std::string f = text_field(r);
    csv << ',' << f << " params_total," << f << " -test ELBO," << f << " -test ELBO std";
  }
  csv << "\n";
  std::vector<double> xs;
  for (int64_t step = 0; step < steps; ++step) {
    csv << step;
    for (const auto& r : regimes) {
      const Aggregate* a = nullptr;
      for (const PathStep& s : an.path_steps) {
        if (s.path == path && s.regime == r && s.step == step) a = &s.aggregate;
      }
      const auto params = stat_mean(a, "params_total");
      const auto elbo = stat_mean(a, kTestElbo);
      if (params) xs.push_back(*params);
      csv << ',' << number(params) << ','
          << number(elbo ? std::optional<double>(-*elbo) : std::nullopt) << ','
          << number(stat_std(a, kTestElbo));
    }
    csv << "\n";
  }
  Plot p;
  p.name = stem;
  p.caption =
      "Path " + path +
      ": −test ELBO against the total parameter count, in path order (mean and std over seeds)";
  p.csv = csv.str();
  std::vector<std::string> series;
  for (size_t r = 0; r < regimes.size(); ++r) {
    const size_t base = 2 + 3 * r;
    series.push_back(gp_string(stem + ".csv") + " skip 1 using " + std::to_string(base) + ":" +
                     std::to_string(base + 1) + ":(sd(" + std::to_string(base + 2) +
                     ")) with yerrorlines lc " + std::to_string(color_of(an, regimes[r])) +
                     " title " + gp_string(regimes[r]));
  }
  std::ostringstream s;
  s << "set title " << gp_string("Path " + path + ": -test ELBO against parameters") << "\n"
    << "set xlabel 'parameters (params_total)'\nset ylabel '-test ELBO (nats, lower is "
       "better)'\nset key below\n";
  if (wants_log(xs, 10)) s << "set logscale x\n";
  s << "plot " << join(series, ", \\\n     ") << "\n";
  p.script = s.str();
  return p;
}

std::optional<Plot> k_plot(const Analysis& an, const AxisSweep& k) {
  if (k.values.size() < 2 || !k.numeric) return std::nullopt;
  std::vector<std::string> regimes;
  for (const std::string& regime : an.regimes) {
    size_t cells = 0;
    for (size_t i = 0; i < k.values.size(); ++i) cells += k.cells.count({i, regime});
    if (cells >= 2 || (cells == 1 && regime != "normal")) regimes.push_back(regime);
  }
  if (regimes.empty()) return std::nullopt;
  std::ostringstream csv;
  csv << "k";
  for (const auto& r : regimes) {
    const std::string f = text_field(r);
    csv << ',' << f << " test ELBO," << f << " test ELBO std," << f << " G_g," << f << " G_g std";
  }
  csv << "\n";
  std::vector<size_t> order(k.values.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return k.values[a].get<double>() < k.values[b].get<double>();
  });
  std::vector<double> xs;
  for (size_t i : order) {
    xs.push_back(k.values[i].get<double>());
    csv << number(xs.back());
    for (const auto& r : regimes) {
      const auto it = k.cells.find({i, r});
      const Aggregate* a = it == k.cells.end() ? nullptr : it->second;
      csv << ',' << number(stat_mean(a, kTestElbo)) << ',' << number(stat_std(a, kTestElbo)) << ','
          << number(stat_mean(a, kGg)) << ',' << number(stat_std(a, kGg));
    }
    csv << "\n";
  }
  Plot p;
  p.name = "k_curve";
  p.caption =
      "Test ELBO (left) and G_g (right) against k (synthetic pool size in multiples of |D_train|); "
      "flat line: normal training at the base point";
  p.csv = csv.str();
  std::vector<std::string> left, right;
  for (size_t r = 0; r < regimes.size(); ++r) {
    const size_t base = 2 + 4 * r;
    const std::string lc = " lc " + std::to_string(color_of(an, regimes[r]));
    left.push_back("'k_curve.csv' skip 1 using 1:" + std::to_string(base) + ":(sd(" +
                   std::to_string(base + 1) + ")) with yerrorlines" + lc + " title " +
                   gp_string(regimes[r]));
    right.push_back("'k_curve.csv' skip 1 using 1:" + std::to_string(base + 2) + ":(sd(" +
                    std::to_string(base + 3) + ")) with yerrorlines" + lc + " title " +
                    gp_string(regimes[r]));
  }
  const bool normal_plotted = std::find(regimes.begin(), regimes.end(), "normal") != regimes.end();
  if (an.baseline && !normal_plotted) {
    const std::string lc = " lc " + std::to_string(color_of(an, "normal"));
    if (const auto v = an.baseline->mean(kTestElbo)) {
      left.push_back(number(v) + " with lines" + lc + " title 'normal (base point)'");
    }
    if (const auto v = an.baseline->mean(kGg))
      right.push_back(number(v) + " with lines" + lc + " title 'normal (base point)'");
  }
  std::ostringstream s;
  s << "set multiplot layout 1,2 title 'Against k (other axes at base)'\n"
    << "set xlabel 'k (pool size / |D_train|)'\nset key below\n";
  if (wants_log(xs, 8)) s << "set logscale x\n";
  s << "set ylabel 'test ELBO (nats)'\nplot " << join(left, ", \\\n     ") << "\n"
    << "set ylabel 'G_g (nats)'\nplot " << join(right, ", \\\n     ") << "\n"
    << "unset multiplot\n";
  p.script = s.str();
  return p;
}

std::optional<fs::path> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / program;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return std::nullopt;
}

std::vector<PlotOutcome> render_plots(const std::vector<Plot>& plots, const fs::path& dir,
                                      const std::optional<fs::path>& gnuplot) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir.string() + ": cannot create the plots folder: " + ec.message());
  const auto write = [](const fs::path& file, const std::string& text) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw Error(file.string() + ": cannot write");
  };
  std::vector<PlotOutcome> outcomes;
  for (const Plot& p : plots) {
    PlotOutcome o;
    o.name = p.name;
    const fs::path png = dir / (p.name + ".png");
    fs::remove(png, ec);
    write(dir / (p.name + ".csv"), p.csv);
    write(dir / (p.name + ".gp"),
          "# " + p.caption +
              "\n"
              "# Data: " +
              p.name +
              ".csv (written by vaelab report from study.sqlite).\n"
              "# Re-plot from this folder: gnuplot " +
              p.name +
              ".gp\n"
              "set terminal png size 1100,650 noenhanced\n"
              "set output " +
              gp_string(p.name + ".png") +
              "\n"
              "set datafile separator comma\n"
              "set datafile missing 'NaN'\n"
              "set grid\n"
              "set offsets graph 0.03, graph 0.03, 0, 0\n"
              "# error bars: the std column, 0 where it is missing (one seed)\n"
              "sd(c) = valid(c) ? column(c) : 0\n" +
              p.script);
    if (gnuplot) {
      const std::string command = "cd " + shell_quoted(dir.string()) + " && " +
                                  shell_quoted(gnuplot->string()) + " " +
                                  shell_quoted(p.name + ".gp") + " 2>&1";
      std::string output;
      FILE* pipe = ::popen(command.c_str(), "r");
      if (pipe == nullptr) {
        o.problem = "gnuplot could not be started";
      } else {
        char buffer[512];
        while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
        const int status = ::pclose(pipe);
        const int code = status == -1        ? -1
                         : WIFEXITED(status) ? WEXITSTATUS(status)
                                             : 128 + WTERMSIG(status);
        if (code != 0) {
          const auto end = output.find('\n', output.find_first_not_of(" \n"));
          o.problem = "gnuplot " + p.name + ".gp exited with status " + std::to_string(code) +
                      (output.empty() ? "" : ": " + output.substr(0, std::min<size_t>(end, 300)));
        } else if (!fs::is_regular_file(png, ec)) {
          o.problem = "gnuplot " + p.name + ".gp wrote no " + p.name + ".png";
        } else {
          o.png = png;
        }
      }
    }
    outcomes.push_back(o);
  }
  return outcomes;
}

}  // namespace vaelab::report
