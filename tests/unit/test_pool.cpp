// Sample pools on disk (docs/pool-format.md): round trips, atomic writing, and every way a file
// can be broken, each refused with the path and the byte offset.

#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <vaelab/error.hpp>
#include <vaelab/io/pool.hpp>

namespace fs = std::filesystem;
using Catch::Contains;
using vaelab::ImageSet;
using vaelab::PoolHeader;
using vaelab::PoolReader;
using vaelab::PoolWriter;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("vaelab-pool-" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

/// Image i has pixel j = (i * 31 + j * 7) mod 251: every image differs from its neighbours.
ImageSet make_images(int64_t first, int64_t n, int64_t c, int64_t h, int64_t w) {
  ImageSet s;
  s.count = n;
  s.channels = c;
  s.height = h;
  s.width = w;
  const int64_t bytes = c * h * w;
  s.pixels.resize(static_cast<size_t>(n * bytes));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < bytes; ++j) {
      s.pixels[static_cast<size_t>(i * bytes + j)] =
          static_cast<uint8_t>(((first + i) * 31 + j * 7) % 251);
    }
  }
  s.labels.assign(static_cast<size_t>(n), -1);
  return s;
}

std::vector<uint64_t> seeds_for(int64_t first, int64_t n) {
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < n; ++i)
    seeds.push_back(1000003ULL * static_cast<uint64_t>(first + i) + (1ULL << 40));
  return seeds;
}

PoolHeader make_header(int64_t c, int64_t h, int64_t w) {
  PoolHeader header;
  header.generator = "gen-test";
  header.generator_version = "1.2.3";
  header.config_hash = vaelab::pool_config_hash("steps = 5\n");
  header.provenance = R"({"command":"test","n":200})";
  header.channels = c;
  header.height = h;
  header.width = w;
  return header;
}

/// A committed pool of `count` images of c×h×w, written in three appends.
fs::path write_pool(const fs::path& dir, int64_t count, int64_t c = 3, int64_t h = 64,
                    int64_t w = 64) {
  const fs::path path = dir / "pool.bin";
  PoolWriter writer(path.string(), make_header(c, h, w));
  const int64_t a = count / 3;
  const int64_t b = count / 2;
  writer.append(make_images(0, a, c, h, w), seeds_for(0, a));
  writer.append(make_images(a, b - a, c, h, w), seeds_for(a, b - a));
  writer.append(make_images(b, count - b, c, h, w), seeds_for(b, count - b));
  REQUIRE(writer.count() == count);
  writer.commit();
  return path;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

uint64_t get_u64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + static_cast<size_t>(i)];
  return v;
}
uint32_t get_u32(const std::vector<uint8_t>& b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | b[at + static_cast<size_t>(i)];
  return v;
}
void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}
/// Recomputes the header checksum so a test reaches the checks behind it.
void fix_header_crc(std::vector<uint8_t>& b) {
  put_u32(b, 124, static_cast<uint32_t>(crc32(0, b.data(), 124)));
}

/// The reader's error message for `path` (fails the test when it opens).
std::string open_error(const fs::path& path) {
  try {
    PoolReader reader(path.string());
  } catch (const vaelab::Error& e) {
    return e.what();
  }
  FAIL("the pool at " << path << " opened");
  return "";
}

/// Requires the message to name the path and exactly this byte offset.
void require_refused_at(const fs::path& path, uint64_t offset, const std::string& what) {
  const std::string message = open_error(path);
  INFO(message);
  REQUIRE_THAT(message, Contains(path.string() + ": byte " + std::to_string(offset) + ": "));
  REQUIRE_THAT(message, Contains(what));
}

long max_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

}  // namespace

