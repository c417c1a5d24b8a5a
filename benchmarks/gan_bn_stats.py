"""FID of a GAN run's EMA generator with two choices of BatchNorm statistics: the live generator's (copied at
every EMA update) or re-estimated for the averaged weights (`gan.recalibrate_batchnorm`, what `load_generator`
and `export` do).

  python benchmarks/gan_bn_stats.py --ckpt runs/p1/last.pt --data hw3_data --n 2000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fid  # noqa: E402
import gan  # noqa: E402
import p1_dcgan  # noqa: E402
import p2_acgan  # noqa: E402
from course_files import list_images  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a run's last.pt (with G_ema)")
    p.add_argument("--data", default="hw3_data")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    kind = torch.load(args.ckpt, map_location="cpu", weights_only=True)["config"]["kind"]
    spec = {p1_dcgan.KIND: p1_dcgan.SPEC, p2_acgan.KIND: p2_acgan.SPEC}[kind]
    device = torch.device("cpu")
    real = list_images(Path(args.data) / "face" / "test")
    for stats in ("live", "recalibrated"):
        G, ck = gan.load_generator(args.ckpt, spec, device)  # re-estimates the statistics of a run's average
        if stats == "live":
            G.load_state_dict(ck["models"]["G_ema"])  # back to the statistics copied from the live generator
        fake, _ = gan.generate_n(G, spec, args.n, args.seed, device)
        print(f"{kind} step {ck['step']} BatchNorm statistics {stats}: FID {fid.fid_metrics(fake, real, device)['fid']}"
              f" ({args.n} generated vs {len(real)} real)", flush=True)


if __name__ == "__main__":
    main()
