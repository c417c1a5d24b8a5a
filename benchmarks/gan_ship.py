"""Judge GAN runs by their shipping rule and ship the best if every one passes: the procedure of docs/experiments.md,
one command.

  python benchmarks/gan_ship.py p1_dcgan runs/p1_r1_s1 runs/p1_r1_s2 --below 41.65
  python benchmarks/gan_ship.py p2_acgan runs/p2 --below 44.77

Exports each RUN/last.pt to RUN/export/KIND.pt (--truncation 0.9; P1 also --with-d, for the ACGAN's warm start),
scores it with noise seeds 1 and 2 (`eval --n 2000 --seed S --json RUN/ship_sS.json`: 2,000 generated vs the 1,000
dev faces) and passes it if the mean FID is below --below; the ACGAN must also find its attribute on >= 0.98 of the
faces, flip it on >= 0.97, and score at most the shipped DCGAN's mean + 4. Runs given together are seeds of one
recipe: it ships only if every one passes, and then the run with the lowest mean. Seeds judged one at a time keep that
rule: a run that passes replaces checkpoints/KIND.pt only if its mean is also below the shipped model's (its JSON's).
A ship copies the scored files over checkpoints/KIND.pt and .json and completes the JSON (gan_record.py); commit it at
once: a run folder is lost with its machine. A new P1 leaves the shipped ACGAN (warm-started from the P1 it
replaces) behind: the script says so, with the command that retrains it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hw3.shipped import shipped_fid  # noqa: E402

SEEDS = (1, 2)
ACGAN_BARS = {"attr_acc": 0.98, "flip_rate": 0.97}  # #39's bars on the attribute
ACGAN_OVER_DCGAN = 4.0  # the ACGAN's mean FID may trail the shipped DCGAN's by at most this


def shipped_mean(kind: str) -> float:
    """The mean dev FID that checkpoints/KIND.json records."""
    return shipped_fid(json.loads((ROOT / "checkpoints" / f"{kind}.json").read_text()))


def verdict(kind: str, evals: list[dict], below: float, dcgan_fid: float | None = None) -> list[str]:
    """The bars a run misses (empty: it ships), each as one line."""
    mean = statistics.mean(e["fid"] for e in evals)
    misses = [] if mean < below else [f"mean FID {mean:.3f} is not below {below}"]
    if kind == "p2_acgan":
        for key, bar in ACGAN_BARS.items():
            misses += [f"{key} {e[key]} < {bar} (seed {e.get('seed')})" for e in evals if e[key] < bar]
        if dcgan_fid is not None and mean > dcgan_fid + ACGAN_OVER_DCGAN:
            misses.append(f"mean FID {mean:.3f} trails the shipped DCGAN's {dcgan_fid} by more than {ACGAN_OVER_DCGAN}")
    return misses


def every_run_passes(judged: dict[Path, tuple[float, list[str]]]) -> bool:
    """Whether {run: (mean FID, missed bars)} holds runs and none missed a bar."""
    return bool(judged) and not any(misses for _, misses in judged.values())


def choose(judged: dict[Path, tuple[float, list[str]]], shipped: float = math.inf) -> Path | None:
    """The run to ship from {run: (mean FID, missed bars)}: the lowest mean if no run missed a bar and that mean is
    below the shipped model's, else None."""
    if not every_run_passes(judged):
        return None
    best = min(judged, key=lambda r: judged[r][0])
    return best if judged[best][0] < shipped else None


def acgan_is_stale(ckpt_dir: Path) -> bool:
    """Whether the shipped ACGAN was warm-started from another P1 export than the shipped one (its command would now
    train something else: retrain it)."""
    p1, p2 = ckpt_dir / "p1_dcgan.pt", ckpt_dir / "p2_acgan.json"
    init = json.loads(p2.read_text())["config"].get("init_from") if p2.is_file() else None
    return bool(init) and p1.is_file() and init["sha256"] != hashlib.sha256(p1.read_bytes()).hexdigest()


