"""Time to quality of GAN runs: dev FID against images seen and training hours, from the snapshots a run kept.

  python benchmarks/gan_curve.py runs/p1_x50 runs/p1_x80 [--n 1000]

Each run folder holds snap/step_<S>.pt (copies of last.pt taken at step S) and, once evaluated,
snap/fid_<S>_n<N>.json written by `python p1_dcgan.py eval --ckpt RUN/snap/step_<S>.pt --data hw3_data --n N
--no-floor --json RUN/snap/fid_<S>_n<N>.json`. Training hours are summed from metrics.jsonl (each logged line's
images over its images/s), so they are the hours of the machine the run had, busy or not.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def hours_to(run: Path, step: int) -> float:
    """Training time up to `step`: the logged window of every line (its steps x batch / its images/s)."""
    config = json.loads((run / "config.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    seconds, last = 0.0, 0
    for row in rows:
        if row["step"] > step or "img_per_s" not in row:
            continue
        seconds += (row["step"] - last) * config["batch"] / row["img_per_s"]
        last = row["step"]
    return seconds / 3600


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--n", type=int, default=1000, help="generated faces of the FIDs to list (default 1000)")
    args = p.parse_args()
    print("| run | extra share | step | images seen | training hours (its machine) | FID, N vs the 1,000 dev faces |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        config = json.loads((run / "config.json").read_text())
        for path in sorted((run / "snap").glob(f"fid_*_n{args.n}.json"), key=lambda f: int(f.name.split("_")[1])):
            step = int(re.match(r"fid_(\d+)_n", path.name).group(1))
            fid = json.loads(path.read_text())["fid"]
            print(f"| {run.name} | {config.get('extra_share', 0.0)} | {step:,} | {step * config['batch']:,} | "
                  f"{hours_to(run, step):.2f} | {fid} (N={args.n}) |")


if __name__ == "__main__":
    main()
