// The study report (`vaelab report`): aggregates over seeds, the return table's arithmetic, the
// conclusion drawn from it, the Markdown/HTML/gnuplot output, and refusals. Every database here is
// made by hand with the schema of docs/study-database.md, so each expected number is computed by
// hand from the rows inserted.

#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <vaelab/error.hpp>
#include <vaelab/study/report.hpp>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// A fresh folder under the system's temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vaelab-report-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

/// The schema of docs/study-database.md.
const char* const kSchema = R"sql(
CREATE TABLE study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
  id TEXT PRIMARY KEY, ordinal INTEGER NOT NULL, label TEXT NOT NULL, regime TEXT NOT NULL,
  seed INTEGER NOT NULL, axes TEXT NOT NULL, path_name TEXT, path_step INTEGER,
  purpose TEXT NOT NULL, generator_key TEXT, config TEXT NOT NULL, status TEXT NOT NULL,
  owner TEXT, run_dir TEXT, started_utc TEXT, finished_utc TEXT, wall_seconds REAL,
  summary TEXT, error TEXT);
CREATE TABLE metrics (run_id TEXT NOT NULL, epoch INTEGER NOT NULL, point TEXT NOT NULL,
  PRIMARY KEY (run_id, epoch));
CREATE TABLE generators (key TEXT PRIMARY KEY, plugin TEXT NOT NULL, dir TEXT NOT NULL,
  pool TEXT NOT NULL, pool_images INTEGER, fit_seconds REAL, sample_seconds REAL, "check" TEXT,
  status TEXT NOT NULL);
)sql";

struct RunSpec {
  std::string regime;
  int64_t seed = 0;
  json axes = json::object();  ///< without the regime and seed (added here)
  json summary;                ///< null = no summary
  std::optional<double> wall_seconds = std::nullopt;
  std::optional<std::string> generator = std::nullopt;
  std::string status = "done";
  std::string purpose = "main";
  std::optional<std::string> path_name = std::nullopt;
  int64_t path_step = 0;
};

/// A summary with the keys the report reads. G_g = train − test; q*-ELBO = test + G_a.
json summary(double test, double train, std::optional<double> ga, double params,
             double threads = 2) {
  json s = {{"elbo_test_nats", test},
            {"elbo_train_nats", train},
            {"generalization_gap_nats", train - test},
            {"params_total", params},
            {"threads", threads},
            {"likelihood", "gaussian"},
            {"model", "vae-mlp"},
            {"epochs", 10}};
  if (ga) {
    s["amortization_gap_nats"] = *ga;
    s["elbo_star_test_nats"] = test + *ga;
  }
  return s;
}

class StudyDb {
 public:
  StudyDb(const fs::path& dir, const json& axes, const json& base_point, int schema_version = 1)
      : dir_(dir) {
    fs::create_directories(dir);
    REQUIRE(sqlite3_open((dir / "study.sqlite").string().c_str(), &db_) == SQLITE_OK);
    // A throwaway file: no need to wait for the disk on every insert.
    exec("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;");
    exec(kSchema);
    const std::vector<std::pair<std::string, std::string>> keys = {
        {"schema_version", std::to_string(schema_version)},
        {"name", "hand-made"},
        {"config", "# by hand"},
        {"config_hash", "0000000000000000"},
        {"created_utc", "2026-11-28T00:00:00Z"},
        {"vaelab_version", "0.1.0"},
        {"base_point", base_point.dump()},
        {"axes", axes.dump()}};
    for (const auto& [k, v] : keys)
      insert("INSERT INTO study (key, value) VALUES (?1, ?2)", {k, v});
  }
  ~StudyDb() { sqlite3_close(db_); }
  StudyDb(const StudyDb&) = delete;
  StudyDb& operator=(const StudyDb&) = delete;

