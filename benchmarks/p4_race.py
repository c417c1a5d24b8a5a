"""The P4 race of `--starts K --race-steps N` replayed from plain run folders: runs <name>, <name>_s1 ... (seed s),
grouped K at a time (race seed r holds seeds K*r ... K*r+K-1); per start its im-score and target dev-test accuracy at
step N, the winner (highest im at N, no target labels), and the winner's chosen accuracy if it has run to the end.

  python benchmarks/p4_race.py runs/exp p4_m2u_one16k p4_u2m_one16k --starts 3 --race-steps 3000
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hw3.checkpoints import read_metrics  # noqa: E402


def at_step(run: Path, step: int) -> dict | None:
    """The run's last evaluation at or before `step` (im-score and target accuracy), or None."""
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "im" in r and r["step"] <= step]
    return rows[-1] if rows else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root")
    p.add_argument("names", nargs="+")
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--race-steps", type=int, default=3000)
    p.add_argument("--races", type=int, default=3)
    args = p.parse_args()
    for name in args.names:
        print(f"\n{name}: im-score / dev accuracy at step {args.race_steps}; winner's chosen accuracy at the end")
        print("| race seed | starts (seed: im / acc) | winner | winner's chosen acc |")
        print("| --- | --- | --- | --- |")
        finals = []
        for race in range(args.races):
            seeds = range(race * args.starts, (race + 1) * args.starts)
            runs = {s: run_folder(args.root, name, s) for s in seeds}
            rows = {s: at_step(r, args.race_steps) for s, r in runs.items()}
            if any(r is None or r["step"] < args.race_steps for r in rows.values()):
                print(f"| {race} | not all starts at step {args.race_steps} yet | | |")
                continue
            winner = max(rows, key=lambda s: rows[s]["im"])
            cells = ", ".join(f"{s}: {rows[s]['im']:.3f} / {rows[s]['target_test_acc']:.3f}" for s in seeds)
            done = runs[winner] / "metrics.json"
            final = json.loads(done.read_text())["target_test_acc"] if done.is_file() else None
            if final is not None:
                finals.append(final)
            print(f"| {race} | {cells} | {winner} | {f'{final:.4f}' if final is not None else 'not finished'} |")
        if len(finals) > 1:
            print(f"mean +- std of the finished races: {statistics.mean(finals):.3f} +- {statistics.stdev(finals):.3f}")


def run_folder(root: str, name: str, seed: int) -> Path:
    """benchmarks/p4_ablation.sh's folder of seed `seed`: <name>, <name>_s1, ..."""
    return Path(root) / (name if seed == 0 else f"{name}_s{seed}")


if __name__ == "__main__":
    main()
