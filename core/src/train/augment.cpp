// Training stream: the augmentations of the augment-naive and augment-tuned regimes.
#include <vaelab/train/augment.hpp>

#include <cmath>

#include <torch/torch.h>

#include <vaelab/error.hpp>
#include <vaelab/torch_shim.hpp>

namespace vaelab {
namespace {

namespace F = torch::nn::functional;

/// Per-image 3×3 matrices in pixel units centred on the image, [B, 3, 3] float64.
torch::Tensor eye_batch(int64_t b) {
  return torch::eye(3, torch::kFloat64).unsqueeze(0).repeat({b, 1, 1});
}

torch::Tensor scale_matrix(const torch::Tensor& sx, const torch::Tensor& sy) {
  torch::Tensor m = eye_batch(sx.size(0));
  m.select(1, 0).select(1, 0).copy_(sx);
  m.select(1, 1).select(1, 1).copy_(sy);
  return m;
}

torch::Tensor rotation_matrix(const torch::Tensor& angle) {
  torch::Tensor m = eye_batch(angle.size(0));
  const torch::Tensor c = angle.cos();
  const torch::Tensor s = angle.sin();
  m.select(1, 0).select(1, 0).copy_(c);
  m.select(1, 0).select(1, 1).copy_(-s);
  m.select(1, 1).select(1, 0).copy_(s);
  m.select(1, 1).select(1, 1).copy_(c);
  return m;
}

torch::Tensor translation_matrix(const torch::Tensor& tx, const torch::Tensor& ty) {
  torch::Tensor m = eye_batch(tx.size(0));
  m.select(1, 0).select(1, 2).copy_(tx);
  m.select(1, 1).select(1, 2).copy_(ty);
  return m;
}

/// Where an augmentation is off for an image, its factor becomes the identity value.
torch::Tensor gate(const torch::Tensor& value, const torch::Tensor& on, double identity) {
  return torch::where(on, value, torch::full_like(value, identity));
}

}  // namespace

AugmentSettings AugmentSettings::from_config(const std::string& regime, int64_t channels,
                                             const ConfigTable& table) {
  AugmentSettings s;
  if (regime == "augment-naive") {  // Table 8, every dataset
    s.xflip = true;
    s.translate_px = 3;
    s.scale_std = 0.2;
    s.rotate_deg = 10;
    s.aniso_std = 0.2;
    s.aniso_rotate_prob = 0.5;
    s.brightness_std = 0.2;
    s.contrast_std = 0.25;
    s.hue_max = 0.25 * M_PI;
    s.saturation_std = 0.5;
  } else if (regime == "augment-tuned" && channels == 1) {  // Table 9, BinaryMNIST / Fashion-MNIST
    s.translate_px = 3;
    s.scale_std = 0.15;
    s.rotate_deg = 10;
    s.aniso_std = 0.15;
    s.aniso_rotate_prob = 0.4;
  } else if (regime == "augment-tuned") {  // Table 10, CIFAR-10
    s.xflip = true;
    s.yflip = true;
    s.scale_std = 0.2;
    s.rotate_deg = 360;
    s.aniso_std = 0.2;
    s.aniso_rotate_prob = 0.5;
  } else {
    throw ConfigError("train.regime: '" + regime + "' has no augmentation preset");
  }
  s.p = table.get_double("p");
  if (!(s.p >= 0 && s.p <= 1)) throw ConfigError(table.key_path("p") + ": must be in [0, 1]");
  // Explicit keys replace the preset's value; 0 keeps it. `ops`, when not empty, is the exact
  // list of augmentations enabled (each with its preset or explicit strength).
  const auto override_double = [&](const char* key, double& field) {
    const double v = table.get_double(key);
    if (v < 0 || !std::isfinite(v)) throw ConfigError(table.key_path(key) + ": must be >= 0");
    if (v > 0) field = v;
  };
  override_double("scale_std", s.scale_std);
  override_double("rotate_deg", s.rotate_deg);
  override_double("aniso_std", s.aniso_std);
  override_double("aniso_rotate_prob", s.aniso_rotate_prob);
  override_double("brightness_std", s.brightness_std);
  override_double("contrast_std", s.contrast_std);
  override_double("hue_max", s.hue_max);
  override_double("saturation_std", s.saturation_std);
  const int64_t translate = table.get_int_in("translate_px", 0, 1 << 16);
  if (translate > 0) s.translate_px = translate;
  if (s.aniso_rotate_prob > 1) throw ConfigError(table.key_path("aniso_rotate_prob") + ": must be in [0, 1]");

  const std::vector<std::string> ops = table.get_string_array("ops");
  if (!ops.empty()) {
    static const std::vector<std::string> known = {"xflip", "yflip", "translate", "scale", "rotate",
                                                   "aniso", "brightness", "contrast", "hue", "saturation"};
    AugmentSettings chosen;
    chosen.p = s.p;
    chosen.aniso_rotate_prob = s.aniso_rotate_prob;
    for (const std::string& op : ops) {
      // Strengths the preset leaves at 0 take Table 8's values.
      if (op == "xflip") chosen.xflip = true;
      else if (op == "yflip") chosen.yflip = true;
      else if (op == "translate") chosen.translate_px = s.translate_px > 0 ? s.translate_px : 3;
      else if (op == "scale") chosen.scale_std = s.scale_std > 0 ? s.scale_std : 0.2;
      else if (op == "rotate") chosen.rotate_deg = s.rotate_deg > 0 ? s.rotate_deg : 10;
      else if (op == "aniso") chosen.aniso_std = s.aniso_std > 0 ? s.aniso_std : 0.2;
      else if (op == "brightness") chosen.brightness_std = s.brightness_std > 0 ? s.brightness_std : 0.2;
      else if (op == "contrast") chosen.contrast_std = s.contrast_std > 0 ? s.contrast_std : 0.25;
      else if (op == "hue") chosen.hue_max = s.hue_max > 0 ? s.hue_max : 0.25 * M_PI;
      else if (op == "saturation") chosen.saturation_std = s.saturation_std > 0 ? s.saturation_std : 0.5;
      else {
        const std::string near = closest_match(op, known);
        throw ConfigError(table.key_path("ops") + ": unknown augmentation '" + op + "'" +
                          (near.empty() ? "" : " (did you mean '" + near + "'?)") +
                          "; known: xflip, yflip, translate, scale, rotate, aniso, brightness, "
                          "contrast, hue, saturation");
      }
    }
    s = chosen;
  }
  if (channels != 3) {  // hue and saturation act on RGB only
    s.hue_max = 0;
    s.saturation_std = 0;
  }
  return s;
}

std::vector<std::string> AugmentSettings::enabled() const {
  std::vector<std::string> out;
  if (xflip) out.push_back("xflip");
  if (yflip) out.push_back("yflip");
  if (translate_px > 0) out.push_back("translate ±" + std::to_string(translate_px) + " px");
  if (scale_std > 0) out.push_back("scale 2^N(0," + std::to_string(scale_std) + "²)");
  if (rotate_deg > 0) out.push_back("rotate ±" + std::to_string(rotate_deg) + "°");
  if (aniso_std > 0) out.push_back("aniso 2^N(0," + std::to_string(aniso_std) + "²), rotated frame p=" + std::to_string(aniso_rotate_prob));
  if (brightness_std > 0) out.push_back("brightness N(0," + std::to_string(brightness_std) + "²)");
  if (contrast_std > 0) out.push_back("contrast 2^N(0," + std::to_string(contrast_std) + "²)");
  if (hue_max > 0) out.push_back("hue ±" + std::to_string(hue_max) + " rad");
  if (saturation_std > 0) out.push_back("saturation 2^N(0," + std::to_string(saturation_std) + "²)");
  return out;
}

torch::Tensor augment_batch(const torch::Tensor& batch, const AugmentSettings& s, PixelGrid grid,
                            at::Generator& gen) {
  const int64_t b = batch.size(0);
  const int64_t height = batch.size(2);
  const int64_t width = batch.size(3);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  // One coin per image per augmentation, drawn whether or not the augmentation is enabled, so
  // enabling one does not change the draws of the others.
  const auto coin = [&]() { return shim::rand({b}, f64, gen).lt(s.p); };
  const auto normal = [&]() { return shim::randn({b}, f64, &gen); };
  const auto uniform = [&](double lo, double hi) { return shim::rand({b}, f64, gen) * (hi - lo) + lo; };

  // Geometric part: one matrix per image mapping output pixel coordinates (centred) to the input
  // coordinates sampled there. Every distribution below is symmetric, so sampling with a
  // transform or with its inverse gives the same distribution of images.
  torch::Tensor m = eye_batch(b);
  bool geometric = false;
  {
    const torch::Tensor on = coin();
    const torch::Tensor flip = shim::rand({b}, f64, gen).lt(0.5);
    if (s.xflip) {
      m = m.matmul(scale_matrix(gate(torch::full({b}, -1.0, f64), on & flip, 1.0), torch::ones({b}, f64)));
      geometric = true;
    }
  }
  {
    const torch::Tensor on = coin();
    const torch::Tensor flip = shim::rand({b}, f64, gen).lt(0.5);
    if (s.yflip) {
      m = m.matmul(scale_matrix(torch::ones({b}, f64), gate(torch::full({b}, -1.0, f64), on & flip, 1.0)));
      geometric = true;
    }
  }
  {
    const torch::Tensor on = coin();
    const auto t = static_cast<double>(s.translate_px);
    const torch::Tensor tx = (uniform(0, 1) * (2 * t + 1)).floor() - t;
    const torch::Tensor ty = (uniform(0, 1) * (2 * t + 1)).floor() - t;
    if (s.translate_px > 0) {
      m = m.matmul(translation_matrix(gate(tx, on, 0.0), gate(ty, on, 0.0)));
      geometric = true;
    }
  }
  {
    const torch::Tensor on = coin();
    const torch::Tensor scale = torch::pow(2.0, normal() * s.scale_std);
    if (s.scale_std > 0) {
      const torch::Tensor k = gate(scale, on, 1.0);
      m = m.matmul(scale_matrix(k, k));
      geometric = true;
    }
  }
  {
    const torch::Tensor on = coin();
    const torch::Tensor angle = uniform(-1, 1) * (s.rotate_deg * M_PI / 180.0);
    if (s.rotate_deg > 0) {
      m = m.matmul(rotation_matrix(gate(angle, on, 0.0)));
      geometric = true;
    }
  }
  {
    const torch::Tensor on = coin();
    const torch::Tensor k = torch::pow(2.0, normal() * s.aniso_std);
    const torch::Tensor framed = shim::rand({b}, f64, gen).lt(s.aniso_rotate_prob);
    const torch::Tensor frame = uniform(-M_PI, M_PI);
    if (s.aniso_std > 0) {
      const torch::Tensor kk = gate(k, on, 1.0);
      const torch::Tensor phi = gate(frame, on & framed, 0.0);
      m = m.matmul(rotation_matrix(phi)).matmul(scale_matrix(kk, 1.0 / kk)).matmul(rotation_matrix(-phi));
      geometric = true;
    }
  }

  torch::Tensor out = batch;
  if (geometric) {
    // Centred pixel coordinates → grid_sample's normalized ones (align_corners = false).
    torch::Tensor to_norm = torch::eye(3, f64);
    to_norm[0][0] = 2.0 / static_cast<double>(width);
    to_norm[1][1] = 2.0 / static_cast<double>(height);
    const torch::Tensor theta = to_norm.matmul(m).matmul(torch::inverse(to_norm));
    const torch::Tensor affine = theta.slice(1, 0, 2).to(batch.scalar_type()).to(batch.device());
    const torch::Tensor grid_xy = F::affine_grid(affine, batch.sizes().vec(), false);
    out = F::grid_sample(batch, grid_xy,
                         F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kReflection).align_corners(false));
  }

