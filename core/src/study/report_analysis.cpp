// The report's numbers: aggregates over seeds, sweeps along each axis, curves, the return table
// against normal training at the base point, the conclusion drawn from it, and the paper's
// findings checked against the aggregates (docs/report.md says how each is computed).

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <tuple>

#include "report_model.hpp"

using nlohmann::json;

namespace vaelab::report {
namespace {

const char* const kTestElbo = "elbo_test_nats";
const char* const kTrainElbo = "elbo_train_nats";
const char* const kGg = "generalization_gap_nats";
const char* const kGa = "amortization_gap_nats";
const char* const kStar = "elbo_star_test_nats";
const char* const kParams = "params_total";

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

json without_regime_and_seed(const json& axes) {
  json out = json::object();
  for (const auto& [key, value] : axes.items()) {
    if (!is_regime_axis(key) && !is_seed_axis(key)) out[key] = value;
  }
  return out;
}

/// Keys of `axes` and `base` whose values differ (a key missing on one side differs).
std::vector<std::string> off_base(const json& axes, const json& base) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : base.items()) {
    if (!axes.contains(key) || axes.at(key) != value) keys.push_back(key);
  }
  for (const auto& [key, value] : axes.items()) {
    if (!base.contains(key)) keys.push_back(key);
  }
  return keys;
}

/// The aggregate's point: the axes off the base point, in the study's order.
std::string point_text(const json& axes, const StudyRecord& study) {
  std::vector<std::string> keys = off_base(axes, study.base_point);
  const auto order = [&](const std::string& k) {
    const auto it = std::find(study.axes.begin(), study.axes.end(), k);
    return it - study.axes.begin();
  };
  std::stable_sort(keys.begin(), keys.end(),
                   [&](const auto& a, const auto& b) { return order(a) < order(b); });
  std::string text;
  for (const auto& key : keys) {
    text += (text.empty() ? "" : " ") + short_axis_name(key, study.axes) + "=" +
            (axes.contains(key) ? value_text(axes.at(key)) : std::string("unset"));
  }
  return text.empty() ? "base" : text;
}

void compute_stats(Aggregate& a) {
  std::map<std::string, std::vector<double>> values;
  for (const RunRecord* run : a.runs) {
    for (const auto& [key, v] : run->values) values[key].push_back(v);
  }
  for (const auto& [key, xs] : values) {
    Stat s;
    s.n = static_cast<int64_t>(xs.size());
    double sum = 0;
    for (double x : xs) sum += x;
    s.mean = sum / static_cast<double>(s.n);
    if (s.n >= 2) {
      double squares = 0;
      for (double x : xs) squares += (x - s.mean) * (x - s.mean);
      s.std = std::sqrt(squares / static_cast<double>(s.n - 1));
    }
    a.stats[key] = s;
  }
}

/// Groups runs (in ordinal order) by `key`; a run repeating a seed already in its group (the same
/// point reached on two paths) is counted in `duplicates` and left out.
std::vector<Aggregate> group_runs(const std::vector<const RunRecord*>& runs,
                                  const StudyRecord& study,
                                  const std::function<std::string(const RunRecord&)>& key,
                                  int64_t& duplicates) {
  std::vector<Aggregate> groups;
  std::map<std::string, size_t> index;
  for (const RunRecord* run : runs) {
    const std::string k = key(*run);
    auto it = index.find(k);
    if (it == index.end()) {
      Aggregate a;
      a.regime = run->regime;
      a.purpose = run->purpose;
      a.axes = without_regime_and_seed(run->axes);
      a.point = point_text(a.axes, study);
      // Axes the base point lacks (another path's keys) do not move a run off it.
      a.at_base = true;
      for (const auto& [bk, bv] : study.base_point.items()) {
        if (!a.axes.contains(bk) || a.axes.at(bk) != bv) a.at_base = false;
      }
      it = index.emplace(k, groups.size()).first;
      groups.push_back(std::move(a));
    }
    Aggregate& a = groups[it->second];
    const bool repeated = std::any_of(a.runs.begin(), a.runs.end(),
                                      [&](const RunRecord* r) { return r->seed == run->seed; });
    if (repeated) {
      ++duplicates;
      continue;
    }
    a.runs.push_back(run);
  }
  for (Aggregate& a : groups) {
    std::stable_sort(a.runs.begin(), a.runs.end(),
                     [](const RunRecord* x, const RunRecord* y) { return x->seed < y->seed; });
    compute_stats(a);
  }
  return groups;
}

std::string aggregate_key(const RunRecord& run) {
  return run.regime + "\n" + without_regime_and_seed(run.axes).dump();
}

std::string stat_text(const Stat* s, int digits) {
  if (s == nullptr) return "—";
  return fixed(s->mean, digits) + (s->std ? " ± " + fixed(*s->std, digits) : "") +
         " (n=" + std::to_string(s->n) + ")";
}

std::string name_of(const Aggregate& a) {
  return a.point == "base" ? a.regime : a.regime + " (" + a.point + ")";
}

// ---- The return table and its conclusion ----------------------------------------------------

bool is_model_axis(const std::string& key) { return starts_with(key, "model."); }
bool is_data_lever_axis(const std::string& key) {
  return starts_with(key, "train.synthetic.") || starts_with(key, "train.augment.") ||
         starts_with(key, "train.mixed.") || starts_with(key, "generator.");
}

