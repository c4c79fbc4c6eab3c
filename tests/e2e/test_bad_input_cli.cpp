// Bad input through the `vaelab` command: every file a user hands it — a run config, data files,
// a sample pool, a checkpoint, a study file — broken in the ways files break (truncated, wrong
// magic, empty, a folder in its place, a value of the wrong type, no images, images of other
// sizes) gives one line on stderr naming the file and the key or byte offset, and a non-zero exit,
// never a crash. The readers' own tests cover each format in depth; these check that the message
// reaches the user whole, through the command that reads the file.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <vaelab/data_source.hpp>
#include <vaelab/io/pool.hpp>

#include "cli_runner.hpp"

namespace fs = std::filesystem;
using Catch::Contains;
using vaelab::testing::CliResult;
using vaelab::testing::slurp;

namespace {

fs::path work_dir() { return vaelab::testing::scratch_dir("vaelab-e2e-bad-input"); }

CliResult run_vaelab(const std::string& args) { return vaelab::testing::run_cli(work_dir(), args); }

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

fs::path write_bytes(const std::string& name, const std::string& bytes) {
  const fs::path p = work_dir() / name;
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  return p;
}

/// An IDX file of unsigned bytes: the header for `dims`, then `data_bytes` bytes of data (the
/// declared amount unless told otherwise).
std::string idx_bytes(const std::vector<uint32_t>& dims, int64_t data_bytes = -1,
                      uint8_t fill = 0) {
  std::string b = {0, 0, 0x08, static_cast<char>(dims.size())};
  int64_t n = 1;
  for (const uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<char>((d >> s) & 0xff));
    n *= d;
  }
  const int64_t count = data_bytes >= 0 ? data_bytes : n;
  for (int64_t i = 0; i < count; ++i) {
    b.push_back(static_cast<char>(fill != 0 ? fill : static_cast<uint8_t>(i * 37 + 11)));
  }
  return b;
}

std::string labels_bytes(uint32_t n, uint8_t label_mod = 10) {
  std::string b = idx_bytes({n}, 0);
  for (uint32_t i = 0; i < n; ++i) b.push_back(static_cast<char>(i % label_mod));
  return b;
}

std::string gzip_bytes(const std::string& raw) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, static_cast<uLong>(raw.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

/// The four idx files of a tiny dataset: 48 training and 24 test images of 8x8 pixels.
struct TinyData {
  fs::path train_images = write_bytes("data/train-images", idx_bytes({48, 8, 8}));
  fs::path train_labels = write_bytes("data/train-labels", labels_bytes(48));
  fs::path test_images = write_bytes("data/test-images", idx_bytes({24, 8, 8}));
  fs::path test_labels = write_bytes("data/test-labels", labels_bytes(24));
};

/// A run config for `data`, small enough to train in seconds; `extra` is appended.
std::string run_config(const TinyData& data, const std::string& extra = "") {
  return "[data]\nplugin = \"idx\"\n[data.config]\npad_to = 0\n"
         "train_images = \"" +
         data.train_images.string() +
         "\"\n"
         "train_labels = \"" +
         data.train_labels.string() +
         "\"\n"
         "test_images = \"" +
         data.test_images.string() +
         "\"\n"
         "test_labels = \"" +
         data.test_labels.string() +
         "\"\n"
         "[model]\nplugin = \"vae-mlp\"\n[model.config]\nhidden = [16]\nlatent = 2\n"
         "[train]\nepochs = 1\nbatch_size = 16\n[eval]\nevery_epochs = 1\n" +
         extra;
}

/// `vaelab train CONFIG --set data.config.KEY=FILE`.
CliResult train_with(const TinyData& data, const std::string& key, const fs::path& file) {
  const fs::path config = write_bytes("run.toml", run_config(data));
  return run_vaelab("train " + q(config) + " --out " + q(work_dir() / "unused-run") + " --set " +
                    key + "=" + q(file));
}

/// A non-zero exit and one error line, "vaelab: error: ...", the last on stderr (progress lines
/// may come before it), holding every needle.
void require_one_line_error(const CliResult& r, const std::vector<std::string>& needles) {
  INFO("exit " << r.code << "\nstderr:\n" << r.err << "\nstdout:\n" << r.out);
  REQUIRE(r.code != 0);
  const size_t at = r.err.find("vaelab: error: ");
  REQUIRE(at != std::string::npos);
  REQUIRE((at == 0 || r.err[at - 1] == '\n'));
  REQUIRE(r.err.find("vaelab: error: ", at + 1) == std::string::npos);
  const std::string error = r.err.substr(at);
  REQUIRE(std::count(error.begin(), error.end(), '\n') == 1);
  REQUIRE(error.back() == '\n');
  for (const auto& needle : needles) CHECK_THAT(error, Contains(needle));
  CHECK(r.err.find("terminate called") == std::string::npos);
}

}  // namespace

