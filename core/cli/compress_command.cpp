// `vaelab compress` and `vaelab decompress`: lossless compression of images with a trained VAE by
// bits-back ANS (docs/compression.md).

#include "compress_command.hpp"

#include <iostream>

#include <nlohmann/json.hpp>

#include <vaelab/compress/run_codec.hpp>

namespace vaelab::cli {

void add_compress_commands(CLI::App& app, CompressCommands& c) {
  c.compress = app.add_subcommand(
      "compress", "Compress images losslessly with a run's VAE (bits-back ANS); --compare: against −ELBO, gzip, "
                  "bzip2, xz, zstd and PNG");
  c.compress->add_option("run_dir", c.run_dir, "run folder (a Bernoulli or mixture-of-logistics likelihood)")->required();
  c.compress->add_option("--data", c.options.data_config,
                         "a TOML file with a [data] table: code its split as that config delivers it");
  c.compress->add_option("--split", c.options.split, "test or train (with --data)")->capture_default_str();
  c.compress->add_option("--images", c.options.images, "a .npy file of uint8 images [N, (C,) H, W], or a sample pool");
  c.compress->add_option("--out", c.options.out, "compressed file to write")->required();
  c.compress->add_flag("--compare", c.options.compare,
                       "also the negative ELBO and gzip -9, bzip2 -9, xz -9, zstd -19 and PNG of the same pixels");
  c.compress->add_flag("--json", c.json, "print one JSON object");
  c.compress->add_option("--set", c.options.sets, "compress.KEY=VALUE: a [compress] setting (repeatable)");

  c.decompress = app.add_subcommand("decompress", "Decompress a file written by vaelab compress, with the same run");
  c.decompress->add_option("file", c.file, "compressed file")->required();
  c.decompress->add_option("--run", c.run_dir, "the run folder that compressed it")->required();
  c.decompress->add_option("--out", c.out, "OUT.npy (uint8 [N, C, H, W]) or a sample pool file")->required();
  c.decompress->add_flag("--json", c.json, "print one JSON object");
}

int run_compress_commands(const CompressCommands& c) {
  if (c.compress->parsed()) {
    const nlohmann::json report = compress::compress_run(c.run_dir, c.options);
    if (c.json) {
      std::cout << report.dump(2) << "\n";
    } else {
      compress::print_compress_report(report);
    }
    return 0;
  }
  const nlohmann::json report = compress::decompress_run(c.file, c.run_dir, c.out);
  if (c.json) {
    std::cout << report.dump(2) << "\n";
  } else {
    std::cout << c.out << " (" << report["images"].get<int64_t>() << " images, "
              << static_cast<int64_t>(report["images_per_second"].get<double>()) << " images/s)\n";
  }
  return 0;
}

}  // namespace vaelab::cli
