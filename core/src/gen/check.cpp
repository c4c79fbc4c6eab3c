// Generators: `vaelab generator check`, samples against held-out images (C2ST, nearest neighbours).
#include <vaelab/gen/check.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>
#include <vaelab/train/session.hpp>

#include "mlp_classifier.hpp"

namespace vaelab {

namespace gen_detail {

torch::Tensor to_rows(const ImageSet& images) {
  return to_float_images(images, "none").flatten(1);
}

torch::nn::Sequential make_mlp(const std::vector<int64_t>& widths, at::Generator& gen) {
  torch::nn::Sequential net;
  for (size_t i = 1; i < widths.size(); ++i) {
    if (i > 1) net->push_back(torch::nn::ReLU());
    net->push_back(torch::nn::Linear(widths[i - 1], widths[i]));
  }
  torch::NoGradGuard no_grad;
  // Parameters come as weight, bias per layer; a bias uses its weight's fan-in.
  int64_t fan_in = 1;
  for (auto& p : net->parameters()) {
    if (p.dim() == 2) fan_in = p.size(1);
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    p.uniform_(-bound, bound, gen);
  }
  return net;
}

void fit_classifier(const std::vector<torch::Tensor>& params, const torch::Tensor& x,
                    const torch::Tensor& y, int64_t epochs, int64_t batch, double lr,
                    at::Generator& gen,
                    const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& loss) {
  torch::optim::Adam optimizer(params, torch::optim::AdamOptions(lr));
  const int64_t n = x.size(0);
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    const torch::Tensor order = shim::randperm(n, gen);
    for (int64_t first = 0; first < n; first += batch) {
      const torch::Tensor idx = order.slice(0, first, std::min(first + batch, n));
      optimizer.zero_grad();
      loss(x.index_select(0, idx), y.index_select(0, idx)).backward();
      optimizer.step();
    }
  }
}

}  // namespace gen_detail

namespace {

using gen_detail::to_rows;

/// Candidates re-measured exactly per query: enough to survive float rounding near ties.
constexpr int64_t kCandidates = 4;
/// Floats of one block of the query × reference distance matrix (256 MiB).
constexpr int64_t kBlockFloats = int64_t{64} << 20;

std::string shape_text(const ImageSet& s) {
  return std::to_string(s.channels) + "x" + std::to_string(s.height) + "x" +
         std::to_string(s.width);
}

void require_same_shape(const ImageSet& a, const char* a_name, const ImageSet& b,
                        const char* b_name) {
  for (const auto& [set, name] : {std::pair<const ImageSet&, const char*>{a, a_name},
                                  std::pair<const ImageSet&, const char*>{b, b_name}}) {
    if (set.continuous()) {
      throw Error(std::string("the generator check needs 8-bit images, but ") + name +
                  " are continuous");
    }
  }
  if (a.channels != b.channels || a.height != b.height || a.width != b.width) {
    throw Error(std::string(a_name) + " are " + shape_text(a) + " images but " + b_name + " are " +
                shape_text(b));
  }
}

/// Rows `index` of `images` (a copy).
ImageSet take(const ImageSet& images, const std::vector<int64_t>& index) {
  ImageSet out;
  out.count = static_cast<int64_t>(index.size());
  out.channels = images.channels;
  out.height = images.height;
  out.width = images.width;
  const int64_t bytes = images.image_bytes();
  out.pixels.resize(static_cast<size_t>(out.count * bytes));
  for (size_t k = 0; k < index.size(); ++k) {
    std::copy_n(images.pixels.begin() + index[k] * bytes, bytes,
                out.pixels.begin() + static_cast<int64_t>(k) * bytes);
  }
  out.labels.assign(index.size(), -1);
  return out;
}

std::vector<int64_t> permutation(int64_t n, at::Generator& gen) {
  const torch::Tensor p = shim::randperm(n, gen);
  return std::vector<int64_t>(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + n);
}

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (rank - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

nlohmann::json summary_json(const DistanceSummary& d) {
  return {{"count", d.count},   {"min", d.min}, {"q01", d.q01}, {"q05", d.q05},
          {"median", d.median}, {"q95", d.q95}, {"max", d.max}, {"mean", d.mean}};
}

std::string fixed(double v, int digits) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, v);
  return text;
}

}  // namespace

