"""Print the GAN lever table from run folders: the run's flags beyond the defaults, steps, images/s (median of the
logged rates), and FID with its floor from each run's eval.json (written by `eval --json`).

  python benchmarks/gan_report.py runs lev_base lev_hinge lev_sn lev_r1 lev_ttur lev_xflip
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

# the recipe's values (runs recorded before an option existed had its first value: no mirroring, no extra faces;
# loss, r1, spectral_norm, lr_d are removed probes that older run folders record)
LEVERS = {"loss": "bce", "r1": 0.0, "spectral_norm": False, "lr": 2e-4, "lr_d": None, "betas": [0.5, 0.999],
          "batch": 64, "diffaug": "color,translation,cutout", "ema": 0.999, "xflip": True, "extra_share": 0.5,
          "seed": 0}
OLDER = {"xflip": False, "extra_share": 0.0}


def row(run: Path) -> str:
    cfg = json.loads((run / "config.json").read_text())
    cfg = {**OLDER, **cfg}
    flags = ", ".join(f"{k}={cfg.get(k, v)}" for k, v in LEVERS.items() if cfg.get(k, v) != v) or "the recipe"
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rate = statistics.median(r["img_per_s"] for r in logged if "img_per_s" in r)
    ev = run / "eval.json"
    fid = json.loads(ev.read_text()) if ev.is_file() else {}
    score = f"{fid['fid']:.1f} (floor {fid['fid_floor']:.1f})" if fid else "not evaluated"
    return f"| `{run.name}` | {flags} | {logged[-1]['step']} | {rate:.0f} | {score} |"


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: python benchmarks/gan_report.py RUNS_DIR RUN [RUN ...]")
    print("| run | levers (beyond the recipe) | steps | images/s | FID, 1,000 vs 1,000 dev faces |")
    print("| --- | --- | --- | --- | --- |")
    for name in sys.argv[2:]:
        run = Path(sys.argv[1]) / name
        print(row(run) if (run / "metrics.jsonl").is_file() else f"| `{name}` | not run | | | |")


if __name__ == "__main__":
    main()