TEST_CASE("a value of the wrong type in a config file names the file, line, column and key",
          "[e2e][bad-input]") {
  const TinyData data;
  SECTION("a framework key") {
    const fs::path config = write_bytes("wrong-type.toml", "[train]\nepochs = \"two\"\n");
    require_one_line_error(
        run_vaelab("train " + q(config)),
        {config.string() + ":2:10", "train.epochs: expected an integer, got a string"});
  }
  SECTION("a plugin's key: its config table is checked against the plugin's defaults") {
    const fs::path config = write_bytes("wrong-plugin-type.toml",
                                        run_config(data) + "[backend.config]\nthreads = 1.5\n");
    // The key and the plugin are named; the line is not (the plugin's table is checked after the
    // defaults are merged in, and toml++ does not copy source positions).
    require_one_line_error(run_vaelab("train " + q(config)),
                           {"backend.config.threads: expected an integer, got a float",
                            "(plugin torch-cpu; its keys: vaelab plugins show torch-cpu)"});
  }
  SECTION("a table given as a value") {
    const fs::path config = write_bytes("table-as-value.toml", "train = 3\n");
    require_one_line_error(run_vaelab("train " + q(config)),
                           {config.string() + ":1:9", "train: expected a table, got an integer"});
  }
  SECTION("an array element of the wrong type") {
    const fs::path config =
        write_bytes("array-element.toml", run_config(data) + "[plugins]\npaths = [\"/a\", 3]\n");
    require_one_line_error(run_vaelab("train " + q(config)),
                           {"plugins.paths[1]: expected a string"});
  }
}

TEST_CASE("a folder where a file is expected is named as a folder", "[e2e][bad-input]") {
  const TinyData data;
  const fs::path folder = work_dir() / "a-folder";
  fs::create_directories(folder);

  SECTION("the run config") {
    require_one_line_error(run_vaelab("train " + q(folder)),
                           {folder.string() + ": is a folder, expected a TOML config file"});
  }
  SECTION("a data file") {
    require_one_line_error(train_with(data, "data.config.train_images", folder),
                           {folder.string() + ": ", "Is a directory"});
  }
  SECTION("a sample pool") {
    const fs::path config = write_bytes("pool-folder.toml", run_config(data));
    require_one_line_error(
        run_vaelab("train " + q(config) + " --out " + q(work_dir() / "unused-run") +
                   " --set train.regime=synthetic --set generator.pool=" + q(folder)),
        {folder.string() + ": not a regular file"});
  }
  SECTION("the study file") {
    require_one_line_error(run_vaelab("study " + q(folder) + " --list"),
                           {folder.string() + ": no such study file"});
  }
}

TEST_CASE("empty files are refused at byte 0", "[e2e][bad-input]") {
  const TinyData data;
  const fs::path empty = write_bytes("empty.bin", "");

  SECTION("a data file") {
    require_one_line_error(train_with(data, "data.config.test_labels", empty),
                           {empty.string() + ": byte 0: file ends after 0 of 4 header bytes"});
  }
  SECTION("a sample pool") {
    const fs::path config = write_bytes("pool-empty.toml", run_config(data));
    require_one_line_error(
        run_vaelab("train " + q(config) + " --out " + q(work_dir() / "unused-run") +
                   " --set train.regime=synthetic --set generator.pool=" + q(empty)),
        {empty.string() + ": byte 0: empty file: not a vaelab sample pool"});
  }
}

