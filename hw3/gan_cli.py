"""The sub-commands P1 and P2 share (train / sample / eval / export), their dispatch, and the eval preamble."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from datasets import list_images, training_splits
from hw3 import checkpoints, cli, distributed, loop
from hw3.cli import UserError
from hw3.gan import LR, REPORT, GanSpec, generate_n, load_generator, save_grid, train
from hw3.schedule import restart_step
from models import truncate


def add_commands(p: argparse.ArgumentParser, spec: GanSpec) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands train / sample / eval / export with their shared options (the recipe's defaults)."""
    report = {**REPORT, **spec.report_args}
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the GAN on the faces of --data")
    t.add_argument("--data", help="root of the course layout, face/train (default hw3_data, or the run's own with "
                                  "--resume)")
    t.add_argument("--run-dir", required=True, help="run folder: config.json, metrics.jsonl, last.pt, samples/")
    t.add_argument("--steps", type=int, help=f"training steps (default {spec.steps}; with --resume: the run's, a "
                                             "larger value extends it)")
    t.add_argument("--epochs", type=float, help=f"passes over face/train instead of --steps (default: --steps; "
                                                f"--report: {spec.report_epochs})")
    t.add_argument("--batch", type=int, default=64, help=f"--report: {report['batch']}")
    t.add_argument("--lr", type=float, help=f"both Adam learning rates (default {LR}); with --resume an explicit "
                                            "value wins, a warm restart of a decayed run")
    t.add_argument("--betas", type=float, nargs=2, default=[0.5, 0.999])
    t.add_argument("--lr-decay-from", type=int, metavar="STEP",
                   help="from this step, decay both learning rates linearly to ~0 at the last step or the first "
                        "restart (default: the last sixth of the steps, or of the first cycle; --report: none)")
    recipe, init = " ".join(map(str, spec.restarts)), ", --init" if spec.warm_start else ""
    t.add_argument("--restarts", type=restart_step, nargs="+", metavar="STEP",
                   help="warm restarts: from each STEP half the rate, held for the first half of the cycle to the "
                        "next restart or the end, then decayed linearly; --lr-decay-from's decay ends at the first; "
                        "'none': no restarts " + (f"(default at the recipe's {spec.steps} steps: {recipe}; another "
                                                  f"length{init} or --report: none)" if recipe else "(default: none)"))
    t.add_argument("--diffaug", default="color,translation,cutout",
                   help="DiffAugment transforms for every image D sees, real and fake ('none': off)")
    t.add_argument("--r1", type=float, default=spec.r1, metavar="GAMMA",
                   help=f"R1 penalty GAMMA/2 * |grad D(real)|^2 on D, every 16th step (default {spec.r1}; 0: off)")
    t.add_argument("--ema", type=float, default=0.999, help="decay of the generator's weight average (0: off)")
    t.add_argument("--no-xflip", dest="xflip", action="store_false",
                   help="do not mirror real faces (default: each is mirrored with probability 1/2)")
    t.add_argument("--extra-share", type=float, default=0.0, metavar="P",
                   help="draw each real face from <data>/face/extra (+ extra.csv) with probability P (default 0: "
                        "face/train only, ahead so far; 0.8: all 35,456 faces uniformly)")
    t.add_argument("--extra-until", type=int, metavar="STEP",
                   help="from this step on, face/train only: a finish on the sharp faces (default: --lr-decay-from)")
    t.add_argument("--report", action="store_true",
                   help="the report's configuration: " + ", ".join(f"{k}={v}" for k, v in report.items())
                        + f", {spec.report_epochs} epochs")
    t.add_argument("--sample-every", type=int, default=1000, help="write a grid from the fixed noise every N steps")
    t.add_argument("--ckpt-every", type=int, default=250)
    loop.add_run_args(t, log_every=20, evaluates=False)  # FID is its own command
    s = sub.add_parser("sample", help="the graded figure (--out FILE) or N single PNGs (--n N --out DIR)")
    s.add_argument("--ckpt", required=True, help="an export (checkpoints/) or a run's last.pt")
    s.add_argument("--out", required=True, help="the figure (.jpg/.png), or with --n a folder of PNGs")
    s.add_argument("--n", type=int, help="write N single PNGs into the folder --out (default: the graded figure)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cpu")
    e = sub.add_parser("eval", help="FID of generated faces against a folder of real faces")
    e.add_argument("--ckpt", required=True, help="an export (checkpoints/) or a run's last.pt")
    e.add_argument("--data", default="hw3_data")
    e.add_argument("--real", help="folder of real images (default <data>/face/test)")
    e.add_argument("--n", type=int, default=1000, help="generated images")
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--no-floor", dest="floor", action="store_false",
                   help="skip the real-vs-real floor (--n training faces against the same real folder)")
    e.add_argument("--json", help="also write the numbers to this JSON file (default: none)")
    e.add_argument("--device", default="auto")
    x = sub.add_parser("export", help="a run's generator as a small fp16 checkpoint to ship")
    x.add_argument("--ckpt", required=True, help="a run's last.pt")
    x.add_argument("--out", required=True, help="the export (.pt); the run's config and numbers go beside it")
    for cmd, says in ((s, "default: the checkpoint's, else 1"), (e, "default: the checkpoint's, else 1"),
                      (x, "recorded in the export for sample and eval; default: none")):
        cmd.add_argument("--truncation", type=float, metavar="PSI",
                         help=f"draw the noise with standard deviation PSI in (0, 1] ({says})")
        cli.add_force(cmd)
    return {"train": t, "sample": s, "eval": e, "export": x}


