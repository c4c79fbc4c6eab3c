#!/usr/bin/env python3
"""The test-set ELBO of a module written by `vaelab export`, computed in PyTorch as `vaelab eval`
computes it: the run's test images (Fashion-MNIST through the idx data source, zero-padded,
scaled to [0, 1] or binarized), its likelihood, and the same Monte Carlo noise (a CPU generator
seeded with train.seed + 2, drawn batch by batch of eval.batch_size as [batch, latent] for each of
eval.elbo_samples samples), so the two agree to float precision.

    python3 examples/pytorch/elbo_check.py trained.pt RUN_DIR/config.toml [--vaelab-json eval.json]
"""

import argparse
import gzip
import json
import math
import sys
import tomllib

import torch
import torch.nn.functional as F


def read_idx_images(path: str) -> torch.Tensor:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[2] != 0x08 or data[3] != 3:
        sys.exit(f"{path}: not an idx3 file of unsigned bytes")
    n, h, w = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return torch.frombuffer(bytearray(data[16:16 + n * h * w]), dtype=torch.uint8).view(n, 1, h, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="TorchScript file written by vaelab export")
    parser.add_argument("config", help="the run's config.toml")
    parser.add_argument("--vaelab-json", help="output of `vaelab eval RUN_DIR --json`, to compare with")
    args = parser.parse_args()
    with open(args.config, "rb") as f:
        config = tomllib.load(f)
    data = config["data"]
    if data["plugin"] != "idx" or data.get("test_size", 0) != 0 or data.get("holdout_label", -1) >= 0:
        sys.exit("this check reads the whole test split of an idx data source (test_size = 0, no holdout_label)")
    images = read_idx_images(data["config"]["test_images"])
    pad = data["config"].get("pad_to", 0)
    if pad:
        h, w = images.shape[2:]
        top, left = (pad - h) // 2, (pad - w) // 2
        images = F.pad(images, (left, pad - w - left, top, pad - h - top))
    if data.get("binarize", "none") == "threshold":
        x_all = (images >= 128).float()
    else:
        x_all = images.float() / 255.0

    likelihood = config["likelihood"]
    name = likelihood["name"]
    if name == "gaussian":
        sigma = likelihood["sigma"]
        log_norm = -math.log(sigma) - 0.5 * math.log(2.0 * math.pi)

        def log_prob(x, params):
            return (-0.5 * ((x - params) / sigma).square() + log_norm).flatten(1).sum(1)
    elif name == "bernoulli":
        def log_prob(x, params):
            return -F.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).sum(1)
    else:
        sys.exit(f"likelihood {name!r}: this check knows gaussian and bernoulli")

    model = torch.jit.load(args.module)
    model.eval()
    samples = config["eval"]["elbo_samples"]
    batch = config["eval"]["batch_size"]
    generator = torch.Generator().manual_seed(config["train"]["seed"] + 2)
    total = 0.0
    with torch.no_grad():
        for start in range(0, x_all.shape[0], batch):
            x = x_all[start:start + batch]
            mean, log_var = model.encode(x)
            std = (0.5 * log_var).exp()
            ll = None
            for s in range(samples):
                z = mean + std * torch.randn(mean.shape, generator=generator)
                term = log_prob(x, model.decode(z))
                ll = term if ll is None else ll + term
            if samples > 1:
                ll = ll / samples
            kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).flatten(1).sum(1)
            total += (ll - kl).sum().item()  # a float32 sum per batch, as vaelab adds them
    elbo = total / x_all.shape[0]
    print(f"elbo_test_nats = {elbo:.6f}  ({x_all.shape[0]} test images, PyTorch {torch.__version__})")
    if args.vaelab_json:
        with open(args.vaelab_json) as f:
            theirs = json.load(f)["elbo_test_nats"]
        print(f"vaelab eval:     {theirs:.6f}  difference {elbo - theirs:+.2e} nats")


if __name__ == "__main__":
    main()
