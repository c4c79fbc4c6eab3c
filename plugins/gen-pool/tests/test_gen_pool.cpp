// gen-pool loaded through the registry: sampling indices, save/load, and its refusals.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include <vaelab/generator.hpp>
#include <vaelab/io/pool.hpp>
#include <vaelab/registry.hpp>

namespace fs = std::filesystem;
using Catch::Contains;
using vaelab::Generator;
using vaelab::ImageSet;

namespace {

const vaelab::Registry& registry() {
  static const vaelab::Registry r({VAELAB_TEST_PLUGIN_DIR});
  return r;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("vaelab-gen-pool-" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

/// A pool of `count` 1x4x4 images; image i is filled with the byte (i * 7 + salt) mod 256.
fs::path write_pool(const fs::path& path, int64_t count, int salt = 0) {
  vaelab::PoolHeader header;
  header.generator = "gen-test";
  header.generator_version = "0.0.1";
  header.config_hash = vaelab::pool_config_hash("");
  header.provenance = "{}";
  header.channels = 1;
  header.height = 4;
  header.width = 4;
  vaelab::PoolWriter writer(path.string(), header);
  ImageSet images;
  images.count = count;
  images.channels = 1;
  images.height = 4;
  images.width = 4;
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < count; ++i) {
    images.pixels.insert(images.pixels.end(), 16, static_cast<uint8_t>((i * 7 + salt) % 256));
    seeds.push_back(static_cast<uint64_t>(i));
  }
  images.labels.assign(static_cast<size_t>(count), -1);
  writer.append(images, seeds);
  writer.commit();
  return path;
}

vaelab::PluginPtr<Generator> make(const fs::path& pool) {
  return registry().create<Generator>("gen-pool", "path = \"" + pool.string() + "\"\n");
}

/// The pool index each sampled image came from (every pixel of image i is i * 7 mod 256).
std::vector<int64_t> indices(const ImageSet& s, int64_t count) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < s.count; ++i) {
    const uint8_t v = s.pixels[static_cast<size_t>(i * 16)];
    int64_t found = -1;
    for (int64_t k = 0; k < count; ++k) {
      if ((k * 7) % 256 == v) found = k;
    }
    out.push_back(found);
  }
  return out;
}

}  // namespace

TEST_CASE("gen-pool samples pool images (first_seed + i) mod count", "[gen-pool]") {
  const fs::path dir = temp_dir("sample");
  const fs::path pool = write_pool(dir / "pool.bin", 10);
  auto gen = make(pool);
  ImageSet s = gen->sample(4, 3);
  REQUIRE((s.count == 4 && s.channels == 1 && s.height == 4 && s.width == 4));
  REQUIRE(s.pixels.size() == 4 * 16);
  REQUIRE(s.labels == std::vector<int64_t>(4, -1));
  REQUIRE(indices(s, 10) == std::vector<int64_t>{3, 4, 5, 6});
  // Wrap-around, more images than the pool holds, and a seed near the top of uint64.
  REQUIRE(indices(gen->sample(5, 8), 10) == std::vector<int64_t>{8, 9, 0, 1, 2});
  REQUIRE(indices(gen->sample(23, 0), 10).at(22) == 2);
  const uint64_t top = UINT64_MAX;  // 18446744073709551615 mod 10 = 5
  REQUIRE(indices(gen->sample(2, top), 10) == std::vector<int64_t>{5, 6});
  // Image i is the same alone or in a batch.
  REQUIRE(gen->sample(1, 6).pixels == std::vector<uint8_t>(s.pixels.begin() + 48, s.pixels.end()));
  REQUIRE(gen->sample(0, 0).count == 0);
  REQUIRE_THROWS_WITH(gen->sample(-1, 0), Contains("cannot sample -1"));

  const nlohmann::json d = nlohmann::json::parse(gen->describe());
  REQUIRE(d["parameters"] == 0);
  REQUIRE(d["pool_count"] == 10);
  REQUIRE(d["pool_generator"] == "gen-test");
  REQUIRE_THAT(d["what"].get<std::string>(), Contains("10 images of 1x4x4"));
}

TEST_CASE("gen-pool is not fitted", "[gen-pool]") {
  const fs::path dir = temp_dir("fit");
  auto gen = make(write_pool(dir / "pool.bin", 4));
  ImageSet train;
  REQUIRE_THROWS_WITH(gen->fit(train, vaelab::FitBudget{}, nullptr),
                      Contains("not fitted") && Contains("generator check POOL"));
}

TEST_CASE("gen-pool saves the pool's path and checksum and loads them back", "[gen-pool]") {
  const fs::path dir = temp_dir("save");
  const fs::path pool = write_pool(dir / "pool.bin", 10);
  const fs::path saved = dir / "gen";
  fs::create_directories(saved);
  make(pool)->save(saved.string());
  std::ifstream in(saved / "gen-pool.json");
  const nlohmann::json j = nlohmann::json::parse(in);
  REQUIRE(j["path"] == fs::absolute(pool).string());
  REQUIRE(j["checksum"] == vaelab::PoolReader(pool.string()).checksum());
  REQUIRE_FALSE(fs::exists(saved / "gen-pool.json.tmp"));

  auto empty = registry().create<Generator>("gen-pool", "path = \"\"\n");
  REQUIRE_THROWS_WITH(empty->sample(1, 0), Contains("gen-pool has no pool"));
  REQUIRE_THROWS_WITH(empty->save(saved.string()), Contains("gen-pool has no pool"));
  empty->load(saved.string());
  REQUIRE(indices(empty->sample(3, 12), 10) == std::vector<int64_t>{2, 3, 4});

  // A pool rewritten in place is refused: the saved checksum no longer matches.
  write_pool(pool, 10, /*salt=*/1);
  auto again = registry().create<Generator>("gen-pool", "path = \"\"\n");
  REQUIRE_THROWS_WITH(again->load(saved.string()),
                      Contains(pool.string() + ": the pool changed since"));
  // A folder gen-pool did not save, and a damaged save file, name the file.
  REQUIRE_THROWS_WITH(again->load(dir.string()),
                      Contains((dir / "gen-pool.json").string() + ": cannot read"));
  std::ofstream(saved / "gen-pool.json") << "{\"path\": 3}";
  REQUIRE_THROWS_WITH(again->load(saved.string()),
                      Contains("gen-pool.json: not a gen-pool save file"));
}

TEST_CASE("gen-pool refuses a missing, corrupt or empty pool at create time", "[gen-pool]") {
  const fs::path dir = temp_dir("refuse");
  REQUIRE_THROWS_WITH(make(dir / "missing.bin"), Contains("missing.bin: cannot open the pool"));
  std::ofstream(dir / "text.bin") << "not a pool at all";
  REQUIRE_THROWS_WITH(make(dir / "text.bin"), Contains("text.bin: byte 0: bad magic"));
  REQUIRE_THROWS_WITH(make(write_pool(dir / "empty.bin", 0)), Contains("holds no images"));
}
