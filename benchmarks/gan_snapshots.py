"""Keep and score snapshots of running GAN trainings: the points of a time-to-quality curve (gan_curve.py).

  python benchmarks/gan_snapshots.py runs/p1_x50 runs/p1_x0 --data hw3_data

Beside the training processes (stop it with Ctrl-C): when a run's metrics.jsonl passes a step of --at, its last.pt
(written at that step: --at must be multiples of the run's --ckpt-every) is copied to RUN/snap/step_S.pt before the
next checkpoint replaces it. Each snapshot is then scored once by `python p1_dcgan.py eval --ckpt RUN/snap/step_S.pt
--data DATA --n N --no-floor --json RUN/snap/fid_S_nN.json`: N = 1,000 at every step, also 2,000 at --at-2000
(--keep-only: none is scored, leaving the cores to the training; a later watcher without it scores them).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
AT = ",".join(map(str, [2000, 3000, 4000, 5000, 6000, *range(10000, 90000, 5000)]))
AT_2000 = "10000,20000,35000,50000,60000,70000,80000"


def logged_step(run: Path) -> int:
    """The step of metrics.jsonl's last line (read from the file's end: the log grows all run long)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        lines = f.read().decode().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


def keep(run: Path, at: list[int], ckpt_every: int) -> None:
    """Copy last.pt to snap/step_S.pt for a step S of `at` it holds now (the copy's own step is checked)."""
    step = logged_step(run)
    for s in at:
        target = run / "snap" / f"step_{s}.pt"
        if s < step <= s + ckpt_every // 2 and not target.exists():
            target.parent.mkdir(exist_ok=True)
            shutil.copy(run / "last.pt", target.with_suffix(".tmp"))
            if torch.load(target.with_suffix(".tmp"), weights_only=True, map_location="cpu")["step"] != s:
                target.with_suffix(".tmp").unlink()  # a later checkpoint came first
                continue
            target.with_suffix(".tmp").replace(target)
            print(f"{time.strftime('%H:%M:%S')} {target} (logged step {step})", flush=True)


def next_eval(run: Path, data: str, at_2000: list[int]) -> tuple[list[str], Path] | None:
    """The eval command of the first snapshot without its FID yet, and the JSON it writes (None: all scored)."""
    kind = json.loads((run / "config.json").read_text())["kind"]
    for snap in sorted((run / "snap").glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        s = int(snap.stem.split("_")[1])
        for n in (1000, 2000) if s in at_2000 else (1000,):
            out = run / "snap" / f"fid_{s}_n{n}.json"
            if not out.exists():
                return [sys.executable, str(ROOT / f"{kind}.py"), "eval", "--ckpt", str(snap), "--data", data, "--n",
                        str(n), "--no-floor", "--json", str(out)], out
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--data", default="hw3_data")
    p.add_argument("--at", default=AT, help=f"steps to keep (default {AT})")
    p.add_argument("--at-2000", default=AT_2000, help=f"steps also scored with 2,000 faces (default {AT_2000})")
    p.add_argument("--poll", type=float, default=20, help="seconds between looks")
    p.add_argument("--keep-only", action="store_true", help="keep snapshots, score none (a later run without it does)")
    args = p.parse_args()
    at, at_2000 = ([int(s) for s in v.split(",")] for v in (args.at, args.at_2000))
    running, failed = None, set()  # one eval at a time, on one thread, while snapshots keep being taken
    while True:
        for run in (r for r in args.runs if (r / "config.json").is_file()):  # a run that has started
            keep(run, at, json.loads((run / "config.json").read_text())["ckpt_every"])
        if running is not None and running[0].poll() is not None:
            proc, out = running
            print(f"{time.strftime('%H:%M:%S')} {out}: "
                  f"{json.loads(out.read_text())['fid'] if out.exists() else 'failed'}", flush=True)
            if not out.exists():
                failed.add(out)
            running = None
        if running is None and not args.keep_only:
            todo = [job for run in args.runs if (run / "snap").is_dir() and
                    (job := next_eval(run, args.data, at_2000)) and job[1] not in failed]
            if todo:
                command, out = todo[0]
                with (out.parent / "eval.log").open("a") as log:  # its progress bars and errors
                    running = (subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                                stdout=log, stderr=subprocess.STDOUT), out)
        time.sleep(args.poll)

if __name__ == "__main__":
    main()
