"""Print the P3 tables from the run folders that benchmarks/p3_table.sh writes (RUNS/<row>_<pair>_s<seed>).

  python benchmarks/p3_report.py runs/p3

Table 1: target dev-test accuracy of the checkpoint each run chose, mean +- std over the seeds found (n = seeds).
Table 2: the same runs, checkpoint chosen by source validation accuracy vs by the information-maximisation score
on unlabelled target train images, vs the best evaluation in hindsight (an oracle no method may use).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

PAIRS = {"u2m": "USPS -> MNIST-M", "m2u": "MNIST-M -> USPS", "mn2m": "MNIST -> MNIST-M"}


def runs_of(root: Path, row: str, pair: str) -> list[Path]:
    return sorted(p for p in root.glob(f"{row}_{pair}_s*") if (p / "metrics.json").is_file())


def evaluations(run: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return [r for r in rows if "target_test_acc" in r]


def mean_std(xs: list[float]) -> str:
    if not xs:
        return "not run"
    spread = f" +- {statistics.stdev(xs):.3f}" if len(xs) > 1 else ""
    return f"{statistics.mean(xs):.3f}{spread} (n={len(xs)})"


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/p3")
    rows = sorted({p.name.rsplit("_", 2)[0] for p in root.glob("*_s[0-9]*") if (p / "metrics.json").is_file()})
    print("| run (flags in benchmarks/p3_table.sh) | " + " | ".join(PAIRS.values()) + " |")
    print("|---|" + "---|" * len(PAIRS))
    for row in rows:
        cells = [mean_std([json.loads((r / "metrics.json").read_text())["target_test_acc"]
                           for r in runs_of(root, row, pair)]) for pair in PAIRS]
        print(f"| {row} | " + " | ".join(cells) + " |")
    print("\n| selection (DANN runs) | by source val acc | by IM score (default) | best in hindsight |")
    print("|---|---|---|---|")
    for row in (r for r in rows if not r.startswith("source")):  # every adaptation row
        for pair in PAIRS:
            picks = {"val": [], "im": [], "oracle": []}
            for run in runs_of(root, row, pair):
                ev = evaluations(run)
                picks["val"].append(max(ev, key=lambda r: r["val_acc"])["target_test_acc"])
                picks["im"].append(max(ev, key=lambda r: r["im"])["target_test_acc"])
                picks["oracle"].append(max(r["target_test_acc"] for r in ev))
            if picks["im"]:
                print(f"| {row} {pair} | " + " | ".join(mean_std(picks[k]) for k in ("val", "im", "oracle")) + " |")


if __name__ == "__main__":
    main()