  void exec(const std::string& sql) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
    const std::string text = message ? message : "";
    sqlite3_free(message);
    INFO(text);
    REQUIRE(rc == SQLITE_OK);
  }

  /// Adds a run; returns its id.
  std::string run(const RunSpec& r) {
    char id[16];
    std::snprintf(id, sizeof id, "r%04d", ordinal_);
    json axes = r.axes;
    axes["train.regime"] = r.regime;
    axes["train.seed"] = r.seed;
    const std::string run_dir = "runs/" + std::string(id);
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(
                db_,
                "INSERT INTO runs (id, ordinal, label, regime, seed, axes, path_name, path_step, "
                "purpose, "
                "generator_key, config, status, run_dir, wall_seconds, summary) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, '', ?11, ?12, ?13, ?14)",
                -1, &s, nullptr) == SQLITE_OK);
    const auto text = [&](int i, const std::string& v) {
      sqlite3_bind_text(s, i, v.c_str(), -1, SQLITE_TRANSIENT);
    };
    text(1, id);
    sqlite3_bind_int(s, 2, ordinal_);
    text(3, "regime=" + r.regime + " seed=" + std::to_string(r.seed));
    text(4, r.regime);
    sqlite3_bind_int64(s, 5, r.seed);
    text(6, axes.dump());
    if (r.path_name) {
      text(7, *r.path_name);
      sqlite3_bind_int64(s, 8, r.path_step);
    }
    text(9, r.purpose);
    if (r.generator) text(10, *r.generator);
    text(11, r.status);
    text(12, run_dir);
    if (r.wall_seconds) sqlite3_bind_double(s, 13, *r.wall_seconds);
    if (!r.summary.is_null()) text(14, r.summary.dump());
    REQUIRE(sqlite3_step(s) == SQLITE_DONE);
    sqlite3_finalize(s);
    ++ordinal_;
    return id;
  }

  void generator(const std::string& key, double fit_seconds, double sample_seconds,
                 const json& check = json()) {
    std::vector<std::string> values = {key, "generators/" + key, "generators/" + key + "/pool.vlp"};
    if (!check.is_null()) values.push_back(check.dump());
    insert(
        "INSERT INTO generators (key, plugin, dir, pool, pool_images, fit_seconds, sample_seconds, "
        "\"check\", status) "
        "VALUES (?1, 'gen-diffusion', ?2, ?3, 20000, " +
            std::to_string(fit_seconds) + ", " + std::to_string(sample_seconds) +
            (check.is_null() ? ", NULL" : ", ?4") + ", 'done')",
        values);
  }

  void metric(const std::string& run_id, int epoch, double train, double test) {
    const json point = {{"epoch", epoch}, {"elbo_train_nats", train}, {"elbo_test_nats", test}};
    insert(
        "INSERT INTO metrics (run_id, epoch, point) VALUES (?1, " + std::to_string(epoch) + ", ?2)",
        {run_id, point.dump()});
  }

 private:
  void insert(const std::string& sql, const std::vector<std::string>& values) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    for (size_t i = 0; i < values.size(); ++i) {
      sqlite3_bind_text(s, static_cast<int>(i + 1), values[i].c_str(), -1, SQLITE_TRANSIENT);
    }
    REQUIRE(sqlite3_step(s) == SQLITE_DONE);
    sqlite3_finalize(s);
  }

  fs::path dir_;
  sqlite3* db_ = nullptr;
  int ordinal_ = 0;
};

const json kAxes = json::array({"train.regime", "model.config.latent", "train.seed"});
const json kBase = {{"model.config.latent", 8}};

/// Three regimes × seeds 0–2 (numbers chosen so every mean and std is exact):
///   normal     latent=8 : test −100 −102 −104 (mean −102, std 2); train −80 −81 −82 (G_g 20 21
///   22);
///                         G_a 10 12 14; wall 100 110 120 s; 2 threads; 1,000,000 parameters
///   synthetic  latent=8 : test −90 −91 −92 (−91 ± 1); train −85 −85 −85 (G_g 5 6 7); G_a 4 4 4;
///                         wall 100 s each; generator g1 (fit 300 s + sample 60 s)
///   normal     latent=32: test −95 −96 −97 (−96 ± 1); train −85 −86 −87 (G_g 10 10 10);
///                         G_a 9, 11 and missing on seed 2; wall 130 s each; 1,500,000 parameters
void levers_study(StudyDb& db) {
  db.generator("g1", 300, 60,
               {{"c2st_accuracy", 0.61}, {"c2st_accuracy_stderr", 0.02}, {"exact_copies", 0}});
  const double normal_test[] = {-100, -102, -104}, normal_train[] = {-80, -81, -82},
               normal_ga[] = {10, 12, 14};
  const double normal_wall[] = {100, 110, 120};
  for (int s = 0; s < 3; ++s) {
    const std::string id = db.run({"normal",
                                   s,
                                   {{"model.config.latent", 8}},
                                   summary(normal_test[s], normal_train[s], normal_ga[s], 1e6),
                                   normal_wall[s]});
    db.metric(id, 5, normal_train[s] - 10, normal_test[s] + 5);
    db.metric(id, 10, normal_train[s], normal_test[s]);
  }
  for (int s = 0; s < 3; ++s) {
    RunSpec r{"synthetic", s, {{"model.config.latent", 8}}, summary(-90 - s, -85, 4, 1e6), 100.0};
    r.generator = "g1";
    const std::string id = db.run(r);
    db.metric(id, 10, -85, -90 - s);
  }
  const std::optional<double> big_ga[] = {9.0, 11.0, std::nullopt};
  for (int s = 0; s < 3; ++s) {
    db.run({"normal",
            s,
            {{"model.config.latent", 32}},
            summary(-95 - s, -85 - s, big_ga[s], 1.5e6),
            130.0});
  }
  // Neither a failed nor a pending run may enter the aggregates.
  db.run({"normal", 3, {{"model.config.latent", 8}}, json(), std::nullopt, std::nullopt, "failed"});
  db.run({"synthetic",
          3,
          {{"model.config.latent", 8}},
          json(),
          std::nullopt,
          std::string("g1"),
          "pending"});
}

