// The fused Adam (train/fused_adam.hpp): torch's Adam within float rounding, the same result for
// every thread count, parameters without gradients left alone, and its state through the
// checkpoint functions resuming bit for bit.

#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/train/checkpoint.hpp>
#include <vaelab/train/fused_adam.hpp>

using Catch::Contains;

namespace {

struct Net : torch::nn::Module {
  Net() {
    a = register_module("a", torch::nn::Linear(300, 200));  // 60,200 elements: more than one thread's share
    b = register_module("b", torch::nn::Linear(200, 7));
    c = register_module("c", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 5, 3)));
  }
  torch::nn::Linear a{nullptr}, b{nullptr};
  torch::nn::Conv2d c{nullptr};
};

/// Gradients for step `step`, the same whichever optimizer asks.
void set_grads(const std::vector<torch::Tensor>& params, int64_t step) {
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(1000 * step + static_cast<int64_t>(i)));
    params[i].mutable_grad() = torch::randn(params[i].sizes(), gen) * (0.1 + 0.05 * static_cast<double>(i));
  }
}

std::vector<torch::Tensor> clone_all(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone().set_requires_grad(true));
  return out;
}

void run_steps(torch::optim::Adam& optimizer, const std::vector<torch::Tensor>& params, int64_t first, int64_t last) {
  for (int64_t s = first; s <= last; ++s) {
    set_grads(params, s);
    optimizer.step();
  }
}

double max_abs_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  return worst;
}

}  // namespace

TEST_CASE("adam_update: one element against the formula in double", "[unit][optim]") {
  const vaelab::AdamStepConstants c = vaelab::adam_step_constants(2e-3, 0.9, 0.999, 1e-8, 3);
  CHECK(c.step_size == Approx(2e-3 / (1 - std::pow(0.9, 3))));
  CHECK(c.sqrt_correction2 == Approx(std::sqrt(1 - std::pow(0.999, 3))));
  // 13 elements: not a multiple of any vector width, so the loop's tail is covered.
  std::vector<float> p(13), g(13), m(13), v(13);
  for (int i = 0; i < 13; ++i) {
    p[i] = 0.1f * static_cast<float>(i) - 0.5f;
    g[i] = static_cast<float>(std::sin(i + 1.0));
    m[i] = 0.01f * static_cast<float>(i);
    v[i] = 0.001f * static_cast<float>(i + 1);
  }
  const std::vector<float> p0 = p, m0 = m, v0 = v;
  vaelab::adam_update(p.data(), g.data(), m.data(), v.data(), 13, c);
  for (int i = 0; i < 13; ++i) {
    const double mm = 0.9 * m0[i] + 0.1 * g[i];
    const double vv = 0.999 * v0[i] + 0.001 * static_cast<double>(g[i]) * g[i];
    const double pp = p0[i] - c.step_size * mm / (std::sqrt(vv) / c.sqrt_correction2 + 1e-8);
    CHECK(m[i] == Approx(mm).epsilon(1e-6));
    CHECK(v[i] == Approx(vv).epsilon(1e-6));
    CHECK(p[i] == Approx(pp).epsilon(1e-6).margin(1e-7));
    CHECK(p[i] != p0[i]);
  }
}