def run_command(args: argparse.Namespace, spec: GanSpec, evaluate: Callable[[argparse.Namespace], None]) -> None:
    """Dispatch a parsed command line: train / sample / export here, eval to the script's own `evaluate`."""
    psi = getattr(args, "truncation", None)
    if psi is not None and not 0 < psi <= 1:
        raise cli.UserError(f"--truncation must be in (0, 1], got {psi}")
    if args.cmd == "train":
        train(args, spec, attr=getattr(args, "attr", None))
    elif args.cmd == "sample":
        sample(args, spec)
    elif args.cmd == "export":
        export(args, spec)
    else:
        evaluate(args)


def sample(args: argparse.Namespace, spec: GanSpec) -> None:
    """The graded figure from a fixed seed, or N single PNGs for metrics (the output checked before the model)."""
    if args.n is None:
        out = cli.check_output_file(args.out, (".jpg", ".jpeg", ".png"), reads=(args.ckpt,), force=args.force)
    elif args.n < 1:
        raise UserError("--n must be at least 1")
    device = distributed.setup(args.device, args.seed).device
    G, ck = load_generator(args.ckpt, spec, device)
    G = truncate(G, ck, args.truncation)
    if args.n is None:
        with torch.inference_mode():
            images, cols = spec.figure(G, torch.Generator().manual_seed(args.seed), device)
        save_grid(images, cols, out)
        print(f"wrote {out}")
        return
    folder = cli.output_folder(args.out, args.force, "sample folder")
    images, y = generate_n(G, spec, args.n, args.seed, device)
    for i, im in enumerate(images):
        name = f"{i:05d}.png" if y is None else f"{i:05d}_attr{int(y[i])}.png"
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / name)
    print(f"wrote {args.n} images to {folder}")


def export(args: argparse.Namespace, spec: GanSpec) -> None:
    """Generator weights (the EMA, if kept, with BatchNorm statistics re-estimated) in fp16 + config + step: what
    checkpoints/ ships."""
    G, ck = load_generator(args.ckpt, spec, torch.device("cpu"))  # an average comes with its own BN statistics
    with_d = getattr(args, "with_d", False)  # P1: for P2's --init
    if with_d and "D" not in ck["models"]:
        raise UserError(f"--with-d: {args.ckpt} holds no discriminator (an export of the generator alone)")
    ck = {**ck, "models": {"G": G.state_dict(), **({"D": ck["models"]["D"]} if with_d else {})}}  # ship it as G
    if args.truncation is not None:  # what sample and eval use unless told otherwise
        ck["config"] = {**ck["config"], "truncation": args.truncation}
    out = checkpoints.export_checkpoint(ck, args.ckpt, args.out, force=args.force)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, step {ck['step']})")


def check_eval_args(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """Fail before the slow part: the real folder (--real, or <data>/face/test) must hold images and --json must be
    a writable .json path. Returns the real images, and --n training faces for the floor (a seeded sample of
    <data>/face/train; none with --no-floor)."""
    cli.check_range(args, n=">=1")
    real = list_images(args.real or Path(args.data) / "face" / "test")
    if args.json:
        cli.check_output_file(args.json, (".json",), reads=(args.ckpt,), force=args.force)
    if not args.floor:
        return real, []
    train = list_images(Path(args.data) / "face" / "train")
    pick = np.random.default_rng(0).choice(len(train), min(args.n, len(train)), replace=False)
    return real, [train[i] for i in sorted(pick)]


def prepare_eval(args: argparse.Namespace, spec: GanSpec) -> tuple[list[Path], list[Path], torch.device, nn.Module,
                                                                   dict]:
    """What both eval commands start with: the real and floor images (checked first), the device, the generator."""
    real, floor = check_eval_args(args)
    device = distributed.setup(args.device).device
    G, ck = load_generator(args.ckpt, spec, device)
    judged = Path(args.real or Path(args.data) / "face" / "test")
    for root in {ck["config"].get("data") or "hw3_data", args.data}:
        for split in training_splits(ck["config"].get("extra_share", 0)):
            if (Path(root) / "face" / split).resolve() == judged.resolve():
                raise UserError(f"{judged} holds the faces this generator trained on ({Path(root) / 'face' / split}): "
                                "FID judges on faces it never saw (face/test)")
    return real, floor, device, truncate(G, ck, args.truncation), ck


def report(args: argparse.Namespace, metrics: dict) -> None:
    metrics = {**metrics, "seed": args.seed}  # the noise the generated faces came from
    print("  ".join(f"{k}={v}" for k, v in metrics.items()))
    if args.json:
        cli.write_json(args.json, metrics)