const json& aggregate(const json& report, const std::string& regime, int latent) {
  for (const auto& a : report["aggregates"]) {
    if (a["regime"] == regime && a["axes"]["model.config.latent"] == latent) return a;
  }
  FAIL("no aggregate " << regime << " latent=" << latent);
  static const json none;
  return none;
}

const json& return_row(const json& report, const std::string& regime, int latent) {
  for (const auto& r : report["return_table"]) {
    if (r["regime"] == regime && r["axes"]["model.config.latent"] == latent) return r;
  }
  FAIL("no return-table row " << regime << " latent=" << latent);
  static const json none;
  return none;
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The cells of the Markdown table row whose first cell is `first`, after the line `after`.
std::vector<std::string> md_row(const std::string& md, const std::string& after,
                                const std::string& first) {
  std::istringstream lines(md.substr(md.find(after)));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("| " + first + " |", 0) != 0) continue;
    std::vector<std::string> cells;
    std::istringstream parts(line.substr(1));
    std::string cell;
    while (std::getline(parts, cell, '|')) cells.push_back(cell.substr(1, cell.size() - 2));
    return cells;
  }
  FAIL("no table row starting with " << first << " after " << after);
  return {};
}

/// Sets PATH for the scope of the object.
class ScopedPath {
 public:
  explicit ScopedPath(const std::string& value) {
    if (const char* old = std::getenv("PATH")) old_ = old;
    ::setenv("PATH", value.c_str(), 1);
  }
  ~ScopedPath() {
    if (old_) {
      ::setenv("PATH", old_->c_str(), 1);
    } else {
      ::unsetenv("PATH");
    }
  }
  ScopedPath(const ScopedPath&) = delete;
  ScopedPath& operator=(const ScopedPath&) = delete;

 private:
  std::optional<std::string> old_;
};

bool gnuplot_on_path() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && ::access((fs::path(dir) / "gnuplot").c_str(), X_OK) == 0) return true;
  }
  return false;
}

// A 1×1 PNG, and its base64 text.
const unsigned char kPng[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
    0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00,
    0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78,
    0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f, 0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47,
    0xba, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
const char* const kPngBase64 =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg"
    "==";

void write_png(const fs::path& file) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(kPng), sizeof kPng);
}

}  // namespace

TEST_CASE("report aggregates: mean and sample std over seeds, missing values skipped", "[report]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    levers_study(db);
  }
  const json report = vaelab::report_json(tmp.path());

  REQUIRE(report["runs"].size() == 11);
  REQUIRE(report["study"]["runs_done"] == 9);
  REQUIRE(report["study"]["runs_failed"] == 1);
  REQUIRE(report["study"]["runs_pending"] == 1);
  // The JSON of each run carries its whole summary.
  REQUIRE(report["runs"][0]["summary"]["model"] == "vae-mlp");
  REQUIRE(report["runs"][0]["axes"]["model.config.latent"] == 8);

  REQUIRE(report["aggregates"].size() == 3);
  const json& normal = aggregate(report, "normal", 8);
  CHECK(normal["n"] == 3);  // the failed seed 3 is left out
  CHECK(normal["seeds"] == json::array({0, 1, 2}));
  CHECK(normal["axes"] == json({{"model.config.latent", 8}}));  // no seed, no regime
  CHECK(normal["at_base"] == true);
  CHECK(normal["mean"]["elbo_test_nats"].get<double>() == Approx(-102));
  CHECK(normal["std"]["elbo_test_nats"].get<double>() == Approx(2));
  CHECK(normal["mean"]["generalization_gap_nats"].get<double>() == Approx(21));
  CHECK(normal["std"]["generalization_gap_nats"].get<double>() == Approx(1));
  CHECK(normal["mean"]["amortization_gap_nats"].get<double>() == Approx(12));
  CHECK(normal["mean"]["wall_seconds"].get<double>() == Approx(110));
  CHECK(normal["std"]["wall_seconds"].get<double>() == Approx(10));
  CHECK(normal["mean"]["cost_cpu_minutes"].get<double>() == Approx(110.0 * 2 / 60));

  const json& synthetic = aggregate(report, "synthetic", 8);
  CHECK(synthetic["n"] == 3);
  CHECK(synthetic["mean"]["elbo_test_nats"].get<double>() == Approx(-91));
  CHECK(synthetic["std"]["elbo_test_nats"].get<double>() == Approx(1));
  CHECK(synthetic["std"]["amortization_gap_nats"].get<double>() == Approx(0).margin(1e-12));
  CHECK(synthetic["mean"]["cost_seconds"].get<double>() == Approx(100 + 300 + 60));

  // G_a is missing on one seed: averaged over the other two, never counted as 0.
  const json& big = aggregate(report, "normal", 32);
  CHECK(big["count"]["amortization_gap_nats"] == 2);
  CHECK(big["mean"]["amortization_gap_nats"].get<double>() == Approx(10));
  CHECK(big["std"]["amortization_gap_nats"].get<double>() == Approx(std::sqrt(2.0)));
  CHECK(big["at_base"] == false);
  CHECK(big["point"] == "latent=32");

  // The gap table holds the regimes at the base point.
  REQUIRE(report["gap_table"].size() == 2);
  CHECK(report["gap_table"][0]["regime"] == "normal");
  CHECK(report["gap_table"][1]["generalization_gap_nats"]["mean"].get<double>() == Approx(6));
}

