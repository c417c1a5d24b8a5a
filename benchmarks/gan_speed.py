"""DCGAN training step throughput on this machine (images/s), one variant per fresh process: precision,
channels_last, threads, batch size, torch.compile. The step is the training script's own (`p1_dcgan.train_step`,
DiffAugment on); the data pipeline is left out (the step is compute-bound, see docs/speed.md).

  python benchmarks/gan_speed.py --steps 30 --warmup 5
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import p1_dcgan  # noqa: E402
from hw3 import (
    distributed,  # noqa: E402
    gan,  # noqa: E402
)
from hw3.augment import DiffAugment, parse_policy  # noqa: E402
from models import DCGANDiscriminator, DCGANGenerator, init_dcgan  # noqa: E402

# (precision, channels_last, threads, batch, compile)
VARIANTS = [("fp32", False, 1, 64, False), ("bf16", False, 1, 64, False), ("bf16", True, 1, 64, False),
            ("bf16", True, 1, 32, False), ("bf16", True, 1, 128, False), ("bf16", True, 2, 64, False),
            ("bf16", True, 2, 128, False), ("bf16", True, 1, 64, True)]


def one(precision: str, channels_last: bool, threads: int, batch: int, compile: bool, steps: int, warmup: int
        ) -> float:
    """Images per second of the DCGAN step in this process."""
    torch.set_num_threads(threads)
    dist = distributed.setup("cpu", 0, precision)
    G, D = DCGANGenerator(), DCGANDiscriminator()
    G.apply(init_dcgan), D.apply(init_dcgan)
    opt_g = distributed.adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = distributed.adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    G, D = distributed.prepare_model(G, dist, compile), distributed.prepare_model(D, dist, compile)
    if not channels_last:
        G, D = G.to(memory_format=torch.contiguous_format), D.to(memory_format=torch.contiguous_format)
    rng = torch.Generator().manual_seed(0)
    nets = gan.Nets(G, D, opt_g, opt_d, augment=DiffAugment(parse_policy("color,translation,cutout"), rng))
    real = torch.rand(batch, 3, 64, 64, generator=rng) * 2 - 1
    for _ in range(warmup):
        p1_dcgan.train_step(nets, real, None, rng)
    t0 = time.perf_counter()
    for _ in range(steps):
        p1_dcgan.train_step(nets, real, None, rng)
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--one", help=argparse.SUPPRESS)  # a variant as JSON: run it here and print images/s
    args = p.parse_args()
    if args.one:
        print(one(*json.loads(args.one), args.steps, args.warmup))
        return
    print(f"torch {torch.__version__}, {args.steps} timed steps after {args.warmup} warm-up, one fresh process each\n")
    print("| precision | channels_last | threads | batch | torch.compile | images/s |\n|---|---|---|---|---|---|")
    for v in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup),
                              "--one", json.dumps(v)], capture_output=True, text=True)
        speed = f"{float(out.stdout.split()[-1]):.1f}" if out.returncode == 0 else "failed: " + \
            (out.stderr.strip().splitlines() or ["?"])[-1][:60]
        print("| " + " | ".join(map(str, v)) + f" | {speed} |", flush=True)


if __name__ == "__main__":
    main()
