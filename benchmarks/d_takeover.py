"""Whether a GAN run's discriminator is taking over: per window of steps, the mean D(x) and D(G(z)) and the logged
lines with loss_d below 0.01 (from metrics.jsonl); with --grad, D's squared input gradient at real faces for each
kept snapshot (snap/step_<S>.pt), the steepness an R1 penalty prices.

  python benchmarks/d_takeover.py runs/p1 runs/p1_r1_s1 [--window 10000] [--grad --data hw3_data]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets import load_faces  # noqa: E402
from hw3 import checkpoints  # noqa: E402
from models import DCGANDiscriminator  # noqa: E402


def windows(run: Path, window: int) -> list[dict]:
    """One row per `window` steps of the run's log: its lines, mean d_real and d_fake, lines with loss_d < 0.01."""
    rows = checkpoints.read_metrics(run / "metrics.jsonl")
    out = []
    for lo in range(0, max(r["step"] for r in rows), window):
        part = [r for r in rows if lo < r["step"] <= lo + window]
        if part:
            out.append({"steps": f"{lo + 1}-{min(lo + window, part[-1]['step'])}", "lines": len(part),
                        "d_real": sum(r["d_real"] for r in part) / len(part),
                        "d_fake": sum(r["d_fake"] for r in part) / len(part),
                        "loss_d<0.01": sum(r["loss_d"] < 0.01 for r in part)})
    return out


def input_gradient(snapshot: Path, real: torch.Tensor) -> float:
    """E |grad_x D(x)|^2 over `real` for the snapshot's discriminator (train-mode BatchNorm, as it trains)."""
    D = DCGANDiscriminator()
    D.load_state_dict(checkpoints.float_state(torch.load(snapshot, weights_only=True)["models"]["D"]))
    seen = real.clone().requires_grad_()
    grad, = torch.autograd.grad(D.train()(seen).sum(), seen)  # (N, 3, 64, 64)
    return grad.square().flatten(1).sum(1).mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--window", type=int, default=10_000)
    p.add_argument("--grad", action="store_true", help="also D's input gradient at --n real faces per snapshot")
    p.add_argument("--data", default="hw3_data")
    p.add_argument("--n", type=int, default=256)
    args = p.parse_args()
    real = None
    for run in args.runs:
        if not (run / "metrics.jsonl").is_file():
            sys.exit(f"error: no {run / 'metrics.jsonl'}")
        print(f"{run}\n| steps | lines | mean D(x) | mean D(G(z)) | lines with loss_d < 0.01 |\n|---|---|---|---|---|")
        for w in windows(run, args.window):
            print(f"| {w['steps']} | {w['lines']} | {w['d_real']:.3f} | {w['d_fake']:.3f} | {w['loss_d<0.01']} |")
        if args.grad:
            if real is None:  # uint8 faces -> [-1, 1]
                real = load_faces(args.data, "train", None).images[:args.n].float() / 127.5 - 1
            snaps = sorted(run.glob("snap/step_*.pt"), key=lambda f: int(re.findall(r"\d+", f.stem)[0]))
            print(" ".join(f"{s.stem[5:]}: {input_gradient(s, real):,.0f}" for s in snaps))


if __name__ == "__main__":
    main()