  // Colour part, per image.
  const auto column = [&](const torch::Tensor& v) {
    return v.to(batch.scalar_type()).to(batch.device()).view({b, 1, 1, 1});
  };
  {
    const torch::Tensor on = coin();
    const torch::Tensor shift = normal() * s.brightness_std;
    if (s.brightness_std > 0) out = out + column(gate(shift, on, 0.0));
  }
  {
    const torch::Tensor on = coin();
    const torch::Tensor k = torch::pow(2.0, normal() * s.contrast_std);
    if (s.contrast_std > 0) {
      const torch::Tensor mean = out.mean({1, 2, 3}, true);
      out = (out - mean) * column(gate(k, on, 1.0)) + mean;
    }
  }
  if (batch.size(1) == 3) {
    // Hue: rotation about the grey axis v = (1, 1, 1)/√3 (Rodrigues); saturation: the component
    // orthogonal to v scaled.
    const torch::Tensor on_hue = coin();
    const torch::Tensor angle = uniform(-1, 1) * s.hue_max;
    const torch::Tensor on_sat = coin();
    const torch::Tensor k = torch::pow(2.0, normal() * s.saturation_std);
    if (s.hue_max > 0 || s.saturation_std > 0) {
      const torch::Tensor v = torch::full({3, 1}, 1.0 / std::sqrt(3.0), f64);
      const torch::Tensor vvt = v.matmul(v.t());
      const torch::Tensor cross = torch::tensor({0.0, -1.0, 1.0, 1.0, 0.0, -1.0, -1.0, 1.0, 0.0}, f64).view({3, 3}) / std::sqrt(3.0);
      const torch::Tensor th = gate(angle, on_hue, 0.0).view({b, 1, 1});
      const torch::Tensor rot = vvt + th.cos() * (torch::eye(3, f64) - vvt) + th.sin() * cross;
      const torch::Tensor sat = vvt + gate(k, on_sat, 1.0).view({b, 1, 1}) * (torch::eye(3, f64) - vvt);
      const torch::Tensor colour = sat.matmul(rot).to(batch.scalar_type()).to(batch.device());
      out = torch::einsum("bij,bjhw->bihw", {colour, out});
    }
  }

  out = out.clamp(0.0, 1.0);
  if (grid == PixelGrid::bytes) out = out.mul(255.0).round().div(255.0);
  if (grid == PixelGrid::binary) out = out.ge(0.5).to(batch.scalar_type());
  return out;
}

}  // namespace vaelab