Lever classify(const Aggregate& a, const json& base_point) {
  const std::vector<std::string> off = off_base(a.axes, base_point);
  const auto all = [&](const std::function<bool(const std::string&)>& f) {
    return std::all_of(off.begin(), off.end(), f);
  };
  if (a.regime != "normal") {
    if (all(is_data_lever_axis)) return Lever::data;
    if (all([](const std::string& k) { return is_data_lever_axis(k) || is_model_axis(k); }))
      return Lever::both;
    return Lever::other;
  }
  if (!off.empty() && all(is_model_axis)) return Lever::parameters;
  return Lever::other;
}

std::optional<double> mean_difference(const Aggregate& a, const Aggregate& b,
                                      const std::string& key) {
  const auto x = a.mean(key);
  const auto y = b.mean(key);
  if (!x || !y) return std::nullopt;
  return *x - *y;
}

/// No extra CPU time, or an extra within the seed spread of the costs.
bool free_of_cost(const ReturnRow& r) {
  return r.extra_cpu_minutes.value &&
         (*r.extra_cpu_minutes.value <= 0 || r.extra_cpu_minutes.verdict == Delta::Spread::within);
}

/// How a lever's best row is ranked: gains at no measurable extra cost by size, then gains by nats
/// per extra CPU-minute, then gains of unknown cost by size, then losses by size.
std::tuple<int, double> rank(const ReturnRow& r) {
  const double gain = *r.test_elbo.value;
  if (gain > 0 && free_of_cost(r)) return {3, gain};
  if (gain > 0 && r.nats_per_cpu_minute) return {2, *r.nats_per_cpu_minute};
  if (gain > 0) return {1, gain};
  return {0, gain};
}

bool established(const ReturnRow* r) {
  return r != nullptr && *r->test_elbo.value > 0 && r->test_elbo.verdict == Delta::Spread::outside;
}

/// The lever's best row: gains outside the seed spread before all others, then by rank().
const ReturnRow* best_of(const std::vector<ReturnRow>& rows, Lever lever) {
  const ReturnRow* best = nullptr;
  const auto key = [](const ReturnRow& r) { return std::make_tuple(established(&r), rank(r)); };
  for (const ReturnRow& r : rows) {
    if (r.lever != lever || !r.test_elbo.value) continue;
    if (best == nullptr || key(r) > key(*best)) best = &r;
  }
  return best;
}

std::string cost_text(const ReturnRow& r) {
  std::string text = "Δ test ELBO " + signed_fixed(*r.test_elbo.value, 2) + " nats";
  if (r.test_elbo.spread) text += " (seed spread " + fixed(*r.test_elbo.spread, 2) + ")";
  if (!r.extra_cpu_minutes.value) {
    text += " at an unknown cost";
  } else {
    text += " for " + signed_fixed(*r.extra_cpu_minutes.value, 2) + " CPU-minutes";
    if (*r.extra_cpu_minutes.value > 0 && r.extra_cpu_minutes.verdict == Delta::Spread::within) {
      text += " (within the seed spread of the cost: no measurable extra CPU time)";
    }
  }
  if (r.nats_per_cpu_minute)
    text += ", " + fixed(*r.nats_per_cpu_minute, 3) + " nats per extra CPU-minute";
  if (r.nats_per_million_params)
    text += ", " + fixed(*r.nats_per_million_params, 3) + " nats per extra million parameters";
  return text;
}

/// Why a lever's best row does not establish a gain.
std::string shortfall(const ReturnRow& r) {
  if (*r.test_elbo.value <= 0)
    return "did not raise the test ELBO (Δ " + signed_fixed(*r.test_elbo.value, 2) + " nats)";
  if (r.test_elbo.verdict == Delta::Spread::within) {
    return "gained " + signed_fixed(*r.test_elbo.value, 2) + " nats, within the seed spread (" +
           fixed(*r.test_elbo.spread, 2) + ")";
  }
  return "gained " + signed_fixed(*r.test_elbo.value, 2) + " nats, but one seed: spread unknown";
}

