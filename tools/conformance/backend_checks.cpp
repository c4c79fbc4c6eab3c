// The contract of a Backend plugin (core/include/vaelab/backend.hpp): every layer of its factory
// against ATen's reference functions, in values and in gradients, on small inputs.

#include <functional>
#include <sstream>

#include <torch/torch.h>

#include <vaelab/backend.hpp>
#include <vaelab/torch_shim.hpp>

#include "torch_support.hpp"

namespace vaelab::conformance {
namespace {

// float32 layers against float32 ATen: room for another summation order, not for a wrong result.
constexpr double kRtol = 1e-4;
constexpr double kAtol = 1e-5;

/// The layer's tensor whose name ends with `suffix` ("weight", "running_mean", ...), or an
/// undefined tensor when there is none. Two matches are an error: the name is ambiguous.
torch::Tensor named(const torch::nn::Module& layer, const std::string& suffix, bool buffer) {
  torch::Tensor found;
  std::string found_name;
  const auto items = buffer ? layer.named_buffers() : layer.named_parameters();
  for (const auto& item : items) {
    const std::string& key = item.key();
    if (key.size() >= suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0) {
      require(!found.defined(), "two " + std::string(buffer ? "buffers" : "parameters") + " end in '" +
                                    suffix + "': " + found_name + " and " + key);
      found = item.value();
      found_name = key;
    }
  }
  return found;
}

torch::Tensor activate(const torch::Tensor& y, Activation activation) {
  return activation == Activation::relu ? torch::relu(y) : y;
}

std::string activation_name(Activation a) { return a == Activation::relu ? "relu" : "none"; }

/// Gives the layer's weight (and bias) known random values; returns CPU float32 copies.
std::pair<torch::Tensor, torch::Tensor> set_parameters(torch::nn::Module& layer,
                                                       const std::vector<int64_t>& weight_shape,
                                                       bool bias, int64_t bias_size,
                                                       at::Generator& gen) {
  torch::Tensor w = named(layer, "weight", false);
  torch::Tensor b = named(layer, "bias", false);
  require(w.defined(), "no parameter named ...weight");
  require(w.sizes() == torch::IntArrayRef(weight_shape),
          "weight is " + shape_string(w.sizes()) + ", ATen's layout is " + shape_string(weight_shape));
  require(bias == b.defined(), bias ? "no parameter named ...bias" : "a bias parameter although bias = false");
  if (bias) {
    require(b.sizes() == torch::IntArrayRef({bias_size}),
            "bias is " + shape_string(b.sizes()) + ", expected [" + std::to_string(bias_size) + "]");
  }
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
  const torch::Tensor w_value = shim::randn(weight_shape, cpu, &gen) * 0.5;
  const torch::Tensor b_value = bias ? shim::randn({bias_size}, cpu, &gen) * 0.5 : torch::Tensor();
  const torch::NoGradGuard no_grad;
  w.copy_(w_value);
  if (bias) b.copy_(b_value);
  return {w_value, b_value};
}

using Reference =
    std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>;

/// Runs `layer` and the reference `ref(x, w, b)` on the same input and upstream gradient; compares
/// outputs and the gradients of the input, the weight and the bias.
void compare_layer(Layer& layer, const Reference& ref, const torch::Tensor& x_value,
                   const torch::Tensor& w_value, const torch::Tensor& b_value,
                   const torch::Device& device, const std::string& what, at::Generator& gen) {
  const torch::Tensor w = named(layer, "weight", false);
  const torch::Tensor b = named(layer, "bias", false);
  layer.zero_grad();
  const torch::Tensor x = x_value.to(device).detach().requires_grad_(true);
  const torch::Tensor y = layer.forward(x);

  const torch::Tensor x_ref = x_value.detach().clone().requires_grad_(true);
  const torch::Tensor w_ref = w_value.detach().clone().requires_grad_(true);
  const torch::Tensor b_ref = b_value.defined() ? b_value.detach().clone().requires_grad_(true) : torch::Tensor();
  const torch::Tensor y_ref = ref(x_ref, w_ref, b_ref);
  require_close(y, y_ref, kRtol, kAtol, what + " output");

  const torch::Tensor upstream = shim::randn(y_ref.sizes(), torch::TensorOptions(), &gen);
  (y * upstream.to(device)).sum().backward();
  (y_ref * upstream).sum().backward();
  require_close(x.grad(), x_ref.grad(), kRtol, kAtol, what + " gradient of the input");
  require_close(w.grad(), w_ref.grad(), kRtol, kAtol, what + " gradient of the weight");
  if (b_ref.defined()) require_close(b.grad(), b_ref.grad(), kRtol, kAtol, what + " gradient of the bias");
}

}  // namespace

void check_backend(const Context& context, CheckList& checks) {
  PluginPtr<Backend> backend;
  checks.run("backend.describe", [&] {
    backend = make_instance<Backend>(context);
    const std::string d = backend->describe();
    require(!d.empty(), "describe() is empty");
    require(d.find('\n') == std::string::npos, "describe() is not one line");
    return d;
  }, {"create.defaults"});
  if (!backend) {
    for (const auto& name : check_names(VL_PLUGIN_KIND_BACKEND)) {
      if (name.rfind("backend.", 0) == 0 && name != "backend.describe") {
        checks.skip(name, "needs backend.describe, which did not pass");
      }
    }
    return;
  }

  checks.run("backend.threads", [&] {
    backend->apply_threads();
    require(backend->threads() >= 1, "threads() is " + std::to_string(backend->threads()) + " after apply_threads()");
    return std::to_string(backend->threads()) + " intra-op threads";
  });

  torch::Device device(torch::kCPU);
  checks.run("backend.device", [&] {
    device = backend->device();
    const torch::Tensor t = torch::ones({3}, torch::TensorOptions().device(device));
    backend->synchronize();
    require(t.sum().item<double>() == 3.0, "arithmetic on the device gives a wrong sum");
    return device.str();
  });
  const std::vector<std::string> needs = {"backend.device"};
  at::Generator gen = shim::make_cpu_generator(99);
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);

