// Studies: expansion of grids, zips and paths into runs; shards; the study database and merge.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/study/study.hpp>

#include "sqlite.hpp"
#include "study_db.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using vaelab::expand_study_text;
using vaelab::StudyPlan;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("vaelab-test-study-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string error_of(const std::string& text) {
  try {
    expand_study_text(text, "bad.toml");
  } catch (const vaelab::Error& e) {
    return e.what();
  }
  return "";
}

int64_t int_at(const toml::table& t, const std::string& path) { return t.at_path(path).value_or<int64_t>(-1); }

}  // namespace

TEST_CASE("a grid crosses its axes, the first key varying slowest", "[study]") {
  const StudyPlan plan = expand_study_text(R"(
[study]
name = "g"
[base.train]
epochs = 7
[grid]
regime = ["normal", "synthetic"]
latent = [8, 16, 32]
seed = [0, 1]
)",
                                           "g.toml");
  REQUIRE(plan.runs.size() == 12);
  CHECK(plan.axes == std::vector<std::string>{"train.regime", "model.config.latent", "train.seed"});
  CHECK(plan.base_point == json{{"model.config.latent", 8}});
  CHECK(plan.runs[0].label == "regime=normal latent=8 seed=0");
  CHECK(plan.runs[1].label == "regime=normal latent=8 seed=1");
  CHECK(plan.runs[2].label == "regime=normal latent=16 seed=0");
  CHECK(plan.runs[11].label == "regime=synthetic latent=32 seed=1");
  CHECK(plan.runs[11].id == "r0011");
  CHECK(plan.runs[7].regime == "synthetic");
  CHECK(plan.runs[7].seed == 1);
  CHECK(plan.runs[7].axes == json{{"train.regime", "synthetic"}, {"model.config.latent", 8}, {"train.seed", 1}});
  // The axis values land in the run config, over the base.
  CHECK(int_at(plan.runs[4].config, "model.config.latent") == 32);
  CHECK(int_at(plan.runs[4].config, "train.epochs") == 7);
  CHECK(plan.runs[4].config.at_path("train.regime").value_or<std::string>("") == "normal");
  std::set<std::string> labels;
  for (const auto& run : plan.runs) labels.insert(run.label);
  CHECK(labels.size() == 12);
}

TEST_CASE("a zip walks its lists together and crosses them with the grid", "[study]") {
  const StudyPlan plan = expand_study_text(R"(
[grid]
seed = [0, 1]
[zip]
hidden = [[64], [128, 128]]
"model.config.latent" = [4, 8]
)",
                                           "z.toml");
  REQUIRE(plan.runs.size() == 4);
  CHECK(plan.runs[0].label == "seed=0 hidden=[64] latent=4");
  CHECK(plan.runs[1].label == "seed=0 hidden=[128,128] latent=8");
  CHECK(plan.runs[3].axes["model.config.hidden"] == json::array({128, 128}));
  CHECK(int_at(plan.runs[3].config, "model.config.latent") == 8);
  CHECK(plan.base_point == json{{"model.config.hidden", json::array({64})}, {"model.config.latent", 4}});
  CHECK(plan.runs[0].regime == "normal");  // no regime axis, no base: the default

  const std::string e = error_of("[zip]\nlatent = [1, 2]\nhidden = [[1]]\n");
  CHECK_THAT(e, Catch::Contains("zip.hidden has 1 values but zip.latent has 2"));
  CHECK_THAT(e, Catch::Contains("bad.toml"));
}

TEST_CASE("named paths are alternatives, each in step order", "[study]") {
  const StudyPlan plan = expand_study_text(R"(
[grid]
regime = ["normal", "synthetic"]
[[path]]
name = "fig8"
steps = [ { m_z = 1, n_c = 8 }, { m_z = 1, n_c = 16 }, { m_z = 2, n_c = 16 } ]
[[path]]
name = "wide"
steps = [ { m_z = 4, n_c = 4 } ]
)",
                                           "p.toml");
  REQUIRE(plan.runs.size() == 8);
  CHECK(plan.runs[0].path_name == std::optional<std::string>("fig8"));
  CHECK(plan.runs[2].path_step == 2);
  CHECK(plan.runs[2].label == "regime=normal path=fig8:2 m_z=2 n_c=16");
  CHECK(plan.runs[3].path_name == std::optional<std::string>("wide"));
  CHECK(plan.runs[4].regime == "synthetic");
  CHECK(int_at(plan.runs[1].config, "model.config.n_c") == 16);
  CHECK(plan.base_point == json{{"model.config.m_z", 1}, {"model.config.n_c", 8}});

  CHECK_THAT(error_of("[[path]]\nname = \"a\"\nsteps = [ { m_z = 1 }, { n_c = 2 } ]\n"),
             Catch::Contains("step 1 of path \"a\" sets other keys than its step 0"));
  CHECK_THAT(error_of("[[path]]\nname = \"a\"\nsteps = [ 3 ]\n"), Catch::Contains("each step of path \"a\" is a table"));
}

