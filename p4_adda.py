"""P4: ADDA (adversarial discriminative domain adaptation), and the improvements that make it beat DANN.

Three stages on one step counter:
  1. pretrain   source encoder + classifier on labelled source images;
  2. adapt      target encoder (a copy of the source encoder) against a feature critic; the source side is frozen;
  3. selftrain  target encoder, restarted from the checkpoint chosen so far, on confident, class-balanced
                pseudo-labels of target images, consistent under augmentation (FixMatch / DIRT-T
                spirit), and with --source-weight on labelled source images too; --selftrain-steps 0 turns it off.

Model selection never sees target labels: from the end of stage 1 on, the kept checkpoint is the one with the
highest information-maximisation score H(mean p) - mean H(p) on unlabelled target *train* images. By default three
starts (seeds) race to step 3,000 and the one with the highest score there trains on (--starts, --race-steps).

  python p4_adda.py train --source usps --target mnistm              # improved defaults
  python p4_adda.py train --source usps --target mnistm --plain      # the report's ADDA
  python p4_adda.py export --ckpt runs/p4/usps2mnistm/best.pt --out checkpoints/p4_adda_mnistm.pt
  python p4_adda.py predict --ckpt checkpoints/p4_adda_mnistm.pt --images DIR --out pred.csv
  python p4_adda.py eval --ckpt checkpoints/p4_adda_mnistm.pt --data hw3_data --domain mnistm
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from datasets import DeviceSampler, adaptation_data, check_pair, is_grey
from hw3 import checkpoints, cli, distributed, evaluation, loop
from hw3.adda import KIND, ADDAMethod, build, make_encoder
from hw3.cli import UserError
from models import LeNetClassifier

AUTO_TEXTURE_MIX = 0.25  # grey source, colour target (usps -> mnistm); it cost mnistm -> usps 0.05
BEFORE_DEFAULTS = {"student_aug": "weak"}  # settings older run configs lack: what those runs used
PLAIN = {"encoder": "lenet", "input_norm": False, "augment": False, "zoom": False, "texture_mix": 0.0,  # report's ADDA
         "smooth": 0.0, "gp": 0.0, "critic_hidden": 500, "selftrain_steps": 0, "lr": 2e-4, "lr_adapt": 2e-4,
         "beta1": 0.5, "starts": 1}


def texture_share(value: str | float) -> float:
    """A --texture-mix share in [0, 1] (a float, or its text)."""
    try:
        if 0.0 <= float(value) <= 1.0:
            return float(value)
    except ValueError:
        pass
    raise UserError(f"--texture-mix must be 'auto' or a share in [0, 1], got {value!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="pretrain on source, adapt a target encoder, self-train it")
    t.add_argument("--data", help="root of the course layout (default hw3_data, or the run's own with --resume)")
    t.add_argument("--source", help="source domain (required, except with --resume: the run's own)")
    t.add_argument("--target", help="target domain (required, except with --resume: the run's own)")
    t.add_argument("--run-dir", help="run folder (default runs/p4/<source>2<target>)")
    t.add_argument("--source-test", action="store_true", help="also train on the source's labelled test/ split "
                   "(never scored here; needed by the mnist zip before its rebuild, whose train/ held no 9s)")
    t.add_argument("--plain", action="store_true", help="the report's ADDA: " + ", ".join(f"{k}={v}" for k, v in
                                                                                         PLAIN.items()))
    t.add_argument("--pretrain-steps", type=int, default=1000, help="stage 1 steps")
    t.add_argument("--adapt-steps", type=int, default=1000, help="stage 2 steps")
    t.add_argument("--selftrain-steps", type=int, default=16000, help="stage 3 steps (0: no self-training)")
    t.add_argument("--batch", type=int, default=128, help="per domain (report: 128)")
    t.add_argument("--lr", type=float, default=1e-3, help="stage 1 Adam learning rate (report: 2e-4)")
    t.add_argument("--lr-adapt", type=float, default=2e-4, help="stage 2 learning rate, encoder and critic")
    t.add_argument("--lr-self", type=float, default=3e-4, help="stage 3 learning rate")
    t.add_argument("--beta1", type=float, default=0.9, help="stage 1 Adam beta1 (report: 0.5; stage 2 uses 0.5)")
    t.add_argument("--encoder", choices=["lenet", "bn"], default="bn", help="report's LeNet or the BatchNorm one")
    t.add_argument("--no-input-norm", dest="input_norm", action="store_false",
                   help="bn encoder without per-image standardisation")
    t.add_argument("--no-augment", dest="augment", action="store_false", help="no device-side augmentation")
    t.add_argument("--zoom", action="store_true", help="random rescale of the digits too (with augmentation)")
    t.add_argument("--texture-mix", default="auto",
                   help="share of source images drawn into tile-shuffled unlabelled target images (stages 1-2); "
                        f"auto: {AUTO_TEXTURE_MIX} when the source images are grey and the target's are not, else 0")
    t.add_argument("--width", type=int, nargs=2, default=[32, 64], metavar=("C1", "C2"),
                   help="channels of the bn encoder's two convs")
    t.add_argument("--critic-hidden", type=int, default=500, help="critic width (report: 500)")
    t.add_argument("--smooth", type=float, default=0.1, help="label smoothing of the critic's targets")
    t.add_argument("--gp", type=float, default=1.0, help="weight of a zero-centred gradient penalty on the critic "
                                                        "(report: 0)")
    t.add_argument("--threshold", type=float, default=0.9, help="stage 3 pseudo-label confidence threshold")
    t.add_argument("--self-decay", choices=["none", "cosine"], default="none",
                   help="stage 3 learning rate: constant, or annealed from --lr-self toward 0 (cosine)")
    t.add_argument("--student-aug", choices=["weak", "strong"], default="strong",
                   help="stage 3 student's view: the stages' augmentation, or it plus two RandAugment-style ops per "
                        "image (affine, blur, sharpen, noise, posterize, solarize, autocontrast)")
    t.add_argument("--ema", type=float, default=0.99, help="stage 3 teacher EMA decay")
    t.add_argument("--pseudo", choices=["teacher", "centroid", "agree"], default="teacher",
                   help="stage 3 pseudo-labels: the teacher's confident, balanced predictions; the nearest of its "
                        "class centroids in feature space (SHOT), for every image; or the teacher's where they agree")
    t.add_argument("--align", type=float, default=1.0,
                   help="stage 3: the teacher's predictions are divided by their running mean to this power before "
                        "thresholding (distribution alignment, rare predicted classes boosted; 0: as they are)")
    t.add_argument("--diversity", type=float, default=0.0, help="stage 3 weight of the entropy of the batch's mean "
                   "prediction (a bonus: keeps the student from sinking every image into one class)")
    t.add_argument("--source-weight", type=float, default=0.0, help="stage 3 weight of a classification loss on "
                   "labelled source images through the target encoder (its BatchNorm statistics stay the target's)")
    t.add_argument("--teacher-bn", choices=["student", "clean"], default="student",
                   help="the teacher's BatchNorm statistics: averaged from the student's (gathered on augmented "
                        "views) or its own, of the clean batch it labels")
    t.add_argument("--starts", type=int, default=3, help="K > 1: K runs (seeds K*seed ... K*seed+K-1) to "
                   "--race-steps; the one with the highest im-score there goes on to the end in --run-dir")
    t.add_argument("--race-steps", type=int, default=3000, help="with --starts: the step the starts are compared at")
    t.add_argument("--select-images", type=int, default=2000, help="unlabelled target train images for selection")
    t.add_argument("--val-fraction", type=float, default=0.1, help="source training data held out (stage 1 log)")
    loop.add_run_args(t, eval_every=250)
    evaluation.add_classifier_commands(sub, "the target encoder")
    args = p.parse_args(argv)
    if args.cmd == "train" and args.plain:
        vars(args).update(PLAIN)
    return args


def run_folder(args: argparse.Namespace) -> Path:
    """--run-dir, or runs/p4/<source>2<target>."""
    return Path(args.run_dir or f"runs/p4/{args.source}2{args.target}")


def train(args: argparse.Namespace) -> None:
    if not (args.resume and args.run_dir):  # else the run's own pair, checked when it began
        check_pair(args.source, args.target)
    run = run_folder(args)
    # with --resume the run's own settings win; a run from before a default changed resumes as it began
    resume = checkpoints.resume_args(args, run, KIND, older=BEFORE_DEFAULTS)
    if args.pretrain_steps < 1 or args.adapt_steps < 0 or args.selftrain_steps < 0:
        raise UserError("--pretrain-steps must be >= 1, --adapt-steps and --selftrain-steps >= 0")
    if args.align < 0:
        raise UserError(f"--align must be >= 0 (0: no alignment), got {args.align}")
    if min(args.width) < 1:
        raise UserError(f"--width needs two channel counts >= 1, got {args.width}")
    if args.texture_mix != "auto":
        args.texture_mix = texture_share(args.texture_mix)
    dist = distributed.setup(args.device, args.seed, args.precision)
    if dist.world > 1:
        raise UserError("p4_adda.py runs in one process; start it with python, not torchrun")
    config = {"kind": KIND, **checkpoints.run_config(args)}

    data = adaptation_data(args.data, args.source, args.target, args.val_fraction, args.seed, args.source_test,
                           args.select_images)
    if args.texture_mix == "auto":  # decided from the unlabelled images of both domains, on record in config.json
        grey_to_colour = is_grey(data["train"].images) and not is_grey(data["target_train"].images)
        args.texture_mix = config["texture_mix"] = AUTO_TEXTURE_MIX if grey_to_colour else 0.0
    rng = torch.Generator(dist.device).manual_seed(args.seed)
    src = DeviceSampler(data["train"], dist.device, rng)
    tgt = DeviceSampler(data["target_train"], dist.device, rng)  # no labels
    steps = args.pretrain_steps + args.adapt_steps + args.selftrain_steps
    config["total_steps"] = steps
    run = checkpoints.open_run(run, config, args.resume, args.overwrite, dist)

    nets, opts = build(config, dist)
    method = ADDAMethod(args, nets, opts, src, tgt, data, dist, rng, run)
    method.set_modes(0)
    plan = loop.Schedule(steps, args.log_every, args.eval_every, stop_at=args.stop_at, images_per_step=args.batch,
                         boundaries=(method.pretrain_end, method.adapt_end), desc=f"{args.source}->{args.target}")
    best = loop.run(method, run, config, rng, plan, True, resume)
    if "stopped" in best:
        return
    metrics = {"source": args.source, "target": args.target, "plain": args.plain, "steps": steps,
               "selection": f"im_score on {len(data['select'])} unlabelled {args.target} train images",
               "im": best["im"], "step": best["step"], "stage": method.stage(best["step"] - 1),
               "target_test_acc": best["target_test_acc"], **method.summary}
    cli.write_json(run / "metrics.json", metrics)
    checkpoints.plot_curves(run, {"losses": ["loss_cls", "loss_critic", "loss_enc", "loss_self"],
                                  "accuracy": ["src_acc", "critic_acc", "val_acc", "target_test_acc", "mask"],
                                  "selection": ["im"]})
    print(f"{args.source}->{args.target}: source-only {metrics['source_only_target_test_acc']:.4f}; chosen step "
          f"{best['step']} ({metrics['stage']}), im {best['im']:.3f}, target ({args.target}) dev-test acc "
          f"{best['target_test_acc']:.4f}  [{run}]")


def last_im(run: Path, step: int) -> float:
    """The im-score of a run's last evaluation at or before `step` (from its metrics.jsonl)."""
    rows = [r for r in checkpoints.read_metrics(run / "metrics.jsonl") if "im" in r and r["step"] <= step]
    if not rows:
        raise UserError(f"{run} has no im-score up to step {step}; --race-steps must lie past stage 1")
    return rows[-1]["im"]


