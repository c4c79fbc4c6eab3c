// `vaelab study merge OUT SHARD...`: the shards of one study (vaelab study --shard i/n) joined into
// one database, as if the study had run in one process.

#include <vaelab/study/study.hpp>

#include <map>
#include <set>

#include <vaelab/error.hpp>
#include <vaelab/log.hpp>

#include "study_db.hpp"

namespace fs = std::filesystem;

namespace vaelab {
namespace {

/// A path stored relative to `from` (or absolute), re-expressed relative to `to` where it lies below it.
std::string rebase(const std::string& stored, const fs::path& from, const fs::path& to) {
  if (stored.empty()) return stored;
  const fs::path absolute = fs::path(stored).is_absolute() ? fs::path(stored) : fs::absolute(from / stored).lexically_normal();
  const fs::path rel = absolute.lexically_relative(fs::absolute(to).lexically_normal());
  if (!rel.empty() && rel.native().rfind("..", 0) != 0) return rel.string();
  return absolute.string();
}

}  // namespace

void merge_studies(const fs::path& out, const std::vector<fs::path>& shards) {
  if (shards.empty()) throw Error("study merge: name at least one shard folder");
  const fs::path out_file = out / "study.sqlite";
  std::error_code ec;
  if (fs::exists(out_file, ec)) throw Error(out_file.string() + ": already exists; merge into a new folder");
  fs::create_directories(out, ec);
  if (ec) throw Error(out.string() + ": cannot create: " + ec.message());

  std::string hash;
  std::map<std::string, std::string> run_source;  // run id → shard folder it came from
  std::set<std::string> shard_texts;
  int64_t run_count = 0;
  {
    sql::Database db(out_file.string() + ".tmp", sql::Database::Mode::create);
    study_db::create_schema(db);
    sql::Transaction t(db);
    for (const fs::path& shard : shards) {
      sql::Database in(shard / "study.sqlite", sql::Database::Mode::read_only);
      study_db::check_schema(in);
      const std::string shard_hash = study_db::get_key(in, "config_hash");
      const std::string shard_text = study_db::get_key(in, "shard");
      if (hash.empty()) {
        hash = shard_hash;
        run_count = std::stoll(study_db::get_key(in, "run_count"));
        sql::Statement keys = in.prepare("SELECT key, value FROM study WHERE key NOT IN ('schema_version', 'shard')");
        while (keys.step()) study_db::set_key(db, keys.text(0), keys.text(1));
      } else if (shard_hash != hash) {
        throw Error((shard / "study.sqlite").string() + ": a shard of another study (its runs differ from " +
                    (shards.front() / "study.sqlite").string() + "'s)");
      }
      if (!shard_texts.insert(shard_text).second) {
        throw Error((shard / "study.sqlite").string() + ": shard " + shard_text + " is named twice");
      }
      sql::Statement runs = in.prepare(
          "SELECT id, ordinal, label, regime, seed, axes, path_name, path_step, purpose, generator_key, config, "
          "status, owner, run_dir, started_utc, finished_utc, wall_seconds, summary, error FROM runs");
      sql::Statement insert = db.prepare(
          "INSERT INTO runs (id, ordinal, label, regime, seed, axes, path_name, path_step, purpose, generator_key, "
          "config, status, owner, run_dir, started_utc, finished_utc, wall_seconds, summary, error) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)");
      while (runs.step()) {
        const std::string id = runs.text(0);
        if (const auto it = run_source.find(id); it != run_source.end()) {
          throw Error((shard / "study.sqlite").string() + ": run " + id + " is also in " + it->second +
                      " (shards of one study are disjoint)");
        }
        run_source[id] = shard.string();
        for (int c = 0; c < 19; ++c) {
          if (runs.is_null(c)) {
            insert.bind_null(c + 1);
          } else if (c == 1 || c == 4 || c == 7) {
            insert.bind(c + 1, runs.integer(c));
          } else if (c == 16) {
            insert.bind(c + 1, runs.real(c));
          } else if (c == 13) {
            insert.bind(c + 1, rebase(runs.text(c), shard, out));
          } else {
            insert.bind(c + 1, runs.text(c));
          }
        }
        insert.run();
      }
      sql::Statement metrics = in.prepare("SELECT run_id, epoch, point FROM metrics");
      sql::Statement put_metric = db.prepare("INSERT INTO metrics (run_id, epoch, point) VALUES (?1, ?2, ?3)");
      while (metrics.step()) put_metric.bind(1, metrics.text(0)).bind(2, metrics.integer(1)).bind(3, metrics.text(2)).run();
      // One generator may serve several shards (each fitted or reused it); the first row is kept.
      sql::Statement gens = in.prepare(
          "SELECT key, plugin, dir, pool, pool_images, fit_seconds, sample_seconds, \"check\", status FROM generators");
      sql::Statement put_gen = db.prepare(
          "INSERT OR IGNORE INTO generators (key, plugin, dir, pool, pool_images, fit_seconds, sample_seconds, \"check\", status) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
      while (gens.step()) {
        put_gen.bind(1, gens.text(0)).bind(2, gens.text(1)).bind(3, rebase(gens.text(2), shard, out));
        if (gens.is_null(3)) {
          put_gen.bind_null(4);
        } else {
          put_gen.bind(4, rebase(gens.text(3), shard, out));
        }
        for (int c = 4; c < 8; ++c) {
          if (gens.is_null(c)) {
            put_gen.bind_null(c + 1);
          } else if (c == 4) {
            put_gen.bind(c + 1, gens.integer(c));
          } else if (c == 7) {
            put_gen.bind(c + 1, gens.text(c));
          } else {
            put_gen.bind(c + 1, gens.real(c));
          }
        }
        put_gen.bind(9, gens.text(8)).run();
      }
    }
    study_db::set_key(db, "shard", "0/1");
    study_db::set_key(db, "merged_from", std::to_string(shards.size()) + " shards");
    t.commit();
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  fs::rename(out_file.string() + ".tmp", out_file, ec);
  if (ec) throw Error(out_file.string() + ": cannot move the merged database into place: " + ec.message());
  fs::remove(out_file.string() + ".tmp-wal", ec);
  fs::remove(out_file.string() + ".tmp-shm", ec);
  if (static_cast<int64_t>(run_source.size()) != run_count) {
    logger().warn("{}: holds {} of the study's {} runs; merge the missing shards too", out_file.string(),
                  run_source.size(), run_count);
  }
}

}  // namespace vaelab