TEST_CASE("a study file with a mistake is refused with the key and the place", "[study]") {
  CHECK_THAT(error_of("[grids]\nseed = [1]\n"), Catch::Contains("unknown key (top level).grids (did you mean grid?)"));
  CHECK_THAT(error_of("[study]\njob = 2\n"), Catch::Contains("unknown key study.job (did you mean jobs?)"));
  CHECK_THAT(error_of("[grid]\nseed = []\n"), Catch::Contains("grid.seed must be a non-empty list"));
  CHECK_THAT(error_of("[grid]\nseed = 3\n"), Catch::Contains("grid.seed must be a non-empty list"));
  CHECK_THAT(error_of("[grid]\nwidth = [1, 2]\n"), Catch::Contains("axis \"width\" is neither a run-config key"));
  CHECK_THAT(error_of("[grid]\nseed = [1]\n[zip]\n\"train.seed\" = [2]\n"), Catch::Contains("axis train.seed is given twice"));
  CHECK_THAT(error_of("[study]\nbase = \"missing.toml\"\n"), Catch::Contains("missing.toml"));
  CHECK_THAT(error_of("[study]\njobs = 0\n"), Catch::Contains("jobs"));
  CHECK_THAT(error_of("[base.model]\nplugin = \"vae-mlp\"\n[grid]\n\"model.plugin.x\" = [1]\n"),
             Catch::Contains("\"plugin\" is not a table"));
}

TEST_CASE("the base config file is read relative to the study file", "[study]") {
  const fs::path dir = temp_dir("base");
  std::ofstream(dir / "run.toml") << "[train]\nepochs = 3\nseed = 5\n[model.config]\nlatent = 2\n";
  std::ofstream(dir / "s.toml") << "[study]\nbase = \"run.toml\"\n[base.train]\nepochs = 9\n[grid]\nregime = [\"normal\"]\n";
  const StudyPlan plan = vaelab::expand_study(dir / "s.toml");
  REQUIRE(plan.runs.size() == 1);
  CHECK(plan.settings.name == "s");
  CHECK(int_at(plan.runs[0].config, "train.epochs") == 9);  // [base] over the file
  CHECK(int_at(plan.runs[0].config, "model.config.latent") == 2);
  CHECK(plan.runs[0].seed == 5);
  fs::remove_all(dir);
}

TEST_CASE("the hash of a study changes with any run and only then", "[study]") {
  const std::string text = "[grid]\nlatent = [4, 8]\n";
  const StudyPlan a = expand_study_text(text, "a.toml");
  const StudyPlan b = expand_study_text("# a comment changes nothing\n" + text, "b.toml");
  const StudyPlan c = expand_study_text("[grid]\nlatent = [4, 9]\n", "c.toml");
  CHECK(a.hash.size() == 16);
  CHECK(a.hash == b.hash);
  CHECK(a.hash != c.hash);
}

TEST_CASE("anomaly runs hold the class out at the base point only, and measure no more than the report reads", "[study]") {
  const StudyPlan plan = expand_study_text(R"(
[study]
anomaly_label = 9
[base.eval.amortization]
every_epochs = 10
[base.eval.probe]
every_epochs = 5
[grid]
regime = ["normal", "augment-naive"]
latent = [4, 8]
seed = [0, 1]
)",
                                           "a.toml");
  REQUIRE(plan.runs.size() == 8 + 4);
  for (size_t i = 8; i < plan.runs.size(); ++i) {
    CHECK(plan.runs[i].purpose == "anomaly");
    CHECK(int_at(plan.runs[i].config, "data.holdout_label") == 9);
    CHECK(plan.runs[i].axes["model.config.latent"] == 4);
    // The ELBO curve and the AUROC only: G_a, probes, IWAE and G_r are the main runs' to measure.
    for (const char* metric : {"iwae", "amortization", "robustness", "probe"}) {
      CHECK(int_at(plan.runs[i].config, std::string("eval.") + metric + ".every_epochs") == 0);
    }
  }
  CHECK(plan.runs[0].config.at_path("data.holdout_label").node() == nullptr);
  CHECK(int_at(plan.runs[0].config, "eval.amortization.every_epochs") == 10);
  CHECK(int_at(plan.runs[0].config, "eval.probe.every_epochs") == 5);
}

