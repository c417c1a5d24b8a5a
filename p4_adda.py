"""P4: ADDA (adversarial discriminative domain adaptation), and the improvements that make it beat DANN.

Three stages on one step counter:
  1. pretrain   source encoder + classifier on labelled source images;
  2. adapt      target encoder (a copy of the source encoder) against a feature critic; the source side is frozen;
  3. selftrain  target encoder, restarted from the checkpoint chosen so far, on confident, class-balanced
                pseudo-labels of an EMA teacher on the clean image, predicted on an augmented view (FixMatch /
                DIRT-T spirit); --selftrain-steps 0 turns it off.

Model selection never sees target labels: from the end of stage 1 on, the kept checkpoint is the one with the
highest information-maximisation score H(mean p) - mean H(p) on unlabelled target *train* images. By default three
starts (seeds) race to step 3,000 and the one with the highest score there trains on (--starts, --race-steps).
One process: under torchrun the script refuses (rank 0 says so).

  python p4_adda.py train --data hw3_data --source usps --target mnistm     # the defaults: the shipped recipe
  python p4_adda.py train --data hw3_data --source usps --target mnistm --plain   # the report's ADDA
  python p4_adda.py export --ckpt runs/p4/usps2mnistm/best.pt --out p4_adda_mnistm.pt
  python p4_adda.py predict --ckpt checkpoints/p4_adda_mnistm.pt --images DIR --out pred.csv
  python p4_adda.py eval --ckpt checkpoints/p4_adda_mnistm.pt --data hw3_data --domain mnistm
"""
from __future__ import annotations

import argparse
import json
import os
import sys
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
SELECT_IMAGES = 2000     # unlabelled target train images the selection score is computed on
VAL_FRACTION = 0.1       # of the source's training images, held out (stage 1's validation accuracy)
BEFORE_DEFAULTS = {"student_aug": "weak", "starts": 1}  # settings older run configs lack: what those runs used
# Settings no option changes: the defaults' values, or under --plain the report's ADDA (LeNet encoder, no input
# normalisation or augmentation, no critic label smoothing, Adam beta1 0.5; with the options below). Every run's
# config records them; an old run whose recorded value differs is refused on --resume.
SETTINGS = {"encoder": "bn", "input_norm": True, "augment": True, "smooth": 0.1, "beta1": 0.9}
PLAIN = {"encoder": "lenet", "input_norm": False, "augment": False, "smooth": 0.0, "beta1": 0.5,
         "texture_mix": 0.0, "gp": 0.0, "selftrain_steps": 0, "lr": 2e-4, "starts": 1}  # and these options
PROBES_COMMIT = "1a7f9f9"  # the last commit with the options below; docs/experiments.md keeps their rows
# Probes that measured no gain, gone from the code (config key -> the value today's code trains with), and settings
# that stopped being options (critic width, stage 2's rate, stage 3's threshold and teacher decay, the selection and
# validation sizes). A run recording another value resumes only with PROBES_COMMIT; its checkpoints still load.
REMOVED = {"source_test": False, "zoom": False, "width": [32, 64], "critic_hidden": 500, "lr_adapt": 2e-4,
           "self_decay": "none", "pseudo": "teacher", "align": 1.0, "diversity": 0.0, "source_weight": 0.0,
           "teacher_bn": "student", "threshold": 0.9, "ema": 0.99, "select_images": SELECT_IMAGES,
           "val_fraction": VAL_FRACTION}
STAGES = ("pretrain_steps", "adapt_steps", "selftrain_steps")
FREE_ON_RESUME = {"data", "device", "stop_at", "resume", "run_dir", *STAGES}  # may differ from the run's own


def texture_share(value: str | float) -> float:
    """A --texture-mix share in [0, 1] (a float, or its text)."""
    try:
        if 0.0 <= float(value) <= 1.0:
            return float(value)
    except ValueError:
        pass
    raise UserError(f"--texture-mix must be 'auto' or a share in [0, 1], got {value!r}")