def race(args: argparse.Namespace, run: Path) -> None:
    """--starts K: K runs to --race-steps in <run>/starts/seed<S>; the files of the one with the highest im-score
    there move to <run>, which trains on to the end. <run>/starts.json records the race."""
    record, fresh = run / "starts.json", args.overwrite and not args.resume
    if not args.resume and (record.is_file() or (run / "last.pt").is_file()) and not args.overwrite:
        raise UserError(f"{run} already holds a run; pass --resume to continue it or --overwrite to start again")
    if fresh:
        record.unlink(missing_ok=True)
    if not record.is_file():
        begun = sorted((run / "starts").glob("seed*/config.json"))
        if args.resume and begun:  # the race's own settings, as its first start recorded them
            recorded = json.loads(begun[0].read_text())
            for k, v in recorded.items():
                if hasattr(args, k) and k not in (*checkpoints.RUN_ONLY_ARGS, "run_dir", "seed", "data"):
                    setattr(args, k, v)
            args.seed, args.data = recorded["race_seed"], args.data or recorded["data"]
        if args.race_steps <= args.pretrain_steps:
            raise UserError("--race-steps must lie past stage 1 (--pretrain-steps)")
        halt, scores = min(args.race_steps, args.stop_at or args.race_steps), {}
        for seed in range(args.seed * args.starts, (args.seed + 1) * args.starts):
            folder = run / "starts" / f"seed{seed}"
            has = not fresh and (folder / "last.pt").is_file()
            if not has or checkpoints.load_checkpoint(folder / "last.pt", KIND)["step"] < halt:
                train(argparse.Namespace(**{**vars(args), "seed": seed, "race_seed": args.seed, "run_dir": str(folder),
                                            "stop_at": halt, "resume": has}))
            scores[seed] = last_im(folder, halt)
        if halt < args.race_steps:
            return
        winner = max(scores, key=scores.get)
        cli.write_json(record, {"race_steps": args.race_steps, "im_by_seed": scores, "winner_seed": winner})
        print(f"starts: im-score at step {args.race_steps} by seed {scores}; seed {winner} goes on in {run}")
    winner = json.loads(record.read_text())["winner_seed"]
    for f in sorted((run / "starts" / f"seed{winner}").glob("*")):  # the winner's run folder becomes <run>
        f.replace(run / f.name)
    train(argparse.Namespace(**{**vars(args), "seed": winner, "race_seed": args.seed, "run_dir": str(run),
                                "resume": True}))


