// The contract of a Model plugin (core/include/vaelab/model.hpp), checked on the image shape of
// the command line (default 1x32x32) with the backend of the command line (default torch-cpu).

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/io/safetensors.hpp>
#include <vaelab/likelihood.hpp>
#include <vaelab/metrics/elbo.hpp>
#include <vaelab/model.hpp>
#include <vaelab/torch_shim.hpp>

#include "torch_support.hpp"

namespace vaelab::conformance {
namespace {

constexpr int64_t kBatch = 4;

struct ModelChecks {
  const Context& context;
  CheckList& checks;
  PluginPtr<Backend> backend;
  ModelSpec spec;
  PluginPtr<Model> model;  ///< built with seed 0
  std::vector<int64_t> latent;
  torch::Tensor x;  ///< [B, C, H, W] in [0, 1]
  torch::Tensor z;  ///< [B, latent...]

  /// A fresh instance, made and built after seeding torch's global generator with `seed` (as the
  /// host does), for `param_channels` likelihood channels.
  PluginPtr<Model> build(uint64_t seed, int64_t param_channels) {
    torch::manual_seed(seed);  // before create(), as the host does
    PluginPtr<Model> m = make_instance<Model>(context);
    ModelSpec s = spec;
    s.param_channels = param_channels;
    m->build(s, *backend);
    m->module().to(backend->device());
    return m;
  }

  std::vector<int64_t> batch_shape(const std::vector<int64_t>& shape) const {
    std::vector<int64_t> out = {kBatch};
    out.insert(out.end(), shape.begin(), shape.end());
    return out;
  }
};

std::string describe_state_difference(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) {
    return std::to_string(a.size()) + " tensors against " + std::to_string(b.size());
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].first) return "tensor " + a[i].first + " against " + b[i].first;
    if (!torch::equal(a[i].second.cpu(), b[i].second.cpu())) return a[i].first + " differs";
  }
  return "";
}

}  // namespace

