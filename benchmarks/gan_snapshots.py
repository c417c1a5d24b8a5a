"""Keep and score snapshots of running GAN trainings: the points of a time-to-quality curve (gan_curve.py).

  python benchmarks/gan_snapshots.py runs/p1_x50 runs/p1_x0 --data hw3_data

Beside the training processes (stop it with Ctrl-C): when a run's metrics.jsonl passes a step of --at, its last.pt
(written at that step: --at must be multiples of the run's --ckpt-every) is copied to RUN/snap/step_S.pt before the
next checkpoint replaces it. Each snapshot is then scored once by `python p1_dcgan.py eval --ckpt RUN/snap/step_S.pt
--data DATA --n N --no-floor --json RUN/snap/fid_S_nN.json`: N = 1,000 at every step, also 2,000 at --at-2000
(--keep-only: none is scored, leaving the cores to the training; a later watcher without it scores them).

--score-paused STEPS: once every run named has kept its snapshot at such a step, the watcher pauses their training
processes (SIGSTOP to each `... train ... --run-dir RUN` it finds in /proc, Linux only), scores those snapshots side by
side with 1,000 faces, the cores shared among them, and lets the trainings go on (SIGCONT): neither slows the other.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
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
    """Copy last.pt to snap/step_S.pt for a step S of `at` it holds now (the copy's own step is checked), the
    last step of a finished run included."""
    step = logged_step(run)
    for s in at:
        target = run / "snap" / f"step_{s}.pt"
        if s <= step <= s + ckpt_every // 2 and not target.exists():
            target.parent.mkdir(exist_ok=True)
            shutil.copy(run / "last.pt", target.with_suffix(".tmp"))
            if torch.load(target.with_suffix(".tmp"), weights_only=True, map_location="cpu")["step"] != s:
                target.with_suffix(".tmp").unlink()  # a later checkpoint came first
                continue
            target.with_suffix(".tmp").replace(target)
            print(f"{time.strftime('%H:%M:%S')} {target} (logged step {step})", flush=True)


def fid_json(run: Path, step: int, n: int) -> Path:
    """Where the FID of RUN's snapshot at `step` with N generated faces is written."""
    return run / "snap" / f"fid_{step}_n{n}.json"


def eval_command(run: Path, step: int, n: int, data: str) -> tuple[list[str], Path]:
    """The eval command of RUN's snapshot at `step` with N generated faces, and the JSON it writes."""
    kind = json.loads((run / "config.json").read_text())["kind"]
    out = fid_json(run, step, n)
    return [sys.executable, str(ROOT / f"{kind}.py"), "eval", "--ckpt", str(run / "snap" / f"step_{step}.pt"), "--data",
            data, "--n", str(n), "--no-floor", "--json", str(out)], out


def next_eval(run: Path, data: str, at_2000: list[int]) -> tuple[list[str], Path] | None:
    """The eval command of the first snapshot without its FID yet, and the JSON it writes (None: all scored)."""
    for snap in sorted((run / "snap").glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        s = int(snap.stem.split("_")[1])
        for n in (1000, 2000) if s in at_2000 else (1000,):
            if not fid_json(run, s, n).exists():
                return eval_command(run, s, n, data)
    return None


def start_eval(command: list[str], out: Path, threads: int = 1) -> subprocess.Popen:
    """Run an eval on `threads` threads, its progress bars and errors appended to the snapshot folder's eval.log."""
    with (out.parent / "eval.log").open("a") as log:
        return subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, stdout=log,
                                stderr=subprocess.STDOUT)


def report(out: Path) -> None:
    print(f"{time.strftime('%H:%M:%S')} {out}: {json.loads(out.read_text())['fid'] if out.exists() else 'failed'}",
          flush=True)


def training_pids(run: Path) -> list[int]:
    """The processes training RUN: a command line with `train` and `--run-dir RUN` (read from /proc, the run folder
    resolved from each process's own working directory)."""
    pids, target = [], run.resolve()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
            cwd = (proc / "cwd").resolve(strict=True)
        except OSError:  # ended meanwhile, or not ours to read
            continue
        dirs = [b for a, b in zip(argv, argv[1:]) if a == "--run-dir"] + [
            a.split("=", 1)[1] for a in argv if a.startswith("--run-dir=")]
        if "train" in argv and any((cwd / d).resolve() == target for d in dirs):
            pids.append(int(proc.name))
    return pids


@contextlib.contextmanager
def paused(pids: list[int]):
    """SIGSTOP the processes for the block and SIGCONT them after it, also after an error or Ctrl-C."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def score_paused(runs: list[Path], step: int, data: str) -> None:
    """Score every run's snapshot at `step` (1,000 faces) side by side, all their trainings paused meanwhile."""
    jobs = [eval_command(run, step, 1000, data) for run in runs if not fid_json(run, step, 1000).exists()]
    if not jobs:
        return
    pids = [pid for run in runs for pid in training_pids(run)]
    print(f"{time.strftime('%H:%M:%S')} step {step}: pausing {pids}", flush=True)
    with paused(pids):
        threads = max(1, (os.cpu_count() or 1) // len(jobs))  # the cores the paused trainings leave
        jobs = [(start_eval(*job, threads), job[1]) for job in jobs]
        for proc, out in jobs:
            proc.wait()
            report(out)
    print(f"{time.strftime('%H:%M:%S')} step {step}: resumed {pids}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--data", default="hw3_data")
    p.add_argument("--at", default=AT, help=f"steps to keep (default {AT})")
    p.add_argument("--at-2000", default=AT_2000, help=f"steps also scored with 2,000 faces (default {AT_2000})")
    p.add_argument("--poll", type=float, default=20, help="seconds between looks")
    p.add_argument("--keep-only", action="store_true", help="keep snapshots, score none (a later run without it does)")
    p.add_argument("--score-paused", default="", metavar="STEPS",
                   help="steps (of --at) scored once every run has kept them, the trainings paused (module docstring)")
    args = p.parse_args()
    at, at_2000, at_paused = ([int(s) for s in v.split(",") if s] for v in (args.at, args.at_2000, args.score_paused))
    if not set(at_paused) <= set(at):
        sys.exit(f"error: --score-paused {sorted(set(at_paused) - set(at))} not among --at: no snapshot is kept there")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `kill` too lets paused trainings go on (`paused`)
    running, failed = None, set()  # one eval at a time, on one thread, while snapshots keep being taken
    while True:
        started = [r for r in args.runs if (r / "config.json").is_file()]
        for run in started:
            keep(run, at, json.loads((run / "config.json").read_text())["ckpt_every"])
        for step in list(at_paused):  # each once: a failed eval is in its eval.log, not tried again
            if all((run / "snap" / f"step_{step}.pt").exists() for run in args.runs):
                score_paused(args.runs, step, args.data)
                at_paused.remove(step)
        if running is not None and running[0].poll() is not None:
            report(running[1])
            if not running[1].exists():
                failed.add(running[1])
            running = None
        if running is None and not args.keep_only:
            todo = [job for run in started if (run / "snap").is_dir() and
                    (job := next_eval(run, args.data, at_2000)) and job[1] not in failed]
            if todo:
                running = (start_eval(*todo[0]), todo[0][1])
        time.sleep(args.poll)


if __name__ == "__main__":
    main()