TEST_CASE("FusedAdam equals torch's Adam within float rounding", "[unit][optim]") {
  torch::manual_seed(3);
  Net net;
  const std::vector<torch::Tensor> start = net.parameters();
  std::vector<torch::Tensor> fused_params = clone_all(start), torch_params = clone_all(start);
  const auto options = torch::optim::AdamOptions(1e-3);
  vaelab::FusedAdam fused(fused_params, options);
  torch::optim::Adam reference(torch_params, options);
  CHECK(fused.numel() == 300 * 200 + 200 + 200 * 7 + 7 + 5 * 3 * 3 * 3 + 5);
  run_steps(fused, fused_params, 1, 30);
  run_steps(reference, torch_params, 1, 30);
  // 30 steps move each weight by up to ~0.03; rounding differences stay far below that.
  CHECK(max_abs_diff(fused_params, start) > 0.01);
  CHECK(max_abs_diff(fused_params, torch_params) < 2e-6);
  // The state torch's Adam keeps is there, as views into the flat buffers, with the same values.
  for (size_t i = 0; i < fused_params.size(); ++i) {
    const auto key = vaelab::adam_state_key(fused_params[i]);
    const auto key_ref = vaelab::adam_state_key(torch_params[i]);
    const auto& st = static_cast<const torch::optim::AdamParamState&>(*fused.state().at(key));
    const auto& st_ref = static_cast<const torch::optim::AdamParamState&>(*reference.state().at(key_ref));
    CHECK(st.step() == 30);
    CHECK(st.step() == st_ref.step());
    CHECK(torch::allclose(st.exp_avg(), st_ref.exp_avg(), 1e-5, 1e-8));
    CHECK(torch::allclose(st.exp_avg_sq(), st_ref.exp_avg_sq(), 1e-5, 1e-10));
  }
}

TEST_CASE("FusedAdam: the same bits for one thread and two", "[unit][optim]") {
  torch::manual_seed(4);
  Net net;
  std::vector<torch::Tensor> one = clone_all(net.parameters()), two = clone_all(net.parameters());
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  vaelab::FusedAdam opt_one(one, torch::optim::AdamOptions(1e-3));
  run_steps(opt_one, one, 1, 5);
  at::set_num_threads(2);
  vaelab::FusedAdam opt_two(two, torch::optim::AdamOptions(1e-3));
  run_steps(opt_two, two, 1, 5);
  at::set_num_threads(before);
  for (size_t i = 0; i < one.size(); ++i) CHECK(torch::equal(one[i], two[i]));
}

TEST_CASE("FusedAdam leaves a parameter without a gradient alone, as torch's Adam does", "[unit][optim]") {
  torch::manual_seed(5);
  std::vector<torch::Tensor> params = {torch::randn({40, 3}).requires_grad_(), torch::randn({9}).requires_grad_()};
  const torch::Tensor second_before = params[1].detach().clone();
  vaelab::FusedAdam fused(params, torch::optim::AdamOptions(1e-2));
  torch::optim::Adam reference(clone_all(params), torch::optim::AdamOptions(1e-2));
  auto ref_params = reference.param_groups()[0].params();
  for (int s = 1; s <= 4; ++s) {
    for (auto* ps : {&params, &ref_params}) {
      (*ps)[0].mutable_grad() = torch::full({40, 3}, 0.5f * static_cast<float>(s));
      if (s > 2) (*ps)[1].mutable_grad() = torch::full({9}, -1.0f);
    }
    fused.step();
    reference.step();
    if (s == 2) {
      CHECK(torch::equal(params[1], second_before));
      CHECK(fused.state().count(vaelab::adam_state_key(params[1])) == 0);
    }
  }
  CHECK_FALSE(torch::equal(params[1], second_before));
  const auto& st = static_cast<const torch::optim::AdamParamState&>(
      *fused.state().at(vaelab::adam_state_key(params[1])));
  CHECK(st.step() == 2);  // the steps it had a gradient for, each with its own bias correction
  CHECK(max_abs_diff(params, ref_params) < 1e-6);
}