TEST_CASE("shards partition the runs exactly", "[study]") {
  const StudyPlan plan = expand_study_text("[grid]\nlatent = [1, 2, 3, 4, 5]\nseed = [0, 1, 2]\n", "s.toml");
  for (int64_t n : {1, 2, 4, 7, 20}) {
    std::vector<int> seen(plan.runs.size(), 0);
    for (int64_t i = 0; i < n; ++i) {
      const auto shard = vaelab::Shard::parse(std::to_string(i) + "/" + std::to_string(n));
      for (const auto& run : plan.runs) seen[static_cast<size_t>(run.ordinal)] += shard.holds(run.ordinal) ? 1 : 0;
    }
    for (int count : seen) CHECK(count == 1);
  }
  for (const char* bad : {"3/3", "-1/2", "1", "a/b", "1/0", "1/2x"}) {
    CHECK_THROWS_WITH(vaelab::Shard::parse(bad), Catch::Contains("--shard"));
  }
}

namespace {

/// A shard database as the runner leaves it, with `ids` done.
void make_shard(const fs::path& dir, const std::string& hash, const std::string& shard,
                const std::vector<std::string>& ids) {
  fs::create_directories(dir);
  vaelab::sql::Database db(dir / "study.sqlite", vaelab::sql::Database::Mode::create);
  vaelab::study_db::create_schema(db);
  vaelab::study_db::set_key(db, "config_hash", hash);
  vaelab::study_db::set_key(db, "run_count", "4");
  vaelab::study_db::set_key(db, "shard", shard);
  vaelab::study_db::set_key(db, "name", "m");
  for (const auto& id : ids) {
    db.prepare("INSERT INTO runs (id, ordinal, label, regime, seed, axes, config, status, run_dir, summary, wall_seconds) "
               "VALUES (?1, ?2, 'x', 'normal', 0, '{}', '', 'done', ?3, ?4, 1.5)")
        .bind(1, id)
        .bind(2, static_cast<int64_t>(std::stoi(id.substr(1))))
        .bind(3, "runs/" + id)
        .bind(4, json{{"elbo_test_nats", std::stoi(id.substr(1)) * 10.0}}.dump())
        .run();
    db.prepare("INSERT INTO metrics (run_id, epoch, point) VALUES (?1, 5, '{\"epoch\":5}')").bind(1, id).run();
  }
  db.prepare("INSERT OR IGNORE INTO generators (key, plugin, dir, status) VALUES ('g1', 'gen-pool', 'generators/g1', 'done')").run();
}

}  // namespace