  checks.run("backend.dense", [&] {
    int cases = 0;
    for (const bool bias : {true, false}) {
      for (const Activation act : {Activation::none, Activation::relu}) {
        DenseOptions o;
        o.in_features = 7;
        o.out_features = 5;
        o.bias = bias;
        o.activation = act;
        const std::string what =
            "dense(7→5, bias " + std::string(bias ? "on" : "off") + ", " + activation_name(act) + ")";
        const std::shared_ptr<Layer> layer = backend->dense(o);
        require(layer != nullptr, what + ": the factory returned null");
        layer->to(device);
        const auto wb = set_parameters(*layer, {5, 7}, bias, 5, gen);
        compare_layer(*layer,
                      [act](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
                        return activate(torch::linear(x, w, b), act);
                      },
                      shim::randn({6, 7}, cpu, &gen), wb.first, wb.second, device, what, gen);
        ++cases;
      }
    }
    return std::to_string(cases) + " cases: outputs and input, weight, bias gradients match torch::linear";
  }, needs);

  const auto conv_check = [&](bool transposed) {
    struct Case {
      int64_t kernel, stride, padding, output_padding;
    };
    const std::vector<Case> cases = transposed
                                        ? std::vector<Case>{{4, 2, 1, 0}, {3, 2, 1, 1}, {1, 1, 0, 0}}
                                        : std::vector<Case>{{3, 1, 1, 0}, {4, 2, 1, 0}, {1, 1, 0, 0}};
    int count = 0;
    for (const Case& c : cases) {
      for (const bool bias : {true, false}) {
        for (const Activation act : {Activation::none, Activation::relu}) {
          Conv2dOptions o;
          o.in_channels = 3;
          o.out_channels = 4;
          o.kernel_size = c.kernel;
          o.stride = c.stride;
          o.padding = c.padding;
          o.output_padding = c.output_padding;
          o.bias = bias;
          o.activation = act;
          std::ostringstream what;
          what << (transposed ? "conv_transpose2d" : "conv2d") << "(3→4, k" << c.kernel << " s" << c.stride
               << " p" << c.padding << (transposed ? " op" + std::to_string(c.output_padding) : "")
               << ", bias " << (bias ? "on" : "off") << ", " << activation_name(act) << ")";
          const std::shared_ptr<Layer> layer = transposed ? backend->conv_transpose2d(o) : backend->conv2d(o);
          require(layer != nullptr, what.str() + ": the factory returned null");
          layer->to(device);
          const std::vector<int64_t> shape = transposed ? std::vector<int64_t>{3, 4, c.kernel, c.kernel}
                                                        : std::vector<int64_t>{4, 3, c.kernel, c.kernel};
          const auto wb = set_parameters(*layer, shape, bias, 4, gen);
          compare_layer(*layer,
                        [c, act, transposed](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
                          const torch::Tensor y =
                              transposed ? torch::conv_transpose2d(x, w, b, c.stride, c.padding, c.output_padding)
                                         : torch::conv2d(x, w, b, c.stride, c.padding);
                          return activate(y, act);
                        },
                        shim::randn({2, 3, 7, 7}, cpu, &gen), wb.first, wb.second, device, what.str(), gen);
          ++count;
        }
      }
    }
    return std::to_string(count) + " cases: outputs and input, weight, bias gradients match " +
           (transposed ? "torch::conv_transpose2d" : "torch::conv2d");
  };
  checks.run("backend.conv2d", [&] { return conv_check(false); }, needs);
  checks.run("backend.conv_transpose2d", [&] { return conv_check(true); }, needs);