def run(*words: str) -> None:
    print("+", " ".join(words), flush=True)
    subprocess.run([sys.executable, *words], cwd=ROOT, check=True)


def export_of(kind: str, run_dir: Path) -> Path:
    """Where a run's export for shipping is written."""
    return run_dir / "export" / f"{kind}.pt"


def evals_of(run_dir: Path) -> list[Path]:
    """The eval JSONs of a run's export, one per noise seed."""
    return [run_dir / f"ship_s{seed}.json" for seed in SEEDS]


def judge(args: argparse.Namespace, run_dir: Path, dcgan_fid: float | None) -> tuple[float, list[str]]:
    """Export and score one run: its mean FID and the bars it misses."""
    export = export_of(args.kind, run_dir)
    with_d = ["--with-d"] if args.kind == "p1_dcgan" else []
    run(f"{args.kind}.py", "export", "--ckpt", str(run_dir / "last.pt"), "--out", str(export),
        "--truncation", args.truncation, *with_d, "--force")
    for seed, out in zip(SEEDS, evals_of(run_dir)):
        run(f"{args.kind}.py", "eval", "--ckpt", str(export), "--data", args.data, "--n", args.n, "--seed", str(seed),
            "--json", str(out))
    evals = [json.loads(path.read_text()) for path in evals_of(run_dir)]
    print(f"{run_dir.name}: FID by seed", ", ".join(f"{e['fid']:.3f}" for e in evals))
    return statistics.mean(e["fid"] for e in evals), verdict(args.kind, evals, args.below, dcgan_fid)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["p1_dcgan", "p2_acgan"])
    p.add_argument("runs", nargs="+", type=Path, help="run folders, seeds of one recipe (each one's last.pt is judged)")
    p.add_argument("--below", type=float, required=True, help="the mean dev FID to beat (the shipped model's)")
    p.add_argument("--data", default="hw3_data")
    p.add_argument("--truncation", default="0.9")
    p.add_argument("--n", default="2000", help="faces generated per seed (a dry run: fewer)")
    p.add_argument("--hardware", default="CPU, one process on a 2-core machine (two threads)")
    args = p.parse_args()
    run_dirs = [r.resolve() for r in args.runs]
    for run_dir in run_dirs:
        if not (run_dir / "last.pt").is_file():
            raise SystemExit(f"error: {run_dir / 'last.pt'} not found")
    dcgan_fid = shipped_mean("p1_dcgan") if args.kind == "p2_acgan" else None
    judged = {run_dir: judge(args, run_dir, dcgan_fid) for run_dir in run_dirs}
    for run_dir, (mean, misses) in judged.items():
        print(f"{run_dir.name}: mean {mean:.3f}; " + ("passes" if not misses else "MISSES: " + "; ".join(misses)))
    shipped = shipped_mean(args.kind)
    best = choose(judged, shipped)
    if best is None:
        print((f"every run passes, but checkpoints/{args.kind}.pt has the lower mean, {shipped:.3f}"
               if every_run_passes(judged)
               else "MISSES: not every run passes") + " (checkpoints/ unchanged)")
        return
    for suffix in (".pt", ".json"):
        shutil.copyfile(export_of(args.kind, best).with_suffix(suffix), ROOT / "checkpoints" / f"{args.kind}{suffix}")
    run("benchmarks/gan_record.py", f"checkpoints/{args.kind}.pt", "--run", str(best), "--eval",
        *map(str, evals_of(best)), "--hardware", args.hardware)
    print(f"SHIPS: checkpoints/{args.kind}.pt from {best.name}; commit it now, then `bash hw3_p1p2.sh docs` for the "
          "figures")
    if acgan_is_stale(ROOT / "checkpoints"):
        print("the shipped ACGAN started from the P1 export this replaces: retrain it from the new one (`python "
              "p2_acgan.py train --data hw3_data --run-dir runs/p2 --precision bf16`, then this script on runs/p2)")


if __name__ == "__main__":
    main()