Conclusion conclude(const Analysis& an) {
  Conclusion c;
  if (an.baseline == nullptr) {
    c.text = "No conclusion: " + an.baseline_missing + ".";
    return c;
  }
  c.best_data = best_of(an.return_table, Lever::data);
  c.best_parameters = best_of(an.return_table, Lever::parameters);
  const ReturnRow* d = c.best_data;
  const ReturnRow* p = c.best_parameters;
  if (d == nullptr && p == nullptr) {
    c.text =
        "No conclusion: the study has neither a data lever (another regime at the base model size) "
        "nor a parameter lever (a larger model under normal training) with a test ELBO to compare "
        "against the baseline.";
    return c;
  }
  std::string text;
  if (d) {
    text += "Best data lever: " + name_of(*d->aggregate) + ", " + cost_text(*d) + ". ";
  } else {
    text += "No data lever in this study (no regime other than normal at the base model size). ";
  }
  if (p) {
    text += "Best parameter lever: " + name_of(*p->aggregate) + ", " + cost_text(*p) + ". ";
  } else {
    text += "No parameter lever in this study (no model-size axis under normal training). ";
  }
  const bool data_ok = established(d);
  const bool params_ok = established(p);
  if (data_ok && params_ok) {
    const bool data_wins = rank(*d) >= rank(*p);
    c.winner = data_wins ? "data" : "parameters";
    const ReturnRow& w = data_wins ? *d : *p;
    const ReturnRow& l = data_wins ? *p : *d;
    const auto per_cost = [](const ReturnRow& r) {
      const auto [tier, value] = rank(r);
      if (tier == 3) return signed_fixed(value, 2) + " nats at no measurable extra CPU time";
      if (tier == 2) return fixed(value, 3) + " nats per extra CPU-minute";
      return std::string("a gain of unknown cost");
    };
    text += std::string(data_wins ? "Data levers" : "Parameter levers") +
            " paid more per unit of cost: " + name_of(*w.aggregate) + " gave " + per_cost(w) +
            " against " + per_cost(l) + " for " + name_of(*l.aggregate) +
            "; both gains are outside the seed spread.";
  } else if (data_ok || params_ok) {
    const ReturnRow& w = data_ok ? *d : *p;
    c.winner = data_ok ? "data" : "parameters";
    text += std::string(data_ok ? "Data levers" : "Parameter levers") +
            " paid more: " + name_of(*w.aggregate) + "'s gain is outside the seed spread";
    const ReturnRow* other = data_ok ? p : d;
    if (other) {
      text += ", while the best " + std::string(data_ok ? "parameter" : "data") + " lever " +
              shortfall(*other) + ".";
    } else {
      text += "; the study has no " + std::string(data_ok ? "parameter" : "data") +
              " lever to compare it with.";
    }
  } else {
    text += "No winner: ";
    std::vector<std::string> parts;
    if (d) parts.push_back("the best data lever " + shortfall(*d));
    if (p) parts.push_back("the best parameter lever " + shortfall(*p));
    text += parts[0] + (parts.size() > 1 ? "; " + parts[1] : "") + ".";
    const auto unclear = [](const ReturnRow* r, Delta::Spread s) {
      return r != nullptr && *r->test_elbo.value > 0 && r->test_elbo.verdict == s;
    };
    if (unclear(d, Delta::Spread::unknown) || unclear(p, Delta::Spread::unknown)) {
      text += " With one seed this study cannot tell a gain from seed noise; more seeds would.";
    } else if (unclear(d, Delta::Spread::within) || unclear(p, Delta::Spread::within)) {
      text += " This study cannot tell these gains from seed noise.";
    } else if (d && p) {
      text += " Neither kind of lever beat normal training at the base point.";
    }
  }
  c.text = text;
  return c;
}

// ---- The paper's findings -----------------------------------------------------------------

/// A finding decided by the sign of one difference: right sign and outside the seed spread is
/// reproduced; with one seed the sign decides and the evidence says the spread is unknown.
Finding by_sign(Finding f, const Aggregate& a, const Aggregate& b, const std::string& key,
                bool want_positive, const std::string& what, int digits = 2) {
  const Delta d = make_delta(a, b, key);
  if (!d.value) {
    f.verdict = "not tested";
    f.evidence = what + ": " + key + " is missing from " + (a.mean(key) ? name_of(b) : name_of(a));
    return f;
  }
  f.evidence = what + ": " + name_of(a) + " " + stat_text(a.stat(key), digits) + " vs " +
               name_of(b) + " " + stat_text(b.stat(key), digits) + ", Δ " +
               signed_fixed(*d.value, digits);
  const bool right = want_positive ? *d.value > 0 : *d.value < 0;
  if (!right) {
    f.verdict = "not reproduced";
    f.evidence += d.spread ? " (seed spread " + fixed(*d.spread, digits) + ")"
                           : " (one seed: spread unknown)";
  } else if (d.verdict == Delta::Spread::within) {
    f.verdict = "not reproduced";
    f.evidence += " (the right sign, but within the seed spread " + fixed(*d.spread, digits) + ")";
  } else {
    f.verdict = "reproduced";
    f.evidence += d.verdict == Delta::Spread::unknown
                      ? " (one seed: spread unknown)"
                      : " (seed spread " + fixed(*d.spread, digits) + ")";
  }
  return f;
}

/// Several sign checks that must all hold.
Finding all_of(Finding f, const std::vector<Finding>& parts) {
  if (parts.empty()) {
    f.verdict = "not tested";
    return f;
  }
  bool tested = true, reproduced = true;
  std::string evidence;
  for (const Finding& p : parts) {
    tested = tested && p.verdict != "not tested";
    reproduced = reproduced && p.verdict == "reproduced";
    evidence += (evidence.empty() ? "" : "; ") + p.evidence;
  }
  f.verdict = !tested ? "not tested" : reproduced ? "reproduced" : "not reproduced";
  f.evidence = evidence;
  return f;
}

Finding untested(Finding f, const std::string& why) {
  f.verdict = "not tested";
  f.evidence = why;
  return f;
}

std::string axis_tail(const std::string& axis) {
  const auto dot = axis.rfind('.');
  return dot == std::string::npos ? axis : axis.substr(dot + 1);
}

/// The sweep's cells of `regime`, ordered by the axis value (numbers) or by params_total.
std::vector<std::pair<size_t, const Aggregate*>> ordered_cells(const AxisSweep& s,
                                                               const std::string& regime) {
  std::vector<std::pair<size_t, const Aggregate*>> cells;
  for (const auto& [where, a] : s.cells) {
    if (where.second == regime) cells.emplace_back(where.first, a);
  }
  const auto size_of = [&](const std::pair<size_t, const Aggregate*>& c) {
    if (s.numeric) return s.values[c.first].get<double>();
    return c.second->mean(kParams).value_or(std::numeric_limits<double>::quiet_NaN());
  };
  cells.erase(std::remove_if(cells.begin(), cells.end(),
                             [&](const auto& c) { return std::isnan(size_of(c)); }),
              cells.end());
  std::sort(cells.begin(), cells.end(),
            [&](const auto& x, const auto& y) { return size_of(x) < size_of(y); });
  return cells;
}