void check_model(const Context& context, CheckList& checks) {
  ModelChecks m{context, checks, nullptr, {}, nullptr, {}, {}, {}};
  const Options& o = context.options;
  m.spec.channels = o.model_channels;
  m.spec.height = o.model_height;
  m.spec.width = o.model_width;
  const GaussianLikelihood likelihood(0.1);
  m.spec.param_channels = likelihood.param_channels(o.model_channels);

  checks.run("setup.backend", [&] {
    m.backend = make_backend(o);
    return "built on " + o.backend + ": " + m.backend->describe();
  });

  checks.run("model.build", [&] {
    m.model = m.build(0, m.spec.param_channels);
    int64_t count = 0;
    int64_t tensors = 0;
    for (const auto& p : m.model->module().parameters()) {
      require(p.is_floating_point(), "a parameter is not floating point");
      require(torch::isfinite(p).all().item<bool>(), "a parameter is not finite after build()");
      count += p.numel();
      ++tensors;
    }
    require(count > 0, "build() made no parameters");
    return std::to_string(count) + " parameters in " + std::to_string(tensors) + " tensors for " +
           std::to_string(m.spec.channels) + "x" + std::to_string(m.spec.height) + "x" +
           std::to_string(m.spec.width) + " images";
  }, {"create.defaults", "setup.backend"});

  checks.run("model.latent_shape", [&] {
    m.latent = m.model->latent_shape();
    require(!m.latent.empty(), "latent_shape() is empty");
    for (const int64_t d : m.latent) require(d > 0, "latent_shape() has a dimension " + std::to_string(d));
    return shape_string(m.latent);
  }, {"model.build"});

  const torch::Device device = m.backend ? m.backend->device() : torch::Device(torch::kCPU);
  {
    at::Generator gen = shim::make_cpu_generator(1234);
    const auto options = torch::TensorOptions().device(device);
    m.x = shim::rand({kBatch, m.spec.channels, m.spec.height, m.spec.width}, options, gen);
    if (!m.latent.empty()) m.z = shim::randn(m.batch_shape(m.latent), options, &gen);
  }

  checks.run("model.encode_shape", [&] {
    const Posterior q = m.model->encode(m.x);
    const std::vector<int64_t> want = m.batch_shape(m.latent);
    require(q.mean.defined() && q.log_var.defined(), "encode() returned an undefined tensor");
    require(q.mean.sizes() == torch::IntArrayRef(want),
            "encode() mean is " + shape_string(q.mean.sizes()) + ", expected " + shape_string(want));
    require(q.log_var.sizes() == torch::IntArrayRef(want),
            "encode() log_var is " + shape_string(q.log_var.sizes()) + ", expected " + shape_string(want));
    require(q.mean.is_floating_point() && q.log_var.is_floating_point(), "encode() is not floating point");
    return "mean and log_var " + shape_string(want);
  }, {"model.latent_shape"});

  checks.run("model.decode_shape", [&] {
    const torch::Tensor out = m.model->decode(m.z);
    const std::vector<int64_t> want = {kBatch, m.spec.param_channels, m.spec.height, m.spec.width};
    require(out.defined(), "decode() returned an undefined tensor");
    require(out.sizes() == torch::IntArrayRef(want),
            "decode() returned " + shape_string(out.sizes()) + ", expected " + shape_string(want) +
                " ([B, param_channels, H, W])");
    // Another likelihood: the decoder must follow ModelSpec::param_channels.
    const int64_t other_channels = m.spec.param_channels + 2;
    PluginPtr<Model> other;
    try {
      other = m.build(0, other_channels);
    } catch (const Error& e) {
      // A model whose decoder is fixed (a TorchScript file) may refuse another likelihood in
      // build() instead, with an error that names what it needed.
      const std::string message = e.what();
      require(message.find(std::to_string(other_channels)) != std::string::npos,
              "built for param_channels = " + std::to_string(other_channels) +
                  ", build() failed without naming that number: " + message);
      return shape_string(want) + "; built for " + std::to_string(other_channels) +
             " parameter channels, build() refused: " + message;
    }
    const torch::Tensor out2 = other->decode(m.z);
    const std::vector<int64_t> want2 = {kBatch, other_channels, m.spec.height, m.spec.width};
    require(out2.sizes() == torch::IntArrayRef(want2),
            "built for param_channels = " + std::to_string(other_channels) + ", decode() returned " +
                shape_string(out2.sizes()) + ", expected " + shape_string(want2));
    return shape_string(want) + ", and " + shape_string(want2) + " for " +
           std::to_string(other_channels) + " parameter channels";
  }, {"model.latent_shape"});

  const std::vector<std::string> forward = {"model.encode_shape", "model.decode_shape"};

  checks.run("model.finite", [&] {
    const torch::NoGradGuard no_grad;
    const std::vector<std::pair<std::string, torch::Tensor>> inputs = {
        {"random images", m.x}, {"black images", torch::zeros_like(m.x)}, {"white images", torch::ones_like(m.x)}};
    for (const bool training : {true, false}) {
      m.model->module().train(training);
      const std::string mode = training ? "training mode" : "eval mode";
      for (const auto& [what, input] : inputs) {
        const Posterior q = m.model->encode(input);
        require(torch::isfinite(q.mean).all().item<bool>(), "encode(" + what + ") mean is not finite in " + mode);
        require(torch::isfinite(q.log_var).all().item<bool>(), "encode(" + what + ") log_var is not finite in " + mode);
        require(torch::isfinite(m.model->decode(q.mean)).all().item<bool>(),
                "decode(encode(" + what + ")) is not finite in " + mode);
      }
      require(torch::isfinite(m.model->decode(m.z * 3)).all().item<bool>(),
              "decode(3·N(0, I)) is not finite in " + mode);
    }
    m.model->module().train(true);
    return "encode and decode finite in training and eval mode on random, black and white images";
  }, forward);

  checks.run("model.batch_independent", [&] {
    const torch::NoGradGuard no_grad;
    m.model->module().eval();
    const Posterior all = m.model->encode(m.x);
    const torch::Tensor decoded = m.model->decode(m.z);
    double worst = 0;
    for (int64_t i = 0; i < kBatch; ++i) {
      const Posterior one = m.model->encode(m.x.narrow(0, i, 1));
      const std::string at = "image " + std::to_string(i) + " alone";
      require_close(one.mean, all.mean.narrow(0, i, 1), 1e-4, 1e-5, "encode() mean of " + at);
      require_close(one.log_var, all.log_var.narrow(0, i, 1), 1e-4, 1e-5, "encode() log_var of " + at);
      require_close(m.model->decode(m.z.narrow(0, i, 1)), decoded.narrow(0, i, 1), 1e-4, 1e-5,
                    "decode() of latent " + std::to_string(i) + " alone");
      worst = std::max(worst, max_abs_diff(one.mean, all.mean.narrow(0, i, 1)));
    }
    m.model->module().train(true);
    std::ostringstream out;
    out << "in eval mode each image alone gives what it gives in a batch (max |Δ| " << worst << ")";
    return out.str();
  }, forward);

  checks.run("model.eval_deterministic", [&] {
    const torch::NoGradGuard no_grad;
    m.model->module().eval();
    const Posterior a = m.model->encode(m.x);
    const Posterior b = m.model->encode(m.x);
    require(torch::equal(a.mean, b.mean) && torch::equal(a.log_var, b.log_var),
            "encode() gives different results on the same images in eval mode");
    require(torch::equal(m.model->decode(m.z), m.model->decode(m.z)),
            "decode() gives different results on the same latents in eval mode");
    m.model->module().train(true);
    return "encode and decode repeat exactly in eval mode";
  }, forward);

  checks.run("model.gradients", [&] {
    m.model->module().train(true);
    m.model->module().zero_grad();
    torch::manual_seed(5);
    const torch::Tensor loss = -elbo_terms(*m.model, likelihood, m.x, 1).elbo.mean();
    require(torch::isfinite(loss).item<bool>(), "−ELBO is not finite");
    loss.backward();
    std::vector<std::string> missing;
    std::vector<std::string> non_finite;
    double norm_sq = 0;
    int64_t tensors = 0;
    for (const auto& p : m.model->module().named_parameters()) {
      if (!p.value().requires_grad()) continue;
      ++tensors;
      const torch::Tensor g = p.value().grad();
      if (!g.defined()) {
        missing.push_back(p.key());
      } else if (!torch::isfinite(g).all().item<bool>()) {
        non_finite.push_back(p.key());
      } else {
        norm_sq += g.to(torch::kFloat64).square().sum().item<double>();
      }
    }
    const auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& n : v) s += (s.empty() ? "" : ", ") + n;
      return s;
    };
    require(missing.empty(), "no gradient reaches " + join(missing));
    require(non_finite.empty(), "non-finite gradient in " + join(non_finite));
    require(norm_sq > 0, "every gradient is zero");
    const auto named = m.model->module().named_parameters();
    for (const auto& name : m.model->latent_adjacent_parameters()) {
      const torch::Tensor* p = named.find(name);
      if (p == nullptr || !p->grad().defined()) continue;  // model.latent_adjacent reports it
      require(p->grad().abs().sum().item<double>() > 0, "the gradient of Θ_z parameter " + name + " is zero");
    }
    m.model->module().zero_grad();
    std::ostringstream out;
    out << "−ELBO (Gaussian, σ = 0.1) " << loss.item<double>() << ": finite gradients in all "
        << tensors << " parameter tensors, norm " << std::sqrt(norm_sq);
    return out.str();
  }, forward);

  checks.run("model.latent_adjacent", [&] {
    const std::vector<std::string> names = m.model->latent_adjacent_parameters();
    require(!names.empty(), "latent_adjacent_parameters() is empty (Θ_z: the encoder's last layer and the decoder's first)");
    const std::set<std::string> unique(names.begin(), names.end());
    require(unique.size() == names.size(), "latent_adjacent_parameters() names a parameter twice");
    const auto params = m.model->module().named_parameters();
    int64_t z_count = 0;
    int64_t total = 0;
    for (const auto& p : params) {
      total += p.value().numel();
      if (unique.count(p.key()) != 0) z_count += p.value().numel();
    }
    for (const auto& n : names) {
      require(params.find(n) != nullptr, "latent_adjacent_parameters() names '" + n +
                                             "', which is not in module().named_parameters()");
    }
    require(z_count < total, "every parameter is latent-adjacent: Θ_¬z is empty");
    return "Θ_z: " + std::to_string(names.size()) + " tensors, " + std::to_string(z_count) +
           " parameters; Θ_¬z: " + std::to_string(total - z_count) + " parameters";
  }, {"model.build"});

  checks.run("model.state_round_trip", [&] {
    const std::filesystem::path file = context.scratch / (context.record.name + "-state.safetensors");
    save_safetensors(file, module_state(m.model->module()));
    PluginPtr<Model> copy = m.build(987654321, m.spec.param_channels);
    load_module_state(copy->module(), load_safetensors(file), file.string());
    const std::string difference =
        describe_state_difference(module_state(copy->module()), module_state(m.model->module()));
    require(difference.empty(), "after loading the saved state: " + difference);
    const torch::NoGradGuard no_grad;
    m.model->module().eval();
    copy->module().eval();
    const Posterior a = m.model->encode(m.x);
    const Posterior b = copy->encode(m.x);
    require_close(b.mean, a.mean, 1e-6, 1e-7, "encode() after the round trip");
    require_close(b.log_var, a.log_var, 1e-6, 1e-7, "encode() log_var after the round trip");
    require_close(copy->decode(m.z), m.model->decode(m.z), 1e-6, 1e-7, "decode() after the round trip");
    m.model->module().train(true);
    return std::to_string(module_state(m.model->module()).size()) +
           " tensors through safetensors into a differently seeded instance: equal state and outputs";
  }, forward);

  checks.run("model.seeded_init", [&] {
    const NamedTensors a = module_state(m.build(7, m.spec.param_channels)->module());
    const NamedTensors b = module_state(m.build(7, m.spec.param_channels)->module());
    const NamedTensors c = module_state(m.build(8, m.spec.param_channels)->module());
    const std::string same = describe_state_difference(a, b);
    require(same.empty(), "two instances built after torch::manual_seed(7) differ: " + same +
                              " (initialise from torch's global generator)");
    bool any_differs = false;
    for (size_t i = 0; i < a.size() && i < c.size(); ++i) {
      any_differs = any_differs || !torch::equal(a[i].second.cpu(), c[i].second.cpu());
    }
    require(any_differs, "instances built after seeds 7 and 8 are identical: initialisation ignores the seed");
    return "the same seed gives the same weights, another seed other weights";
  }, {"model.build"});
}

}  // namespace vaelab::conformance