TEST_CASE("a pool round-trips images, seeds and header across chunks", "[pool]") {
  const fs::path dir = temp_dir("roundtrip");
  const int64_t count = 200;  // 12,288-byte images: 85 per 1 MiB chunk, so three chunks
  const fs::path path = write_pool(dir, count);
  REQUIRE_FALSE(fs::exists(path.string() + ".tmp"));

  PoolReader reader(path.string());
  REQUIRE(reader.path() == path.string());
  REQUIRE(reader.count() == count);
  REQUIRE(reader.image_bytes() == 3 * 64 * 64);
  const PoolHeader& h = reader.header();
  REQUIRE(h.generator == "gen-test");
  REQUIRE(h.generator_version == "1.2.3");
  REQUIRE(h.config_hash == vaelab::pool_config_hash("steps = 5\n"));
  REQUIRE(h.provenance == R"({"command":"test","n":200})");
  REQUIRE((h.channels == 3 && h.height == 64 && h.width == 64));
  REQUIRE(reader.checksum().size() == 8);

  const ImageSet expected = make_images(0, count, 3, 64, 64);
  const std::vector<uint64_t> seeds = seeds_for(0, count);
  for (int64_t i = 0; i < count; ++i) {
    REQUIRE(reader.seed(i) == seeds[static_cast<size_t>(i)]);
    REQUIRE(std::memcmp(reader.image(i), expected.pixels.data() + i * reader.image_bytes(),
                        static_cast<size_t>(reader.image_bytes())) == 0);
  }
  const ImageSet middle = reader.read(80, 20);
  REQUIRE(middle.count == 20);
  REQUIRE(middle.labels == std::vector<int64_t>(20, -1));
  REQUIRE(middle.pixels == make_images(80, 20, 3, 64, 64).pixels);

  // The images are one page-aligned block, as the format promises for memory mapping.
  const std::vector<uint8_t> bytes = read_bytes(path);
  REQUIRE(get_u64(bytes, 56) % 4096 == 0);
  REQUIRE(bytes.size() == get_u64(bytes, 80));

  REQUIRE_THROWS_WITH(reader.read(190, 11), Contains("out of range"));
  REQUIRE_THROWS_WITH(reader.image(count), Contains("out of range"));
  REQUIRE_THROWS_WITH(reader.seed(-1), Contains("out of range"));

  // The checksum follows the content: the same images with one other seed give another one.
  const fs::path other = dir / "other.bin";
  {
    PoolWriter writer(other.string(), make_header(3, 64, 64));
    std::vector<uint64_t> s = seeds_for(0, count);
    s[7] += 1;
    writer.append(make_images(0, count, 3, 64, 64), s);
    writer.commit();
  }
  REQUIRE(PoolReader(other.string()).checksum() != reader.checksum());
}

TEST_CASE("an empty pool and a one-byte image pool are valid", "[pool]") {
  const fs::path dir = temp_dir("small");
  const fs::path empty = dir / "empty.bin";
  {
    PoolWriter writer(empty.string(), make_header(1, 28, 28));
    writer.commit();
  }
  REQUIRE(PoolReader(empty.string()).count() == 0);
  const fs::path tiny = write_pool(dir, 7, 1, 1, 1);
  PoolReader reader(tiny.string());
  REQUIRE(reader.count() == 7);
  REQUIRE(reader.read(0, 7).pixels == make_images(0, 7, 1, 1, 1).pixels);
}

TEST_CASE("a writer destroyed without commit leaves neither the pool nor its temporary file",
          "[pool]") {
  const fs::path dir = temp_dir("abandon");
  const fs::path path = dir / "pool.bin";
  {
    PoolWriter writer(path.string(), make_header(1, 8, 8));
    writer.append(make_images(0, 10, 1, 8, 8), seeds_for(0, 10));
    REQUIRE(fs::exists(path.string() + ".tmp"));
  }
  REQUIRE_FALSE(fs::exists(path));
  REQUIRE_FALSE(fs::exists(path.string() + ".tmp"));

  // The same after a refused append (an exception unwinding through the writer).
  try {
    PoolWriter writer(path.string(), make_header(1, 8, 8));
    writer.append(make_images(0, 4, 1, 8, 9), seeds_for(0, 4));
    FAIL("a 1x8x9 image set was accepted by a 1x8x8 pool");
  } catch (const vaelab::Error& e) {
    REQUIRE_THAT(e.what(), Contains(path.string()) && Contains("1x8x9"));
  }
  REQUIRE(fs::is_empty(dir));
}