TEST_CASE("report return table: deltas, costs with the generator's seconds, ratios", "[report]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    levers_study(db);
  }
  const json report = vaelab::report_json(tmp.path());
  REQUIRE(report["baseline"]["regime"] == "normal");
  REQUIRE(report["return_table"].size() == 2);

  // synthetic vs normal at the base point.
  const json& syn = return_row(report, "synthetic", 8);
  CHECK(syn["lever"] == "data");
  CHECK(syn["delta_elbo_test_nats"]["value"].get<double>() == Approx(11));
  CHECK(syn["delta_elbo_test_nats"]["spread"].get<double>() == Approx(std::sqrt(5.0)));
  CHECK(syn["delta_elbo_test_nats"]["note"] == "");
  CHECK(syn["delta_generalization_gap_nats"]["value"].get<double>() == Approx(-15));
  CHECK(syn["delta_amortization_gap_nats"]["value"].get<double>() == Approx(-8));
  // Cost: 100 s of training + 300 s fit + 60 s sampling, against 110 s.
  CHECK(syn["extra_wall_seconds"].get<double>() == Approx(460 - 110));
  const double syn_cpu = (460.0 - 110.0) * 2 / 60;
  CHECK(syn["extra_cpu_minutes"].get<double>() == Approx(syn_cpu));
  CHECK(syn["extra_params"].get<double>() == Approx(0).margin(1e-9));
  CHECK(syn["nats_per_extra_cpu_minute"].get<double>() == Approx(11 / syn_cpu));
  CHECK(syn["nats_per_extra_million_params"].is_null());  // no extra parameters: —

  // normal at latent=32 vs normal at the base point.
  const json& big = return_row(report, "normal", 32);
  CHECK(big["lever"] == "parameters");
  CHECK(big["delta_elbo_test_nats"]["value"].get<double>() == Approx(6));
  CHECK(big["delta_generalization_gap_nats"]["value"].get<double>() == Approx(-11));
  CHECK(big["delta_amortization_gap_nats"]["value"].get<double>() == Approx(-2));
  CHECK(big["delta_amortization_gap_nats"]["spread"].get<double>() == Approx(std::sqrt(2.0 + 4.0)));
  CHECK(big["delta_amortization_gap_nats"]["note"] == "within the seed spread");
  CHECK(big["extra_wall_seconds"].get<double>() == Approx(20));
  CHECK(big["extra_cpu_minutes"].get<double>() == Approx(20.0 * 2 / 60));
  CHECK(big["extra_params"].get<double>() == Approx(500000));
  CHECK(big["nats_per_extra_cpu_minute"].get<double>() == Approx(6 / (20.0 * 2 / 60)));
  CHECK(big["nats_per_extra_million_params"].get<double>() == Approx(6 / 0.5));
}