std::vector<double> nearest_neighbour_l2(const ImageSet& queries, const ImageSet& reference) {
  require_same_shape(queries, "the queries", reference, "the reference images");
  if (reference.count < 1) throw Error("nearest neighbours need at least one reference image");
  torch::NoGradGuard no_grad;
  const int64_t bytes = reference.image_bytes();
  const torch::Tensor ref = to_rows(reference);
  const torch::Tensor ref_norms = ref.square().sum(1);
  const int64_t k = std::min(kCandidates, reference.count);
  const int64_t block = std::max<int64_t>(1, kBlockFloats / reference.count);
  std::vector<double> out(static_cast<size_t>(queries.count));
  for (int64_t first = 0; first < queries.count; first += block) {
    const int64_t n = std::min(block, queries.count - first);
    ImageSet part;
    part.count = n;
    part.channels = queries.channels;
    part.height = queries.height;
    part.width = queries.width;
    part.pixels.assign(queries.pixels.begin() + first * bytes,
                       queries.pixels.begin() + (first + n) * bytes);
    const torch::Tensor q = to_rows(part);
    // |q - r|² = |q|² + |r|² - 2 q·r; only the ranking is used, so rounding is harmless here.
    const torch::Tensor d2 = torch::addmm(ref_norms.unsqueeze(0), q, ref.t(), 1.0, -2.0);
    const torch::Tensor candidates = std::get<1>(d2.topk(k, 1, /*largest=*/false)).contiguous();
    const int64_t* idx = candidates.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* a = queries.pixels.data() + (first + i) * bytes;
      int64_t best = INT64_MAX;
      for (int64_t c = 0; c < k; ++c) {
        const uint8_t* b = reference.pixels.data() + idx[i * k + c] * bytes;
        int64_t sum = 0;
        for (int64_t j = 0; j < bytes; ++j) {
          const int64_t diff = int64_t{a[j]} - int64_t{b[j]};
          sum += diff * diff;
        }
        best = std::min(best, sum);
      }
      out[static_cast<size_t>(first + i)] = std::sqrt(static_cast<double>(best)) / 255.0;
    }
  }
  return out;
}

double copy_excess_p_value(int64_t within, int64_t samples, int64_t held_within,
                           int64_t held_out) {
  const int64_t m = held_within + 1;
  if (within <= 0 || m > held_out) return 1.0;  // every sample may lie below the threshold
  if (within > samples) return 0.0;
  const auto log_choose = [](int64_t n, int64_t k) {
    return std::lgamma(static_cast<double>(n) + 1) - std::lgamma(static_cast<double>(k) + 1) -
           std::lgamma(static_cast<double>(n - k) + 1);
  };
  const double total = log_choose(samples + held_out, samples);
  std::vector<double> logs;
  logs.reserve(static_cast<size_t>(samples - within + 1));
  for (int64_t j = within; j <= samples; ++j) {
    logs.push_back(log_choose(j + m - 1, j) +
                   log_choose(samples - j + held_out - m, samples - j) - total);
  }
  // The terms rise to the mode and fall after it; sum them scaled by the largest.
  const double top = *std::max_element(logs.begin(), logs.end());
  double sum = 0;
  for (const double l : logs) sum += std::exp(l - top);
  return std::min(1.0, std::exp(top) * sum);
}

DistanceSummary summarize_distances(std::vector<double> distances) {
  DistanceSummary s;
  s.count = static_cast<int64_t>(distances.size());
  if (distances.empty()) return s;
  std::sort(distances.begin(), distances.end());
  s.min = distances.front();
  s.max = distances.back();
  s.q01 = quantile(distances, 0.01);
  s.q05 = quantile(distances, 0.05);
  s.median = quantile(distances, 0.5);
  s.q95 = quantile(distances, 0.95);
  s.mean = std::accumulate(distances.begin(), distances.end(), 0.0) /
           static_cast<double>(distances.size());
  return s;
}

