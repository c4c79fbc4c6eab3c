// End-to-end: `vaelab study`, `vaelab report` and `vaelab study merge` on tiny Fashion-MNIST
// studies (seconds each): the report's numbers equal the database's, a study killed mid-way
// resumes to the same end, and shards merged equal the study run in one process.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "cli_runner.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path work_dir() { return vaelab::testing::scratch_dir("vaelab-e2e-study"); }

vaelab::testing::CliResult vaelab_cli(const std::string& args) { return vaelab::testing::run_cli(work_dir(), args); }

/// The shared part of the tiny studies: 150 training images, a 32-unit VAE, 3 epochs.
const char* kTinyBase = R"(
[base.data]
train_size = 150
test_size = 300
[base.data.config]
pad_to = 32
[base.model]
plugin = "vae-mlp"
[base.model.config]
hidden = [32]
latent = 4
[base.train]
epochs = 3
[base.eval]
every_epochs = 1
[base.eval.probe]
every_epochs = 3
)";

fs::path write_study(const std::string& name, const std::string& text) {
  const fs::path file = work_dir() / (name + ".toml");
  std::ofstream(file) << text;
  return file;
}

/// Rows of a query on a study database, each column as text (NULL as ""). `write` opens it for
/// writing (an UPDATE), which must then finish without error.
std::vector<std::vector<std::string>> query(const fs::path& db_file, const std::string& sql,
                                            bool write = false) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(db_file.c_str(), &db, write ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, nullptr) ==
          SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  std::vector<std::vector<std::string>> rows;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
      const auto* text = sqlite3_column_text(stmt, c);
      row.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
    }
    rows.push_back(std::move(row));
  }
  if (write) CHECK(rc == SQLITE_DONE);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return rows;
}

int64_t count(const fs::path& db_file, const std::string& where) {
  return std::stoll(query(db_file, "SELECT count(*) FROM runs WHERE " + where)[0][0]);
}

/// count() for a database another process may still be creating: -1 until its runs table exists
/// (the file appears before the schema is committed).
int64_t count_while_starting(const fs::path& db_file, const std::string& where) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(db_file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* stmt = nullptr;
    const std::string sql = "SELECT count(*) FROM runs WHERE " + where;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW) {
      n = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return n;
}

}  // namespace

