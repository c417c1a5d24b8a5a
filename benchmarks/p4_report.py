"""Print P4 ablation rows from the run folders of benchmarks/p4_ablation.sh: per stage, the target dev-test
accuracy of the checkpoint the im-score picked, as mean +- std over a run and its seed copies (<name>_s1, _s2).

  python benchmarks/p4_report.py runs/exp p4_u2m_full p4_m2u_full p4_mn2m_st_tex
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def stage_accuracies(run: Path) -> dict[str, float]:
    """Target dev-test accuracy of the best-im evaluation of each stage, from metrics.jsonl and config.json."""
    cfg = json.loads((run / "config.json").read_text())
    p, a = cfg["pretrain_steps"], cfg["adapt_steps"]
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "im" in r]
    if not evals:  # started, not yet evaluated
        return {}
    stage = lambda s: "source-only" if s == p else "+ alignment" if s <= p + a else "+ self-training"  # noqa: E731
    best: dict[str, dict] = {}
    for r in evals:  # stage of the steps that led to the evaluation, as train() records it
        k = stage(r["step"])
        if r["im"] > best.get(k, {"im": -float("inf")})["im"]:
            best[k] = r
    out = {k: best[k]["target_test_acc"] for k in best}
    out["chosen"] = max(evals, key=lambda r: r["im"])["target_test_acc"]  # what best.pt holds
    return out


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: python benchmarks/p4_report.py OUT_DIR RUN [RUN ...]")
    root = Path(sys.argv[1])
    cols = ["source-only", "+ alignment", "+ self-training", "chosen"]
    print("| run (seeds) | " + " | ".join(cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    for name in sys.argv[2:]:
        runs = [r for r in (root / name, root / f"{name}_s1", root / f"{name}_s2") if (r / "metrics.jsonl").is_file()]
        if not runs:
            print(f"| `{name}` | not run |")
            continue
        accs = [stage_accuracies(r) for r in runs]
        unfinished = [r.name for r in runs if not (r / "metrics.json").is_file()]  # stopped or still running
        note = f", unfinished: {', '.join(unfinished)}" if unfinished else ""
        cells = [fmt([a[c] for a in accs if c in a]) for c in cols]
        print(f"| `{name}` ({len(runs)}{note}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