MemorizationCheck memorization_check(const ImageSet& samples, const ImageSet& train,
                                     const ImageSet& test, const GeneratorCheckOptions& options) {
  require_same_shape(samples, "the samples", train, "the training images");
  require_same_shape(test, "the test images", train, "the training images");
  if (test.count < 1)
    throw Error("the memorization check needs held-out test images; the data has none");
  ImageSet held_out = test;
  select_subset(held_out, options.test_images, options.seed + 1);

  MemorizationCheck m;
  const std::vector<double> sample_d = nearest_neighbour_l2(samples, train);
  std::vector<double> test_d = nearest_neighbour_l2(held_out, train);
  m.sample_to_train = summarize_distances(sample_d);
  m.test_to_train = summarize_distances(test_d);
  std::sort(test_d.begin(), test_d.end());
  m.threshold_l2 = quantile(test_d, options.copy_quantile);
  const auto count_within = [&](const std::vector<double>& distances, int64_t& exact) {
    int64_t within = 0;
    for (const double d : distances) {
      within += d <= m.threshold_l2 ? 1 : 0;
      exact += d == 0.0 ? 1 : 0;
    }
    return within;
  };
  const int64_t within = count_within(sample_d, m.exact_copies);
  const int64_t test_within = count_within(test_d, m.test_exact_copies);
  const auto n = static_cast<int64_t>(sample_d.size());
  m.samples_within_fraction = n == 0 ? 0.0 : static_cast<double>(within) / static_cast<double>(n);
  m.test_within_fraction = static_cast<double>(test_within) / static_cast<double>(test_d.size());
  m.samples_within_p_value =
      copy_excess_p_value(within, n, test_within, static_cast<int64_t>(test_d.size()));
  m.suspected = n > 0 &&
                m.samples_within_fraction >= options.memorization_excess * m.test_within_fraction &&
                m.samples_within_p_value < options.memorization_p_value;
  return m;
}

C2stResult classifier_two_sample_test(const ImageSet& real, const ImageSet& synthetic,
                                      const GeneratorCheckOptions& options) {
  require_same_shape(synthetic, "the samples", real, "the real images");
  const int64_t m = std::min(real.count, synthetic.count);
  if (m < 4)
    throw Error("the two-sample test needs at least 4 images of each kind, got " +
                std::to_string(m));
  if (options.c2st_hidden < 1 || options.c2st_epochs < 1 || options.c2st_batch < 1) {
    throw Error("the two-sample test needs c2st_hidden, c2st_epochs and c2st_batch >= 1");
  }
  at::Generator gen = shim::make_cpu_generator(options.seed);
  std::vector<int64_t> real_order = permutation(real.count, gen);
  std::vector<int64_t> synth_order = permutation(synthetic.count, gen);
  const int64_t half = m / 2;
  const auto slice = [](const std::vector<int64_t>& v, int64_t from, int64_t to) {
    return std::vector<int64_t>(v.begin() + from, v.begin() + to);
  };
  const torch::Tensor x_train = torch::cat({to_rows(take(real, slice(real_order, 0, half))),
                                            to_rows(take(synthetic, slice(synth_order, 0, half)))});
  const torch::Tensor x_test = torch::cat({to_rows(take(real, slice(real_order, half, m))),
                                           to_rows(take(synthetic, slice(synth_order, half, m)))});
  const int64_t test_half = m - half;
  const torch::Tensor y_train = torch::cat({torch::zeros({half}), torch::ones({half})});
  const torch::Tensor y_test = torch::cat({torch::zeros({test_half}), torch::ones({test_half})});

  const int64_t d = real.image_bytes();
  const int64_t h = options.c2st_hidden;
  torch::nn::Sequential net = gen_detail::make_mlp({d, h, h, 1}, gen);
  gen_detail::fit_classifier(net->parameters(), x_train, y_train, options.c2st_epochs,
                             options.c2st_batch, options.c2st_lr, gen,
                             [&](const torch::Tensor& x, const torch::Tensor& y) {
                               return torch::binary_cross_entropy_with_logits(
                                   net->forward(x).squeeze(1), y);
                             });
  torch::NoGradGuard no_grad;
  const torch::Tensor predicted = net->forward(x_test).squeeze(1).gt(0).to(torch::kFloat32);
  const double accuracy = predicted.eq(y_test).to(torch::kFloat64).mean().item<double>();

  C2stResult r;
  const auto n_test = static_cast<double>(2 * test_half);
  r.accuracy = accuracy;
  r.accuracy_stderr = std::sqrt(accuracy * (1 - accuracy) / n_test);
  r.p_value = 0.5 * std::erfc((accuracy - 0.5) / std::sqrt(0.25 / n_test) / std::sqrt(2.0));
  r.train_per_class = half;
  r.test_per_class = test_half;
  std::ostringstream what;
  what << "MLP " << d << "-" << h << "-" << h << "-1, " << options.c2st_epochs
       << " epochs of Adam (lr " << options.c2st_lr << ", batch " << options.c2st_batch << ")";
  r.classifier = what.str();
  return r;
}

