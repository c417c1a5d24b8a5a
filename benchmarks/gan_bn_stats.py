"""FID of a GAN generator under each choice of BatchNorm statistics: the live generator's (copied at every EMA
update; a run's last.pt only), re-estimated for the averaged weights on noise of standard deviation 1
(`gan.recalibrate_batchnorm`, what `load_generator` and `export` do), and, when it samples truncated noise (PSI < 1),
re-estimated on that noise, the faces it draws.

  python benchmarks/gan_bn_stats.py --ckpt runs/p1/last.pt --data hw3_data --n 2000
  python benchmarks/gan_bn_stats.py --ckpt checkpoints/p1_dcgan.pt --data hw3_data --n 2000 --seeds 1 2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import models  # noqa: E402
import p1_dcgan  # noqa: E402
import p2_acgan  # noqa: E402
from datasets import list_images  # noqa: E402
from hw3 import (
    fid,  # noqa: E402
    gan,  # noqa: E402
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a run's last.pt (with G_ema) or an export")
    p.add_argument("--data", default="hw3_data")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="noise draws, one FID each")
    p.add_argument("--truncation", type=float, help="PSI to sample at (default: the checkpoint's own, else 1)")
    args = p.parse_args()
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    spec = {p1_dcgan.KIND: p1_dcgan.SPEC, p2_acgan.KIND: p2_acgan.SPEC}[ck["config"]["kind"]]
    device = torch.device("cpu")
    real = list_images(Path(args.data) / "face" / "test")
    choices = ["live"] if "G_ema" in ck["models"] else []
    for stats in [*choices, "recalibrated", "recalibrated on the truncated noise"]:
        G, ck = gan.load_generator(args.ckpt, spec, device)  # re-estimates the statistics of a run's average
        sampler = models.truncate(G, ck, args.truncation)
        if stats == "live":
            G.load_state_dict(ck["models"]["G_ema"])  # back to the statistics copied from the live generator
        elif stats != "recalibrated":
            if sampler.psi == 1:
                break
            gan.recalibrate_batchnorm(sampler, spec, device)  # the statistics of G(PSI z)
        for seed in args.seeds:
            fake, _ = gan.generate_n(sampler, spec, args.n, seed, device)
            print(f"{spec.kind} step {ck['step']} PSI {sampler.psi} BatchNorm statistics {stats}, draw {seed}: FID "
                  f"{fid.fid_metrics(fake, real, device)['fid']} ({args.n} generated vs {len(real)} real)", flush=True)


if __name__ == "__main__":
    main()
