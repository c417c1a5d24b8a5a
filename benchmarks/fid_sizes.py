"""How much of a dev FID is the size of the real set? FID is biased upwards by about k / n for n real images, so
`eval --n 2000` against the 1,000 dev-test faces reads higher than a 2,000-vs-2,000 FID on unseen faces. This
scores 2,000 generated faces (and, as a check, 2,000 real training faces) against random subsets of face/test of
250, 500 and 1,000 images, fits FID = a + k / n and reads the fit at n = 2,000. The check: the real faces' fit at
2,000 against the real-vs-real FID of two sets of 2,000 unseen faces that issue #12 reports (12.9).

  python benchmarks/fid_sizes.py --ckpt checkpoints/p1_dcgan.pt --data hw3_data
  python benchmarks/fid_sizes.py --ckpt checkpoints/p2_acgan.pt --data hw3_data --problem p2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import p1_dcgan  # noqa: E402
import p2_acgan  # noqa: E402
from hw3 import (
    fid,  # noqa: E402
    gan,  # noqa: E402
    gan_cli,  # noqa: E402
)
from models import truncate  # noqa: E402

SIZES = (250, 500, 1000)


def fit_at(feats: np.ndarray, real: np.ndarray, n_target: int, draws: int, rng: np.random.Generator
           ) -> tuple[dict[int, float], float]:
    """Mean FID of `feats` against `draws` random subsets of `real` per size in SIZES (the full set once), and the
    least-squares fit FID = a + k / n read at n_target."""
    means = {}
    for n in SIZES:
        reps = 1 if n >= len(real) else draws
        means[n] = float(np.mean([fid.frechet_distance(feats, real[rng.choice(len(real), n, replace=False)])
                                  for _ in range(reps)]))
    k, a = np.polyfit([1 / n for n in means], list(means.values()), 1)
    return means, float(a + k / n_target)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a shipped generator or a run's last.pt")
    p.add_argument("--problem", choices=["p1", "p2"], default="p1")
    p.add_argument("--data", default="hw3_data")
    p.add_argument("--n", type=int, default=2000, help="generated faces, and training faces per real set")
    p.add_argument("--draws", type=int, default=20, help="random subsets per size below the full set")
    p.add_argument("--seed", type=int, default=1, help="the generator's noise (eval's default)")
    args = p.parse_args()
    args.real, args.json, args.floor = None, None, True
    test, floor_faces = gan_cli.check_eval_args(args)  # face/test, and eval's seeded floor sample of face/train
    if len(test) < max(SIZES):
        p.error(f"need {max(SIZES)} test faces, found {len(test)}")
    spec = (p1_dcgan if args.problem == "p1" else p2_acgan).SPEC
    device = torch.device("cpu")
    G, ck = gan.load_generator(args.ckpt, spec, device)
    images, _ = gan.generate_n(truncate(G, ck, None), spec, args.n, args.seed, device)
    net = fid.Inception(device)
    floor = fid.real_features(floor_faces, net)
    real = fid.real_features(test, net)
    fake = net.features(images, desc="inception generated")
    rng = np.random.default_rng(0)
    print(f"{args.ckpt} (step {ck['step']}), {args.n} generated faces; FID against face/test subsets "
          f"(mean of {args.draws} draws below {len(test)}), fit a + k/n read at n = {args.n}:")
    print("| set scored | " + " | ".join(f"n = {n}" for n in SIZES) + f" | fit at n = {args.n} |")
    print("| --- |" + " --- |" * (len(SIZES) + 1))
    for name, feats in ((f"{args.n} real training faces (the floor)", floor), (f"{args.n} generated faces", fake)):
        means, at = fit_at(feats, real, args.n, args.draws, rng)
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in means.values()) + f" | {at:.1f} |")


if __name__ == "__main__":
    main()
