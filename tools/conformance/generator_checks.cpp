// The contract of a Generator plugin (core/include/vaelab/generator.hpp), on a tiny training set
// of blobs (default 256 images of 1x16x16) and a few fit steps.

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include <vaelab/generator.hpp>

#include "torch_support.hpp"

namespace fs = std::filesystem;

namespace vaelab::conformance {
namespace {

/// Soft round blobs at random places, sizes and brightness on a dark background.
ImageSet tiny_training_set(const Options& o) {
  ImageSet set;
  set.count = o.generator_images;
  set.channels = o.generator_channels;
  set.height = o.generator_height;
  set.width = o.generator_width;
  set.pixels.resize(static_cast<size_t>(set.count * set.image_bytes()));
  set.labels.assign(static_cast<size_t>(set.count), -1);
  std::mt19937 rng(2024);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int64_t i = 0; i < set.count; ++i) {
    const double cy = unit(rng) * static_cast<double>(set.height);
    const double cx = unit(rng) * static_cast<double>(set.width);
    const double radius = 1.5 + unit(rng) * static_cast<double>(std::min(set.height, set.width)) / 4;
    for (int64_t c = 0; c < set.channels; ++c) {
      const double brightness = 120 + 135 * unit(rng);
      for (int64_t y = 0; y < set.height; ++y) {
        for (int64_t x = 0; x < set.width; ++x) {
          const double d2 = (y - cy) * (y - cy) + (x - cx) * (x - cx);
          const double v = 10 + brightness * std::exp(-d2 / (2 * radius * radius));
          set.pixels[static_cast<size_t>(((i * set.channels + c) * set.height + y) * set.width + x)] =
              static_cast<uint8_t>(std::min(255.0, std::round(v)));
        }
      }
    }
  }
  return set;
}

std::string shape_of(const ImageSet& s) {
  return std::to_string(s.channels) + "x" + std::to_string(s.height) + "x" + std::to_string(s.width);
}

/// Image i of a sample as bytes.
std::vector<uint8_t> image(const ImageSet& s, int64_t i) {
  const auto begin = s.pixels.begin() + static_cast<std::ptrdiff_t>(i * s.image_bytes());
  return std::vector<uint8_t>(begin, begin + static_cast<std::ptrdiff_t>(s.image_bytes()));
}

}  // namespace

