#pragma once
// The small MLP classifiers of the generator check (core/src/gen): the C2ST's real-vs-sample
// classifier and the Fréchet distance's feature network. Internal to vaelab::core.

#include <cstdint>
#include <functional>
#include <vector>

#include <torch/torch.h>

#include <vaelab/data_source.hpp>

namespace vaelab::gen_detail {

/// uint8 images → float [N, D] in [0, 1]. Shares nothing with `images`.
torch::Tensor to_rows(const ImageSet& images);

/// Linear layers of `widths` (input first) with ReLU between them, initialised as PyTorch
/// initialises nn.Linear but drawn from `gen` (torch's global generator is not touched).
torch::nn::Sequential make_mlp(const std::vector<int64_t>& widths, at::Generator& gen);

/// `epochs` passes of Adam (learning rate `lr`) on `params` over (x, y) in shuffled batches drawn
/// from `gen`; `loss` maps a batch of x and its targets to a scalar.
void fit_classifier(const std::vector<torch::Tensor>& params, const torch::Tensor& x,
                    const torch::Tensor& y, int64_t epochs, int64_t batch, double lr,
                    at::Generator& gen,
                    const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& loss);

}  // namespace vaelab::gen_detail