TEST_CASE("a tiny study with a generator and anomaly runs writes a report whose numbers are its database's", "[study]") {
  const fs::path study = write_study("tiny", std::string(R"(
[study]
name = "tiny"
jobs = 2
check_samples = 100
anomaly_label = 9
[base.generator]
plugin = "gen-diffusion"
[base.generator.config]
space = "pca"
pca_dims = 8
network = "mlp"
mlp_width = 16
mlp_blocks = 1
steps = 20
sampler_steps = 3
[grid]
regime = ["normal", "synthetic"]
seed = [0, 1]
)") + kTinyBase);
  const fs::path out = work_dir() / "tiny-out";
  const auto r = vaelab_cli("study '" + study.string() + "' --out '" + out.string() + "'");
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("report: " + (out / "report.md").string()));
  const fs::path db = out / "study.sqlite";
  CHECK(count(db, "status = 'done'") == 8);
  CHECK(count(db, "purpose = 'anomaly'") == 4);
  // Two generators: one on all classes, one without the held-out class; each checked.
  const auto gens = query(db, "SELECT status, pool_images, \"check\" FROM generators ORDER BY key");
  REQUIRE(gens.size() == 2);
  for (const auto& g : gens) {
    CHECK(g[0] == "done");
    CHECK(std::stoll(g[1]) > 0);
    const json check = json::parse(g[2]);
    REQUIRE(check.is_object());
    CHECK(check["frechet_distance"].is_number());
  }
  // One feature network for the Fréchet distances of both checks, kept with the generators.
  int feature_nets = 0;
  for (const auto& e : fs::directory_iterator(out / "generators" / "feature-nets"))
    feature_nets += e.path().extension() == ".pt";
  CHECK(feature_nets == 1);
  // Every run's metric series is in the database, one point per epoch.
  for (const auto& row : query(db, "SELECT id, (SELECT count(*) FROM metrics m WHERE m.run_id = runs.id) FROM runs")) {
    CHECK(row[1] == "3");
  }
  // The anomaly runs score the held-out class.
  for (const auto& row : query(db, "SELECT summary FROM runs WHERE purpose = 'anomaly'")) {
    const double auroc = json::parse(row[0]).at("anomaly_auroc").get<double>();
    CHECK(auroc >= 0.0);
    CHECK(auroc <= 1.0);
  }

  // vaelab report --json: each run's summary is the database's, and the mean of a regime's test
  // ELBO over seeds is the mean of the database's values.
  const auto j = vaelab_cli("report '" + out.string() + "' --json");
  REQUIRE(j.code == 0);
  const json report = json::parse(j.out);
  std::map<std::string, double> test_elbo;
  for (const auto& row : query(db, "SELECT id, summary FROM runs")) {
    test_elbo[row[0]] = json::parse(row[1]).at("elbo_test_nats").get<double>();
  }
  REQUIRE(report.at("runs").size() == 8);
  for (const auto& run : report.at("runs")) {
    CHECK(run.at("summary").at("elbo_test_nats").get<double>() == test_elbo.at(run.at("id").get<std::string>()));
  }
  const auto normal = query(db, "SELECT summary FROM runs WHERE purpose = 'main' AND regime = 'normal'");
  REQUIRE(normal.size() == 2);
  const double mean = 0.5 * (json::parse(normal[0][0]).at("elbo_test_nats").get<double>() +
                             json::parse(normal[1][0]).at("elbo_test_nats").get<double>());
  bool found = false;
  for (const auto& agg : report.at("aggregates")) {
    if (agg.at("regime") == "normal") {
      CHECK(agg.at("mean").at("elbo_test_nats").get<double>() == Approx(mean).epsilon(1e-12));
      found = true;
    }
  }
  CHECK(found);
  char text[64];
  std::snprintf(text, sizeof text, "%.2f", mean);
  const std::string md = vaelab::testing::slurp(out / "report.md");
  CHECK_THAT(md, Catch::Contains(text));
  CHECK(fs::exists(out / "report.html"));
  CHECK(fs::exists(out / "runs" / "r0000" / "samples.png"));
  CHECK(fs::exists(out / "runs" / "r0000" / "reconstructions.png"));

  // The same study again without --resume is refused; nothing is touched.
  const auto again = vaelab_cli("study '" + study.string() + "' --out '" + out.string() + "'");
  CHECK(again.code != 0);
  CHECK_THAT(again.err, Catch::Contains("pass --resume"));

  // A check written before the Fréchet distance existed is run again when --resume needs its
  // generator (here for a run marked unfinished); the fit, the pool and the other runs are kept.
  fs::path old_check;
  for (const auto& e : fs::recursive_directory_iterator(out / "generators")) {
    if (e.path().filename() == "check.json") old_check = e.path();
  }
  REQUIRE_FALSE(old_check.empty());
  json stale = json::parse(vaelab::testing::slurp(old_check));
  for (const char* key : {"frechet_distance", "frechet_distance_real", "frechet_feature_net",
                          "frechet_missing", "frechet_samples", "frechet_held_out"})
    stale.erase(key);
  std::ofstream(old_check) << stale.dump();
  const std::string key = old_check.parent_path().parent_path().filename().string();
  query(db, "UPDATE runs SET status = 'pending' WHERE id = (SELECT id FROM runs WHERE generator_key = '" + key +
                "' ORDER BY id LIMIT 1)",
        true);
  CHECK(count(db, "status = 'done'") == 7);
  const auto resumed = vaelab_cli("study '" + study.string() + "' --out '" + out.string() + "' --resume --no-report");
  INFO(resumed.out << resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK(json::parse(vaelab::testing::slurp(old_check))["frechet_distance"].is_number());
  CHECK(count(db, "status = 'done'") == 8);
  CHECK_THAT(resumed.out, Catch::Contains("checking samples against the data") &&
                              !Catch::Contains("fitting") && !Catch::Contains("sampling"));
}

TEST_CASE("a study trains runs without a generator while it fits one, and a failed fit fails only its runs", "[study]") {
  const auto study_text = [](int64_t pca_dims) {
    return std::string(R"(
[study]
name = "overlap"
jobs = 2
check_samples = 50
[base.generator]
plugin = "gen-diffusion"
[base.generator.config]
space = "pca"
network = "mlp"
mlp_width = 16
mlp_blocks = 1
steps = 20
sampler_steps = 3
pca_dims = )") + std::to_string(pca_dims) + R"(
[grid]
regime = ["normal", "synthetic"]
)" + kTinyBase;
  };
  const auto line_of = [](const std::string& text, const std::string& needle) {
    const size_t at = text.find(needle);
    return at == std::string::npos ? std::string::npos : static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
  };

  const fs::path good = write_study("overlap", study_text(8));
  const auto r = vaelab_cli("study '" + good.string() + "' --out '" + (work_dir() / "overlap-out").string() + "' --no-report");
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  // The normal run starts beside the fit, before the generator is even checked; the synthetic one
  // only once the pool is checked and recorded.
  const size_t normal_start = line_of(r.out, "start r0000 ");
  const size_t checked = line_of(r.out, "checking samples against the data");
  const size_t synthetic_start = line_of(r.out, "start r0001 ");
  REQUIRE(normal_start != std::string::npos);
  REQUIRE(checked != std::string::npos);
  REQUIRE(synthetic_start != std::string::npos);
  CHECK(normal_start < checked);
  CHECK(checked < synthetic_start);
  CHECK(count(work_dir() / "overlap-out" / "study.sqlite", "status = 'done'") == 2);

  // 5,000 principal components of 32×32 images cannot be fitted: the synthetic run fails with the
  // generator's error, the normal run is trained and kept, and the study says runs failed.
  const fs::path bad = write_study("overlap-bad", study_text(5000));
  const fs::path bad_out = work_dir() / "overlap-bad-out";
  const auto b = vaelab_cli("study '" + bad.string() + "' --out '" + bad_out.string() + "' --no-report");
  INFO(b.out << b.err);
  CHECK(b.code != 0);
  CHECK_THAT(b.err, Catch::Contains("1 runs failed"));
  const fs::path db = bad_out / "study.sqlite";
  CHECK(query(db, "SELECT status FROM runs WHERE regime = 'normal'") == std::vector<std::vector<std::string>>{{"done"}});
  const auto failed = query(db, "SELECT status, error FROM runs WHERE regime = 'synthetic'");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0][0] == "failed");
  CHECK_THAT(failed[0][1], Catch::Contains("could not be prepared") && Catch::Contains("pca_dims"));
  CHECK(query(db, "SELECT status FROM generators") == std::vector<std::vector<std::string>>{{"failed"}});
}