TEST_CASE("the writer refuses wrong input and misuse, naming the path", "[pool]") {
  const fs::path dir = temp_dir("misuse");
  const fs::path path = dir / "pool.bin";
  REQUIRE_THROWS_WITH(PoolWriter(path.string(), make_header(0, 8, 8)),
                      Contains(path.string()) && Contains("channels 0"));
  REQUIRE_THROWS_WITH(PoolWriter(path.string(), make_header(1, 8, 100000)),
                      Contains("width 100000"));
  REQUIRE_THROWS_WITH(PoolWriter((dir / "no-such-dir" / "p.bin").string(), make_header(1, 8, 8)),
                      Contains("no-such-dir/p.bin.tmp: cannot create"));
  PoolWriter writer(path.string(), make_header(1, 8, 8));
  REQUIRE_THROWS_WITH(writer.append(make_images(0, 4, 1, 8, 8), seeds_for(0, 3)),
                      Contains("3 seeds for 4 images"));
  ImageSet short_pixels = make_images(0, 4, 1, 8, 8);
  short_pixels.pixels.pop_back();
  REQUIRE_THROWS_WITH(writer.append(short_pixels, seeds_for(0, 4)),
                      Contains("holds 255 bytes, expected 256"));
  ImageSet continuous = make_images(0, 4, 1, 8, 8);
  continuous.values.assign(4 * 64, 0.5f);
  REQUIRE_THROWS_WITH(writer.append(continuous, seeds_for(0, 4)),
                      Contains("a pool holds 8-bit images; these are continuous"));
  writer.append(make_images(0, 4, 1, 8, 8), seeds_for(0, 4));
  writer.commit();
  REQUIRE_THROWS_WITH(writer.append(make_images(0, 4, 1, 8, 8), seeds_for(0, 4)),
                      Contains("after commit"));
  REQUIRE_THROWS_WITH(writer.commit(), Contains("twice"));
  REQUIRE(PoolReader(path.string()).count() == 4);
}

TEST_CASE("pool_config_hash is FNV-1a 64 in 16 hex digits", "[pool]") {
  REQUIRE(vaelab::pool_config_hash("") == "cbf29ce484222325");
  REQUIRE(vaelab::pool_config_hash("a") == "af63dc4c8601ec8c");
  REQUIRE(vaelab::pool_config_hash("steps = 5\n") != vaelab::pool_config_hash("steps = 6\n"));
}

