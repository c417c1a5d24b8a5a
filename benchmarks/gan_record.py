"""Complete the JSON that `export` writes beside a GAN (the command, config and metrics of its run) with its dev
evaluations and how long it trained, so that a shipped checkpoints/<kind>.json says where every number came from.

  python p1_dcgan.py export --ckpt runs/p1/last.pt --out checkpoints/p1_dcgan.pt --truncation 0.9 --with-d --force
  python p1_dcgan.py eval --ckpt checkpoints/p1_dcgan.pt --data hw3_data --n 2000 --seed 1 --json runs/p1/ship_s1.json
  python p1_dcgan.py eval --ckpt checkpoints/p1_dcgan.pt --data hw3_data --n 2000 --seed 2 --json runs/p1/ship_s2.json
  python benchmarks/gan_record.py checkpoints/p1_dcgan.pt --run runs/p1 --eval runs/p1/ship_s1.json runs/p1/ship_s2.json

The first --eval is the JSON's "eval"; all of them, one per noise seed, go into "eval_seeds" with their mean FID.
Core-hours come from the run's metrics.jsonl (benchmarks/gan_curve.py, `core_seconds`).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from gan_curve import core_seconds  # benchmarks/, beside this script


def record(export: Path, run: Path, evals: list[dict], hardware: str) -> dict:
    """The shipped JSON: what the export wrote, plus "eval", "eval_seeds", the commands and "trained"."""
    shipped = json.loads(export.with_suffix(".json").read_text())
    ck = torch.load(export, map_location="cpu", weights_only=True)
    config, kind, name = shipped["config"], shipped["config"]["kind"], export.name
    steps = ck["step"]
    if any(e["checkpoint_step"] != steps for e in evals):
        raise SystemExit(f"error: an --eval JSON scored another checkpoint than {export} (step {steps})")
    fids = [e["fid"] for e in evals]
    with_d = " --with-d" if "D" in ck["models"] else ""
    seconds = [sec for step, sec in core_seconds(run, config["batch"]) if step <= steps]
    first, psi = evals[0], config.get("truncation", 1.0)
    nets = "the EMA generator with re-estimated BatchNorm statistics" + (", and its discriminator" if with_d else "")
    return {
        **shipped,
        "checkpoint": f"{name} ({nets}, fp16; it samples noise of standard deviation {psi}: its config's truncation)",
        "kind": kind,
        "eval": first,
        "eval_seeds": {"seeds": [e.get("seed") for e in evals], "fid": fids,
                       "fid_mean": round(statistics.mean(fids), 3), "fid_spread": round(max(fids) - min(fids), 3)},
        "eval_command": f"python {kind}.py eval --ckpt checkpoints/{name} --data hw3_data --n {first['fid_generated']} "
                        f"--seed SEED",
        "export_command": f"python {kind}.py export --ckpt RUN/last.pt --out checkpoints/{name} --truncation {psi}"
                          f"{with_d} --force",
        "trained": {"batch": config["batch"], "steps": steps, "images_seen": steps * config["batch"],
                    "train_images": config.get("train_images"), "extra_share": config.get("extra_share", 0.0),
                    "core_hours": round(seconds[-1] / 3600, 2) if seconds else None, "hardware": hardware},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", type=Path, help="the exported .pt; its .json (written by export) is completed in place")
    p.add_argument("--run", type=Path, required=True, help="the run folder it was exported from (metrics.jsonl)")
    p.add_argument("--eval", type=Path, nargs="+", required=True, help="JSONs of `eval --json`, one per seed")
    p.add_argument("--hardware", default="CPU, one core of a 2-core machine per run (shared with evaluations)")
    args = p.parse_args()
    for path in (args.export, args.export.with_suffix(".json"), args.run / "metrics.jsonl", *args.eval):
        if not path.is_file():
            raise SystemExit(f"error: {path} is not a file (export a finished run, evaluate it with --json)")
    out = record(args.export, args.run, [json.loads(e.read_text()) for e in args.eval], args.hardware)
    args.export.with_suffix(".json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.export.with_suffix('.json')}: FID {out['eval_seeds']['fid']} (mean "
          f"{out['eval_seeds']['fid_mean']}), {out['trained']['core_hours']} core-hours")


if __name__ == "__main__":
    main()
