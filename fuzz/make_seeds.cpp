// Writes the seed corpora of the fuzz targets: small valid files of every format, made with the
// project's own writer where it has one (PoolWriter) and byte by byte from the format descriptions
// otherwise (IDX, .npy, CIFAR-10, PNG and JPEG through stb_image_write). The checkpoints are
// written by make_seeds_safetensors.cpp (LibTorch).
//
//   make-seeds OUT_DIR        → OUT_DIR/<target>/<name>
//
// Every file here is one a reader must accept; fuzz/run.sh checks that before fuzzing.

#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <vaelab/compress/container.hpp>
#include <vaelab/error.hpp>
#include <vaelab/io/pool.hpp>

#include "fuzz_coding_model.hpp"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

void write_file(const fs::path& file, const Bytes& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  if (!out) throw vaelab::Error(file.string() + ": cannot write");
}

Bytes ramp(size_t n, int step = 7) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * static_cast<size_t>(step));
  return b;
}

// ---- IDX: 0, 0, type 0x08, dimension count, big-endian u32 sizes, the data -------------------
Bytes idx_file(const std::vector<uint32_t>& dims) {
  Bytes b = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  size_t n = 1;
  for (const uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
    n *= d;
  }
  const Bytes data = ramp(n);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes gzip(const Bytes& raw) {
  z_stream z{};
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw vaelab::Error("deflateInit2 failed");
  }
  Bytes out(deflateBound(&z, static_cast<uLong>(raw.size())) + 32);
  z.next_in = const_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) throw vaelab::Error("deflate failed");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// ---- .npy: magic, version, header length, the dict padded to 64 bytes, the data -------------
Bytes npy_file(int major, const std::string& descr, const std::string& shape, const Bytes& data) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t preamble = major == 1 ? 10 : 12;
  while ((preamble + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  const size_t n = dict.size();
  for (size_t i = 0; i < preamble - 8; ++i) b.push_back(static_cast<uint8_t>(n >> (8 * i)));
  b.insert(b.end(), dict.begin(), dict.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes float32_le(const std::vector<float>& values) {
  Bytes b;
  for (const float v : values) {
    uint32_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(bits >> (8 * i)));
  }
  return b;
}

Bytes int64_le(const std::vector<int64_t>& values) {
  Bytes b;
  for (const int64_t v : values) {
    for (int i = 0; i < 8; ++i)
      b.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i)));
  }
  return b;
}

// ---- Images through stb_image_write ----------------------------------------------------------
void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<Bytes*>(context);
  const auto* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

Bytes png(int w, int h, int c) {
  const Bytes pixels = ramp(static_cast<size_t>(w * h * c), 13);
  Bytes out;
  if (stbi_write_png_to_func(append_bytes, &out, w, h, c, pixels.data(), w * c) == 0) {
    throw vaelab::Error("stbi_write_png failed");
  }
  return out;
}

Bytes jpeg(int w, int h, int c) {
  const Bytes pixels = ramp(static_cast<size_t>(w * h * c), 5);
  Bytes out;
  if (stbi_write_jpg_to_func(append_bytes, &out, w, h, c, pixels.data(), 75) == 0) {
    throw vaelab::Error("stbi_write_jpg failed");
  }
  return out;
}

// ---- Pools through PoolWriter ----------------------------------------------------------------
void pool_file(const fs::path& file, int64_t count, int64_t c, int64_t h, int64_t w) {
  fs::create_directories(file.parent_path());
  vaelab::PoolHeader header;
  header.generator = "gen-fuzz";
  header.generator_version = "0.1.0";
  header.config_hash = vaelab::pool_config_hash("steps = 1\n");
  header.provenance = "{\"seed\":\"make-seeds\"}";
  header.channels = c;
  header.height = h;
  header.width = w;
  vaelab::PoolWriter writer(file.string(), header);
  vaelab::ImageSet images;
  images.count = count;
  images.channels = c;
  images.height = h;
  images.width = w;
  images.pixels = ramp(static_cast<size_t>(count * c * h * w), 3);
  images.labels.assign(static_cast<size_t>(count), -1);
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < count; ++i) seeds.push_back(1000 + static_cast<uint64_t>(i));
  writer.append(images, seeds);
  writer.commit();
}

