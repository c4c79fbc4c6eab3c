// The 8-bit ↔ float conversions the generators and the run's image grids share
// (core/include/vaelab/gen/pixels.hpp).
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <vaelab/gen/pixels.hpp>

using namespace vaelab;

namespace {

ImageSet all_byte_values() {
  ImageSet images;
  images.count = 4;
  images.channels = 1;
  images.height = 8;
  images.width = 8;
  for (int v = 0; v < 256; ++v) images.pixels.push_back(static_cast<uint8_t>(v));
  return images;
}

}  // namespace

TEST_CASE("pixel_tensor is an [N, C, H, W] view of the stored bytes", "[pixels]") {
  ImageSet images = all_byte_values();
  const torch::Tensor view = pixel_tensor(images);
  REQUIRE(view.sizes() == at::IntArrayRef({4, 1, 8, 8}));
  REQUIRE(view.scalar_type() == torch::kUInt8);
  REQUIRE(view.data_ptr<uint8_t>() == images.pixels.data());
  REQUIRE(view[3][0][7][7].item<int>() == 255);
}

TEST_CASE("every byte value survives [−1, 1] and [0, 1] and back exactly", "[pixels]") {
  const ImageSet images = all_byte_values();
  const torch::Tensor bytes = pixel_tensor(images);
  const torch::Tensor signed_unit = bytes_to_signed_unit(bytes);
  REQUIRE(signed_unit.scalar_type() == torch::kFloat32);
  REQUIRE(signed_unit.min().item<float>() == -1.0f);
  REQUIRE(signed_unit.max().item<float>() == 1.0f);
  REQUIRE(signed_unit.flatten()[128].item<float>() == Approx(128 / 127.5 - 1).margin(1e-6));
  REQUIRE(torch::equal(signed_unit_to_bytes(signed_unit), bytes));
  REQUIRE(torch::equal(unit_to_bytes(bytes.to(torch::kFloat32) / 255.0), bytes));
  const ImageSet back = unit_to_image_set(bytes.to(torch::kFloat32) / 255.0);
  REQUIRE(back.count == 4);
  REQUIRE(back.channels == 1);
  REQUIRE(back.height == 8);
  REQUIRE(back.pixels == images.pixels);
}

TEST_CASE("out-of-range values clamp and halves round away from zero", "[pixels]") {
  const torch::Tensor x = torch::tensor({-3.0f, -1.0f, 0.0f, 1.0f, 4.0f});
  const torch::Tensor s = signed_unit_to_bytes(x);
  REQUIRE(s.scalar_type() == torch::kUInt8);
  REQUIRE(s[0].item<int>() == 0);
  REQUIRE(s[1].item<int>() == 0);
  REQUIRE(s[2].item<int>() == 128);  // (0 + 1) · 127.5 = 127.5 rounds up
  REQUIRE(s[3].item<int>() == 255);
  REQUIRE(s[4].item<int>() == 255);
  const torch::Tensor u = unit_to_bytes(torch::tensor({-0.5f, 2.2f / 255.0f, 2.0f}));
  REQUIRE(u[0].item<int>() == 0);
  REQUIRE(u[1].item<int>() == 2);
  REQUIRE(u[2].item<int>() == 255);
}

TEST_CASE("the conversions detach and return CPU tensors", "[pixels]") {
  const torch::Tensor x = torch::zeros({2, 1, 2, 2}, torch::requires_grad());
  const torch::Tensor y = x * 1.0;
  REQUIRE(signed_unit_to_bytes(y).device().is_cpu());
  REQUIRE(unit_to_bytes(y).is_contiguous());
  REQUIRE(unit_to_image_set(y).pixels == std::vector<uint8_t>(8, 0));
}