TEST_CASE("report conclusion names the lever that paid more per CPU-minute", "[report]") {
  TempDir tmp;
  StudyDb db(tmp.path(), kAxes, kBase);
  levers_study(db);

  SECTION("an expensive generator: the larger latent wins") {
    const json report = vaelab::report_json(tmp.path());
    CHECK(report["conclusion_detail"]["winner"] == "parameters");
    CHECK(report["conclusion_detail"]["best_parameter_lever"]["point"] == "latent=32");
    const std::string text = report["conclusion"];
    CHECK_THAT(text, Catch::Contains("Parameter levers paid more per unit of cost"));
    CHECK_THAT(text, Catch::Contains("normal (latent=32)"));
    CHECK_THAT(text, Catch::Contains("Best data lever: synthetic"));
    CHECK_THAT(text, !Catch::Contains("within the seed spread"));
  }
  SECTION("a cheap generator: synthetic data wins") {
    db.exec("UPDATE generators SET fit_seconds = 10, sample_seconds = 2");
    const json report = vaelab::report_json(tmp.path());
    // (112 − 110) s × 2 threads / 60 = 0.0667 CPU-minutes for +11 nats: 165 nats per CPU-minute,
    // and an extra within the seed spread of the costs (normal's 100, 110, 120 s): no measurable
    // extra CPU time, which beats any price.
    const json& syn = return_row(report, "synthetic", 8);
    CHECK(syn["nats_per_extra_cpu_minute"].get<double>() == Approx(11 / (2.0 * 2 / 60)));
    CHECK(syn["extra_cpu_minutes_note"] == "within the seed spread");
    CHECK(report["conclusion_detail"]["winner"] == "data");
    const std::string text = report["conclusion"];
    CHECK_THAT(text, Catch::Contains(
                         "Data levers paid more per unit of cost: synthetic gave +11.00 nats at no "
                         "measurable extra CPU time against 9.000 nats per extra CPU-minute"));
  }
}

TEST_CASE("report conclusion says within the seed spread instead of naming a winner", "[report]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    db.generator("g1", 30, 6);
    // normal −100, −110 (std 7.07); synthetic −101, −104 (Δ +2.5); latent 32: −100, −106 (Δ +2).
    for (int s = 0; s < 2; ++s) {
      db.run({"normal",
              s,
              {{"model.config.latent", 8}},
              summary(s ? -110 : -100, -90, 5, 1e6),
              100.0});
      RunSpec r{"synthetic",
                s,
                {{"model.config.latent", 8}},
                summary(s ? -104 : -101, -95, 5, 1e6),
                100.0};
      r.generator = "g1";
      db.run(r);
      db.run({"normal",
              s,
              {{"model.config.latent", 32}},
              summary(s ? -106 : -100, -90, 5, 2e6),
              120.0});
    }
  }
  const json report = vaelab::report_json(tmp.path());
  CHECK(return_row(report, "synthetic", 8)["delta_elbo_test_nats"]["value"].get<double>() ==
        Approx(2.5));
  CHECK(return_row(report, "synthetic", 8)["delta_elbo_test_nats"]["note"] ==
        "within the seed spread");
  CHECK(report["conclusion_detail"]["winner"].is_null());
  const std::string text = report["conclusion"];
  CHECK_THAT(text, Catch::StartsWith("Best data lever") && Catch::Contains("No winner"));
  CHECK_THAT(text, Catch::Contains("within the seed spread"));
  CHECK_THAT(text, !Catch::Contains("paid more"));
}

TEST_CASE("report conclusion with one seed says the spread is unknown", "[report]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    db.run({"normal", 0, {{"model.config.latent", 8}}, summary(-100, -90, 5, 1e6), 100.0});
    db.run({"augment-naive", 0, {{"model.config.latent", 8}}, summary(-95, -92, 5, 1e6), 100.0});
  }
  const json report = vaelab::report_json(tmp.path());
  const json& row = return_row(report, "augment-naive", 8);
  CHECK(row["delta_elbo_test_nats"]["value"].get<double>() == Approx(5));
  CHECK(row["delta_elbo_test_nats"]["spread"].is_null());
  CHECK(row["delta_elbo_test_nats"]["note"] == "one seed: spread unknown");
  CHECK(row["extra_cpu_minutes"].get<double>() == Approx(0).margin(1e-12));
  CHECK(row["nats_per_extra_cpu_minute"].is_null());  // no extra cost: —
  CHECK(report["conclusion_detail"]["winner"].is_null());
  CHECK_THAT(report["conclusion"].get<std::string>(), Catch::Contains("one seed: spread unknown"));
  CHECK_THAT(report["conclusion"].get<std::string>(),
             Catch::Contains("No parameter lever in this study"));
}

TEST_CASE("report findings are decided by the aggregates", "[report]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    levers_study(db);
  }
  const json report = vaelab::report_json(tmp.path());
  const auto verdict = [&](const std::string& start) {
    for (const auto& f : report["findings"]) {
      if (f["claim"].get<std::string>().rfind(start, 0) == 0)
        return f["verdict"].get<std::string>();
    }
    FAIL("no finding " << start);
    return std::string();
  };
  CHECK(verdict("Training on synthetic data shrinks the generalization gap") ==
        "reproduced");                                                                // 6 vs 21
  CHECK(verdict("Training on synthetic data raises the test ELBO") == "reproduced");  // −91 vs −102
  CHECK(verdict("Training on synthetic data shrinks the amortization gap") ==
        "reproduced");                                // 4 vs 12
  CHECK(verdict("A larger latent") == "reproduced");  // latent 32: −96 vs −102, G_g 10 vs 21
  CHECK(verdict("Augmentation shrinks G_g less") == "not tested");
  CHECK(verdict("Along a path") == "not tested");
  CHECK(verdict("About 10") == "not tested");
  // q*-ELBO: normal −90, synthetic −87 (span 3) against test ELBOs −102, −91 (span 11).
  CHECK(verdict("The q*-ELBO stays close") == "reproduced");
}

