"""Does the information-maximisation score pick the right seed? For each P4 configuration with seed copies
(<name>, <name>_s1, <name>_s2) under a runs folder: each seed's im-score and target dev-test accuracy (from its
metrics.json), the accuracy of the seed the score would ship, and of the best seed.

  python benchmarks/p4_selection.py runs/exp
"""
from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path


def seed_groups(root: Path) -> dict[str, list[tuple[float, float]]]:
    """Configuration name -> [(im, target dev-test accuracy)] over its seeds, for finished P4 runs."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for path in sorted(root.glob("p4_*/metrics.json")):
        m = json.loads(path.read_text())
        if "im" in m and "target_test_acc" in m:
            name = re.sub(r"_s\d+$", "", path.parent.name)
            groups[name].append((m["im"], m["target_test_acc"]))
    return {k: v for k, v in groups.items() if len(v) > 1}


def main(root: str) -> None:
    groups = seed_groups(Path(root))
    if not groups:
        sys.exit(f"error: no P4 run with seed copies under {root}")
    print("| configuration | seeds: (im, accuracy) | shipped by im | best seed | gap |")
    print("|---|---|---|---|---|")
    gaps = []
    for name, seeds in sorted(groups.items()):
        picked = max(seeds, key=lambda s: s[0])[1]
        best = max(s[1] for s in seeds)
        gaps.append(best - picked)
        cells = ", ".join(f"({im:.3f}, {acc:.3f})" for im, acc in seeds)
        print(f"| {name} | {cells} | {picked:.3f} | {best:.3f} | {best - picked:.3f} |")
    hits = sum(g == 0 for g in gaps)
    print(f"\nim picks the best seed in {hits} of {len(gaps)} configurations; largest gap {max(gaps):.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/p4_selection.py RUNS_DIR")
    main(sys.argv[1])