FrechetCheck frechet_check(const ImageSet& samples, const ImageSet& train, const ImageSet& test,
                           const FeatureNet& features, const GeneratorCheckOptions& options) {
  require_same_shape(samples, "the samples", train, "the training images");
  require_same_shape(test, "the test images", train, "the training images");
  ImageSet held_out = test;
  select_subset(held_out, options.test_images, options.seed + 1);
  ImageSet reference = train;
  select_subset(reference, samples.count, options.seed + 2);
  if (samples.count < 2 || held_out.count < 2 || reference.count < 2) {
    throw Error("the Fréchet distance needs at least 2 samples, 2 held-out and 2 training images");
  }
  FrechetCheck f;
  const int64_t dims = features.dims();
  const std::vector<double> held = features.features(held_out);
  f.distance = frechet_distance(features.features(samples), samples.count, held, held_out.count, dims);
  f.real_reference =
      frechet_distance(features.features(reference), reference.count, held, held_out.count, dims);
  f.measured = true;
  f.samples = samples.count;
  f.held_out = held_out.count;
  f.reference_images = reference.count;
  f.dims = dims;
  f.feature_net = features.info();
  return f;
}

GeneratorCheck check_generator(const ImageSet& samples, const ImageSet& train, const ImageSet& test,
                               const GeneratorCheckOptions& options, const FeatureNet* features) {
  const auto start = std::chrono::steady_clock::now();
  require_same_shape(samples, "the samples", train, "the training images");
  if (samples.count < 4)
    throw Error("a generator check needs at least 4 samples, got " + std::to_string(samples.count));
  if (train.count < 4)
    throw Error("a generator check needs at least 4 training images, got " +
                std::to_string(train.count));
  GeneratorCheck c;
  c.samples = samples.count;
  c.train_images = train.count;
  c.channels = samples.channels;
  c.height = samples.height;
  c.width = samples.width;
  c.options = options;
  c.memorization = memorization_check(samples, train, test, options);
  c.c2st = classifier_two_sample_test(train, samples, options);
  if (features != nullptr && !features->empty()) {
    c.frechet = frechet_check(samples, train, test, *features, options);
  } else {
    c.frechet.missing = "no feature network";
  }
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return c;
}

nlohmann::json to_json(const GeneratorCheck& c) {
  using json = nlohmann::json;
  const MemorizationCheck& m = c.memorization;
  const FrechetCheck& f = c.frechet;
  return {
      {"samples", c.samples},
      {"train_images", c.train_images},
      {"image_shape", {c.channels, c.height, c.width}},
      {"seed", c.options.seed},
      {"nn_l2_sample_to_train", summary_json(m.sample_to_train)},
      {"nn_l2_test_to_train", summary_json(m.test_to_train)},
      {"copy_quantile", c.options.copy_quantile},
      {"copy_threshold_l2", m.threshold_l2},
      {"samples_within_threshold_fraction", m.samples_within_fraction},
      {"test_within_threshold_fraction", m.test_within_fraction},
      {"samples_within_threshold_p_value", m.samples_within_p_value},
      {"exact_copies", m.exact_copies},
      {"test_exact_copies", m.test_exact_copies},
      {"memorization_excess", c.options.memorization_excess},
      {"memorization_p_value", c.options.memorization_p_value},
      {"memorization_suspected", m.suspected},
      {"c2st_accuracy", c.c2st.accuracy},
      {"c2st_accuracy_stderr", c.c2st.accuracy_stderr},
      {"c2st_p_value", c.c2st.p_value},
      {"c2st_train_per_class", c.c2st.train_per_class},
      {"c2st_test_per_class", c.c2st.test_per_class},
      {"c2st_classifier", c.c2st.classifier},
      {"frechet_distance", f.measured ? json(f.distance) : json(nullptr)},
      {"frechet_distance_real", f.measured ? json(f.real_reference) : json(nullptr)},
      {"frechet_samples", f.samples},
      {"frechet_held_out", f.held_out},
      {"frechet_feature_net", f.measured ? f.feature_net : json(nullptr)},
      {"frechet_missing", f.measured ? json(nullptr) : json(f.missing)},
      {"seconds", c.seconds},
  };
}