TEST_CASE("report: no synthetic-data finding is reproduced on a generator flagged for memorization",
          "[report]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    levers_study(db);
    db.exec(R"(UPDATE generators SET "check" = '{"c2st_accuracy": 0.61, "exact_copies": 40, )"
            R"("samples_within_threshold_fraction": 0.2, "test_within_threshold_fraction": 0.01, )"
            R"("memorization_suspected": true, "frechet_distance": 12.5, )"
            R"("frechet_distance_real": 1.25}')");
  }
  const json report = vaelab::report_json(tmp.path());
  const auto finding = [&](const std::string& start) {
    for (const auto& f : report["findings"]) {
      if (f["claim"].get<std::string>().rfind(start, 0) == 0) return f;
    }
    FAIL("no finding " << start);
    return json();
  };
  // The same numbers as above, where these were reproduced.
  const json gain = finding("Training on synthetic data raises the test ELBO");
  CHECK(gain["verdict"] == "inconclusive");
  CHECK_THAT(gain["evidence"].get<std::string>(),
             Catch::Contains("flagged for memorization") &&
                 Catch::Contains("`g1` (20.0 % of samples within the copy threshold vs 1.0 % of "
                                 "held-out images)"));
  CHECK(finding("Training on synthetic data shrinks the generalization gap")["verdict"] ==
        "inconclusive");
  // Findings about other levers keep their verdicts.
  CHECK(finding("A larger latent")["verdict"] == "reproduced");
  CHECK(finding("The q*-ELBO stays close")["verdict"] == "reproduced");
  CHECK_THAT(report["conclusion"].get<std::string>(),
             Catch::Contains("Synthetic data here is suspect"));

  const std::string text = read_text(vaelab::write_report(tmp.path()));
  const auto row = md_row(text, "### Generators", "`g1`");
  INFO(text.substr(text.find("### Generators"), 2000));
  REQUIRE(row.size() == 15);
  CHECK(row[9] == "12.50 (1.25)");
  CHECK(row[12] == "0.200 vs 0.010");
  CHECK(row[14] == "yes");
  CHECK_THAT(text, Catch::Contains("**inconclusive** — Training on synthetic data raises"));
}

TEST_CASE("report: a flagged generator that trained only anomaly runs leaves the findings alone",
          "[report]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    levers_study(db);
    db.generator("g2", 30, 6, {{"memorization_suspected", true}});
    RunSpec r{"synthetic", 0, {{"model.config.latent", 8}}, summary(-90, -85, 4, 1e6), 100.0};
    r.generator = "g2";
    r.purpose = "anomaly";
    db.run(r);
  }
  const json report = vaelab::report_json(tmp.path());
  for (const auto& f : report["findings"]) {
    if (f["claim"].get<std::string>().rfind("Training on synthetic data raises the test ELBO", 0) == 0)
      CHECK(f["verdict"] == "reproduced");
  }
  CHECK_THAT(report["conclusion"].get<std::string>(), !Catch::Contains("suspect"));
}