TEST_CASE("merge joins disjoint shards and refuses overlaps and other studies", "[study]") {
  const fs::path dir = temp_dir("merge");
  make_shard(dir / "s0", "h", "0/2", {"r0000", "r0002"});
  make_shard(dir / "s1", "h", "1/2", {"r0001", "r0003"});
  vaelab::merge_studies(dir / "all", {dir / "s0", dir / "s1"});
  {
    vaelab::sql::Database db(dir / "all" / "study.sqlite", vaelab::sql::Database::Mode::read_only);
    vaelab::study_db::check_schema(db);
    auto q = db.prepare("SELECT id, run_dir, summary FROM runs ORDER BY ordinal");
    std::vector<std::string> ids;
    while (q.step()) {
      ids.push_back(q.text(0));
      // Outside the merged folder, a run folder is recorded by its absolute path.
      const std::string shard = "s" + std::to_string(std::stoi(q.text(0).substr(1)) % 2);
      CHECK(q.text(1) == (fs::absolute(dir) / shard / "runs" / q.text(0)).lexically_normal().string());
      CHECK(json::parse(q.text(2))["elbo_test_nats"] == std::stoi(q.text(0).substr(1)) * 10.0);
    }
    CHECK(ids == std::vector<std::string>{"r0000", "r0001", "r0002", "r0003"});
    auto m = db.prepare("SELECT count(*) FROM metrics");
    m.step();
    CHECK(m.integer(0) == 4);
    auto g = db.prepare("SELECT count(*) FROM generators");
    g.step();
    CHECK(g.integer(0) == 1);
    CHECK(vaelab::study_db::get_key(db, "config_hash") == "h");
  }
  CHECK_THROWS_WITH(vaelab::merge_studies(dir / "all", {dir / "s0"}), Catch::Contains("already exists"));
  make_shard(dir / "other", "h2", "1/2", {"r0001"});
  CHECK_THROWS_WITH(vaelab::merge_studies(dir / "x", {dir / "s0", dir / "other"}), Catch::Contains("another study"));
  make_shard(dir / "dup", "h", "1/2", {"r0002"});
  CHECK_THROWS_WITH(vaelab::merge_studies(dir / "y", {dir / "s0", dir / "dup"}), Catch::Contains("r0002 is also in"));
  CHECK_THROWS_WITH(vaelab::merge_studies(dir / "z", {dir / "nothing"}), Catch::Contains("no study database"));
  fs::remove_all(dir);
}

TEST_CASE("a database of another schema version is refused with the file", "[study]") {
  const fs::path dir = temp_dir("schema");
  {
    vaelab::sql::Database db(dir / "study.sqlite", vaelab::sql::Database::Mode::create);
    vaelab::study_db::create_schema(db);
    vaelab::study_db::set_key(db, "schema_version", "99");
  }
  vaelab::sql::Database db(dir / "study.sqlite", vaelab::sql::Database::Mode::read_only);
  CHECK_THROWS_WITH(vaelab::study_db::check_schema(db),
                    Catch::Contains("study.sqlite: study database schema version 99, this vaelab reads version 1"));
  fs::remove_all(dir);
}

TEST_CASE("axes a regime does not read do not multiply its runs", "[study]") {
  const StudyPlan plan = expand_study_text(R"(
[grid]
regime = ["normal", "synthetic", "mixed", "augment-naive"]
k = [1, 10]
real_fraction = [0.25, 0.5]
)",
                                           "k.toml");
  // normal: 1, synthetic: 2 (k), mixed: 4 (k x fraction), augment-naive: 1.
  REQUIRE(plan.runs.size() == 8);
  CHECK(plan.runs[0].label == "regime=normal k=1 real_fraction=0.25");
  CHECK(plan.runs[1].label == "regime=synthetic k=1 real_fraction=0.25");
  CHECK(plan.runs[2].label == "regime=synthetic k=10 real_fraction=0.25");
  CHECK(plan.runs[3].regime == "mixed");
  CHECK(plan.runs[6].label == "regime=mixed k=10 real_fraction=0.5");
  CHECK(plan.runs[7].label == "regime=augment-naive k=1 real_fraction=0.25");
  CHECK(plan.runs[7].id == "r0007");
}

TEST_CASE("study_eta_seconds: the runs left at the mean run time, parallel, with running ones' time counted", "[study]") {
  // 10 runs not started at 60 s each, two at once: 300 s.
  CHECK(vaelab::study_eta_seconds(60, {}, 10, 2) == Approx(300));
  // Two running, 20 s and 70 s in: 40 s and 0 s left (a run past the mean is not negative).
  CHECK(vaelab::study_eta_seconds(60, {20, 70}, 10, 2) == Approx((600 + 40) / 2.0));
  CHECK(vaelab::study_eta_seconds(60, {20}, 0, 1) == Approx(40));
  // Nothing left.
  CHECK(vaelab::study_eta_seconds(60, {}, 0, 2) == Approx(0));
  // The quickstart's case: three minutes of generator fits before the first 58 s run finished,
  // 23 runs left at two at once. Elapsed / done × left would say 77 minutes; this says about 11.
  const double eta = vaelab::study_eta_seconds(58, {58}, 22, 2);
  CHECK(eta == Approx(58 * 22 / 2.0));
  CHECK(eta < 12 * 60);
  // parallel < 1 is taken as 1 rather than dividing by zero.
  CHECK(vaelab::study_eta_seconds(10, {}, 3, 0) == Approx(30));
}