// ---- Compressed files: BB-ANS with the fuzz target's stand-in model, so they decode in full ----
Bytes compressed_file(vaelab::compress::LikelihoodKind kind, int64_t channels, int64_t count, int64_t lanes) {
  namespace compress = vaelab::compress;
  compress::CompressedFile file;
  compress::CodecSettings& s = file.header.settings;
  s.likelihood = kind;
  s.mixtures = kind == compress::LikelihoodKind::mol ? 2 : 0;
  s.channels = channels;
  s.height = 3;
  s.width = 4;
  s.latent_dims = 2;
  s.latent_precision = 6;
  s.posterior_precision = 16;
  s.likelihood_precision = 12;
  s.lanes = lanes;
  Bytes images = ramp(static_cast<size_t>(count * s.image_symbols()), 5);
  if (kind == compress::LikelihoodKind::bernoulli) {
    for (auto& v : images) v = v >> 7;
  }
  file.header.binary_one = kind == compress::LikelihoodKind::bernoulli ? 255 : 0;
  file.header.count = static_cast<uint64_t>(count);
  file.header.seed = 3;
  file.header.images_crc32 = compress::crc32_of(images.data(), images.size());
  vaelab::fuzz::StandInModel model(s);
  file.lanes = compress::bbans_encode(s, model, images.data(), count, file.header.seed);
  return compress::serialize(file);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make-seeds OUT_DIR\n");
    return 2;
  }
  const fs::path out = argv[1];
  try {
    write_file(out / "idx" / "images-2x3x3.idx", idx_file({2, 3, 3}));
    write_file(out / "idx" / "labels-5.idx", idx_file({5}));
    write_file(out / "idx" / "images-2x3x3.idx.gz", gzip(idx_file({2, 3, 3})));

    write_file(out / "npy" / "uint8-v1.npy", npy_file(1, "|u1", "(2, 3, 3)", ramp(18)));
    write_file(out / "npy" / "float32-v2.npy",
               npy_file(2, "<f4", "(2, 2)", float32_le({0.0f, 0.25f, 0.5f, 1.0f})));
    write_file(out / "npy" / "labels-int64-v3.npy",
               npy_file(3, "<i8", "(3,)", int64_le({0, 9, 4})));
    write_file(out / "npy" / "scalar-v1.npy", npy_file(1, "<i2", "()", {0x34, 0x12}));

    Bytes record = ramp(3073, 11);
    record[0] = 7;
    write_file(out / "cifar10" / "one-record.bin", record);
    Bytes two = record;
    two.insert(two.end(), record.begin(), record.end());
    two[3073] = 2;
    write_file(out / "cifar10" / "two-records.bin", two);
    const std::string names =
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    write_file(out / "cifar10" / "batches.meta.txt", Bytes(names.begin(), names.end()));

    write_file(out / "image" / "grey-4x3.png", png(4, 3, 1));
    write_file(out / "image" / "rgb-5x5.png", png(5, 5, 3));
    write_file(out / "image" / "rgba-3x2.png", png(3, 2, 4));
    write_file(out / "image" / "rgb-8x8.jpg", jpeg(8, 8, 3));
    write_file(out / "image" / "grey-9x7.jpg", jpeg(9, 7, 1));

    write_file(out / "compressed" / "bernoulli-5-images-2-chains.vlz",
               compressed_file(vaelab::compress::LikelihoodKind::bernoulli, 1, 5, 2));
    write_file(out / "compressed" / "mol-grey-3-images.vlz", compressed_file(vaelab::compress::LikelihoodKind::mol, 1, 3, 1));
    write_file(out / "compressed" / "mol-rgb-2-images.vlz", compressed_file(vaelab::compress::LikelihoodKind::mol, 3, 2, 2));

    pool_file(out / "pool" / "grey-3x4x4.pool", 3, 1, 4, 4);
    pool_file(out / "pool" / "rgb-2x3x2x2.pool", 2, 3, 2, 2);
    pool_file(out / "pool" / "empty.pool", 0, 1, 1, 1);

    // A config with --set arguments after NUL bytes (the config target's input format).
    const std::string config =
        "[data]\ntrain_size = 100\n[data.config]\npad_to = 32\n[model.config]\nlatent = 8\n"
        "[train]\nepochs = 3\nlr = 1e-3\n";
    std::string with_sets = config;
    for (const char* set :
         {"train.epochs=5", "model.config.hidden=[64, 32]", "likelihood.name=gaussian"}) {
      with_sets += '\0';
      with_sets += set;
    }
    write_file(out / "config" / "with-overrides.bin", Bytes(with_sets.begin(), with_sets.end()));

  } catch (const std::exception& e) {
    std::fprintf(stderr, "make-seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