TEST_CASE("write_report writes md, self-contained html, plot scripts and data", "[report]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    levers_study(db);
  }
  write_png(tmp.path() / "runs" / "r0000" / "samples.png");
  write_png(tmp.path() / "generators" / "g1" / "pool.vlp.check" / "samples.png");

  SECTION("without gnuplot: every table, the scripts, and how to get the plots") {
    TempDir empty_bin;
    fs::path md;
    {
      ScopedPath path(empty_bin.path().string());
      md = vaelab::write_report(tmp.path());
    }
    REQUIRE(md == tmp.path() / "report.md");
    const std::string text = read_text(md);
    CHECK_THAT(text,
               Catch::Contains("install gnuplot (Debian: gnuplot-nox) and rerun vaelab report"));
    for (const char* stem : {"gaps", "elbo_curves", "size_model_config_latent"}) {
      CHECK(fs::is_regular_file(tmp.path() / "plots" / (std::string(stem) + ".gp")));
      CHECK(fs::is_regular_file(tmp.path() / "plots" / (std::string(stem) + ".csv")));
      CHECK_FALSE(fs::exists(tmp.path() / "plots" / (std::string(stem) + ".png")));
    }
    // The script names its data and its output, relative to plots/.
    const std::string gp = read_text(tmp.path() / "plots" / "gaps.gp");
    CHECK_THAT(gp, Catch::Contains("set terminal png") &&
                       Catch::Contains("set output 'gaps.png'") && Catch::Contains("'gaps.csv'"));
    CHECK_THAT(read_text(tmp.path() / "plots" / "gaps.csv"),
               Catch::StartsWith("regime,") && Catch::Contains("\nnormal,21,1,12,2,3\n"));

    // Numbers in the Markdown equal the database's.
    const auto gaps = md_row(text, "## Gaps per regime", "normal");
    REQUIRE(gaps.size() == 9);
    CHECK(gaps[1] == "3");
    CHECK(std::stod(gaps[2]) == Approx(-102));  // "-102.00 ± 2.00"
    CHECK_THAT(gaps[2], Catch::Contains("± 2.00"));
    CHECK(std::stod(gaps[4]) == Approx(21));
    CHECK(gaps[6] == "—");  // no robustness metric in these summaries
    CHECK(gaps[8] == "1000000");
    const auto big = md_row(text, "## Return on cost", "normal");
    CHECK(big[1] == "latent=32");
    CHECK(std::stod(big[4]) == Approx(6));
    CHECK(std::stod(big[10]) == Approx(6 / (20.0 * 2 / 60)).epsilon(1e-3));
    // G_a of latent=32 is missing on one seed: its cell says so.
    const auto sizes = md_row(text, "### `model.config.latent`", "32");
    CHECK_THAT(sizes[5], Catch::Contains("(n=2)"));
    CHECK_THAT(text, Catch::Contains("Empty: no path axis in this study"));
    CHECK_THAT(text, Catch::Contains("bits/dim n/a: the Gaussian likelihood is a density"));
    CHECK_THAT(text, Catch::Contains("](runs/r0000/samples.png)"));

    const std::string html = read_text(tmp.path() / "report.html");
    CHECK_THAT(html, Catch::StartsWith("<!DOCTYPE html>"));
    CHECK_THAT(html, !Catch::Contains("src=\"http") && !Catch::Contains("href=\"http") &&
                         !Catch::Contains("<script"));
    CHECK_THAT(html,
               Catch::Contains(std::string("src=\"data:image/png;base64,") + kPngBase64 + "\""));
    CHECK_THAT(html, Catch::Contains("<td class=\"num\">-102.00 ± 2.00</td>"));
  }
  SECTION("with gnuplot: PNGs in plots/, embedded in the html") {
    if (!gnuplot_on_path()) {
      WARN(
          "gnuplot is not installed: the PNG path is not checked (Debian: apt-get install "
          "gnuplot-nox)");
      return;
    }
    const fs::path md = vaelab::write_report(tmp.path());
    const std::string text = read_text(md);
    CHECK_THAT(text, !Catch::Contains("install gnuplot"));
    for (const char* stem : {"gaps", "elbo_curves", "size_model_config_latent"}) {
      INFO(stem);
      CHECK(fs::file_size(tmp.path() / "plots" / (std::string(stem) + ".png")) > 1000);
      CHECK_THAT(text, Catch::Contains(std::string("](plots/") + stem + ".png)"));
    }
    const std::string html = read_text(tmp.path() / "report.html");
    CHECK_THAT(html, !Catch::Contains("src=\"http") && !Catch::Contains("plots/gaps.png"));
  }
}

TEST_CASE("report refuses another schema version and a missing database, naming the file",
          "[report]") {
  TempDir tmp;
  SECTION("schema version 2") {
    { StudyDb db(tmp.path(), kAxes, kBase, 2); }
    const std::string file = (tmp.path() / "study.sqlite").string();
    CHECK_THROWS_AS(vaelab::report_json(tmp.path()), vaelab::Error);
    CHECK_THROWS_WITH(vaelab::report_json(tmp.path()), Catch::Contains(file) &&
                                                           Catch::Contains("version 2") &&
                                                           Catch::Contains("reads version 1"));
    CHECK_THROWS_WITH(vaelab::write_report(tmp.path()), Catch::Contains(file));
    CHECK_FALSE(fs::exists(tmp.path() / "report.md"));
  }
  SECTION("no database") {
    const fs::path dir = tmp.path() / "nothing-here";
    CHECK_THROWS_AS(vaelab::write_report(dir), vaelab::Error);
    CHECK_THROWS_WITH(vaelab::write_report(dir), Catch::Contains((dir / "study.sqlite").string()));
  }
  SECTION("a malformed row") {
    {
      StudyDb db(tmp.path(), kAxes, kBase);
      db.run({"normal", 0, {{"model.config.latent", 8}}, summary(-100, -90, 5, 1e6), 100.0});
      db.exec("UPDATE runs SET summary = '{not json'");
    }
    CHECK_THROWS_WITH(vaelab::report_json(tmp.path()),
                      Catch::Contains("study.sqlite") && Catch::Contains("r0000 summary"));
  }
}