def settings(plain: bool) -> dict:
    """The values of the settings no option changes (and, under --plain, of the options it sets)."""
    return {**SETTINGS, **(PLAIN if plain else {})}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="pretrain on source, adapt a target encoder, self-train it")
    cli.add_domains(t)
    t.add_argument("--run-dir", help="run folder (default: runs/p4/<source>2<target>)")
    t.add_argument("--plain", action="store_true", help="the report's ADDA: " + ", ".join(
        f"{k}={v}" for k, v in PLAIN.items()) + "; options given beside it still apply")
    t.add_argument("--pretrain-steps", type=int, default=1000, help="stage 1 steps (with --resume: moves the end "
                   "of stage 1 if the run has not reached it)")
    t.add_argument("--adapt-steps", type=int, default=1000, help="stage 2 steps (0: none; with --resume: moves the "
                   "end of stage 2 if the run has not reached it)")
    t.add_argument("--selftrain-steps", type=int, default=16000, help="stage 3 steps (0: no self-training; with "
                   "--resume: extends the run, or ends it sooner)")
    t.add_argument("--batch", type=int, default=128, help="images per domain in each step (the report's too)")
    t.add_argument("--lr", type=float, default=1e-3, help="stage 1 Adam learning rate (report: 2e-4; stage 2 uses "
                   "the report's 2e-4)")
    t.add_argument("--lr-self", type=float, default=3e-4, help="stage 3 learning rate")
    t.add_argument("--texture-mix", default="auto",
                   help="share of source images drawn into tile-shuffled unlabelled target images (stages 1-2); "
                        f"auto: {AUTO_TEXTURE_MIX} when the source images are grey and the target's are not, else 0")
    t.add_argument("--gp", type=float, default=1.0, help="weight of a zero-centred gradient penalty on the critic "
                                                        "(report: 0)")
    t.add_argument("--student-aug", choices=["weak", "strong"], default="strong",
                   help="stage 3 student's view: the stages' augmentation, or it plus two RandAugment-style ops per "
                        "image (affine, blur, sharpen, noise, posterize, solarize, autocontrast)")
    t.add_argument("--starts", type=int, default=3, help="K > 1: K runs (seeds K*seed ... K*seed+K-1) to "
                   "--race-steps; the one with the highest im-score there goes on to the end in --run-dir")
    t.add_argument("--race-steps", type=int, default=3000, help="with --starts K > 1: the step the starts are "
                   "compared at (a run that ends sooner: its last step)")
    loop.add_run_args(t, eval_every=250)
    evaluation.add_classifier_commands(sub, "the target encoder")
    return cli.show_defaults(p)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with `given` (the options on the command line); train's carry the settings no option changes,
    and with --plain the report's values of the options not given."""
    args = cli.parse(build_parser(), argv)
    if args.cmd == "train":
        vars(args).update({k: v for k, v in settings(args.plain).items() if k not in args.given})
    return args


def refuse_torchrun() -> None:
    """P4 trains in one process: under torchrun rank 0 says so in one line, the other ranks leave quietly."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if int(os.environ.get("RANK", "0")) > 0:
            sys.exit(2)
        raise UserError("p4_adda.py runs in one process; start it with python, not torchrun")


def check_train_args(args: argparse.Namespace) -> None:
    """Values and combinations checked before any folder is made."""
    if args.resume and args.overwrite:
        raise UserError("--resume continues a run and --overwrite starts it again; give one of them")
    cli.check_range(args, batch=">=1", pretrain_steps=">=1", adapt_steps=">=0", selftrain_steps=">=0", lr=">0",
                    lr_self=">0", gp=">=0", starts=">=1", race_steps=">=1", eval_every=">=1", log_every=">=1",
                    stop_at=">=1", seed=">=0")
    if args.texture_mix != "auto":
        args.texture_mix = texture_share(args.texture_mix)
    if "race_steps" in args.given and args.starts == 1 and not args.resume:
        raise UserError("--race-steps is for a race of starts (--starts > 1); this run has one start"
                        + (" (--plain)" if args.plain and "starts" not in args.given else ""))


def check_resumable(config: dict, run: Path) -> None:
    """Refuse, in one line, to resume a run that trained with an option today's code no longer has."""
    checkpoints.refuse_other_values(config, REMOVED, PROBES_COMMIT, run, "an option removed since")
    plain = settings(config.get("plain", False))
    checkpoints.refuse_other_values(config, {k: plain[k] for k in SETTINGS}, PROBES_COMMIT, run,
                                    "which no option sets now")