const AxisSweep* sweep_with_tail(const Analysis& an, const std::set<std::string>& tails) {
  for (const AxisSweep& s : an.sweeps) {
    if (tails.count(axis_tail(s.axis)) && starts_with(s.axis, "model.") &&
        ordered_cells(s, "normal").size() >= 2)
      return &s;
  }
  return nullptr;
}

std::vector<Finding> check_findings(const Analysis& an) {
  std::vector<Finding> out;
  const Aggregate* normal = an.at_base("normal");
  const Aggregate* synthetic = an.at_base("synthetic");
  const std::string need_both = "needs normal and synthetic runs at the base point";

  {
    Finding f{"Training on synthetic data shrinks the generalization gap G_g",
              "Table 7; Figs. 2, 10, 11", "", ""};
    out.push_back(normal && synthetic ? by_sign(f, *synthetic, *normal, kGg, false, "G_g")
                                      : untested(f, need_both));
  }
  {
    Finding f{"Training on synthetic data raises the test ELBO", "Figs. 2, 10, 11", "", ""};
    out.push_back(normal && synthetic
                      ? by_sign(f, *synthetic, *normal, kTestElbo, true, "test ELBO")
                      : untested(f, need_both));
  }
  {
    Finding f{"Training on synthetic data shrinks the amortization gap G_a", "Table 7", "", ""};
    out.push_back(normal && synthetic ? by_sign(f, *synthetic, *normal, kGa, false, "G_a")
                                      : untested(f, need_both));
  }
  {
    Finding f{
        "The q*-ELBO stays close across regimes (at most half the spread of the test ELBO): the "
        "decoders "
        "are alike and the regimes differ in the encoder",
        "Fig. 2 (middle)", "", ""};
    std::vector<std::pair<std::string, std::pair<double, double>>> rows;
    for (const std::string& regime : an.regimes) {
      const Aggregate* a = an.at_base(regime);
      if (a && a->mean(kStar) && a->mean(kTestElbo))
        rows.push_back({regime, {*a->mean(kStar), *a->mean(kTestElbo)}});
    }
    if (rows.size() < 2) {
      out.push_back(untested(
          f, "needs q*-ELBO (the amortization metric) for at least two regimes at the base point"));
    } else {
      double star_lo = 1e300, star_hi = -1e300, test_lo = 1e300, test_hi = -1e300;
      std::string listing;
      for (const auto& [regime, v] : rows) {
        star_lo = std::min(star_lo, v.first);
        star_hi = std::max(star_hi, v.first);
        test_lo = std::min(test_lo, v.second);
        test_hi = std::max(test_hi, v.second);
        listing += (listing.empty() ? "" : ", ") + regime + " " + fixed(v.first, 2) + " / " +
                   fixed(v.second, 2);
      }
      const double star_range = star_hi - star_lo, test_range = test_hi - test_lo;
      f.verdict = star_range <= test_range / 2 ? "reproduced" : "not reproduced";
      f.evidence = "q*-ELBO spans " + fixed(star_range, 2) +
                   " nats across regimes, the test ELBO " + fixed(test_range, 2) +
                   " (q*-ELBO / test ELBO: " + listing + ")";
      out.push_back(f);
    }
  }
  std::vector<const Aggregate*> augments;
  for (const std::string& regime : an.regimes) {
    if (starts_with(regime, "augment") && an.at_base(regime))
      augments.push_back(an.at_base(regime));
  }
  {
    Finding f{"Augmentation shrinks G_g less than synthetic data does", "Table 7", "", ""};
    std::vector<Finding> parts;
    for (const Aggregate* a : augments) {
      if (synthetic) parts.push_back(by_sign(f, *a, *synthetic, kGg, true, "G_g"));
    }
    out.push_back(parts.empty()
                      ? untested(f, "needs synthetic and augment-* runs at the base point")
                      : all_of(f, parts));
  }
  {
    Finding f{"Augmentation raises the test ELBO less than synthetic data does", "Figs. 2, 10, 11",
              "", ""};
    std::vector<Finding> parts;
    for (const Aggregate* a : augments) {
      if (synthetic) parts.push_back(by_sign(f, *synthetic, *a, kTestElbo, true, "test ELBO"));
    }
    out.push_back(parts.empty()
                      ? untested(f, "needs synthetic and augment-* runs at the base point")
                      : all_of(f, parts));
  }
  {
    Finding f{"Augmentation shrinks G_g against normal training", "Table 7", "", ""};
    std::vector<Finding> parts;
    for (const Aggregate* a : augments) {
      if (normal) parts.push_back(by_sign(f, *a, *normal, kGg, false, "G_g"));
    }
    out.push_back(parts.empty() ? untested(f, "needs normal and augment-* runs at the base point")
                                : all_of(f, parts));
  }
  {
    Finding f{
        "A larger latent (more parameters next to z) raises the test ELBO and shrinks G_g under "
        "normal training",
        "Figs. 6, 7a-b", "", ""};
    const AxisSweep* s = sweep_with_tail(an, {"latent", "m_z"});
    if (s == nullptr) {
      out.push_back(untested(f,
                             "no latent-size axis (model.config.latent or model.config.m_z) with "
                             "two normal-training points"));
    } else {
      const auto cells = ordered_cells(*s, "normal");
      const Aggregate& small = *cells.front().second;
      const Aggregate& large = *cells.back().second;
      out.push_back(all_of(f, {by_sign(f, large, small, kTestElbo, true, "test ELBO"),
                               by_sign(f, large, small, kGg, false, "G_g")}));
    }
  }
  {
    Finding f{
        "Widening the layers away from z at the base latent size widens G_g under normal training",
        "Fig. 7c-d", "", ""};
    const AxisSweep* s = sweep_with_tail(an, {"n_c", "hidden"});
    if (s == nullptr) {
      out.push_back(untested(f,
                             "no width axis (model.config.n_c or model.config.hidden) with two "
                             "normal-training points"));
    } else {
      const auto cells = ordered_cells(*s, "normal");
      out.push_back(by_sign(f, *cells.back().second, *cells.front().second, kGg, true, "G_g"));
    }
  }
  {
    Finding f{"Synthetic data keeps G_g below normal training's at every model size", "Fig. 7", "",
              ""};
    std::vector<Finding> parts;
    std::set<const Aggregate*> seen;
    for (const AxisSweep& s : an.sweeps) {
      if (!starts_with(s.axis, "model.")) continue;
      for (size_t i = 0; i < s.values.size(); ++i) {
        const auto n = s.cells.find({i, "normal"});
        const auto y = s.cells.find({i, "synthetic"});
        if (n == s.cells.end() || y == s.cells.end() || !seen.insert(y->second).second) continue;
        parts.push_back(by_sign(f, *y->second, *n->second, kGg, false, "G_g"));
      }
    }
    if (parts.size() < 2) {
      out.push_back(untested(f, "needs normal and synthetic runs at two or more model sizes"));
    } else {
      Finding r = all_of(f, parts);
      const auto held = std::count_if(parts.begin(), parts.end(),
                                      [](const Finding& p) { return p.verdict == "reproduced"; });
      r.evidence = "holds at " + std::to_string(held) + " of " + std::to_string(parts.size()) +
                   " sizes: " + r.evidence;
      out.push_back(r);
    }
  }
  {
    Finding f{
        "About 10×|D_train| synthetic images suffice: raising k past 10 gains less than raising it "
        "to 10",
        "Fig. 4 (right)", "", ""};
    const AxisSweep* k = nullptr;
    for (const AxisSweep& s : an.sweeps) {
      if (s.axis == "train.synthetic.k" && s.numeric) k = &s;
    }
    std::vector<std::pair<double, const Aggregate*>> points;
    if (k) {
      for (const auto& [where, a] : k->cells) {
        if (where.second == "synthetic" && a->mean(kTestElbo))
          points.emplace_back(k->values[where.first].get<double>(), a);
      }
      std::sort(points.begin(), points.end(),
                [](const auto& x, const auto& y) { return x.first < y.first; });
    }
    const auto ten =
        std::find_if(points.begin(), points.end(), [](const auto& p) { return p.first >= 10; });
    if (k == nullptr) {
      out.push_back(untested(f, "train.synthetic.k is not an axis of this study"));
    } else if (points.empty() || ten == points.end() || ten == points.begin() ||
               ten + 1 == points.end()) {
      out.push_back(untested(f, "needs synthetic runs at k below 10, at k ≥ 10 and above that"));
    } else {
      const auto& lo = points.front();
      const auto& hi = points.back();
      const double to_ten = *ten->second->mean(kTestElbo) - *lo.second->mean(kTestElbo);
      const double past_ten = *hi.second->mean(kTestElbo) - *ten->second->mean(kTestElbo);
      f.verdict = past_ten < to_ten ? "reproduced" : "not reproduced";
      f.evidence = "test ELBO k=" + value_text(lo.first) + " " +
                   stat_text(lo.second->stat(kTestElbo), 2) + ", k=" + value_text(ten->first) +
                   " " + stat_text(ten->second->stat(kTestElbo), 2) +
                   ", k=" + value_text(hi.first) + " " + stat_text(hi.second->stat(kTestElbo), 2) +
                   ": " + signed_fixed(to_ten, 2) + " nats up to k=" + value_text(ten->first) +
                   ", " + signed_fixed(past_ten, 2) + " past it";
      out.push_back(f);
    }
  }
  {
    Finding f{
        "Along a path through model sizes, −test ELBO against parameters goes down, up and down "
        "again "
        "(an apparent double descent made by the path)",
        "Fig. 8", "", ""};
    if (an.paths.empty()) {
      out.push_back(untested(f, "no path in this study"));
    } else {
      std::string evidence;
      bool found = false, tested = false;
      for (const std::string& path : an.paths) {
        std::vector<double> ys;
        for (const PathStep& s : an.path_steps) {
          if (s.path == path && s.regime == "normal" && s.aggregate.mean(kTestElbo))
            ys.push_back(-*s.aggregate.mean(kTestElbo));
        }
        if (ys.size() < 4) continue;
        tested = true;
        // Down, then up, then down: scan the moves for that order.
        int stage = 0;
        for (size_t i = 1; i < ys.size(); ++i) {
          const double move = ys[i] - ys[i - 1];
          if ((stage == 0 || stage == 2) && move < 0)
            ++stage;
          else if (stage == 1 && move > 0)
            ++stage;
        }
        const bool shape = stage >= 3;
        found = found || shape;
        std::string seq;
        for (double y : ys) seq += (seq.empty() ? "" : ", ") + fixed(y, 2);
        evidence += (evidence.empty() ? "" : "; ") + path + " (normal): −test ELBO " + seq +
                    (shape ? " — down, up, down" : " — not down, up, down");
      }
      if (!tested) {
        out.push_back(untested(f, "needs a path with at least four normal-training steps"));
      } else {
        f.verdict = found ? "reproduced" : "not reproduced";
        f.evidence = evidence;
        out.push_back(f);
      }
    }
  }
  {
    Finding f{
        "Training on synthetic data raises the linear-probe accuracy of the encoder's means "
        "(the paper's gain is within one std)",
        "Table 11", "", ""};
    out.push_back(normal && synthetic
                      ? by_sign(f, *synthetic, *normal, "probe_accuracy", true, "probe accuracy", 3)
                      : untested(f, need_both));
  }
  return out;
}

