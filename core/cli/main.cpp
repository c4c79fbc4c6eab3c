// The `vaelab` command: train and evaluate runs, fit and check generators, run studies and write
// their reports, list plugins, measure throughput.

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <vaelab/build_info.h>
#include <vaelab/cpu.hpp>
#include <vaelab/error.hpp>
#include <vaelab/log.hpp>
#include <vaelab/train/distributed.hpp>
#include <vaelab/train/run.hpp>

#include "commands.hpp"
#include "export_command.hpp"
#include "compress_command.hpp"
#include "launcher.hpp"

namespace {

int fail(const std::string& message) {
  std::fprintf(stderr, "vaelab: error: %s\n", message.c_str());
  return 1;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  // Before anything computes: OpenBLAS's generic kernels on a CPU it does not know are replaced
  // by restarting with OPENBLAS_CORETYPE (core/include/vaelab/cpu.hpp).
  vaelab::ensure_blas_kernels(argv);
  CLI::App app{"vaelab: train, evaluate and study variational autoencoders"};
  app.set_version_flag("--version", std::string("vaelab ") + VAELAB_VERSION +
                                        "\nplugin ABI " + std::to_string(VL_ABI_VERSION_MAJOR) +
                                        "." + std::to_string(VL_ABI_VERSION_MINOR) +
                                        "\nbuild fingerprint " + VAELAB_BUILD_FINGERPRINT +
                                        "\nCPU " + vaelab::cpu_isa_name(vaelab::cpu_features()) + "; " +
                                        vaelab::blas_kernels_report());
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();
  app.require_subcommand(1);

  std::vector<std::string> plugin_paths;
  bool plugins_json = false;
  CLI::App* plugins = app.add_subcommand("plugins", "List the plugins found and why any was refused");
  plugins->add_flag("--json", plugins_json, "one JSON array of {name, kind, version, abi, path, status}");
  plugins->add_option("--path", plugin_paths, "extra plugin folder, searched first (repeatable)");
  plugins->require_subcommand(0, 1);
  std::string show_name;
  CLI::App* show = plugins->add_subcommand("show", "A plugin's description and defaults.toml");
  show->add_option("name", show_name, "plugin name")->required();

  std::string train_config;
  std::vector<std::string> train_sets;
  std::string train_out;
  std::string train_resume;
  CLI::App* train = app.add_subcommand("train", "Train and evaluate one run");
  train->add_option("config", train_config,
                    "run config (TOML); with --resume optional, and it must then resolve to the run's config");
  train->add_option("--set", train_sets, "override a key: --set train.epochs=5 (repeatable)");
  train->add_option("--out", train_out, "run folder (default runs/<config>-<time>)");
  train->add_option("--resume", train_resume,
                    "continue the stopped run in this folder from its last checkpoint, with its own "
                    "config.toml (docs/checkpoints.md)");
  int train_nproc = 0;
  train->add_option("--nproc", train_nproc,
                    "data-parallel: start this many local processes of this command, one rank each "
                    "(docs/distributed.md); train.batch_size is their batch together");

  std::string eval_dir;
  bool eval_json = false;
  std::vector<std::string> eval_metrics = {"elbo"};
  CLI::App* eval = app.add_subcommand("eval", "Re-evaluate a finished run from its checkpoint");
  eval->add_option("run_dir", eval_dir, "run folder")->required();
  eval->add_option("--metrics", eval_metrics,
                   "comma-separated: elbo, iwae, amortization, robustness, probe")
      ->delimiter(',')
      ->capture_default_str();
  eval->add_flag("--json", eval_json, "print one JSON object");
  std::vector<std::string> eval_sets;
  eval->add_option("--set", eval_sets,
                   "change how it is measured: --set eval.amortization.steps=1000 (eval.* keys only; repeatable)");

  std::string score_dir;
  std::string score_data;
  std::string score_out;
  vaelab::ScoreOptions score_options;
  CLI::App* score = app.add_subcommand(
      "score", "Per-image −ELBO (or −IWAE) in nats and bits/dim: anomaly scores, code lengths");
  score->add_option("run_dir", score_dir, "run folder")->required();
  score->add_option("--data", score_data,
                    "a .toml file with a [data] table, or a sample pool file scored memory-mapped "
                    "(default: the run's data)");
  score->add_option("--metric", score_options.metric, "elbo or iwae")->capture_default_str();
  score->add_option("--split", score_options.split, "test, train or all")->capture_default_str();
  score->add_option("--samples", score_options.samples, "samples per image (0 = the run's [eval] setting)");
  score->add_option("--out", score_out, "CSV file to write")->required();

  std::string export_dir;
  std::string export_torchscript_out;
  CLI::App* export_cmd = app.add_subcommand(
      "export", "Write a vae-torchscript run's trained module as TorchScript, for torch.jit.load");
  export_cmd->add_option("run_dir", export_dir, "run folder")->required();
  export_cmd->add_option("--torchscript", export_torchscript_out, "TorchScript file to write")->required();

  std::string bench_config;
  std::vector<std::string> bench_sets;
  int bench_steps = 30;
  int bench_repeats = 5;
  vaelab::cli::BenchOptions bench_options;
  CLI::App* bench = app.add_subcommand(
      "bench", "Throughput of every backend here against the GEMM peak and torch-cpu (medians, ratios)");
  bench->require_subcommand(0, 1);
  bench->add_flag("--json", bench_options.json, "print one JSON object");
  bench->add_flag("--quick", bench_options.quick, "tiny workloads (checks that every line runs)");
  bench->add_option("--repeats", bench_options.repeats, "measurements per line (median)")->capture_default_str();
  bench->add_option("--backend", bench_options.backends, "only this backend besides torch-cpu (repeatable)");
  bench->add_option("--set", bench_options.sets, "BACKEND.KEY=VALUE: a backend setting (repeatable), e.g. onednn-cpu.threads=2");
  CLI::App* bench_threads = bench->add_subcommand(
      "threads", "Training steps/s for each intra-op × BLAS thread setting, as ratios to 1×1");
  bench_threads->add_option("config", bench_config, "run config (TOML)")->required();
  bench_threads->add_option("--set", bench_sets, "override a key (repeatable)");
  bench_threads->add_option("--steps", bench_steps, "training steps per measurement")->capture_default_str();
  bench_threads->add_option("--repeats", bench_repeats, "measurements per setting (median)")->capture_default_str();

  CLI::App* generator = app.add_subcommand(
      "generator", "Fit a synthetic-data generator, sample it into a pool, check its samples");
  generator->require_subcommand(1);
  std::string gen_fit_config;
  std::vector<std::string> gen_fit_sets;
  std::string gen_fit_out;
  CLI::App* gen_fit = generator->add_subcommand(
      "fit", "Fit [generator] to the config's training split; resumes a fit in --out");
  gen_fit->add_option("config", gen_fit_config, "run config (TOML) with a [generator] section")->required();
  gen_fit->add_option("--set", gen_fit_sets, "override a key: --set generator.fit.steps=1000 (repeatable)");
  gen_fit->add_option("--out", gen_fit_out, "generator folder (new, or a fit of the same config to resume)")
      ->required();
  std::string gen_sample_dir;
  int64_t gen_sample_n = 0;
  uint64_t gen_sample_seed = 0;
  std::string gen_sample_out;
  int64_t gen_sample_batch = 256;
  CLI::App* gen_sample = generator->add_subcommand(
      "sample", "Sample a fitted generator into a pool file (image i gets seed S + i)");
  gen_sample->add_option("generator_dir", gen_sample_dir, "generator folder (vaelab generator fit --out)")
      ->required();
  gen_sample->add_option("--n", gen_sample_n, "number of images")->required();
  gen_sample->add_option("--seed", gen_sample_seed, "seed of the first image")->capture_default_str();
  gen_sample->add_option("--out", gen_sample_out, "pool file to write (must not exist)")->required();
  gen_sample->add_option("--batch", gen_sample_batch, "images per sample() call (memory, not results)")
      ->capture_default_str();
  std::vector<std::string> gen_sample_sets;
  gen_sample->add_option("--set", gen_sample_sets,
                         "override a sampler setting of the fit: --set generator.config.sampler_steps=40 (repeatable)");
  vaelab::cli::GeneratorCheckArgs gen_check_args;
  CLI::App* gen_check = generator->add_subcommand(
      "check",
      "Memorization (nearest training images), classifier two-sample test and Fréchet distance; samples.png");
  gen_check->add_option("target", gen_check_args.target, "generator folder or pool file")->required();
  gen_check->add_option("--data", gen_check_args.data_config,
                        "run config (TOML) whose [data] the samples are checked against")
      ->required();
  gen_check->add_option("--n", gen_check_args.n, "samples checked (a pool's first N)")->capture_default_str();
  gen_check->add_option("--seed", gen_check_args.seed, "seed of the samples and of the check")
      ->capture_default_str();
  gen_check->add_option("--out", gen_check_args.out_dir, "output folder (default GEN_DIR/check or POOL.check)");
  gen_check->add_option("--features-cache", gen_check_args.features_cache,
                        "folder keeping the dataset's feature network for the Fréchet distance "
                        "(default: $VAELAB_CACHE_DIR, else ~/.cache/vaelab, /feature-nets)");
  gen_check->add_flag("--no-frechet", gen_check_args.no_frechet,
                      "skip the Fréchet distance (no feature network is trained or read)");

  vaelab::cli::StudyOptions study_options;
  CLI::App* study = app.add_subcommand(
      "study", "Run a study: a grid of runs over regimes and model sizes, into DIR/study.sqlite");
  study->add_option("config", study_options.config, "study file (TOML; examples/quickstart.toml)");
  study->add_option("--out", study_options.out, "study folder (default studies/<name>)");
  study->add_option("--jobs", study_options.jobs, "runs trained at once (default [study] jobs)");
  study->add_flag("--resume", study_options.resume, "continue the study in --out: finished runs are kept, killed ones redone");
  study->add_option("--shard", study_options.shard, "i/n: only the runs whose position modulo n is i (0-based)");
  study->add_flag("--list", study_options.list, "print the expanded runs and exit");
  study->add_flag("--no-report", study_options.no_report, "do not write the report at the end");
  std::string merge_out;
  std::vector<std::string> merge_inputs;
  CLI::App* merge = study->add_subcommand("merge", "Join shard databases into one study folder");
  merge->add_option("out", merge_out, "study folder to write (its study.sqlite must not exist)")->required();
  merge->add_option("shards", merge_inputs, "study folders of the shards")->required();

  std::string report_dir;
  bool report_json = false;
  CLI::App* report = app.add_subcommand(
      "report", "Write DIR/report.md, report.html and plots/ from a study's database");
  report->add_option("dir", report_dir, "study folder (holding study.sqlite)")->required();
  report->add_flag("--json", report_json, "print the numbers behind every table as JSON instead");

  vaelab::cli::CompressCommands compress_commands;
  vaelab::cli::add_compress_commands(app, compress_commands);

  CLI11_PARSE(app, argc, argv);

  try {
    vaelab::set_log_level(log_level);
    if (plugins->parsed()) {
      if (show->parsed()) return vaelab::cli::plugins_show(plugin_paths, show_name);
      return vaelab::cli::plugins_list(plugin_paths, plugins_json);
    }
    if (train->parsed()) {
      if (train_nproc != 0) {
        // The launcher: checks the config once, then starts --nproc ranks of this same command.
        if (train_nproc < 1) throw vaelab::ConfigError("--nproc: must be at least 1");
        if (train_config.empty() && train_resume.empty()) {
          throw vaelab::ConfigError("train: a config file is required (or --resume RUN_DIR)");
        }
        const std::string resolved_from =
            train_resume.empty() || !train_config.empty() ? train_config : train_resume + "/config.toml";
        const vaelab::RunConfig config = vaelab::RunConfig::load(resolved_from, train_sets);
        const auto options = vaelab::DistributedOptions::from_config(config.section("train").sub("distributed"));
        return vaelab::cli::launch_local(train_nproc, vaelab::cli::without_nproc(argc, argv), options.timeout);
      }
      // A rank of a data-parallel run (RANK, WORLD_SIZE, ...): ranks other than 0 write nothing and
      // log only warnings and errors unless asked for more.
      const vaelab::DistributedEnv env = vaelab::DistributedEnv::from_environment();
      if (env.rank != 0 && log_level == "info") vaelab::set_log_level("warn");
      if (!train_resume.empty()) {
        if (!train_out.empty() && train_out != train_resume) {
          throw vaelab::ConfigError("--out: a resumed run continues in its own folder (--resume " +
                                    train_resume + "); leave out --out");
        }
        const auto dir = vaelab::resume_run(train_resume, train_config, train_sets);
        if (env.rank == 0) std::cout << dir.string() << "\n";
        return 0;
      }
      if (train_config.empty()) {
        throw vaelab::ConfigError("train: a config file is required (or --resume RUN_DIR)");
      }
      const auto dir = vaelab::train_run(train_config, train_sets, train_out);
      if (env.rank == 0) std::cout << dir.string() << "\n";
      return 0;
    }
    if (eval->parsed()) {
      const nlohmann::json result = vaelab::eval_run(eval_dir, eval_metrics, eval_sets);
      if (eval_json) {
        std::cout << result.dump(2) << "\n";
      } else {
        for (const auto& [key, value] : result.items()) std::cout << key << " = " << value << "\n";
      }
      return 0;
    }
    if (score->parsed()) {
      const int64_t rows = vaelab::score_run(score_dir, score_data, score_options, score_out);
      std::cout << score_out << " (" << rows << " images)\n";
      return 0;
    }
    if (export_cmd->parsed()) return vaelab::cli::export_torchscript(export_dir, export_torchscript_out);
    if (bench_threads->parsed()) {
      return vaelab::cli::bench_threads(bench_config, bench_sets, bench_steps, bench_repeats);
    }
    if (bench->parsed()) return vaelab::cli::bench_suite(bench_options);
    if (gen_fit->parsed()) return vaelab::cli::generator_fit(gen_fit_config, gen_fit_sets, gen_fit_out);
    if (gen_sample->parsed()) {
      return vaelab::cli::generator_sample(gen_sample_dir, gen_sample_n, gen_sample_seed,
                                           gen_sample_out, gen_sample_batch, gen_sample_sets);
    }
    if (merge->parsed()) return vaelab::cli::study_merge(merge_out, merge_inputs);
    if (study->parsed()) {
      if (study_options.config.empty()) throw CLI::RequiredError("config");
      return vaelab::cli::study_command(study_options);
    }
    if (report->parsed()) return vaelab::cli::report_command(report_dir, report_json);
    if (compress_commands.compress->parsed() || compress_commands.decompress->parsed()) {
      return vaelab::cli::run_compress_commands(compress_commands);
    }
    if (gen_check->parsed()) {
      return vaelab::cli::generator_check(gen_check_args);
    }
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const vaelab::Error& e) {
    return fail(e.what());
  } catch (const c10::Error& e) {
    return fail("torch: " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 0;
}