std::string to_markdown(const GeneratorCheck& c, const std::string& title,
                        const std::vector<std::string>& context, const std::string& grid_png) {
  const MemorizationCheck& m = c.memorization;
  std::ostringstream md;
  md << "# " << title << "\n\n";
  for (const auto& line : context) md << "- " << line << "\n";
  md << "- " << c.samples << " samples of " << c.channels << "x" << c.height << "x" << c.width
     << " against " << c.train_images << " training images; seed " << c.options.seed << "; "
     << fixed(c.seconds, 1) << " s\n\n";

  md << "## Memorization: nearest training image\n\n"
     << "L2 distance over all pixels (scaled to [0, 1]) from each image to its nearest training "
        "image.\n\n"
     << "| | n | min | 1 % | 5 % | median | 95 % | max "
        "|\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& [name, d] :
       {std::pair<const char*, const DistanceSummary&>{"samples", m.sample_to_train},
        std::pair<const char*, const DistanceSummary&>{"held-out test images", m.test_to_train}}) {
    md << "| " << name << " | " << d.count << " | " << fixed(d.min, 3) << " | " << fixed(d.q01, 3)
       << " | " << fixed(d.q05, 3) << " | " << fixed(d.median, 3) << " | " << fixed(d.q95, 3)
       << " | " << fixed(d.max, 3) << " |\n";
  }
  md << "\n"
     << fixed(100 * m.samples_within_fraction, 1) << " % of the samples are within "
     << fixed(m.threshold_l2, 3) << " of a training image, against "
     << fixed(100 * m.test_within_fraction, 1)
     << " % of held-out test images (the threshold is their "
     << fixed(100 * c.options.copy_quantile, 1) << " % quantile); one-sided p = "
     << fixed(m.samples_within_p_value, 4) << ". " << m.exact_copies
     << " samples are exact copies of training images (" << m.test_exact_copies
     << " held-out images are). ";
  const std::string rule = "at least " + fixed(c.options.memorization_excess, 1) +
                           "× the held-out rate with p < " +
                           fixed(c.options.memorization_p_value, 2);
  if (m.suspected) {
    md << "**Memorization suspected**: samples come that close to training images more often "
          "than held-out images do ("
       << rule << "); the generator reproduces training images.\n\n";
  } else {
    md << "No sign of memorization (the flag needs " << rule << ").\n\n";
  }

  md << "## Classifier two-sample test\n\n"
     << "A classifier (" << c.c2st.classifier << "), trained from scratch on "
     << c.c2st.train_per_class
     << " real training images and as many samples, tells the two apart on "
     << c.c2st.test_per_class << " held-out images of each with accuracy **"
     << fixed(100 * c.c2st.accuracy, 1) << " %** (± " << fixed(100 * c.c2st.accuracy_stderr, 1)
     << " %, one-sided p = " << fixed(c.c2st.p_value, 4)
     << " against 50 %). 50 % means the classifier cannot tell samples from real images; 100 % "
        "means every sample is recognisably synthetic.\n";
  const FrechetCheck& f = c.frechet;
  md << "\n## Fréchet distance\n\n";
  if (f.measured) {
    const nlohmann::json& net = f.feature_net;
    const auto accuracy = net.contains("test_accuracy") && net["test_accuracy"].is_number()
                              ? fixed(100 * net["test_accuracy"].get<double>(), 1) + " %"
                              : std::string("unknown");
    md << "Between Gaussians fitted to the features of " << f.samples << " samples and of "
       << f.held_out << " held-out test images: **" << fixed(f.distance, 3) << "**. "
       << f.reference_images << " real training images score " << fixed(f.real_reference, 3)
       << " against the same held-out images: the floor at this sample size. The features are "
       << f.dims << " activations of a classifier trained on "
       << net.value("train_images", int64_t{0}) << " labelled training images of "
       << net.value("dataset", std::string("the data")) << " ("
       << net.value("network", std::string("?")) << "; test accuracy " << accuracy << ").\n";
  } else {
    md << "Not measured: " << f.missing << ".\n";
  }
  if (!grid_png.empty()) md << "\n## Samples\n\n![samples](" << grid_png << ")\n";
  return md.str();
}

}  // namespace vaelab