def load_encoders(path: str, device: torch.device | str) -> tuple[nn.Module | None, nn.Module, nn.Module, dict]:
    """(source encoder, target encoder, classifier, checkpoint) of a P4 checkpoint, in eval mode.
    A shipped checkpoint holds no source encoder: it comes back as None."""
    ck = checkpoints.load_checkpoint(path, KIND)
    nets = {"source_encoder": None}
    for k in ("source_encoder", "target_encoder", "classifier"):
        if k in ck["models"] or k != "source_encoder":
            net = LeNetClassifier() if k == "classifier" else make_encoder(ck["config"])
            checkpoints.load_state(net, ck["models"].get(k, {}), k.replace("_", " "))
            nets[k] = net.float().to(device).eval()
    return nets["source_encoder"], nets["target_encoder"], nets["classifier"], ck


def export(args: argparse.Namespace) -> None:
    *_, ck = load_encoders(args.ckpt, "cpu")  # the weights fit the networks
    print(f"wrote {checkpoints.export_checkpoint(ck, args.ckpt, args.out, keep=('target_encoder', 'classifier'))}")


def classifier(path: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    _, enc, cls, _ = load_encoders(path, device)
    return lambda x: cls(enc(x))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run = run_folder(args) if args.cmd == "train" else None
    if run and (args.starts > 1 and not args.resume or args.resume and (run / "starts").is_dir()):
        race(args, run)
    elif args.cmd in ("train", "export"):
        {"train": train, "export": export}[args.cmd](args)
    else:
        evaluation.run_classifier_command(args, classifier)


if __name__ == "__main__":
    cli.cli_main(main)
