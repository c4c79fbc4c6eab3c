// 8-bit ↔ float image conversions shared by the generators and the run's image grids.
#include <vaelab/gen/pixels.hpp>

#include <torch/torch.h>

namespace vaelab {

torch::Tensor pixel_tensor(const ImageSet& images) {
  return torch::from_blob(const_cast<uint8_t*>(images.pixels.data()),
                          {images.count, images.channels, images.height, images.width}, torch::kUInt8);
}

torch::Tensor bytes_to_signed_unit(const torch::Tensor& bytes) {
  return bytes.to(torch::kFloat32).div(127.5).sub(1.0);
}

torch::Tensor signed_unit_to_bytes(const torch::Tensor& x) {
  return x.detach().to(torch::kCPU, torch::kFloat32).add(1.0).mul(127.5).round().clamp(0, 255).to(torch::kUInt8).contiguous();
}

torch::Tensor unit_to_bytes(const torch::Tensor& x) {
  return x.detach().to(torch::kCPU, torch::kFloat32).mul(255.0).round().clamp(0, 255).to(torch::kUInt8).contiguous();
}

ImageSet unit_to_image_set(const torch::Tensor& images) {
  const torch::Tensor bytes = unit_to_bytes(images);
  ImageSet out;
  out.count = bytes.size(0);
  out.channels = bytes.size(1);
  out.height = bytes.size(2);
  out.width = bytes.size(3);
  out.pixels.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  return out;
}

}  // namespace vaelab
