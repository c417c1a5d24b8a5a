"""Single-seed probes side by side: each run's target dev-test accuracy and im-score at the given steps (its last
evaluation at or before each), from the run folders' metrics.jsonl.

  python benchmarks/p4_curves.py runs/exp p4_m2u_one16k p4_m2u_al0_s0 --steps 2000 2500 3000 3250
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from p4_race import at_step  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root")
    p.add_argument("runs", nargs="+")
    p.add_argument("--steps", type=int, nargs="+", default=[2000, 2500, 3000, 3250])
    args = p.parse_args()
    print("| run | " + " | ".join(f"step {s}: acc (im)" for s in args.steps) + " |")
    print("| --- |" + " --- |" * len(args.steps))
    for name in args.runs:
        cells = []
        for step in args.steps:
            row = at_step(Path(args.root) / name, step)
            cells.append("-" if row is None or row["step"] != step else
                         f"{row['target_test_acc']:.3f} ({row['im']:.3f})")
        print(f"| `{name}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