TEST_CASE("FusedAdam: state saved and loaded through the checkpoint functions resumes bit for bit", "[unit][optim]") {
  torch::manual_seed(6);
  Net straight, resumed;
  {
    torch::NoGradGuard no_grad;
    const auto from = straight.parameters();
    const auto to = resumed.parameters();
    for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
  }
  vaelab::FusedAdam a(straight.parameters(), torch::optim::AdamOptions(1e-3));
  run_steps(a, straight.parameters(), 1, 4);
  std::map<std::string, torch::Tensor> tensors;
  nlohmann::json info;
  vaelab::save_adam_state(a, straight, tensors, info);
  for (auto& [name, t] : tensors) t = t.clone();  // as writing the file would: the state moves on
  run_steps(a, straight.parameters(), 5, 8);

  // The resumed run: the weights after step 4, and the optimizer state from the save.
  vaelab::FusedAdam first(resumed.parameters(), torch::optim::AdamOptions(1e-3));
  run_steps(first, resumed.parameters(), 1, 4);
  vaelab::FusedAdam b(resumed.parameters(), torch::optim::AdamOptions(1e-3));
  vaelab::load_adam_state(b, resumed, tensors, info, "test");
  run_steps(b, resumed.parameters(), 5, 8);
  const auto p = straight.parameters(), q = resumed.parameters();
  for (size_t i = 0; i < p.size(); ++i) CHECK(torch::equal(p[i], q[i]));
  // A torch-Adam checkpoint loads too (the format is the same).
  torch::optim::Adam plain(resumed.parameters(), torch::optim::AdamOptions(1e-3));
  vaelab::load_adam_state(plain, resumed, tensors, info, "test");
  CHECK(plain.state().size() == p.size());
}

TEST_CASE("make_adam falls back to torch's Adam, saying why, where the fused one cannot run", "[unit][optim]") {
  std::vector<torch::Tensor> doubles = {torch::zeros({4}, torch::kDouble).requires_grad_()};
  std::string chosen;
  const auto opt = vaelab::make_adam(doubles, torch::optim::AdamOptions(1e-3), true, &chosen);
  CHECK(dynamic_cast<vaelab::FusedAdam*>(opt.get()) == nullptr);
  CHECK_THAT(chosen, Contains("Double") && Contains("contiguous float"));
  CHECK_THROWS_WITH(vaelab::FusedAdam(doubles, torch::optim::AdamOptions(1e-3)), Contains("parameter 0"));
  std::vector<torch::Tensor> floats = {torch::zeros({4}).requires_grad_()};
  CHECK(dynamic_cast<vaelab::FusedAdam*>(vaelab::make_adam(floats, torch::optim::AdamOptions(1e-3), true, &chosen).get()) != nullptr);
  CHECK(chosen == "adam-fused");
  CHECK(dynamic_cast<vaelab::FusedAdam*>(vaelab::make_adam(floats, torch::optim::AdamOptions(1e-3), false, &chosen).get()) == nullptr);
  CHECK_THAT(chosen, Contains("torch's"));
  CHECK_THROWS_WITH(vaelab::FusedAdam(floats, torch::optim::AdamOptions(1e-3).weight_decay(0.1)), Contains("weight decay"));
}

TEST_CASE("clear_gradients: the next backward's gradients, and the steps, equal zero_grad's bit for bit", "[unit][optim]") {
  torch::manual_seed(5);
  Net net;
  std::vector<torch::Tensor> cleared = clone_all(net.parameters()), zeroed = clone_all(net.parameters());
  vaelab::FusedAdam opt_cleared(cleared, torch::optim::AdamOptions(1e-2));
  vaelab::FusedAdam opt_zeroed(zeroed, torch::optim::AdamOptions(1e-2));
  const torch::Tensor x = torch::randn({16, 300});
  // A loss through the two linear layers (parameters 0-3); the conv (4, 5) gets no gradient.
  const auto loss_of = [&x](const std::vector<torch::Tensor>& p) {
    const torch::Tensor h = torch::relu(torch::nn::functional::linear(x, p[0], p[1]));
    return torch::nn::functional::linear(h, p[2], p[3]).pow(2).mean();
  };
  for (int step = 0; step < 4; ++step) {
    vaelab::clear_gradients(opt_cleared);
    for (const auto& p : cleared) CHECK_FALSE(p.grad().defined());
    opt_zeroed.zero_grad();
    loss_of(cleared).backward();
    loss_of(zeroed).backward();
    for (size_t i = 0; i < 4; ++i) CHECK(torch::equal(cleared[i].grad(), zeroed[i].grad()));
    opt_cleared.step();
    opt_zeroed.step();
  }
  CHECK(max_abs_diff(cleared, clone_all(net.parameters())) > 0.01);  // the steps moved the weights
  for (size_t i = 0; i < cleared.size(); ++i) CHECK(torch::equal(cleared[i], zeroed[i]));
}
