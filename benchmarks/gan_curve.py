"""Time to quality of GAN runs: dev FID against images seen and CPU core-hours, beside the shipped DCGAN's chain.

  python benchmarks/gan_curve.py runs/p1 [--keep] [--plot docs/p1_time_to_quality.png]

Each run folder holds snap/step_<S>.pt and snap/fid_<S>_n<N>.json (benchmarks/gan_snapshots.py keeps and scores
them: N generated faces against the 1,000 dev faces). A run's core-hours are summed from its metrics.jsonl (each
logged line's images over its images/s, times the threads it ran on), so they are the hours of the machine it had,
busy or not. The old recipe's points are in benchmarks/p1_chain.json (measured with N = 2,000); `--keep` copies the
given runs' points into benchmarks/p1_runs.json, drawn beside them from then on, so a curve outlives its run folder.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

CHAIN = Path(__file__).with_name("p1_chain.json")
KEPT = Path(__file__).with_name("p1_runs.json")  # {series name: rows}: the points of runs whose folders may be gone


def core_seconds(run: Path, batch: int, threads: int = 1) -> list[tuple[int, float]]:
    """(step, core-seconds of training up to it) for every metrics.jsonl line: the sum of each line's logged window
    (its steps x batch / its images/s) times the line's threads (lines written before the loop logged them:
    `threads`)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    elapsed, seconds, last = [], 0.0, 0
    for row in rows:
        if "img_per_s" in row:
            seconds += (row["step"] - last) * batch / row["img_per_s"] * row.get("threads", threads)
            last = row["step"]
            elapsed.append((last, seconds))
    return elapsed


def run_points(run: Path, batch: int, threads: int) -> list[dict]:
    """One row per scored snapshot: step, images seen, core-hours to it (`core_seconds`), FID at each N it was
    scored with."""
    elapsed = core_seconds(run, batch, threads)
    points: dict[int, dict] = {}
    for path in (run / "snap").glob("fid_*_n*.json"):
        step, n = map(int, re.match(r"fid_(\d+)_n(\d+)\.json", path.name).groups())
        hours = max((sec for s, sec in elapsed if s <= step), default=0.0) / 3600
        row = points.setdefault(step, {"step": step, "images": step * batch, "hours": hours})
        row[n] = json.loads(path.read_text())["fid"]
    return [points[s] for s in sorted(points)]


def chain_points() -> tuple[str, list[dict]]:
    """The shipped DCGAN's chain: its name (saying which points are truncated) and its FIDs (N = 2,000) with the
    core-hours up to each step."""
    chain = json.loads(CHAIN.read_text())
    psi = "".join(f"; {int(s):,} at noise std {v}" for s, v in chain.get("truncation", {}).items())
    out = []
    for step, fid in sorted((int(s), f) for s, f in chain["fid_2000"].items()):
        hours = 0.0
        for seg in chain["segments"]:
            a, b = seg["steps"]
            hours += seg["wall_h"] * seg["threads"] * max(0.0, min(1.0, (step - a) / (b - a)))
        out.append({"step": step, "images": step * chain["batch"], "hours": hours, 2000: fid})
    return f"shipped chain (face/train, warm restarts{psi})", out


def kept_series() -> dict[str, list[dict]]:
    """The series `--keep` recorded, with their FID keys back to ints (JSON keys are strings)."""
    kept = json.loads(KEPT.read_text()) if KEPT.is_file() else {}
    return {name: [{(int(k) if k.isdigit() else k): v for k, v in row.items()} for row in rows]
            for name, rows in kept.items()}


def plot(series: dict[str, list[dict]], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9))  # rows: faces generated (1,000, 2,000); columns: images, hours
    panels = [(axes[i, j], n, x, scale) for i, n in enumerate((1000, 2000))
              for j, (x, scale) in enumerate((("images", 1e6), ("hours", 1)))]
    for color, (name, rows) in enumerate(series.items()):
        for ax, n, x, scale in panels:
            pts = [(r[x] / scale, r[n]) for r in rows if n in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name, color=f"C{color}")  # one colour per series
    for ax, n, x, _ in panels:
        ax.set(title=f"{n:,} generated vs the 1,000 dev faces", ylabel="FID (lower is better)",
               xlabel="million images seen" if x == "images" else "CPU core-hours")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


def recipe(config: dict) -> str:
    """What a run's real faces were, in words (the share from face/extra and the step it ends), its R1 weight if any,
    and its restarts."""
    share, until = config.get("extra_share", 0.0), config.get("extra_until")
    faces = "face/train alone" if share == 0 else f"extra share {share}"
    faces += f" until {until:,}" if share and until is not None else ""
    faces += f", R1 {config['r1']}" if config.get("r1") else ""
    restarts = config.get("restarts")
    return faces + (", restarts at " + ", ".join(f"{s:,}" for s in restarts) if restarts else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="run folders (none: the chain and the kept runs)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads of the metrics lines that do not record theirs (default 1)")
    p.add_argument("--plot", type=Path, help="also draw the curves into this PNG")
    p.add_argument("--keep", action="store_true", help=f"record the runs' points in {KEPT.name} (commit it)")
    args = p.parse_args()
    name, rows = chain_points()
    series, live = {name: rows}, {}
    for run in args.runs:
        config = json.loads((run / "config.json").read_text())
        live[f"{run.name} ({recipe(config)})"] = run_points(run, config["batch"], args.threads)
    series |= {**kept_series(), **live}  # a run given here replaces its kept points
    if args.keep:
        KEPT.write_text(json.dumps({k: v for k, v in series.items() if k != name}, indent=1) + "\n")
        print(f"kept {len(series) - 1} series in {KEPT}")
    print("| run | step | images seen | CPU core-hours | FID, 1,000 vs 1,000 dev | FID, 2,000 vs 1,000 dev |")
    print("|---|---|---|---|---|---|")
    for name, rows in series.items():
        for r in rows:
            print(f"| {name} | {r['step']:,} | {r['images']:,} | {r['hours']:.2f} | {r.get(1000, '')} | "
                  f"{r.get(2000, '')} |")
    if args.plot:
        plot(series, args.plot)


if __name__ == "__main__":
    main()