same_value = checkpoints.same_value


def check_resumed(args: argparse.Namespace, run: Path) -> None:
    """--resume continues a run as it began: an option given anew must say what the run has, except the free ones
    (data, device, --stop-at, and the stage lengths, checked by `check_stages`)."""
    last = run / "last.pt"
    begun = sorted((run / "starts").glob("seed*/last.pt"))  # a race whose winner has not moved yet
    if not last.is_file() and not begun:
        raise UserError(f"--resume: last.pt not found in {run}")
    recorded = checkpoints.load_checkpoint(last if last.is_file() else begun[0], KIND)["config"]
    check_resumable(recorded, run)
    recorded = {**BEFORE_DEFAULTS, **recorded, "seed": recorded.get("race_seed", recorded["seed"])}
    for k in sorted(args.given - FREE_ON_RESUME):
        asked = getattr(args, k)
        if k not in recorded or (k == "texture_mix" and asked == "auto") or same_value(asked, recorded[k]):
            continue
        flag = "--" + k.replace("_", "-")
        raise UserError(f"--resume continues {run} as it began, with {flag} {recorded[k]}, not {asked}; start a new "
                        "run (another --run-dir) to change it")
    if "race_steps" in args.given and recorded["starts"] == 1:
        raise UserError(f"--race-steps is for a race of starts; {run} is a run of one start")


def check_stages(args: argparse.Namespace, recorded: dict, step: int, run: Path) -> None:
    """--resume with stage lengths of its own: honoured where the run has not reached the boundary they move, else
    refused in one line."""
    old_p, new_p = recorded["pretrain_steps"], args.pretrain_steps
    old_a, new_a = old_p + recorded["adapt_steps"], new_p + args.adapt_steps
    for flag, old, new, stage in (("--pretrain-steps", old_p, new_p, 1), ("--adapt-steps", old_a, new_a, 2)):
        if new != old and step >= min(old, new):
            raise UserError(f"--resume: {run} is at step {step}; {flag} would move the end of stage {stage} from step "
                            f"{old} to step {new}, which works only before step {min(old, new)}")
    end = new_a + args.selftrain_steps
    if step > end:
        raise UserError(f"--resume: {run} is at step {step}; --selftrain-steps {args.selftrain_steps} would end it "
                        f"at step {end}, before that")


def run_folder(args: argparse.Namespace) -> Path:
    """--run-dir, or runs/p4/<source>2<target>."""
    return Path(args.run_dir or f"runs/p4/{args.source}2{args.target}")