TEST_CASE("a study killed mid-way resumes, and shards merged equal the study in one process", "[study]") {
  const fs::path study = write_study("kill", std::string(R"(
[study]
name = "kill"
jobs = 1
[grid]
seed = [0, 1, 2, 3]
)") + kTinyBase);
  const fs::path out = work_dir() / "kill-out";
  const fs::path db = out / "study.sqlite";
  const pid_t pid = fork();
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execl(VAELAB_TEST_EXE, VAELAB_TEST_EXE, "study", study.c_str(), "--out", out.c_str(), "--no-report",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  REQUIRE(pid > 0);
  // Kill it once a run is finished and the next is running.
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (fs::exists(db) && count_while_starting(db, "status = 'done'") >= 1 &&
        count_while_starting(db, "status = 'running'") >= 1) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(killed);
  const int64_t done_before = count(db, "status = 'done'");
  CHECK(done_before < 4);
  CHECK(count(db, "status = 'running'") == 1);

  const auto resumed = vaelab_cli("study '" + study.string() + "' --out '" + out.string() + "' --resume");
  INFO(resumed.out << resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK_THAT(resumed.err, Catch::Contains("was interrupted"));
  CHECK(count(db, "status = 'done'") == 4);
  for (const auto& row : query(db, "SELECT (SELECT count(*) FROM metrics m WHERE m.run_id = runs.id) FROM runs")) {
    CHECK(row[0] == "3");
  }
  // Another study file into the same folder is refused, naming it, and nothing recorded changes.
  const fs::path changed = write_study("kill-changed", std::string(R"(
[study]
name = "kill"
jobs = 1
[grid]
seed = [0, 1, 2]
)") + kTinyBase);
  const auto other = vaelab_cli("study '" + changed.string() + "' --out '" + out.string() + "' --resume");
  CHECK(other.code != 0);
  CHECK_THAT(other.err, Catch::Contains("holds another study") && Catch::Contains(changed.string()));
  CHECK(count(db, "status = 'done'") == 4);

  // Two shards, run apart and merged: the same runs with the same numbers.
  for (const char* shard : {"0/2", "1/2"}) {
    const std::string dir = (work_dir() / (std::string("shard") + shard[0])).string();
    const auto r = vaelab_cli("study '" + study.string() + "' --out '" + dir + "' --shard " + shard + " --no-report");
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
  }
  CHECK(count(work_dir() / "shard0" / "study.sqlite", "1") == 2);
  const auto merged = vaelab_cli("study merge '" + (work_dir() / "merged").string() + "' '" +
                                 (work_dir() / "shard0").string() + "' '" + (work_dir() / "shard1").string() + "'");
  INFO(merged.err);
  REQUIRE(merged.code == 0);
  const std::string columns = "SELECT id, label, status, summary FROM runs ORDER BY id";
  const auto one = query(db, columns);
  const auto joined = query(work_dir() / "merged" / "study.sqlite", columns);
  REQUIRE(one.size() == joined.size());
  for (size_t i = 0; i < one.size(); ++i) {
    CHECK(one[i][0] == joined[i][0]);
    CHECK(one[i][1] == joined[i][1]);
    CHECK(one[i][2] == joined[i][2]);
    // Training on the CPU backend with one thread is deterministic: the same test ELBO.
    CHECK(json::parse(one[i][3]).at("elbo_test_nats") == json::parse(joined[i][3]).at("elbo_test_nats"));
  }
  const auto report = vaelab_cli("report '" + (work_dir() / "merged").string() + "'");
  INFO(report.err);
  CHECK(report.code == 0);
}

TEST_CASE("vaelab study refuses to start as one rank of a data-parallel launch", "[study]") {
  const fs::path file = write_study("under-launcher", std::string("[study]\nname = \"under-launcher\"\n") + kTinyBase);
  const fs::path out = work_dir() / "under-launcher-out";
  const auto r = vaelab::testing::run_cli(work_dir(), "study '" + file.string() + "' --out '" + out.string() + "'",
                                          "WORLD_SIZE=2 RANK=0");
  REQUIRE(r.code != 0);
  REQUIRE_THAT(r.err, Catch::Contains("WORLD_SIZE=2") && Catch::Contains("--shard i/n"));
  REQUIRE_FALSE(fs::exists(out / "study.sqlite"));
}