TEST_CASE("a corrupt pool is refused with the path and the byte offset", "[pool]") {
  const fs::path dir = temp_dir("corrupt");
  const fs::path good = write_pool(dir, 200);
  const std::vector<uint8_t> original = read_bytes(good);
  const uint64_t images_offset = get_u64(original, 56);
  const uint64_t seeds_offset = get_u64(original, 64);
  const uint64_t chunks_offset = get_u64(original, 72);
  const fs::path bad = dir / "bad.bin";
  std::vector<uint8_t> b;

  SECTION("not a pool") {
    write_bytes(bad, std::vector<uint8_t>{'P', 'K', 3, 4, 0, 0, 0, 0});
    require_refused_at(bad, 0, "bad magic");
    b = original;
    b[5] = 'X';
    write_bytes(bad, b);
    require_refused_at(bad, 5, "bad magic");
    write_bytes(bad, {});
    require_refused_at(bad, 0, "empty file");
  }
  SECTION("a newer or an older version") {
    b = original;
    put_u32(b, 8, 2);
    fix_header_crc(b);
    write_bytes(bad, b);
    require_refused_at(bad, 8,
                       "version 2 is newer than this vaelab reads (version 1); upgrade vaelab");
    put_u32(b, 8, 0);  // the version is checked before the header checksum
    write_bytes(bad, b);
    require_refused_at(bad, 8, "version 0 is older than this vaelab reads (version 1)");
  }
  SECTION("a damaged header") {
    b = original;
    b[110] ^= 0x01;  // a reserved byte: only the checksum notices
    write_bytes(bad, b);
    require_refused_at(bad, 124, "header checksum mismatch");
    b = original;
    put_u32(b, 12, 256);
    fix_header_crc(b);
    write_bytes(bad, b);
    require_refused_at(bad, 12, "header size 256, expected 128");
  }
  SECTION("the count disagrees with the file size") {
    b = original;
    put_u64(b, 16, 201);  // only the count: the stored offsets no longer fit it
    fix_header_crc(b);
    write_bytes(bad, b);
    require_refused_at(bad, 64, "seeds_offset is " + std::to_string(seeds_offset));
    // A count with every offset made consistent: the file is too short for it.
    const uint64_t n = 300;
    const uint64_t image_bytes = 3 * 64 * 64;
    const uint64_t seeds = (images_offset + n * image_bytes + 7) / 8 * 8;
    const uint64_t chunks = seeds + 8 * n;
    const uint64_t end = chunks + 4 * ((n + 84) / 85);
    put_u64(b, 16, n);
    put_u64(b, 64, seeds);
    put_u64(b, 72, chunks);
    put_u64(b, 80, end);
    fix_header_crc(b);
    write_bytes(bad, b);
    require_refused_at(bad, original.size(), "needs " + std::to_string(end));
    // And a smaller consistent count: bytes are left over after the declared end.
    const uint64_t m = 100;
    const uint64_t seeds_m = images_offset + m * image_bytes;
    const uint64_t end_m = seeds_m + 8 * m + 4 * 2;
    put_u64(b, 16, m);
    put_u64(b, 64, seeds_m);
    put_u64(b, 72, seeds_m + 8 * m);
    put_u64(b, 80, end_m);
    fix_header_crc(b);
    write_bytes(bad, b);
    require_refused_at(bad, end_m, "bytes after the end the header declares");
  }
  SECTION("a stored offset that is not the layout's") {
    b = original;
    put_u64(b, 56, images_offset + 4096);
    fix_header_crc(b);
    write_bytes(bad, b);
    require_refused_at(bad, 56, "images_offset is " + std::to_string(images_offset + 4096));
  }
  SECTION("trailing bytes") {
    b = original;
    b.push_back(0);
    write_bytes(bad, b);
    require_refused_at(bad, original.size(), "1 bytes after the end");
  }
  SECTION("a damaged meta block") {
    b = original;
    b[128 + 6] ^= 0x20;  // inside the generator name
    write_bytes(bad, b);
    require_refused_at(bad, 128, "meta block checksum mismatch");
    // A string length running past the block, checksums made consistent.
    b = original;
    const uint32_t meta_bytes = static_cast<uint32_t>(get_u64(b, 48));
    put_u32(b, 128, 1000);
    put_u32(b, 88, static_cast<uint32_t>(crc32(0, b.data() + 128, meta_bytes)));
    fix_header_crc(b);
    write_bytes(bad, b);
    require_refused_at(bad, 128, "length 1000 of 'generator' runs past the end of the meta block");
  }
  SECTION("a damaged seed table") {
    b = original;
    b[seeds_offset + 8 * 17 + 3] ^= 0x40;
    write_bytes(bad, b);
    require_refused_at(bad, seeds_offset, "seed table checksum mismatch");
  }
  SECTION("a damaged chunk table") {
    b = original;
    b[chunks_offset + 5] ^= 0x01;
    write_bytes(bad, b);
    require_refused_at(bad, chunks_offset, "chunk table checksum mismatch");
  }
  SECTION("a damaged image names its chunk") {
    b = original;
    const uint64_t image_bytes = 3 * 64 * 64;
    b[images_offset + 100 * image_bytes + 9] ^= 0xff;  // image 100 is in chunk 1 (images 85..169)
    write_bytes(bad, b);
    require_refused_at(bad, images_offset + 85 * image_bytes, "image chunk 1 (images 85..169");
    b = original;
    b[original.size() - 4 * 3 - 8 * 200 - 1] ^= 0x01;  // the last image byte, in the last chunk
    write_bytes(bad, b);
    require_refused_at(bad, images_offset + 170 * image_bytes, "image chunk 2 (images 170..199");
  }
}

