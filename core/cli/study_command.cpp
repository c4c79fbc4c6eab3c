// `vaelab study CONFIG [--out DIR] [--jobs N] [--resume] [--shard i/n] [--list]` and
// `vaelab study merge OUT SHARD...`: the front end of core/src/study/.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <filesystem>

#include <vaelab/error.hpp>
#include <vaelab/study/report.hpp>
#include <vaelab/study/study.hpp>

#include "commands.hpp"

namespace fs = std::filesystem;

namespace vaelab::cli {

int study_command(const StudyOptions& options) {
  // A study's runs are one-process runs; under a data-parallel launcher every run would try to
  // join a process group. Machines share a study through --shard i/n instead.
  const char* world = std::getenv("WORLD_SIZE");
  if (world != nullptr && std::string(world) != "" && std::string(world) != "1") {
    throw Error(std::string("vaelab study: WORLD_SIZE=") + world +
                " is set, but a study's runs are one-process runs; spread a study over machines with "
                "--shard i/n and `vaelab study merge` (docs/distributed.md), and unset WORLD_SIZE");
  }
  const StudyPlan plan = expand_study(options.config);
  const Shard shard = Shard::parse(options.shard);
  if (options.list) {
    validate_study(plan);
    std::printf("study %s: %zu runs, axes:", plan.settings.name.c_str(), plan.runs.size());
    for (const auto& axis : plan.axes) std::printf(" %s", axis.c_str());
    std::printf("\n");
    for (const StudyRun& run : plan.runs) {
      if (!shard.holds(run.ordinal)) continue;
      std::printf("%s  %-8s %s\n", run.id.c_str(), run.purpose.c_str(), run.label.c_str());
    }
    return 0;
  }
  StudyRunOptions run_options;
  run_options.out = options.out.empty() ? fs::path("studies") / plan.settings.name : fs::path(options.out);
  run_options.jobs = options.jobs;
  if (options.jobs < 0) throw Error("--jobs must be at least 1");
  run_options.resume = options.resume;
  run_options.shard = shard;
  std::error_code ec;
  run_options.executable = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error("cannot find the vaelab executable (/proc/self/exe): " + ec.message());
  const int64_t failed = run_study(plan, run_options);
  if (!options.no_report) {
    const fs::path report = write_report(run_options.out);
    std::printf("report: %s\n", report.string().c_str());
  }
  if (failed > 0) {
    std::fprintf(stderr, "vaelab: error: %lld runs failed; their errors are in %s (runs.error) and logs/\n",
                 static_cast<long long>(failed), (run_options.out / "study.sqlite").string().c_str());
    return 1;
  }
  return 0;
}

int study_merge(const std::string& out_dir, const std::vector<std::string>& shard_dirs) {
  std::vector<fs::path> shards(shard_dirs.begin(), shard_dirs.end());
  merge_studies(out_dir, shards);
  std::printf("%s\n", (fs::path(out_dir) / "study.sqlite").string().c_str());
  return 0;
}

}  // namespace vaelab::cli