TEST_CASE("report with a discrete likelihood: compressed bits/dim per regime and Δ bits/dim",
          "[report][compress]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    const double normal_bits[] = {0.200, 0.202, 0.204};
    for (int s = 0; s < 3; ++s) {
      json sm = summary(-100 - s, -80, std::nullopt, 1e6);
      sm["likelihood"] = "bernoulli";
      sm["bits_per_dim_test"] = normal_bits[s] - 0.001;
      sm["compressed_bits_per_dim_test"] = normal_bits[s];
      db.run({"normal", s, {{"model.config.latent", 8}}, sm, 100.0});
    }
    for (int s = 0; s < 2; ++s) {
      json sm = summary(-95 - s, -85, std::nullopt, 1.5e6);
      sm["likelihood"] = "bernoulli";
      sm["compressed_bits_per_dim_test"] = 0.190 + 0.002 * s;
      db.run({"normal", s, {{"model.config.latent", 32}}, sm, 120.0});
    }
  }
  const json report = vaelab::report_json(tmp.path());
  const json& big = return_row(report, "normal", 32);
  CHECK(big["delta_compressed_bits_per_dim_test"]["value"].get<double>() == Approx(0.191 - 0.202));
  REQUIRE(report["downstream"].size() == 1);
  CHECK(report["downstream"][0]["compressed_bits_per_dim_test"]["mean"].get<double>() == Approx(0.202));

  const std::string text = read_text(vaelab::write_report(tmp.path()));
  CHECK_THAT(text, Catch::Contains("compressed bits/dim (test)") && Catch::Contains("Δ bits/dim (compressed)"));
  const auto row = md_row(text, "## Return on cost", "normal");
  REQUIRE(row.size() == 13);
  CHECK(std::stod(row[7]) == Approx(-0.011).margin(1e-4));  // "-0.0110 *" or with a note
}

TEST_CASE("report with a Gaussian likelihood has no compressed columns", "[report][compress]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    levers_study(db);
  }
  const std::string text = read_text(vaelab::write_report(tmp.path()));
  CHECK_THAT(text, !Catch::Contains("compressed bits/dim") && !Catch::Contains("Δ bits/dim"));
}

TEST_CASE("report: how each test-ELBO curve ends (last 20 % of the epochs)", "[report]") {
  TempDir tmp;
  {
    StudyDb db(tmp.path(), kAxes, kBase);
    // normal: saturates (−100 → −80 with a time constant of 10 epochs); synthetic: still rising
    // by 1 nat per 10 epochs; augment-naive: peaks at epoch 50 and falls 0.5 nats per 10 epochs.
    const std::string normal = db.run({"normal", 0, {{"model.config.latent", 8}}, summary(-80, -70, 1, 1e6), 100.0});
    const std::string synthetic =
        db.run({"synthetic", 0, {{"model.config.latent", 8}}, summary(-90, -85, 1, 1e6), 100.0});
    const std::string naive =
        db.run({"augment-naive", 0, {{"model.config.latent", 8}}, summary(-95, -85, 1, 1e6), 100.0});
    for (int e = 0; e <= 100; e += 10) {
      db.metric(normal, e, -70, -100 + 20 * (1 - std::exp(-e / 10.0)));
      db.metric(synthetic, e, -85, -100 + 0.1 * e);
      db.metric(naive, e, -85, e <= 50 ? -100 + 0.2 * e : -90 - 0.05 * (e - 50));
    }
  }
  const json report = vaelab::report_json(tmp.path());
  std::map<std::string, json> curves;
  for (const auto& c : report["curves"]) curves[c["regime"].get<std::string>()] = c;
  // The window is epochs 80–100; a straight line's change over it is exact.
  CHECK(curves["synthetic"]["test_elbo_trend"] == "rising");
  CHECK(curves["synthetic"]["test_elbo_tail_from_epoch"] == 80);
  CHECK(curves["synthetic"]["test_elbo_tail_change_nats"].get<double>() == Approx(2.0));
  CHECK(curves["synthetic"]["test_elbo_second_half_range_nats"].get<double>() == Approx(5.0));
  CHECK(curves["augment-naive"]["test_elbo_trend"] == "falling");
  CHECK(curves["augment-naive"]["test_elbo_tail_change_nats"].get<double>() == Approx(-1.0));
  // 20·(e^−8 − e^−10) ≈ 0.006 nats, under 0.25 % of the last value (0.2 nats).
  CHECK(curves["normal"]["test_elbo_trend"] == "flat");
  const std::string text = read_text(vaelab::write_report(tmp.path()));
  CHECK(md_row(text, "## Train and test ELBO", "synthetic")[6] == "+2.00 since epoch 80 (rising)");
}
