#!/usr/bin/env python3
"""The paper's fully-connected VAE (Xiao, Zenn & Bamler 2024; vaelab's plugins/vae-mlp) written
in PyTorch, scripted and saved for vaelab's vae-torchscript plugin.

    python3 examples/pytorch/mlp_vae.py --out vae.pt
    build/bin/vaelab train examples/pytorch/fmnist-torchscript.toml

Layer for layer it is vae-mlp: 1024 -> 512 -> 512 -> 2x16 (mean, log-variance) and back, ReLU
between layers, and the same parameter names (encoder_0.linear.weight, ..., decoder_out.linear.bias),
so checkpoints of the two models load into each other.

What vae-torchscript needs from a module: two methods marked @torch.jit.export,
  encode(x)  x [B, C, H, W] in the likelihood's input scale -> (mean, log_var), each [B, latent...]
  decode(z)  z [B, latent...] -> the likelihood's parameters [B, param_channels, H, W]
             (Bernoulli logits or Gaussian means: param_channels = C)
and its weights as nn.Parameter. With init = "seeded" (the default) vaelab draws every
nn.Linear / nn.Conv*d weight and bias from the run's seed as PyTorch does; init = "file" trains
from the weights saved here.
"""

import argparse
from typing import Tuple

import torch
from torch import nn


class Dense(nn.Module):
    """A linear layer, held as `linear` so its parameters are named as vae-mlp's."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MlpVae(nn.Module):
    def __init__(self, channels: int = 1, height: int = 32, width: int = 32, hidden0: int = 512,
                 hidden1: int = 512, latent: int = 16, param_channels: int = 1):
        super().__init__()
        pixels = channels * height * width
        self.param_channels = param_channels
        self.height = height
        self.width = width
        # Registration order is parameter order: vaelab's seeded init draws in this order, as
        # vae-mlp builds its layers.
        self.encoder_0 = Dense(pixels, hidden0)
        self.encoder_1 = Dense(hidden0, hidden1)
        self.encoder_out = Dense(hidden1, 2 * latent)
        self.decoder_in = Dense(latent, hidden1)
        self.decoder_1 = Dense(hidden1, hidden0)
        self.decoder_out = Dense(hidden0, param_channels * pixels)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = torch.flatten(x, 1)
        h = torch.relu(self.encoder_0(h))
        h = torch.relu(self.encoder_1(h))
        parts = torch.chunk(self.encoder_out(h), 2, 1)
        return parts[0], parts[1]

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.decoder_in(z))
        h = torch.relu(self.decoder_1(h))
        return self.decoder_out(h).view(z.size(0), self.param_channels, self.height, self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's output at the posterior mean (for use from Python)."""
        mean, _ = self.encode(x)
        return self.decode(mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="vae.pt", help="TorchScript file to write (default vae.pt)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed before the layers are made")
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--hidden", type=int, nargs=2, default=[512, 512])
    parser.add_argument("--image", type=int, nargs=3, default=[1, 32, 32], metavar=("C", "H", "W"))
    parser.add_argument("--param-channels", type=int, default=1,
                        help="decoder outputs per pixel: the likelihood's (bernoulli, gaussian: C)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    c, h, w = args.image
    model = MlpVae(c, h, w, args.hidden[0], args.hidden[1], args.latent, args.param_channels)
    scripted = torch.jit.script(model)
    scripted.save(args.out)
    count = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {count} parameters; encode {list(scripted.encode(torch.zeros(1, c, h, w))[0].shape)}, "
          f"decode {list(scripted.decode(torch.zeros(1, args.latent)).shape)}")


if __name__ == "__main__":
    main()
