#!/usr/bin/env python3
"""The reference `vaelab bench`'s vae-mlp-train line is compared with: the same model written in
PyTorch (nn.Linear layers, torch.optim.Adam), trained the same way, at every thread setting.

The paper's Fashion-MNIST MLP VAE (Xiao, Zenn & Bamler 2024): 1024 -> 512 -> 512 -> 2x16 and
mirrored, ReLU, a Gaussian likelihood with sigma 0.1, one reparameterized sample, batch 128 of
random 32x32 images, Adam with lr 1e-4. Prints images/s (median of --repeats timings of --steps
steps each) per (intra-op threads, Adam foreach / fused flags PyTorch offers), and the best.

    /usr/bin/python3 tools/bench/pytorch_mlp_vae.py [--threads 1 2] [--steps 50] [--repeats 5]

Use Debian's python3-torch (PyTorch 1.13) for the comparison the README reports; set
OPENBLAS_CORETYPE as vaelab would on a CPU OpenBLAS does not know (docs/backends.md).
"""
import argparse
import math
import statistics
import time

import torch
from torch import nn


class MlpVae(nn.Module):
    def __init__(self, pixels=1024, hidden=(512, 512), latent=16):
        super().__init__()
        enc, width = [], pixels
        for h in hidden:
            enc += [nn.Linear(width, h), nn.ReLU()]
            width = h
        enc.append(nn.Linear(width, 2 * latent))
        self.encoder = nn.Sequential(*enc)
        dec, width = [], latent
        for h in reversed(hidden):
            dec += [nn.Linear(width, h), nn.ReLU()]
            width = h
        dec.append(nn.Linear(width, pixels))
        self.decoder = nn.Sequential(*dec)

    def neg_elbo(self, x, sigma=0.1):
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        recon = self.decoder(z)
        log_px = (-0.5 * ((x - recon) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(1)
        kl = 0.5 * (mean ** 2 + log_var.exp() - 1 - log_var).sum(1)
        return -(log_px - kl).mean()


def measure(threads, steps, repeats, foreach):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MlpVae()
    kwargs = {"lr": 1e-4}
    if foreach is not None:
        kwargs["foreach"] = foreach
    opt = torch.optim.Adam(model.parameters(), **kwargs)
    x = torch.rand(128, 1024)

    def step():
        opt.zero_grad()
        loss = model.neg_elbo(x)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(128 * steps / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"PyTorch {torch.__version__}; {torch.__config__.parallel_info().splitlines()[0]}")
    best = (0.0, None)
    for threads in args.threads:
        for foreach in (False, True):
            rate = measure(threads, args.steps, args.repeats, foreach)
            label = f"threads {threads}, Adam foreach={foreach}"
            print(f"{label:40s} {rate:10.1f} images/s")
            best = max(best, (rate, label))
    print(f"best: {best[0]:.1f} images/s ({best[1]})")


if __name__ == "__main__":
    main()