// ---- Curves and downstream metrics ---------------------------------------------------------

/// Fills c.tail_change, c.late_range and c.trend from the test-ELBO points (Curve's comment).
void end_of_curve(Curve& c) {
  std::vector<std::pair<double, double>> points;  // (epoch, mean test ELBO)
  for (size_t i = 0; i < c.epochs.size(); ++i) {
    if (c.elbo_test_nats[i]) points.emplace_back(static_cast<double>(c.epochs[i]), *c.elbo_test_nats[i]);
  }
  if (points.size() < 2) return;
  const double last = points.back().first, first = points.front().first;
  const double from = last - 0.2 * (last - first);
  size_t start = points.size() - 2;
  while (start > 0 && points[start - 1].first >= from) --start;
  double mx = 0, my = 0;
  const auto n = static_cast<double>(points.size() - start);
  for (size_t i = start; i < points.size(); ++i) {
    mx += points[i].first / n;
    my += points[i].second / n;
  }
  double sxy = 0, sxx = 0;
  for (size_t i = start; i < points.size(); ++i) {
    sxy += (points[i].first - mx) * (points[i].second - my);
    sxx += (points[i].first - mx) * (points[i].first - mx);
  }
  c.tail_from_epoch = static_cast<int64_t>(points[start].first);
  c.tail_change = sxy / sxx * (last - points[start].first);
  const double middle = first + 0.5 * (last - first);
  double lo = points.back().second, hi = lo;
  for (const auto& p : points) {
    if (p.first < middle) continue;
    lo = std::min(lo, p.second);
    hi = std::max(hi, p.second);
  }
  c.late_range = hi - lo;
  const double threshold = std::max(0.1 * *c.late_range, 0.0025 * std::abs(points.back().second));
  c.trend = std::abs(*c.tail_change) <= threshold ? "flat"
            : *c.tail_change > 0                  ? "rising"
                                                  : "falling";
}