TEST_CASE("a wrong magic is refused at its byte, saying what the file should be",
          "[e2e][bad-input]") {
  const TinyData data;
  const fs::path png =
      write_bytes("picture.png", std::string("\x89PNG\r\n\x1a\n", 8) + std::string(64, 'x'));

  SECTION("a PNG given as idx images") {
    require_one_line_error(
        train_with(data, "data.config.train_images", png),
        {png.string() + ": byte 0: bad magic 0x89504e47", "expected an IDX file"});
  }
  SECTION("a PNG given as a sample pool") {
    const fs::path config = write_bytes("pool-magic.toml", run_config(data));
    require_one_line_error(
        run_vaelab("train " + q(config) + " --out " + q(work_dir() / "unused-run") +
                   " --set train.regime=synthetic --set generator.pool=" + q(png)),
        {png.string() + ": byte 1: bad magic: not a vaelab sample pool"});
  }
}

TEST_CASE("truncated data files are refused naming the file and where the data ends",
          "[e2e][bad-input]") {
  const TinyData data;
  SECTION("raw: the header declares 48 images of 64 bytes, the file holds 10 of them") {
    const fs::path cut = write_bytes("cut-images", idx_bytes({48, 8, 8}, 640));
    require_one_line_error(train_with(data, "data.config.train_images", cut),
                           {cut.string() + ": byte 16: file ends after 640 of 3072 image bytes"});
  }
  SECTION("gzip: the compressed stream itself is cut") {
    const std::string gz = gzip_bytes(idx_bytes({48, 8, 8}));
    const fs::path cut = write_bytes("cut-images.gz", gz.substr(0, gz.size() / 2));
    require_one_line_error(train_with(data, "data.config.train_images", cut),
                           {cut.string() + ": byte ", "the .gz file is truncated"});
  }
  SECTION("labels that stop short of the images") {
    const fs::path few = write_bytes("few-labels", labels_bytes(47));
    require_one_line_error(train_with(data, "data.config.train_labels", few),
                           {few.string() + ": byte 4: holds 47 train labels but",
                            "holds 48 train images; there must be one label per image"});
  }
}

TEST_CASE("a dataset without images is refused before training", "[e2e][bad-input]") {
  const TinyData data;
  SECTION("an idx file declaring 0 images") {
    const fs::path none = write_bytes("no-images", idx_bytes({0, 8, 8}));
    require_one_line_error(train_with(data, "data.config.test_images", none),
                           {none.string() + ": byte 4: dimension 0 is 0"});
  }
  SECTION("every training image held out by data.holdout_label") {
    // All 48 training labels are 3; the test set has every class.
    std::string all_three = idx_bytes({48}, 0);
    all_three.append(48, static_cast<char>(3));
    const fs::path threes = write_bytes("all-threes", all_three);
    const fs::path config = write_bytes("holdout-all.toml", run_config(data));
    require_one_line_error(
        run_vaelab("train " + q(config) + " --out " + q(work_dir() / "unused-run") +
                   " --set data.config.train_labels=" + q(threes) + " --set data.holdout_label=3"),
        // One line and a non-zero exit, before any training step; the message names neither
        // the key nor the file yet (open_dataset could say "data.holdout_label = 3 leaves no
        // training image").
        {"the training set is empty"});
  }
}

TEST_CASE("train and test images of different sizes are refused naming both files",
          "[e2e][bad-input]") {
  const TinyData data;
  SECTION("idx splits") {
    const fs::path small = write_bytes("test-7x7", idx_bytes({24, 7, 7}));
    require_one_line_error(train_with(data, "data.config.test_images", small),
                           {small.string() + ": byte 8: test images are 7x7",
                            "the train images in " + data.train_images.string() + " are 8x8"});
  }
  SECTION("a sample pool of other images than the data's") {
    const fs::path pool = work_dir() / "rgb.pool";
    {
      vaelab::PoolHeader header;
      header.generator = "gen-test";
      header.generator_version = "1";
      header.channels = 3;
      header.height = 8;
      header.width = 8;
      vaelab::PoolWriter writer(pool.string(), header);
      vaelab::ImageSet images;
      images.count = 48;
      images.channels = 3;
      images.height = 8;
      images.width = 8;
      images.pixels.assign(48 * 3 * 8 * 8, 128);
      images.labels.assign(48, -1);
      std::vector<uint64_t> seeds(48);
      for (uint64_t i = 0; i < seeds.size(); ++i) seeds[i] = i;
      writer.append(images, seeds);
      writer.commit();
    }
    const fs::path config = write_bytes("pool-shape.toml", run_config(data));
    require_one_line_error(
        run_vaelab("train " + q(config) + " --out " + q(work_dir() / "unused-run") +
                   " --set train.regime=synthetic --set generator.pool=" + q(pool)),
        {"pool " + pool.string(), "3x8x8", "1x8x8"});
  }
}

