"""The one GPU check: run it whenever a CUDA machine is lent, and paste its table into benchmarks/RESULTS.md.

  python benchmarks/gpu_check.py --data hw3_data --out runs/gpu_check             # on the GPU machine
  python benchmarks/gpu_check.py --short --out runs/gpu_check_short               # CPU smoke test (the tests run it)

Training and resuming run on synthetic data made on the spot (speed does not depend on the pictures); the wrappers
and the FID read --data, which needs only digits/{mnistm,usps}/test/ + test.csv and face/{test,train}/ (about 20 MB:
small enough to carry to a lent machine).

What it checks, each step as its own command line (so the scripts run as users run them):
1. a few hundred training steps of every model on CUDA (bf16 autocast, the default there), images/s of each;
2. --resume across devices both ways: a P3 run started on the GPU goes on on the CPU, a P1 run the other way;
3. the graded wrappers on CUDA against the CPU: P3 / P4 labels on the dev test splits (how many differ), and the
   two GAN figures (largest pixel difference);
4. FID of the shipped DCGAN computed on the CPU against CUDA.
The CPU side hides the GPU with CUDA_VISIBLE_DEVICES="". --short: both sides on the CPU, synthetic data, a few steps:
it only shows that every step of the check runs.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GPU, CPU = dict(os.environ), {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def run(args: list[str], env: dict, what: str) -> float:
    """Run one command from the repository root; stop the check with its output if it fails. Returns seconds."""
    t0 = time.time()
    r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"gpu_check: {what} failed ({' '.join(args)}):\n{r.stderr[-3000:]}")
    return time.time() - t0


def images_per_s(run_dir: Path) -> float | None:
    """The median of the logged training speeds (the first line, with the warm-up, left out; None if none)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [r["img_per_s"] for r in rows if "img_per_s" in r]
    return round(statistics.median(speeds[1:] or speeds), 1) if speeds else None


def labels(path: Path) -> dict[str, str]:
    with open(path, newline="") as f:
        return {row["image_name"]: row["label"] for row in csv.DictReader(f)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="hw3_data", help="the course layout for the wrappers and the FID (default "
                                                      "hw3_data; --short: the synthetic data)")
    p.add_argument("--out", default="runs/gpu_check", help="a new folder for the runs and the results")
    p.add_argument("--steps", type=int, default=300, help="training steps per model (default 300; --short: 4)")
    p.add_argument("--fid-n", type=int, default=1000, help="generated faces for the FID (default 1000; --short: 8)")
    p.add_argument("--short", action="store_true", help="CPU on both sides, synthetic data, a few steps")
    args = p.parse_args()
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        sys.exit(f"gpu_check: {out} is not empty; give a new --out")
    out.mkdir(parents=True, exist_ok=True)
    gpu = CPU if args.short else GPU
    py = [sys.executable]
    demo = out / "demo"
    sizes = ["--digits", "200", "60", "--faces", "64", "24"] if args.short else ["--faces", "512", "128"]
    run([*py, "-m", "hw3.synthetic", "demo", str(demo), *sizes], CPU, "synthetic data")
    data = demo if args.short else Path(args.data).resolve()
    if args.short:
        args.steps, args.fid_n = 4, 8
    s, results = args.steps, {"short": args.short, "steps": args.steps}
    p4_stages = ["--pretrain-steps", str(s // 3), "--adapt-steps", str(s // 3), "--selftrain-steps",
                 str(s - 2 * (s // 3)), "--starts", "1"]
    pair = ["--source", "usps", "--target", "mnistm"]
    trains = {
        "p1_dcgan": ["p1_dcgan.py", "train", "--steps", str(s), "--sample-every", str(s)],
        "p2_acgan": ["p2_acgan.py", "train", "--steps", str(s), "--sample-every", str(s)],
        "p3_dann": ["p3_dann.py", "train", *pair, "--steps", str(s)],
        "p4_adda": ["p4_adda.py", "train", *pair, *p4_stages],
    }
    speed = {}
    for name, cmd in trains.items():  # 1. every model trains on the GPU
        secs = run([*py, *cmd, "--data", str(demo), "--run-dir", str(out / name)], gpu, f"{name} training")
        speed[name] = {"images_per_s": images_per_s(out / name), "seconds": round(secs, 1)}
    results["training"] = speed
    moves = {}  # 2. resume across devices, both ways
    for name, first, then, way in (("p3_dann", gpu, CPU, "gpu -> cpu"), ("p1_dcgan", CPU, gpu, "cpu -> gpu")):
        run_dir = out / f"resume_{name}"
        cmd = [*py, *trains[name], "--data", str(demo), "--run-dir", str(run_dir)]
        run([*cmd, "--stop-at", str(s // 2)], first, f"{name} first half")
        run([*py, trains[name][0], "train", "--run-dir", str(run_dir), "--resume"], then, f"{name} resumed")
        moves[name] = way
    results["resume_across_devices"] = moves
    wrappers = {}  # 3. the graded wrappers, CUDA against CPU
    for problem in ("p3", "p4"):
        for target in ("mnistm", "usps"):
            images = data / "digits" / target / "test"
            got = {}
            for side, env in (("cpu", CPU), ("gpu", gpu)):
                csv_path = out / f"{problem}_{target}_{side}.csv"
                run(["bash", f"hw3_{problem}.sh", str(images), target, str(csv_path)], env, f"hw3_{problem}.sh")
                got[side] = labels(csv_path)
            differ = sum(got["cpu"][k] != got["gpu"][k] for k in got["cpu"])
            wrappers[f"{problem} {target}"] = {"images": len(got["cpu"]), "labels_differ": differ}
    for side, env in (("cpu", CPU), ("gpu", gpu)):
        run(["bash", "hw3_p1p2.sh", str(out / f"figs_{side}")], env, "hw3_p1p2.sh")
    for fig in ("fig1_2.jpg", "fig2_2.jpg"):
        a, b = (np.asarray(Image.open(out / f"figs_{side}" / fig), dtype=np.int16) for side in ("cpu", "gpu"))
        wrappers[fig] = {"max_pixel_difference": int(np.abs(a - b).max())}
    results["wrappers"] = wrappers
    fids = {}  # 4. FID on the CPU against CUDA
    for side, env in (("cpu", CPU), ("gpu", gpu)):
        run([*py, "p1_dcgan.py", "eval", "--ckpt", "checkpoints/p1_dcgan.pt", "--data", str(data), "--n",
             str(args.fid_n), "--no-floor", "--json", str(out / f"fid_{side}.json")], env, f"FID on {side}")
        fids[side] = json.loads((out / f"fid_{side}.json").read_text())["fid"]
    results["fid"] = fids | {"difference": round(abs(fids["cpu"] - fids["gpu"]), 4)}
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| check | result |\n|---|---|")
    for name, v in speed.items():
        print(f"| {name}, {s} steps on {'CPU (--short)' if args.short else 'CUDA'} | {v['images_per_s']} images/s |")
    for name, way in moves.items():
        print(f"| {name} --resume {way} | finished |")
    for name, v in wrappers.items():
        print(f"| {name} CPU vs GPU | " + ", ".join(f"{k.replace('_', ' ')} {x}" for k, x in v.items()) + " |")
    print(f"| FID of {args.fid_n} faces, CPU / GPU | {fids['cpu']} / {fids['gpu']} |")


if __name__ == "__main__":
    main()