Curve curve_of(const StudyRecord& study, const Aggregate& a) {
  Curve c;
  c.regime = a.regime;
  std::map<int64_t, std::pair<std::vector<double>, std::vector<double>>> by_epoch;
  for (const RunRecord* run : a.runs) {
    const auto it = study.metrics.find(run->id);
    if (it == study.metrics.end() || it->second.empty()) continue;
    ++c.runs;
    for (const MetricPoint& p : it->second) {
      auto& slot = by_epoch[p.epoch];
      if (p.point.contains(kTrainElbo) && p.point[kTrainElbo].is_number())
        slot.first.push_back(p.point[kTrainElbo].get<double>());
      if (p.point.contains(kTestElbo) && p.point[kTestElbo].is_number())
        slot.second.push_back(p.point[kTestElbo].get<double>());
    }
  }
  const auto mean = [](const std::vector<double>& xs) -> std::optional<double> {
    if (xs.empty()) return std::nullopt;
    double s = 0;
    for (double x : xs) s += x;
    return s / static_cast<double>(xs.size());
  };
  for (const auto& [epoch, slot] : by_epoch) {
    c.epochs.push_back(epoch);
    c.elbo_train_nats.push_back(mean(slot.first));
    c.elbo_test_nats.push_back(mean(slot.second));
  }
  end_of_curve(c);
  return c;
}

std::optional<Stat> stat_opt(const Aggregate* a, const std::string& key) {
  if (a == nullptr || a->stat(key) == nullptr) return std::nullopt;
  return *a->stat(key);
}

