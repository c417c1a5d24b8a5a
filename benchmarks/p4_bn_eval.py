"""Which weights and BatchNorm statistics should a finished P4 run predict with? The student's running statistics
are gathered on its augmented (strong) views, the images it is scored on are clean. For each run: the dev-test
accuracy of the chosen checkpoint (best.pt) and of the last step's student and EMA teacher (last.pt), each as
stored and with its BatchNorm statistics re-estimated on clean unlabelled target train images (AdaBN; no labels).

  python benchmarks/p4_bn_eval.py --data hw3_data runs/exp/p4_mn2m_strong_lrs3_st12k_tex025 ...
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from datasets import ImageSet, load_digits  # noqa: E402
from hw3 import (
    checkpoints,  # noqa: E402
    evaluation,  # noqa: E402
)
from hw3.adda import make_encoder  # noqa: E402
from p4_adda import load_encoders  # noqa: E402

CPU = torch.device("cpu")


def scores(encoder: torch.nn.Module, classifier: torch.nn.Module, target_train: torch.Tensor,
           test: ImageSet) -> tuple[float, float]:
    """Dev-test accuracy with the stored BatchNorm statistics, and with statistics of the target train images."""
    classify = lambda x: classifier(encoder(x))  # noqa: E731
    stored = evaluation.accuracy(classify, test.images, test.labels, CPU)
    adabn = copy.deepcopy(encoder)
    evaluation.recompute_bn_stats(adabn, target_train, CPU)
    return stored, evaluation.accuracy(lambda x: classifier(adabn(x)), test.images, test.labels, CPU)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="P4 run folders (with best.pt and last.pt)")
    p.add_argument("--data", default="hw3_data")
    args = p.parse_args()
    missing = [str(Path(r) / f) for r in args.runs for f in ("best.pt", "last.pt") if not (Path(r) / f).is_file()]
    if missing:
        p.error(f"no such checkpoint: {', '.join(missing)}")
    rows, cache = [], {}
    for run in map(Path, args.runs):
        _, chosen, classifier, best = load_encoders(str(run / "best.pt"), CPU)
        _, student, _, last = load_encoders(str(run / "last.pt"), CPU)  # the classifier is frozen after stage 1
        teacher = make_encoder(last["config"])
        checkpoints.load_state(teacher, last["models"]["teacher"], "teacher")
        target = best["config"]["target"]
        if target not in cache:
            cache[target] = (load_digits(args.data, target, "train").images, load_digits(args.data, target, "test"))
        target_train, test = cache[target]
        row = {name: scores(encoder, classifier, target_train, test) for name, encoder in
               (("chosen", chosen), ("last student", student), ("last teacher", teacher.float().eval()))}
        rows.append(row)
        print(f"{run.name} (chosen step {best['step']}, last {last['step']}): " + "; ".join(
            f"{k} {a:.4f} -> {b:.4f}" for k, (a, b) in row.items()), flush=True)
    if len(rows) > 1:
        print("mean over runs (stored -> AdaBN): " + "; ".join(
            f"{k} {np.mean([r[k][0] for r in rows]):.4f} -> {np.mean([r[k][1] for r in rows]):.4f}" for k in rows[0]))


if __name__ == "__main__":
    main()
