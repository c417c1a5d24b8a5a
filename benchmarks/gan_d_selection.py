"""Does the discriminator know which generated faces are good? FID of 2,000 faces chosen from a larger pool by
D's logit (the top n of the first m, importance resampling with weights exp(logit), the bottom n), against the
first n of the pool unchosen. One pool of generated faces for every rule; D scores them in eval mode (its running
statistics) and in train mode (batch statistics over batches of 64 fakes, as in training).

  python benchmarks/gan_d_selection.py --ckpt runs/p1/last.pt --data hw3_data --pool 4000 --truncation 0.9
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import p1_dcgan  # noqa: E402
from datasets import (
    list_images,  # noqa: E402
    to_unit,  # noqa: E402
)
from hw3 import (
    checkpoints,  # noqa: E402
    fid,  # noqa: E402
    gan,  # noqa: E402
)
from models import truncate  # noqa: E402


@torch.inference_mode()
def d_logits(D: torch.nn.Module, images: torch.Tensor, batch: int) -> torch.Tensor:
    """D's logit for every uint8 image (N, 3, 64, 64), in batches of `batch`."""
    x = to_unit(images)  # (N, 3, 64, 64) in [-1, 1]
    return torch.cat([D(x[i:i + batch]) for i in range(0, len(x), batch)]).float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a P1 run's last.pt (with D)")
    p.add_argument("--data", default="hw3_data")
    p.add_argument("--n", type=int, default=2000, help="faces scored per rule")
    p.add_argument("--pool", type=int, default=4000, help="faces generated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncation", type=float, default=1.0, help="noise scaled by PSI")
    args = p.parse_args()
    if not 1 <= args.n <= args.pool:
        p.error("need 1 <= --n <= --pool")
    device = torch.device("cpu")
    G, ck = gan.load_generator(args.ckpt, p1_dcgan.SPEC, device)
    D = p1_dcgan.SPEC.build_d(ck["config"])
    checkpoints.load_state(D, checkpoints.float_state(ck["models"]["D"]), "discriminator")
    images, _ = gan.generate_n(truncate(G, ck, args.truncation), p1_dcgan.SPEC, args.pool, args.seed, device)
    logits = {"eval": d_logits(D.eval(), images, 500), "train": d_logits(copy.deepcopy(D).train(), images, 64)}
    print(f"step {ck['step']}: correlation of the eval- and train-mode logits "
          f"{np.corrcoef(logits['eval'].numpy(), logits['train'].numpy())[0, 1]:.3f}; mean D(G(z)) "
          f"{torch.sigmoid(logits['eval']).mean():.3f} (eval), {torch.sigmoid(logits['train']).mean():.3f} (train)")
    net = fid.Inception(device)
    real = fid.real_features(list_images(Path(args.data) / "face" / "test"), net)
    feats = net.features(images)
    n = args.n
    print(f"no selection (the first {n}): FID {fid.frechet_distance(feats[:n], real):.2f}")
    for mode, logit in logits.items():
        for m in sorted({min(n * 5 // 4, args.pool), min(n * 3 // 2, args.pool), args.pool}):
            top = torch.topk(logit[:m], n).indices.numpy()
            print(f"{mode}: the top {n} of {m}: FID {fid.frechet_distance(feats[top], real):.2f}")
        rng = torch.Generator().manual_seed(args.seed + 1)
        drawn = torch.multinomial(torch.softmax(logit, 0), n, replacement=False, generator=rng).numpy()
        print(f"{mode}: {n} of {args.pool} drawn with weights exp(logit): "
              f"FID {fid.frechet_distance(feats[drawn], real):.2f}")
        bottom = torch.topk(-logit, n).indices.numpy()
        print(f"{mode}: the bottom {n} of {args.pool}: FID {fid.frechet_distance(feats[bottom], real):.2f}")


if __name__ == "__main__":
    main()