DownstreamRow downstream_of(const Analysis& an, const std::string& regime) {
  DownstreamRow row;
  row.regime = regime;
  row.aggregate = an.at_base(regime);
  row.probe_accuracy = stat_opt(row.aggregate, "probe_accuracy");
  row.knn_accuracy = stat_opt(row.aggregate, "knn_accuracy");
  row.bits_per_dim_test = stat_opt(row.aggregate, "bits_per_dim_test");
  row.compressed_bits_per_dim_test = stat_opt(row.aggregate, "compressed_bits_per_dim_test");
  row.anomaly_auroc = stat_opt(row.aggregate, "anomaly_auroc");
  if (row.anomaly_auroc) {
    row.anomaly_source = "main runs";
  } else {
    for (const Aggregate& a : an.anomaly_aggregates) {
      if (a.regime == regime && a.at_base && a.stat("anomaly_auroc")) {
        row.anomaly_auroc = *a.stat("anomaly_auroc");
        row.anomaly_source = "anomaly AUROC from the anomaly runs (one class held out of training)";
      }
    }
    if (!row.anomaly_auroc)
      row.anomaly_source =
          "no anomaly AUROC: no finished run of this regime at the base point measured it";
  }
  if (!row.bits_per_dim_test) {
    std::string likelihood;
    if (row.aggregate) {
      for (const RunRecord* r : row.aggregate->runs) {
        if (r->summary.is_object() && r->summary.contains("likelihood") &&
            r->summary["likelihood"].is_string()) {
          likelihood = r->summary["likelihood"].get<std::string>();
        }
      }
    }
    if (likelihood == "gaussian") {
      row.bits_per_dim_note =
          "n/a: the Gaussian likelihood is a density on continuous values, so no code length";
    } else if (row.aggregate == nullptr) {
      row.bits_per_dim_note = "n/a: no finished run at the base point";
    } else {
      row.bits_per_dim_note =
          "n/a: not in the summaries" +
          (likelihood.empty() ? std::string() : " (likelihood " + likelihood + ")");
    }
  }
  return row;
}

}  // namespace

// ---- Public pieces --------------------------------------------------------------------------

const Stat* Aggregate::stat(const std::string& key) const {
  const auto it = stats.find(key);
  return it == stats.end() ? nullptr : &it->second;
}

std::optional<double> Aggregate::mean(const std::string& key) const {
  const Stat* s = stat(key);
  if (s == nullptr) return std::nullopt;
  return s->mean;
}

std::string Delta::note() const {
  if (!value) return "missing";
  switch (verdict) {
    case Spread::outside:
      return "";
    case Spread::within:
      return "within the seed spread";
    case Spread::unknown:
      break;
  }
  return "one seed: spread unknown";
}

Delta make_delta(const Aggregate& a, const Aggregate& b, const std::string& key) {
  Delta d;
  const Stat* x = a.stat(key);
  const Stat* y = b.stat(key);
  if (x == nullptr || y == nullptr) return d;
  d.value = x->mean - y->mean;
  if (x->std && y->std) {
    d.spread = std::sqrt(*x->std * *x->std + *y->std * *y->std);
    d.verdict = std::abs(*d.value) <= *d.spread ? Delta::Spread::within : Delta::Spread::outside;
  }
  return d;
}

std::string lever_name(Lever lever) {
  switch (lever) {
    case Lever::data:
      return "data";
    case Lever::parameters:
      return "parameters";
    case Lever::both:
      return "data + parameters";
    case Lever::other:
      break;
  }
  return "other";
}

const Aggregate* Analysis::at_base(const std::string& regime) const {
  for (const Aggregate& a : aggregates) {
    if (a.regime == regime && a.at_base) return &a;
  }
  return nullptr;
}

namespace {

/// Generators that trained at least one main run (the runs the findings are decided on) and whose
/// check.json suspects memorization. A generator of anomaly runs alone does not count.
std::vector<std::string> memorized_generators(const StudyRecord& study) {
  std::vector<std::string> out;
  for (const GeneratorRecord& g : study.generators) {
    const json& c = g.check;
    if (!c.is_object() || !c.value("memorization_suspected", false)) continue;
    const bool used = std::any_of(study.runs.begin(), study.runs.end(), [&](const RunRecord& r) {
      return r.purpose == "main" && r.generator_key && *r.generator_key == g.key;
    });
    if (!used) continue;
    std::string text = "`" + g.key + "`";
    if (c.contains("samples_within_threshold_fraction") &&
        c["samples_within_threshold_fraction"].is_number()) {
      text += " (" + fixed(100 * c["samples_within_threshold_fraction"].get<double>(), 1) +
              " % of samples within the copy threshold";
      if (c.contains("test_within_threshold_fraction") &&
          c["test_within_threshold_fraction"].is_number()) {
        text += " vs " + fixed(100 * c["test_within_threshold_fraction"].get<double>(), 1) +
                " % of held-out images";
      }
      text += ")";
    }
    out.push_back(text);
  }
  return out;
}

}  // namespace