TEST_CASE("a truncated pool is refused at every length, naming where it ends", "[pool]") {
  const fs::path dir = temp_dir("truncated");
  const fs::path good = write_pool(dir, 200);
  const std::vector<uint8_t> original = read_bytes(good);
  const uint64_t images_offset = get_u64(original, 56);
  const uint64_t seeds_offset = get_u64(original, 64);
  const fs::path bad = dir / "bad.bin";
  for (const uint64_t length : {uint64_t{4}, uint64_t{8}, uint64_t{100}, uint64_t{127},
                                uint64_t{128}, uint64_t{200}, images_offset, images_offset + 12345,
                                seeds_offset + 3, static_cast<uint64_t>(original.size()) - 1}) {
    INFO("length " << length);
    write_bytes(
        bad, std::vector<uint8_t>(original.begin(), original.begin() + static_cast<long>(length)));
    const std::string message = open_error(bad);
    INFO(message);
    REQUIRE_THAT(message, Contains(bad.string() + ": byte " + std::to_string(length) +
                                   ": file ends after " + std::to_string(length) + " bytes"));
  }
}

TEST_CASE("absurd sizes in the header are refused before anything is mapped or allocated",
          "[pool]") {
  const fs::path dir = temp_dir("absurd");
  const fs::path good = write_pool(dir, 20, 1, 8, 8);
  const std::vector<uint8_t> original = read_bytes(good);
  const fs::path bad = dir / "bad.bin";
  const long rss_before = max_rss_kib();
  struct Field {
    size_t at;
    bool wide;
    uint64_t value;
  };
  const auto refuse = [&](const std::vector<Field>& fields, uint64_t offset,
                          const std::string& what) {
    std::vector<uint8_t> b = original;
    for (const Field& f : fields) {
      if (f.wide) {
        put_u64(b, f.at, f.value);
      } else {
        put_u32(b, f.at, static_cast<uint32_t>(f.value));
      }
    }
    fix_header_crc(b);
    write_bytes(bad, b);
    require_refused_at(bad, offset, what);
  };
  refuse({{16, true, uint64_t{1} << 62}}, 16, "absurd image count 4611686018427387904");
  refuse({{16, true, uint64_t{1} << 40}, {24, false, 64}}, 16,
         "1099511627776 images of 4096 bytes exceed the limit of 1125899906842624 image bytes");
  refuse({{24, false, 1000}}, 24, "channels 1000 is outside 1..64");
  refuse({{28, false, 0}}, 28, "height 0 is outside 1..65536");
  refuse({{32, false, 0xffffffffu}}, 32, "width 4294967295 is outside 1..65536");
  refuse({{28, false, 65536}, {32, false, 65536}}, 24, "exceeds the limit of 268435456");
  refuse({{36, false, 0}}, 36, "chunk size of 0 images");
  refuse({{48, true, uint64_t{1} << 45}}, 48, "absurd meta block size");
  // 2^39 one-byte images pass the limits but not the file size: refused before mapping.
  {
    std::vector<uint8_t> b = original;
    const uint64_t n = uint64_t{1} << 39;
    put_u64(b, 16, n);
    put_u32(b, 28, 1);
    put_u32(b, 32, 1);
    const uint64_t images_offset = get_u64(b, 56);
    const uint64_t seeds = (images_offset + n + 7) / 8 * 8;
    const uint64_t chunks = seeds + 8 * n;
    put_u64(b, 64, seeds);
    put_u64(b, 72, chunks);
    put_u64(b, 80, chunks + 4 * ((n + get_u32(b, 36) - 1) / get_u32(b, 36)));
    fix_header_crc(b);
    write_bytes(bad, b);
    require_refused_at(bad, original.size(), "(549755813888 images of 1x1x1) needs");
  }
  // Nothing near those sizes was ever touched: the peak resident memory barely moved.
  REQUIRE(max_rss_kib() - rss_before < 64 * 1024);
}