TEST_CASE("a damaged checkpoint is refused by vaelab eval naming the file and the byte",
          "[e2e][bad-input]") {
  const TinyData data;
  const fs::path config = write_bytes("checkpoint-run.toml", run_config(data));
  const fs::path run = work_dir() / "checkpoint-run";
  fs::remove_all(run);
  const CliResult trained = run_vaelab("train " + q(config) + " --out " + q(run));
  INFO(trained.err);
  REQUIRE(trained.code == 0);
  const fs::path checkpoint = run / "checkpoints" / "last.safetensors";
  REQUIRE(fs::exists(checkpoint));
  const std::string bytes = slurp(checkpoint);
  REQUIRE(run_vaelab("eval " + q(run)).code == 0);

  SECTION("truncated inside the tensor data") {
    std::ofstream(checkpoint, std::ios::binary | std::ios::trunc)
        << bytes.substr(0, bytes.size() - 100);
    require_one_line_error(run_vaelab("eval " + q(run)),
                           {checkpoint.string() + ": tensor '", "within the file's"});
  }
  SECTION("truncated inside the header") {
    std::ofstream(checkpoint, std::ios::binary | std::ios::trunc) << bytes.substr(0, 40);
    require_one_line_error(
        run_vaelab("eval " + q(run)),
        {checkpoint.string() + ": byte 0: header length", "does not fit in the file (40 bytes)"});
  }
  SECTION("empty") {
    std::ofstream(checkpoint, std::ios::binary | std::ios::trunc);
    require_one_line_error(run_vaelab("eval " + q(run)),
                           {checkpoint.string() + ": byte 0: file is 0 bytes"});
  }
  SECTION("not JSON where the header should be") {
    std::string bad = bytes;
    bad[8] = '[';
    bad[9] = '[';
    std::ofstream(checkpoint, std::ios::binary | std::ios::trunc) << bad;
    require_one_line_error(run_vaelab("eval " + q(run)),
                           {checkpoint.string() + ": byte ", "header is not JSON"});
  }
  SECTION("a folder in its place") {
    fs::remove(checkpoint);
    fs::create_directories(checkpoint);
    require_one_line_error(run_vaelab("eval " + q(run)), {checkpoint.string()});
  }
}

TEST_CASE("plugin folders another user could write to are refused, and say so",
          "[e2e][bad-input]") {
  const TinyData data;
  // A copy of the idx plugin under another name, in a group-writable folder.
  const fs::path folder = work_dir() / "shared-plugins";
  fs::create_directories(folder);
  const fs::path copy = folder / "libvaelab-data-source-unsafe-idx.so";
  fs::copy_file(fs::path(VAELAB_TEST_PLUGIN_DIR) / "libvaelab-data-source-idx.so", copy,
                fs::copy_options::overwrite_existing);
  fs::permissions(folder, fs::perms::owner_all | fs::perms::group_all | fs::perms::others_read |
                              fs::perms::others_exec);
  fs::permissions(copy, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);

  SECTION("vaelab plugins lists it with the reason") {
    const CliResult r = run_vaelab("plugins --path " + q(folder));
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.out, Contains("unsafe-idx") &&
                          Contains("unsafe_permissions: folder " + folder.string() +
                                   " is group-writable (mode 0775)") &&
                          Contains(copy.string()));
  }
  SECTION("a run that asks for it gets the reason") {
    const fs::path config =
        write_bytes("unsafe-plugin.toml",
                    run_config(data) + "[plugins]\npaths = [\"" + folder.string() + "\"]\n");
    require_one_line_error(
        run_vaelab("train " + q(config) + " --out " + q(work_dir() / "unused-run") +
                   " --set data.plugin=unsafe-idx"),
        {"data-source plugin 'unsafe-idx' (" + copy.string() +
         ") was refused: unsafe_permissions: folder " + folder.string() + " is group-writable"});
  }
  SECTION("a relative plugin folder is refused, not looked for in the current directory") {
    const fs::path config = write_bytes("relative-plugins.toml",
                                        run_config(data) + "[plugins]\npaths = [\"plugins\"]\n");
    require_one_line_error(run_vaelab("train " + q(config)),
                           {"plugins.paths[0]: 'plugins' is a relative folder"});
  }
}