Analysis analyze(const StudyRecord& study) {
  Analysis an;
  std::vector<const RunRecord*> main_runs, anomaly_runs, path_runs;
  for (const RunRecord& r : study.runs) {
    if (r.purpose == "main" &&
        std::find(an.regimes.begin(), an.regimes.end(), r.regime) == an.regimes.end()) {
      an.regimes.push_back(r.regime);
    }
    if (r.status != "done") continue;
    if (r.purpose == "main") main_runs.push_back(&r);
    if (r.purpose == "anomaly") anomaly_runs.push_back(&r);
    if (r.purpose == "main" && r.path_name) {
      path_runs.push_back(&r);
      if (std::find(an.paths.begin(), an.paths.end(), *r.path_name) == an.paths.end())
        an.paths.push_back(*r.path_name);
    }
  }
  std::stable_partition(an.regimes.begin(), an.regimes.end(),
                        [](const auto& r) { return r == "normal"; });

  an.aggregates = group_runs(main_runs, study, aggregate_key, an.duplicate_runs);
  int64_t ignored = 0;
  an.anomaly_aggregates = group_runs(anomaly_runs, study, aggregate_key, ignored);
  std::vector<Aggregate> steps = group_runs(
      path_runs, study,
      [](const RunRecord& r) {
        return *r.path_name + "\n" + std::to_string(r.path_step.value_or(0)) + "\n" + r.regime;
      },
      ignored);
  for (Aggregate& a : steps) {
    const RunRecord& first = *a.runs.front();
    an.path_steps.push_back(
        {*first.path_name, first.path_step.value_or(0), a.regime, std::move(a)});
  }
  std::stable_sort(
      an.path_steps.begin(), an.path_steps.end(), [&](const PathStep& x, const PathStep& y) {
        const auto px = std::find(an.paths.begin(), an.paths.end(), x.path) - an.paths.begin();
        const auto py = std::find(an.paths.begin(), an.paths.end(), y.path) - an.paths.begin();
        const auto rx =
            std::find(an.regimes.begin(), an.regimes.end(), x.regime) - an.regimes.begin();
        const auto ry =
            std::find(an.regimes.begin(), an.regimes.end(), y.regime) - an.regimes.begin();
        return std::tie(px, rx, x.step) < std::tie(py, ry, y.step);
      });

  // Sweeps: every base-point axis, the others at their base values.
  for (const auto& [axis, base_value] : study.base_point.items()) {
    AxisSweep s;
    s.axis = axis;
    for (const Aggregate& a : an.aggregates) {
      if (!a.axes.contains(axis)) continue;
      bool others_at_base = true;
      for (const auto& [other, v] : study.base_point.items()) {
        if (other != axis && (!a.axes.contains(other) || a.axes.at(other) != v))
          others_at_base = false;
      }
      if (!others_at_base) continue;
      const json& value = a.axes.at(axis);
      auto it = std::find(s.values.begin(), s.values.end(), value);
      if (it == s.values.end()) {
        s.values.push_back(value);
        it = s.values.end() - 1;
      }
      const size_t index = static_cast<size_t>(it - s.values.begin());
      s.cells.emplace(std::make_pair(index, a.regime), &a);
    }
    s.numeric =
        std::all_of(s.values.begin(), s.values.end(), [](const json& v) { return v.is_number(); });
    an.sweeps.push_back(std::move(s));
  }
  // Sort the study's axes order onto the sweeps (base_point is a JSON object: keys sorted).
  std::stable_sort(an.sweeps.begin(), an.sweeps.end(), [&](const AxisSweep& x, const AxisSweep& y) {
    return std::find(study.axes.begin(), study.axes.end(), x.axis) <
           std::find(study.axes.begin(), study.axes.end(), y.axis);
  });

  for (const std::string& regime : an.regimes) {
    if (const Aggregate* a = an.at_base(regime)) an.curves.push_back(curve_of(study, *a));
    an.downstream.push_back(downstream_of(an, regime));
  }

  an.baseline = an.at_base("normal");
  if (an.baseline == nullptr) {
    an.baseline_missing =
        std::find(an.regimes.begin(), an.regimes.end(), "normal") == an.regimes.end()
            ? "the study has no normal-training runs, so no baseline"
            : "no normal-training run at the base point has finished, so no baseline";
  } else {
    for (const Aggregate& a : an.aggregates) {
      if (&a == an.baseline) continue;
      ReturnRow r;
      r.aggregate = &a;
      r.lever = classify(a, study.base_point);
      r.test_elbo = make_delta(a, *an.baseline, kTestElbo);
      r.generalization_gap = make_delta(a, *an.baseline, kGg);
      r.amortization_gap = make_delta(a, *an.baseline, kGa);
      r.compressed_bits_per_dim = make_delta(a, *an.baseline, "compressed_bits_per_dim_test");
      r.extra_seconds = make_delta(a, *an.baseline, "cost_seconds");
      r.extra_cpu_minutes = make_delta(a, *an.baseline, "cost_cpu_minutes");
      r.extra_params = mean_difference(a, *an.baseline, kParams);
      if (r.test_elbo.value && r.extra_cpu_minutes.value && *r.extra_cpu_minutes.value > 0) {
        r.nats_per_cpu_minute = *r.test_elbo.value / *r.extra_cpu_minutes.value;
      }
      if (r.test_elbo.value && r.extra_params && *r.extra_params > 0) {
        r.nats_per_million_params = *r.test_elbo.value / (*r.extra_params / 1e6);
      }
      an.return_table.push_back(r);
    }
  }
  an.conclusion = conclude(an);
  an.findings = check_findings(an);
  an.memorized_generators = memorized_generators(study);
  if (!an.memorized_generators.empty()) {
    std::string which;
    for (const std::string& g : an.memorized_generators) which += (which.empty() ? "" : ", ") + g;
    const std::string caveat = "the generator is flagged for memorization: " + which +
                               "; a gain from its samples may come from copies of training images";
    for (Finding& f : an.findings) {
      const bool about_synthetic = f.claim.find("ynthetic") != std::string::npos;
      if (about_synthetic && f.verdict == "reproduced") {
        f.verdict = "inconclusive";
        f.evidence += "; but " + caveat;
      }
    }
    if (!an.conclusion.text.empty()) {
      an.conclusion.text += " Synthetic data here is suspect: " + caveat + ".";
    }
  }
  return an;
}

}  // namespace vaelab::report