  checks.run("backend.batch_norm2d", [&] {
    int count = 0;
    for (const Activation act : {Activation::none, Activation::relu}) {
      BatchNormOptions o;
      o.channels = 3;
      o.eps = 1e-3;
      o.momentum = 0.2;
      o.activation = act;
      const std::string what = "batch_norm2d(3, eps 1e-3, momentum 0.2, " + activation_name(act) + ")";
      const std::shared_ptr<Layer> layer = backend->batch_norm2d(o);
      require(layer != nullptr, what + ": the factory returned null");
      layer->to(device);
      layer->train(true);
      const auto wb = set_parameters(*layer, {3}, true, 3, gen);
      torch::Tensor running_mean = torch::zeros({3}, cpu);
      torch::Tensor running_var = torch::ones({3}, cpu);
      const auto reference = [&](bool training) {
        return [&, training](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
          return activate(torch::batch_norm(x, w, b, running_mean, running_var, training, o.momentum, o.eps, false), act);
        };
      };
      // Training mode: batch statistics, running statistics updated.
      compare_layer(*layer, reference(true), shim::randn({4, 3, 5, 5}, cpu, &gen) * 2 + 0.7, wb.first,
                    wb.second, device, what + " in training mode", gen);
      const torch::Tensor layer_mean = named(*layer, "running_mean", true);
      const torch::Tensor layer_var = named(*layer, "running_var", true);
      require(layer_mean.defined() && layer_var.defined(),
              what + ": needs buffers ...running_mean and ...running_var");
      require_close(layer_mean, running_mean, kRtol, kAtol, what + " running mean after one training step");
      require_close(layer_var, running_var, kRtol, kAtol, what + " running variance after one training step");
      // Eval mode: the running statistics.
      layer->eval();
      compare_layer(*layer, reference(false), shim::randn({2, 3, 5, 5}, cpu, &gen), wb.first, wb.second,
                    device, what + " in eval mode", gen);
      count += 2;
    }
    return std::to_string(count) +
           " cases (training and eval mode): outputs, gradients and running statistics match torch::batch_norm";
  }, needs);
}

}  // namespace vaelab::conformance