void check_generator(const Context& context, CheckList& checks) {
  const Options& o = context.options;
  PluginPtr<Backend> backend;
  PluginPtr<Generator> gen;
  checks.run("setup.backend", [&] {
    backend = make_backend(o);
    return "attached to " + o.backend + ": " + backend->describe();
  });
  const std::vector<std::string> base = {"create.defaults", "setup.backend"};

  checks.run("generator.describe", [&] {
    gen = make_instance<Generator>(context);
    gen->attach(*backend);
    const std::string text = gen->describe();
    nlohmann::json d;
    try {
      d = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw CheckFailed("describe() is not JSON: " + std::string(e.what()));
    }
    require(d.is_object(), "describe() is not a JSON object");
    require(d.contains("what") && d["what"].is_string() && !d["what"].get<std::string>().empty(),
            "describe() has no \"what\" string");
    for (const char* key : {"parameters", "fit_steps", "fit_seconds"}) {
      require(d.contains(key) && d[key].is_number(), std::string("describe() has no number \"") + key + "\"");
    }
    return d["what"].get<std::string>();
  }, base);

  const ImageSet train = tiny_training_set(o);
  const bool fit_skipped = std::find(o.skip.begin(), o.skip.end(), "generator.fit") != o.skip.end();
  checks.run("generator.fit", [&] {
    FitBudget budget;
    budget.steps = o.fit_steps;
    int64_t calls = 0;
    int64_t last_step = -1;
    double last_loss = 0;
    std::string problem;
    const FitProgress progress = [&](int64_t step, int64_t total, double loss) {
      ++calls;
      if (problem.empty() && !std::isfinite(loss)) {
        problem = "progress reported a non-finite loss at step " + std::to_string(step);
      }
      if (problem.empty() && step < last_step) {
        problem = "progress went back from step " + std::to_string(last_step) + " to " + std::to_string(step);
      }
      if (problem.empty() && total > 0 && step > total) {
        problem = "progress reported step " + std::to_string(step) + " of " + std::to_string(total);
      }
      last_step = step;
      last_loss = loss;
      return true;
    };
    gen->fit(train, budget, progress);
    require(problem.empty(), problem);
    std::ostringstream out;
    out << o.fit_steps << " steps on " << train.count << " images of " << shape_of(train) << ", " << calls
        << " progress calls";
    if (calls > 0) out << ", last loss " << last_loss;
    return out.str();
  }, {"generator.describe"});

  // A generator that is not fitted by design (one that serves existing images) is checked as made.
  const std::vector<std::string> fitted = fit_skipped ? std::vector<std::string>{"generator.describe"}
                                                      : std::vector<std::string>{"generator.fit"};
  checks.run("generator.sample_shape", [&] {
    const ImageSet s = gen->sample(5, 1000);
    require(s.count == 5, "sample(5, ...) returned " + std::to_string(s.count) + " images");
    if (!fit_skipped) {
      require(shape_of(s) == shape_of(train),
              "samples are " + shape_of(s) + ", the training images " + shape_of(train));
    }
    require(s.channels >= 1 && s.height >= 1 && s.width >= 1, "samples are " + shape_of(s));
    require(s.values.empty(), "samples are continuous values, not 8-bit pixels");
    require(s.pixels.size() == static_cast<size_t>(5 * s.image_bytes()),
            std::to_string(s.pixels.size()) + " bytes for 5 images of " + shape_of(s));
    require(s.labels == std::vector<int64_t>(5, -1), "sample labels are not all -1");
    return "5 images of " + shape_of(s) + (fit_skipped ? " (not fitted: --skip generator.fit)" : "") +
           ", uint8, labels -1";
  }, fitted);

  checks.run("generator.seed_reproducible", [&] {
    const ImageSet six = gen->sample(6, 100);
    const ImageSet again = gen->sample(6, 100);
    require(six.pixels == again.pixels, "sample(6, 100) twice gives different images");
    const ImageSet alone = gen->sample(1, 103);
    require(image(alone, 0) == image(six, 3),
            "image 103 alone differs from image 103 in a batch of 6 from seed 100");
    const ImageSet pair = gen->sample(2, 104);
    require(image(pair, 0) == image(six, 4) && image(pair, 1) == image(six, 5),
            "images 104 and 105 in a batch of 2 differ from the same images in a batch of 6");
    require(image(six, 0) != image(six, 1), "seeds 100 and 101 give the same image");
    return std::string("image i depends on seed i alone: batches of 6, 2 and 1 agree; seeds differ");
  }, {"generator.sample_shape"});

  checks.run("generator.save_load", [&] {
    const fs::path dir = context.scratch / (context.record.name + "-saved");
    fs::create_directories(dir);
    gen->save(dir.string());
    require(!fs::is_empty(dir), "save() wrote nothing into " + dir.string());
    PluginPtr<Generator> loaded = make_instance<Generator>(context);
    loaded->attach(*backend);
    loaded->load(dir.string());
    const ImageSet a = gen->sample(4, 77);
    const ImageSet b = loaded->sample(4, 77);
    require(shape_of(a) == shape_of(b) && a.pixels == b.pixels,
            "a new instance that load()ed what save() wrote samples other images for seeds 77..80");
    int files = 0;
    for (auto it = fs::directory_iterator(dir); it != fs::directory_iterator(); ++it) ++files;
    return "saved " + std::to_string(files) + " files; the loaded instance samples the same images";
  }, {"generator.sample_shape"});

  checks.run("generator.load_missing", [&] {
    const fs::path empty = context.scratch / (context.record.name + "-empty");
    fs::create_directories(empty);
    PluginPtr<Generator> other = make_instance<Generator>(context);
    other->attach(*backend);
    try {
      other->load(empty.string());
    } catch (const std::exception& e) {
      require(std::string(e.what()).size() > 0, "load() of an empty folder threw without a message");
      return std::string("refused: ") + e.what();
    }
    throw CheckFailed("load() of an empty folder succeeded");
  }, base);
}

}  // namespace vaelab::conformance
