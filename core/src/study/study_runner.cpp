// `vaelab study`: the runner. The data flow of a study:
//   1. expand_study (study.cpp) gives the runs; this file records them in DIR/study.sqlite
//   2. every generator the synthetic runs need is fitted once (`vaelab generator fit`), sampled
//      once into a pool (`vaelab generator sample`) and checked (`vaelab generator check`)
//   3. each run trains in a child process (`vaelab train`), up to `jobs` at once; when it ends,
//      its summary.json and metrics.jsonl go into the database in one transaction
// Child processes keep a crash, a leak or a diverging run inside one run; the database only ever
// records finished runs, so a killed study resumes where it was (--resume).

#include <vaelab/clock.hpp>
#include <vaelab/study/study.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <vaelab/build_info.h>
#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/io/run_store.hpp>
#include <vaelab/log.hpp>
#include <vaelab/train/run.hpp>

#include "study_db.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace vaelab {
namespace {

constexpr const char* kDatabase = "study.sqlite";

volatile std::sig_atomic_t g_interrupted = 0;
void on_interrupt(int /*signal*/) { g_interrupted = 1; }

std::string hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown-host";
  return name;
}

std::string owner_tag() { return hostname() + ":" + std::to_string(getpid()); }

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file.string() + ": cannot read");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// Whether a stopped run's folder can be continued with `vaelab train --resume`: it has its
/// config.toml, no summary.json, and a checkpoint whose header says format 1
/// (docs/checkpoints.md). Only the safetensors header is read.
bool resumable(const fs::path& run_dir) {
  std::error_code ec;
  if (!fs::exists(run_dir / "config.toml", ec) || fs::exists(run_dir / "summary.json", ec)) return false;
  std::ifstream in(run_dir / "checkpoints" / "last.safetensors", std::ios::binary);
  unsigned char length_bytes[8] = {};
  if (!in.read(reinterpret_cast<char*>(length_bytes), 8)) return false;
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | length_bytes[i];
  if (length > (100ull << 20)) return false;
  std::string header(static_cast<size_t>(length), '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(length))) return false;
  try {
    const json h = json::parse(header);
    return h.at("__metadata__").at("vaelab_checkpoint_version") == "1";
  } catch (const std::exception&) {
    return false;
  }
}

std::string last_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::string last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

/// A child process of the study: `vaelab ARGS...` with stdout and stderr appended to `log`. The
/// child is killed when the study process dies, so a killed study leaves no orphan still writing
/// into its folder.
pid_t spawn(const fs::path& executable, const std::vector<std::string>& args, const fs::path& log,
            const cpu_set_t* cpus = nullptr) {
  std::vector<std::string> argv_text = {executable.string()};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(log.string() + ": cannot open the log: " + std::strerror(errno));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {  // the child: only async-signal-safe calls until exec
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);  // the study died before prctl took effect
    if (cpus != nullptr) sched_setaffinity(0, sizeof(cpu_set_t), cpus);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  const int fork_errno = errno;
  close(fd);
  if (pid < 0) throw Error(executable.string() + ": cannot start: " + std::strerror(fork_errno));
  return pid;
}

/// Waits for one child; returns its exit status (128 + signal when killed). An interrupt of the
/// study is passed on to the child (a generator fit then checkpoints before it stops).
int wait_for(pid_t pid) {
  int status = 0;
  bool forwarded = false;
  while (true) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) throw Error(std::string("waitpid: ") + std::strerror(errno));
    if (g_interrupted && !forwarded) {
      kill(pid, SIGINT);
      forwarded = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// The CPUs this process may use, split into `jobs` disjoint sets, one per concurrent child: a
/// backend that takes "every CPU this process may use" (torch-cpu's default) then uses its share
/// instead of oversubscribing the machine. Empty (no pinning) for one job or more jobs than CPUs.
std::vector<cpu_set_t> cpu_slots(int64_t jobs) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (jobs <= 1 || sched_getaffinity(0, sizeof allowed, &allowed) != 0) return {};
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  if (static_cast<int64_t>(cpus.size()) < jobs) return {};
  std::vector<cpu_set_t> slots(static_cast<size_t>(jobs));
  for (auto& slot : slots) CPU_ZERO(&slot);
  for (size_t i = 0; i < cpus.size(); ++i) CPU_SET(cpus[i], &slots[i % slots.size()]);
  return slots;
}

/// Runs one `vaelab` child to its end; throws with its log's last line if it fails.
double run_child(const fs::path& executable, const std::vector<std::string>& args, const fs::path& log,
                 const std::string& what, const cpu_set_t* cpus) {
  const auto start = std::chrono::steady_clock::now();
  const int rc = wait_for(spawn(executable, args, log, cpus));
  if (g_interrupted) throw Error(what + ": interrupted");
  if (rc != 0) throw Error(what + " failed (exit " + std::to_string(rc) + "): " + last_line(log) + " (log: " + log.string() + ")");
  return seconds_since(start);
}

std::string relative_to(const fs::path& path, const fs::path& base) {
  std::error_code ec;
  const fs::path rel = fs::relative(path, base, ec);
  if (!ec && !rel.empty() && rel.native().rfind("..", 0) != 0) return rel.string();
  return fs::absolute(path).string();
}

bool needs_synthetic(const std::string& regime) { return regime == "synthetic" || regime == "mixed"; }

/// What a run needs from a generator the study fits.
struct GeneratorNeed {
  std::string key;
  std::string plugin;
  toml::table config;  ///< a run config naming the generator (its [data] and [generator] matter)
  int64_t k = 1;       ///< the largest train.synthetic.k among its runs
};

/// The study's view of one run while it is planned and trained.
struct Job {
  const StudyRun* run = nullptr;
  std::string generator_key;  ///< "" = none fitted by the study
  bool fresh = false;         ///< train.synthetic.fresh: sample the generator folder every epoch
  pid_t pid = 0;
  size_t slot = 0;  ///< its share of the CPUs (StudyRunner::slots_)
  std::chrono::steady_clock::time_point start;
};

class StudyRunner {
 public:
  StudyRunner(const StudyPlan& plan, const StudyRunOptions& options)
      : plan_(plan), options_(options), dir_(options.out),
        db_(prepare_folder(options.out, options.resume), sql::Database::Mode::create) {}

  int64_t run() {
    slots_ = cpu_slots(parallel_jobs());
    record_study();
    std::vector<Job> jobs = plan_jobs();
    return train(jobs);
  }

 private:
  static fs::path prepare_folder(const fs::path& dir, bool resume) {
    const fs::path file = dir / kDatabase;
    std::error_code ec;
    if (fs::exists(file, ec) && !resume) {
      throw Error(file.string() + ": a study is already here; pass --resume to continue it, or choose another --out");
    }
    fs::create_directories(dir / "configs", ec);
    if (!ec) fs::create_directories(dir / "logs", ec);
    if (!ec) fs::create_directories(dir / "runs", ec);
    if (ec) throw Error(dir.string() + ": cannot create the study folder: " + ec.message());
    return file;
  }

  /// A new database gets the study and its runs; a resumed one must hold the same study.
  void record_study() {
    const bool fresh = [&] {
      sql::Statement q = db_.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'study'");
      q.step();
      return q.integer(0) == 0;
    }();
    if (!fresh) {
      study_db::check_schema(db_);
      const std::string hash = study_db::get_key(db_, "config_hash");
      if (hash != plan_.hash) {
        // A changed study file changes the runs, and so can a newer vaelab expanding the same file.
        throw Error(db_.file().string() + ": holds another study: its runs differ from those " + plan_.file.string() +
                    " expands to now (the file changed, or this vaelab expands it differently from the one that "
                    "began the study, " + study_db::get_key(db_, "vaelab_version") +
                    "); resume with the file and build that began it, or choose another --out");
      }
      const std::string shard = study_db::get_key(db_, "shard");
      if (shard != options_.shard.text()) {
        throw Error(db_.file().string() + ": holds shard " + shard + ", not " + options_.shard.text());
      }
      redo_killed_runs();
      return;
    }
    study_db::create_schema(db_);
    sql::Transaction t(db_);
    json axes = plan_.axes;
    study_db::set_key(db_, "name", plan_.settings.name);
    study_db::set_key(db_, "config", plan_.text);
    study_db::set_key(db_, "config_hash", plan_.hash);
    study_db::set_key(db_, "created_utc", utc_now());
    study_db::set_key(db_, "vaelab_version", VAELAB_VERSION);
    study_db::set_key(db_, "base_point", plan_.base_point.dump());
    study_db::set_key(db_, "axes", axes.dump());
    study_db::set_key(db_, "run_count", std::to_string(plan_.runs.size()));
    study_db::set_key(db_, "shard", options_.shard.text());
    sql::Statement insert = db_.prepare(
        "INSERT INTO runs (id, ordinal, label, regime, seed, axes, path_name, path_step, purpose, config) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    for (const StudyRun& run : plan_.runs) {
      if (!options_.shard.holds(run.ordinal)) continue;
      insert.bind(1, run.id).bind(2, run.ordinal).bind(3, run.label).bind(4, run.regime).bind(5, run.seed);
      insert.bind(6, run.axes.dump()).bind(7, run.path_name);
      if (run.path_step >= 0) {
        insert.bind(8, run.path_step);
      } else {
        insert.bind_null(8);
      }
      insert.bind(9, run.purpose).bind(10, format_toml(run.config)).run();
    }
    t.commit();
  }

  /// A run left `running` by a process that is gone was killed: its folder is removed and it is
  /// redone. One still running elsewhere stops this process (two runners on one study).
  void redo_killed_runs() {
    sql::Statement q = db_.prepare("SELECT id, owner FROM runs WHERE status = 'running'");
    std::vector<std::string> killed;
    const std::string host = hostname();
    while (q.step()) {
      const std::string owner = q.text(1);
      const auto colon = owner.rfind(':');
      if (colon != std::string::npos && owner.substr(0, colon) == host) {
        const pid_t pid = static_cast<pid_t>(std::atoll(owner.c_str() + colon + 1));
        if (pid > 0 && pid != getpid() && kill(pid, 0) == 0) {
          throw Error(db_.file().string() + ": run " + q.text(0) + " is being trained by process " +
                      std::to_string(pid) + " of another vaelab study; wait for it or stop it first");
        }
      }
      killed.push_back(q.text(0));
    }
    sql::Transaction t(db_);
    for (const auto& id : killed) {
      const fs::path run_dir = dir_ / "runs" / id;
      if (resumable(run_dir)) {
        // Kept: start() continues it from its checkpoint (vaelab train --resume).
        logger().warn("run {} was interrupted ({}); it is resumed from its checkpoint", id, run_dir.string());
      } else {
        logger().warn("run {} was interrupted ({}); it is redone", id, run_dir.string());
        std::error_code ec;
        fs::remove_all(run_dir, ec);
      }
      db_.prepare("UPDATE runs SET status = 'pending', owner = NULL WHERE id = ?1").bind(1, id).run();
      db_.prepare("DELETE FROM metrics WHERE run_id = ?1").bind(1, id).run();
    }
    t.commit();
  }

  /// Resolves every unfinished run of this shard (so a bad key fails before anything trains) and
  /// finds the generators they need.
  std::vector<Job> plan_jobs() {
    std::set<std::string> unfinished;
    {
      sql::Statement q = db_.prepare("SELECT id FROM runs WHERE status != 'done'");
      while (q.step()) unfinished.insert(q.text(0));
    }
    std::vector<Job> jobs;
    for (const StudyRun& run : plan_.runs) {
      if (!options_.shard.holds(run.ordinal) || unfinished.count(run.id) == 0) continue;
      Job job;
      job.run = &run;
      RunConfig resolved = [&] {
        try {
          return RunConfig::resolve(run.config, {});
        } catch (const Error& e) {
          throw Error(plan_.file.string() + ": run " + run.id + " (" + run.label + "): " + e.what());
        }
      }();
      const ConfigTable gen = resolved.section("generator");
      const ConfigTable train = resolved.section("train");
      if (needs_synthetic(run.regime) && gen.get_string("pool").empty() && gen.get_string("directory").empty()) {
        if (gen.get_string("plugin").empty()) {
          throw ConfigError(plan_.file.string() + ": run " + run.id + " (" + run.label + ") trains on synthetic data: set "
                            "generator.plugin in the base config (the study fits it once), or generator.pool");
        }
        toml::table gen_table = *resolved.table()["generator"].as_table();
        gen_table.erase("directory");
        gen_table.erase("pool");
        const std::string key = study_db::fnv1a_hex(format_toml(*resolved.table()["data"].as_table()) + "\n" +
                                                    format_toml(gen_table));
        job.generator_key = key;
        job.fresh = train.sub("synthetic").get_bool("fresh");
        GeneratorNeed& need = needs_[key];
        if (need.key.empty()) {
          need.key = key;
          need.plugin = gen.get_string("plugin");
          need.config = run.config;
        }
        need.k = std::max(need.k, train.sub("synthetic").get_int("k"));
      }
      jobs.push_back(job);
    }
    return jobs;
  }

  /// The text of a check.json of this vaelab; empty when it is missing, unreadable, or lacks the
  /// Fréchet distance's keys (a check written before it had them is run again, which is cheap next
  /// to a fit).
  static std::string current_check(const fs::path& file) {
    if (!fs::exists(file)) return {};
    std::string text = read_text(file);
    try {
      return json::parse(text).contains("frechet_distance") ? text : std::string();
    } catch (const json::exception&) {
      return {};
    }
  }

  fs::path generators_root() const {
    return plan_.settings.generators.empty() ? dir_ / "generators" : fs::path(plan_.settings.generators);
  }

  /// A generator ready for the runs: fitted, sampled into a pool, checked.
  struct PreparedGenerator {
    std::string key;
    std::string plugin;
    fs::path dir;
    fs::path pool;
    int64_t pool_images = 0;
    double fit_seconds = 0;
    double sample_seconds = 0;
    std::string check;  ///< check.json, or "" without a check
    std::string error;  ///< why it could not be prepared
  };

  /// Fits, samples and checks one generator in child processes; a finished fit or pool already in
  /// the generators folder (another study's, or this one's before a kill) is reused. No database
  /// access: several run at once on their own threads.
  PreparedGenerator prepare_generator(const GeneratorNeed& need, const cpu_set_t* cpus) const {
    PreparedGenerator g;
    g.key = need.key;
    g.plugin = need.plugin;
    g.dir = generators_root() / need.key;
    const std::string& key = need.key;
    const fs::path config_file = dir_ / "configs" / ("generator-" + key + ".toml");
    const fs::path log = dir_ / "logs" / ("generator-" + key + ".log");
    write_file_atomic(config_file, format_toml(need.config));
    const fs::path info_file = g.dir / "generator.json";
    bool fitted = false;
    if (fs::exists(info_file)) fitted = !json::parse(read_text(info_file)).value("stopped_early", true);
    if (!fitted) {
      std::printf("generator %s (%s): fitting; log %s\n", key.c_str(), need.plugin.c_str(), log.string().c_str());
      std::fflush(stdout);
      run_child(options_.executable, {"generator", "fit", config_file.string(), "--out", g.dir.string()}, log,
                "fitting generator " + key, cpus);
    } else {
      std::printf("generator %s (%s): reusing the fit in %s\n", key.c_str(), need.plugin.c_str(), g.dir.string().c_str());
    }
    const json info = json::parse(read_text(info_file));
    g.fit_seconds = info.value("fit_wall_seconds_total", 0.0);
    g.pool_images = need.k * info.value("train_images", int64_t{0});
    if (g.pool_images < 1) throw Error(info_file.string() + ": no train_images count; refit the generator");
    const std::string n = std::to_string(g.pool_images);
    g.pool = g.dir / ("pool-" + n + ".vlp");
    const fs::path pool_info = g.dir / ("pool-" + n + ".json");
    if (!fs::exists(pool_info)) {
      std::error_code ec;
      fs::remove(g.pool, ec);  // a pool without its record was cut short
      std::printf("generator %s: sampling %s images into %s\n", key.c_str(), n.c_str(), g.pool.string().c_str());
      std::fflush(stdout);
      g.sample_seconds = run_child(options_.executable,
                                   {"generator", "sample", g.dir.string(), "--n", n, "--seed", "0", "--out", g.pool.string()},
                                   log, "sampling generator " + key, cpus);
      write_file_atomic(pool_info, json{{"images", g.pool_images}, {"sample_seconds", g.sample_seconds}}.dump() + "\n");
    } else {
      g.sample_seconds = json::parse(read_text(pool_info)).value("sample_seconds", 0.0);
    }
    if (plan_.settings.check_samples > 0) {
      const fs::path check_dir = g.pool.string() + ".check";
      g.check = current_check(check_dir / "check.json");
      if (g.check.empty()) {
        std::printf("generator %s: checking samples against the data\n", key.c_str());
        std::fflush(stdout);
        run_child(options_.executable,
                  {"generator", "check", g.pool.string(), "--data", config_file.string(), "--n",
                   std::to_string(std::min(plan_.settings.check_samples, g.pool_images)), "--out", check_dir.string(),
                   "--features-cache", (generators_root() / "feature-nets").string()},
                  log, "checking generator " + key, cpus);
        g.check = read_text(check_dir / "check.json");
      }
    }
    return g;
  }

  /// One generator being prepared (prepare_generator) on its own thread, holding a CPU slot like a
  /// run; the runs that train on it start once it is recorded.
  struct GeneratorTask {
    const GeneratorNeed* need = nullptr;
    size_t slot = 0;
    std::thread thread;
    std::atomic<bool> finished{false};
    PreparedGenerator result;
  };

  void start_generator(GeneratorTask& task) {
    const cpu_set_t* cpus = slots_.empty() ? nullptr : &slots_[task.slot];
    task.thread = std::thread([this, &task, cpus] {
      try {
        task.result = prepare_generator(*task.need, cpus);
      } catch (const std::exception& e) {
        task.result.key = task.need->key;
        task.result.error = e.what();
      }
      task.finished = true;
    });
  }

  /// Records a prepared generator in the database (status 'done', or 'failed' with no pool); a
  /// done one's pool becomes available to its runs.
  void record_generator(const PreparedGenerator& g) {
    sql::Transaction t(db_);
    if (!g.error.empty()) {
      db_.prepare("INSERT OR REPLACE INTO generators (key, plugin, dir, status) VALUES (?1, ?2, ?3, 'failed')")
          .bind(1, g.key)
          .bind(2, needs_.at(g.key).plugin)
          .bind(3, relative_to(generators_root() / g.key, dir_))
          .run();
      t.commit();
      return;
    }
    sql::Statement put = db_.prepare(
        "INSERT OR REPLACE INTO generators (key, plugin, dir, pool, pool_images, fit_seconds, sample_seconds, \"check\", status) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'done')");
    put.bind(1, g.key).bind(2, g.plugin).bind(3, relative_to(g.dir, dir_)).bind(4, relative_to(g.pool, dir_));
    put.bind(5, g.pool_images).bind(6, g.fit_seconds).bind(7, g.sample_seconds);
    if (g.check.empty()) {
      put.bind_null(8);
    } else {
      put.bind(8, g.check);
    }
    put.run();
    t.commit();
    pools_[g.key] = {fs::absolute(g.pool), fs::absolute(g.dir)};
  }

  /// A run that cannot start because its generator failed: recorded failed with the generator's
  /// error, so the study ends with an error and --resume tries both again.
  void fail_without_generator(const Job& job, const std::string& error) {
    sql::Transaction t(db_);
    db_.prepare("UPDATE runs SET status = 'failed', owner = NULL, finished_utc = ?2, error = ?3, generator_key = ?4 "
                "WHERE id = ?1")
        .bind(1, job.run->id)
        .bind(2, utc_now())
        .bind(3, "its generator " + job.generator_key + " could not be prepared: " + error)
        .bind(4, job.generator_key)
        .run();
    t.commit();
    std::printf("  failed %s (%s): its generator %s could not be prepared: %s\n", job.run->id.c_str(),
                job.run->label.c_str(), job.generator_key.c_str(), error.c_str());
  }

  int64_t parallel_jobs() const {
    return std::max<int64_t>(1, options_.jobs > 0 ? options_.jobs : plan_.settings.jobs);
  }

  /// The config a run trains with: the study's, pointed at its generator's pool (or folder).
  fs::path write_run_config(const Job& job) {
    toml::table config = job.run->config;
    if (!job.generator_key.empty()) {
      const auto& [pool, gen_dir] = pools_.at(job.generator_key);
      toml::table* gen = config["generator"].as_table();
      if (gen == nullptr) {
        config.insert_or_assign("generator", toml::table{});
        gen = config["generator"].as_table();
      }
      if (job.fresh) {
        gen->insert_or_assign("directory", gen_dir.string());
      } else {
        gen->insert_or_assign("pool", pool.string());
      }
    }
    const fs::path file = dir_ / "configs" / (job.run->id + ".toml");
    write_file_atomic(file, "# Run " + job.run->id + " of study " + plan_.settings.name + ": " + job.run->label +
                                "\n" + format_toml(config) + "\n");
    return file;
  }

  void start(Job& job) {
    const fs::path config_file = write_run_config(job);
    const fs::path run_dir = dir_ / "runs" / job.run->id;
    // A killed or interrupted attempt with a checkpoint is continued; a failed one is redone
    // (its config may have been changed to fix it).
    std::string previous;
    {
      sql::Statement q = db_.prepare("SELECT status FROM runs WHERE id = ?1");
      q.bind(1, job.run->id);
      if (q.step()) previous = q.text(0);
    }
    const bool resume = previous != "failed" && resumable(run_dir);
    std::error_code ec;
    if (!resume) fs::remove_all(run_dir, ec);  // what a killed attempt left
    const fs::path log = dir_ / "logs" / (job.run->id + ".log");
    fs::remove(log, ec);
    {
      sql::Transaction t(db_);
      db_.prepare("UPDATE runs SET status = 'running', owner = ?2, started_utc = ?3, generator_key = ?4, "
                  "run_dir = NULL, summary = NULL, error = NULL WHERE id = ?1")
          .bind(1, job.run->id)
          .bind(2, owner_tag())
          .bind(3, utc_now())
          .bind(4, job.generator_key.empty() ? std::optional<std::string>() : job.generator_key)
          .run();
      t.commit();
    }
    job.start = std::chrono::steady_clock::now();
    std::vector<std::string> args = {"train", config_file.string(), "--out", run_dir.string()};
    // The config is passed again so a run whose study config changed is refused, not continued.
    if (resume) args = {"train", config_file.string(), "--resume", run_dir.string()};
    job.pid = spawn(options_.executable, args, log, slots_.empty() ? nullptr : &slots_[job.slot]);
  }

  /// For a run whose likelihood is a probability mass (bernoulli, mol): `vaelab compress` codes its
  /// test split (docs/compression.md) into RUN_DIR/test.vlz, and the file's bits/dim go into the
  /// summary recorded in the database as compressed_bits_per_dim_test. A failure is reported and
  /// leaves the key out; the run stays done. Anomaly runs are not coded: the report's compressed
  /// sizes are the main runs'.
  void add_compressed_size(const Job& job, const fs::path& run_dir, std::string& summary) {
    if (job.run->purpose == "anomaly") return;
    json s = json::parse(summary);
    const std::string likelihood = s.value("likelihood", std::string());
    if (likelihood != "bernoulli" && likelihood != "mol") return;
    const fs::path report = run_dir / "compress.json";
    const int rc = wait_for(spawn(options_.executable,
                                  {"--log-level", "error", "compress", run_dir.string(), "--data",
                                   (run_dir / "config.toml").string(), "--out", (run_dir / "test.vlz").string(),
                                   "--json"},
                                  report, slots_.empty() ? nullptr : &slots_[job.slot]));
    try {
      if (rc != 0) throw Error("exit " + std::to_string(rc) + ": " + last_line(report));
      const json r = json::parse(read_text(report));
      s["compressed_bits_per_dim_test"] = r.at("bits_per_dim");
      s["compressed_initial_bits_per_dim_test"] = r.at("initial_bits_per_dim");
      s["compress_images_per_second"] = r.at("images_per_second");
      summary = s.dump();
    } catch (const std::exception& e) {
      std::printf("  %s: compressing the test set failed (%s); no compressed size recorded\n", job.run->id.c_str(),
                  e.what());
    }
  }

  /// Records a finished child: the summary and every metrics line in one transaction.
  bool finish(const Job& job, int exit_code) {
    const double wall = seconds_since(job.start);
    const fs::path run_dir = dir_ / "runs" / job.run->id;
    const fs::path log = dir_ / "logs" / (job.run->id + ".log");
    std::string error;
    std::string summary;
    std::vector<std::pair<int64_t, std::string>> points;
    if (exit_code == 0) {
      try {
        summary = read_text(run_dir / "summary.json");
        std::ifstream in(run_dir / "metrics.jsonl");
        std::string line;
        while (std::getline(in, line)) {
          if (line.empty()) continue;
          const json point = json::parse(line);
          points.emplace_back(point.at("epoch").get<int64_t>(), line);
        }
      } catch (const std::exception& e) {
        error = std::string("the run ended but its results cannot be read: ") + e.what();
      }
      if (error.empty()) add_compressed_size(job, run_dir, summary);
    } else {
      error = "exit " + std::to_string(exit_code) + ": " + last_line(log) + " (log: " + log.string() + ")";
    }
    sql::Transaction t(db_);
    if (error.empty()) {
      db_.prepare("UPDATE runs SET status = 'done', owner = NULL, finished_utc = ?2, wall_seconds = ?3, summary = ?4, "
                  "run_dir = ?5 WHERE id = ?1")
          .bind(1, job.run->id)
          .bind(2, utc_now())
          .bind(3, wall)
          .bind(4, summary)
          .bind(5, relative_to(run_dir, dir_))
          .run();
      db_.prepare("DELETE FROM metrics WHERE run_id = ?1").bind(1, job.run->id).run();
      sql::Statement insert = db_.prepare("INSERT OR REPLACE INTO metrics (run_id, epoch, point) VALUES (?1, ?2, ?3)");
      for (const auto& [epoch, line] : points) insert.bind(1, job.run->id).bind(2, epoch).bind(3, line).run();
    } else {
      db_.prepare("UPDATE runs SET status = 'failed', owner = NULL, finished_utc = ?2, wall_seconds = ?3, error = ?4 "
                  "WHERE id = ?1")
          .bind(1, job.run->id)
          .bind(2, utc_now())
          .bind(3, wall)
          .bind(4, error)
          .run();
    }
    t.commit();
    if (!error.empty()) {
      std::printf("  failed %s (%s): %s\n", job.run->id.c_str(), job.run->label.c_str(), error.c_str());
      return false;
    }
    const json s = json::parse(summary);
    std::printf("  done %s (%s): test ELBO %.2f, gap %.2f nats, %s\n", job.run->id.c_str(), job.run->label.c_str(),
                s.value("elbo_test_nats", 0.0), s.value("generalization_gap_nats", 0.0), duration_text(wall).c_str());
    return true;
  }

  /// The study's schedule: up to `jobs` children at once, each on its own share of the CPUs.
  /// Generators are prepared first (a fit is the longest task and runs wait on it); runs that need
  /// no generator fill the other shares meanwhile, and a run that needs one starts once its pool
  /// is recorded. Only this thread waits for the runs' processes, each by its pid, so a generator
  /// thread's children are never reaped here.
  int64_t train(std::vector<Job>& jobs) {
    const int64_t parallel = parallel_jobs();
    const size_t total = jobs.size();
    std::printf("study %s: %zu runs to train (%lld at once) into %s\n", plan_.settings.name.c_str(), total,
                static_cast<long long>(parallel), (dir_ / kDatabase).string().c_str());
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    std::vector<const GeneratorNeed*> waiting_generators;
    for (const auto& [key, need] : needs_) waiting_generators.push_back(&need);
    std::list<GeneratorTask> preparing;
    // Leaving early (an error below) stops the generator threads' children as an interrupt would
    // (a fit checkpoints first) and waits for the threads, which must not outlive their tasks.
    struct StopPreparing {
      std::list<GeneratorTask>& tasks;
      ~StopPreparing() {
        if (std::none_of(tasks.begin(), tasks.end(), [](const GeneratorTask& t) { return t.thread.joinable(); })) return;
        g_interrupted = 1;
        for (GeneratorTask& task : tasks) {
          if (task.thread.joinable()) task.thread.join();
        }
      }
    } stop_preparing{preparing};
    std::map<std::string, std::string> generator_errors;  ///< key → why it failed
    std::vector<bool> started(jobs.size(), false);
    size_t position = 0;  // runs started or failed for want of their generator
    size_t done = 0;
    int64_t failed = 0;
    std::map<pid_t, Job*> running;
    double finished_run_seconds = 0;  // wall seconds of the runs that finished (done or failed) so far
    size_t finished_runs = 0;
    bool forwarded = false;  // the interrupt was passed to the running children
    const auto free_slot = [&]() -> std::optional<size_t> {
      if (static_cast<int64_t>(running.size() + preparing.size()) >= parallel) return std::nullopt;
      if (slots_.empty()) return size_t{0};
      std::vector<bool> taken(slots_.size(), false);
      for (const auto& [child, other] : running) taken[other->slot] = true;
      for (const GeneratorTask& task : preparing) taken[task.slot] = true;
      return static_cast<size_t>(std::find(taken.begin(), taken.end(), false) - taken.begin()) % slots_.size();
    };
    while (done < total || !preparing.empty()) {
      if (!g_interrupted) {
        while (!waiting_generators.empty()) {
          const auto slot = free_slot();
          if (!slot) break;
          GeneratorTask& task = preparing.emplace_back();
          task.need = waiting_generators.front();
          task.slot = *slot;
          waiting_generators.erase(waiting_generators.begin());
          start_generator(task);
        }
        for (size_t i = 0; i < jobs.size(); ++i) {
          Job& job = jobs[i];
          if (started[i]) continue;
          if (!job.generator_key.empty()) {
            const auto error = generator_errors.find(job.generator_key);
            if (error != generator_errors.end()) {
              started[i] = true;
              ++position;
              fail_without_generator(job, error->second);
              ++failed;
              ++done;
              continue;
            }
            if (pools_.count(job.generator_key) == 0) continue;
          }
          const auto slot = free_slot();
          if (!slot) break;
          started[i] = true;
          job.slot = *slot;
          start_logged(job, ++position, total);
          running[job.pid] = &job;
        }
      } else if (!forwarded) {
        for (const auto& [child, job] : running) kill(child, SIGINT);
        forwarded = true;
      }
      if (running.empty() && preparing.empty()) break;  // interrupted, or nothing left that can start

      bool changed = false;
      for (auto task = preparing.begin(); task != preparing.end();) {
        if (!task->finished) {
          ++task;
          continue;
        }
        task->thread.join();
        if (!g_interrupted) {  // an interrupted fit is neither done nor failed: --resume continues it
          record_generator(task->result);
          if (!task->result.error.empty()) generator_errors[task->result.key] = task->result.error;
        }
        task = preparing.erase(task);
        changed = true;
      }
      for (auto it = running.begin(); it != running.end();) {
        int status = 0;
        const pid_t pid = waitpid(it->first, &status, WNOHANG);
        if (pid == 0 || (pid < 0 && errno == EINTR)) {
          ++it;
          continue;
        }
        if (pid < 0) throw Error(std::string("waitpid: ") + std::strerror(errno));
        Job* job = it->second;
        it = running.erase(it);
        changed = true;
        ++done;
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (g_interrupted) {
          // Interrupted with the study: the run is redone on --resume, not counted as failed.
          sql::Transaction t(db_);
          db_.prepare("UPDATE runs SET status = 'pending', owner = NULL WHERE id = ?1").bind(1, job->run->id).run();
          t.commit();
          continue;
        }
        if (!finish(*job, code)) ++failed;
        const double elapsed = seconds_since(start);
        finished_run_seconds += seconds_since(job->start);
        ++finished_runs;
        std::vector<double> running_seconds;
        for (const auto& [child, other] : running) running_seconds.push_back(seconds_since(other->start));
        const double eta = study_eta_seconds(finished_run_seconds / static_cast<double>(finished_runs), running_seconds,
                                             total - done - running.size(), parallel);
        std::printf("[%zu/%zu] %s elapsed, ETA %s\n", done, total, duration_text(elapsed).c_str(),
                    duration_text(eta).c_str());
        std::fflush(stdout);
      }
      if (!changed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (g_interrupted) throw Error("interrupted: finished runs are kept; continue with --resume");
    return failed;
  }

  void start_logged(Job& job, size_t position, size_t total) {
    std::printf("[%zu/%zu] start %s (%s)\n", position, total, job.run->id.c_str(), job.run->label.c_str());
    std::fflush(stdout);
    start(job);
  }

  const StudyPlan& plan_;
  StudyRunOptions options_;
  fs::path dir_;
  sql::Database db_;
  std::map<std::string, GeneratorNeed> needs_;
  std::map<std::string, std::pair<fs::path, fs::path>> pools_;  ///< key → pool file, generator folder
  std::vector<cpu_set_t> slots_;  ///< one share of the CPUs per concurrent child (empty: no pinning)
};

/// SIGINT and SIGTERM stop the study: no new run starts, the running ones are passed the signal
/// and recorded as pending, so --resume redoes them. Installed without SA_RESTART, so a wait for
/// a child returns at once.
class InterruptScope {
 public:
  InterruptScope() {
    g_interrupted = 0;
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    sigaction(SIGINT, &action, &previous_int_);
    sigaction(SIGTERM, &action, &previous_term_);
  }
  ~InterruptScope() {
    sigaction(SIGINT, &previous_int_, nullptr);
    sigaction(SIGTERM, &previous_term_, nullptr);
  }
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

}  // namespace

void validate_study(const StudyPlan& plan) {
  for (const StudyRun& run : plan.runs) {
    try {
      (void)RunConfig::resolve(run.config, {});
    } catch (const Error& e) {
      throw Error(plan.file.string() + ": run " + run.id + " (" + run.label + "): " + e.what());
    }
  }
}

double study_eta_seconds(double mean_run_seconds, const std::vector<double>& running_seconds, size_t not_started,
                         int64_t parallel) {
  double left = mean_run_seconds * static_cast<double>(not_started);
  for (const double ran : running_seconds) left += std::max(mean_run_seconds - ran, 0.0);
  return left / static_cast<double>(std::max<int64_t>(parallel, 1));
}

int64_t run_study(const StudyPlan& plan, const StudyRunOptions& options) {
  InterruptScope interrupts;
  StudyRunner runner(plan, options);
  return runner.run();
}

}  // namespace vaelab
