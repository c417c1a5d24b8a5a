"""Print the P3 table (the report's layout) from the run folders that benchmarks/p3_table.sh wrote.

  python benchmarks/p3_report.py runs/p3
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PAIRS = {"u2m": "USPS -> MNIST-M", "m2u": "MNIST-M -> USPS", "mn2m_st": "MNIST -> MNIST-M (--source-test)"}
ROWS = [("Trained on source (report settings)", "base_source"), ("DANN (report settings)", "base_dann"),
        ("Trained on source (improved inputs)", "imp_source"),
        ("DANN + input norm", "abl_norm_dann"), ("DANN + input norm + augment", "abl_normaug_dann"),
        ("DANN (improved: + zoom, per-domain BN + AdaBN)", "imp_dann"),
        ("Trained on target (improved inputs)", "imp_target")]


def cell(run: Path) -> str:
    f = run / "metrics.json"
    if not f.is_file():
        return "not run"
    m = json.loads(f.read_text())
    return f"{m['target_test_acc']:.4f} (step {m['best_step']}/{m['steps']})"


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/p3")
    print("| target dev-test accuracy | " + " | ".join(PAIRS.values()) + " |")
    print("|---|" + "---|" * len(PAIRS))
    for title, prefix in ROWS:
        print(f"| {title} | " + " | ".join(cell(root / f"{prefix}_{k}") for k in PAIRS) + " |")


if __name__ == "__main__":
    main()