def train(args: argparse.Namespace) -> None:
    run = run_folder(args)
    # with --resume the run's own settings win (stage lengths given anew excepted); a run from before a default
    # changed resumes as it began
    given = cli.given_options(args)
    resume = checkpoints.resume_args(args, run, KIND, explicit_wins=tuple(k for k in STAGES if k in given),
                                     older=BEFORE_DEFAULTS)
    steps = args.pretrain_steps + args.adapt_steps + args.selftrain_steps
    if resume is not None:
        check_resumable(resume["config"], run)
        check_stages(args, resume["config"], resume["step"], run)
        if args.stop_at is not None and args.stop_at <= resume["step"] < steps:
            raise UserError(f"--stop-at {args.stop_at}: {run} is already at step {resume['step']}")
    dist = distributed.setup(args.device, args.seed, args.precision)
    config = {"kind": KIND, **checkpoints.run_config(args)}

    data = adaptation_data(args.data, args.source, args.target, VAL_FRACTION, args.seed, False, SELECT_IMAGES)
    if args.texture_mix == "auto":  # decided from the unlabelled images of both domains, on record in config.json
        grey_to_colour = is_grey(data["train"].images) and not is_grey(data["target_train"].images)
        args.texture_mix = config["texture_mix"] = AUTO_TEXTURE_MIX if grey_to_colour else 0.0
    rng = torch.Generator(dist.device).manual_seed(args.seed)
    src = DeviceSampler(data["train"], dist.device, rng)
    tgt = DeviceSampler(data["target_train"], dist.device, rng)  # no labels
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
    """--starts K: K runs to --race-steps (or to their end, if that comes first) in <run>/starts/seed<S>; the files
    of the one with the highest im-score there move to <run>, which trains on to the end. <run>/starts.json records
    the race and the step it compared."""
    record, fresh, stop_here = run / "starts.json", args.overwrite and not args.resume, False
    if not args.resume and (record.is_file() or (run / "last.pt").is_file()) and not args.overwrite:
        raise UserError(f"{run} already holds a run; pass --resume to continue it or --overwrite to start again")
    if fresh:
        record.unlink(missing_ok=True)
    if not record.is_file():
        begun = sorted((run / "starts").glob("seed*/config.json"))
        if args.resume and begun:  # the race's own settings, as its first start recorded them
            recorded = json.loads(begun[0].read_text())
            keep = (*checkpoints.RUN_ONLY_ARGS, *cli.given_options(args), "given", "run_dir", "seed", "data")
            for k, v in recorded.items():
                if hasattr(args, k) and k not in keep:  # options given anew were checked against these
                    setattr(args, k, v)
            args.seed, args.data = recorded["race_seed"], args.data or recorded["data"]
        total = args.pretrain_steps + args.adapt_steps + args.selftrain_steps
        at = min(args.race_steps, total)  # the step the starts are compared at
        if at <= args.pretrain_steps < total:
            raise UserError("--race-steps must lie past stage 1 (--pretrain-steps)")
        halt, seeds = min(at, args.stop_at or at), range(args.seed * args.starts, (args.seed + 1) * args.starts)
        for seed in seeds:
            folder = run / "starts" / f"seed{seed}"
            has = not fresh and (folder / "last.pt").is_file()
            if not has or checkpoints.load_checkpoint(folder / "last.pt", KIND)["step"] < halt:
                train(argparse.Namespace(**{**vars(args), "seed": seed, "race_seed": args.seed, "run_dir": str(folder),
                                            "stop_at": halt, "resume": has}))
        if halt < at:
            print(f"the starts stopped at step {halt}; continue the race with --resume --run-dir {run}")
            return
        scores = {seed: last_im(run / "starts" / f"seed{seed}", at) for seed in seeds}
        winner = max(scores, key=scores.get)
        cli.write_json(record, {"race_steps": args.race_steps, "step": at, "im_by_seed": scores,
                                "winner_seed": winner})
        print(f"starts: im-score at step {at} by seed {scores}; seed {winner} goes on in {run}")
        stop_here = args.stop_at == at < total  # --stop-at at the race's step: the winner waits there
    winner = json.loads(record.read_text())["winner_seed"]
    for f in sorted((run / "starts" / f"seed{winner}").glob("*")):  # the winner's run folder becomes <run>
        f.replace(run / f.name)
    if stop_here:
        print(f"stopped at step {args.stop_at}; continue with --resume --run-dir {run}")
        return
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
    out = checkpoints.export_checkpoint(ck, args.ckpt, args.out, keep=("target_encoder", "classifier"),
                                        force=args.force)  # never over --ckpt; over checkpoints/ only with --force
    print(f"wrote {out}")


def classifier(path: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    _, enc, cls, _ = load_encoders(path, device)
    return lambda x: cls(enc(x))


def main(argv: list[str] | None = None) -> None:
    refuse_torchrun()
    args = parse_args(argv)
    if args.cmd == "train":
        check_train_args(args)
        if not (args.resume and args.run_dir):  # else the run's own pair, checked when it began
            check_pair(args.source, args.target)
        run = run_folder(args)
        if args.resume:
            check_resumed(args, run)
        if args.starts > 1 and not args.resume or args.resume and (run / "starts").is_dir():
            race(args, run)
        else:
            train(args)
    elif args.cmd == "export":
        export(args)
    else:  # predict (never over --ckpt or --images; over a label CSV beside them only with --force), eval
        evaluation.run_classifier_command(args, classifier)


if __name__ == "__main__":
    cli.cli_main(main)
