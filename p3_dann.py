"""P3: digit classification across domains with DANN, and its source-only / target-only bounds.

  python p3_dann.py train --data hw3_data --source usps --target mnistm --precision bf16   # the shipped recipe
  python p3_dann.py predict --ckpt checkpoints/p3_dann_mnistm.pt --images DIR --out pred.csv
  python p3_dann.py eval --ckpt runs/p3/dann_usps2mnistm/best.pt --data hw3_data --domain mnistm
"""
from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from datasets import DeviceSampler, ImageSet, adaptation_data, check_pair
from hw3 import checkpoints, cli, distributed, evaluation, loop
from hw3.augment import augment_digits
from hw3.cli import UserError
from models import DANN, dann_coeff

KIND = "p3_dann"
DEFAULT_STEPS = 3000  # the tables' and the shipped runs' length
# Settings no option changes: the defaults' values, or under --plain the report's DANN (its 3->32->48 network,
# 100-unit domain head, no augmentation, selection on source validation). Every run's config records them: build_net
# reads the network's, and an old run whose recorded values differ is refused on --resume.
DEFAULTS = {"arch": "bn", "input_norm": True, "augment": True, "zoom": True, "domain_bn": True, "domain_hidden": 1024,
            "domain_layers": 2, "select": "im"}
PLAIN = {"arch": "report", "input_norm": False, "augment": False, "zoom": False, "domain_bn": False,
         "domain_hidden": 100, "domain_layers": 1, "select": "val",
         "conditional": False, "entropy_weighting": False, "target_entropy": 0.0}  # and these three options
SETTINGS_COMMIT = "1a7f9f9"  # the last commit with an option for each key of DEFAULTS
# Probes that measured no gain, gone from the code: config key -> (the value today's code trains with, the commit that
# still has the option; docs/experiments.md keeps the rows)
REMOVED = {"domain_weight": (1.0, "1a7f9f9"), "grl_ramp": (0, "1a7f9f9"), "grl_delay": (0, "1a7f9f9"),
           "class_weights": (False, "337204b"), "label_shift": (False, "b6223f5")}


def settings(plain: bool, mode: str) -> dict:
    """The values of the settings no option changes, for a run of --plain `plain` and --mode `mode`."""
    out = {**DEFAULTS, **(PLAIN if plain else {})}
    if mode == "target":
        out["select"] = "val"  # the labelled domain is the target itself
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train source-only, DANN or target-only")
    cli.add_domains(t)
    t.add_argument("--mode", choices=["source", "dann", "target"], default="dann",
                   help="source-only (lower bound), DANN, or trained on the target's labels (upper bound)")
    t.add_argument("--run-dir", help="run folder (default: runs/p3/<mode>_<source>2<target>)")
    t.add_argument("--source-test", action="store_true", help="source / dann: also train on the source's labelled "
                   "test/ split (never scored here; the mnist data's train/ holds no 9s, its test/ only 9s)")
    t.add_argument("--plain", action="store_true", help="the report's DANN: " + ", ".join(f"{k}={v}" for k, v in
                                                                                        PLAIN.items()))
    t.add_argument("--steps", type=int, help=f"training steps (default: {DEFAULT_STEPS}; with --resume the run's "
                   "own, and a larger value extends the run)")
    t.add_argument("--epochs", type=float, help="the run's length in epochs over the labelled training set, instead "
                   "of --steps (default: --steps decides; the report: 100)")
    t.add_argument("--batch", type=int, default=128, help="images per domain in each step (the report's too)")
    t.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of both optimizers")
    t.add_argument("--no-conditional", dest="conditional", action="store_false", help="DANN: the domain classifier "
                   "sees the features alone (default: their outer product with the predicted class probabilities, "
                   "CDAN, which aligns class by class)")
    t.add_argument("--no-entropy-weighting", dest="entropy_weighting", action="store_false", help="DANN: "
                   "every image's domain loss counts alike (default: weighted by 1 + exp(-entropy of its prediction), "
                   "CDAN+E)")
    t.add_argument("--target-entropy", type=float, default=0.3, help="DANN: weight of the mean prediction "
                   "entropy on target images (entropy minimisation; 0: off)")
    t.add_argument("--select-images", type=int, default=2000,
                   help="unlabelled target train images for the selection score (and AdaBN's statistics)")
    t.add_argument("--val-fraction", type=float, default=0.1, help="labelled training data held out for validation")
    t.add_argument("--compile", action="store_true", help="torch.compile the network (CUDA)")
    loop.add_run_args(t)
    evaluation.add_classifier_commands(sub, "the DANN network")
    return cli.show_defaults(p)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.cmd == "train":
        vars(args).update(settings(args.plain, args.mode))
    return args


def run_length(args: argparse.Namespace, n_labelled: int) -> int:
    """Training steps: --steps, else --epochs over `n_labelled` images, else the default. (A config of a run started
    before --epochs and --steps excluded each other records steps 0 when --epochs set the length.)"""
    if args.steps:
        return args.steps
    if args.epochs:
        return max(1, round(args.epochs * n_labelled / args.batch))
    return DEFAULT_STEPS


def check_resumable(config: dict, run: Path) -> None:
    """Refuse, in one line, to resume a run that trained with a setting today's code no longer has."""
    checkpoints.refuse_other_values(config, {k: v for k, (v, _) in REMOVED.items()},
                                    {k: c for k, (_, c) in REMOVED.items()}, run, "an option removed since")
    checkpoints.refuse_other_values(config, settings(config.get("plain", False), config.get("mode", "dann")),
                                    SETTINGS_COMMIT, run, "which no option sets now")


def make_optimizers(net: DANN, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The label optimizer owns the feature extractor and label classifier; the domain optimizer the domain head."""
    opt_label = distributed.adam([*net.features.parameters(), *net.label_classifier.parameters()], lr)
    return opt_label, distributed.adam(net.domain_classifier.parameters(), lr)


def reversal_coeff(step: int, steps: int) -> float:
    """Ganin's 2/(1+exp(-10p))-1, p going 0 -> 1 over the run's `steps`."""
    return dann_coeff(min(1.0, step / max(1, steps)))


def domain_loss(dom_logits: torch.Tensor, dom_true: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
    """Domain cross-entropy (B,) -> mean. With class probabilities (B, C), each image weighted by 1 + exp(-entropy),
    normalised to mean 1, so that confident predictions drive the alignment (CDAN+E)."""
    loss = F.cross_entropy(dom_logits.float(), dom_true, reduction="none")  # (B,)
    if probs is not None:
        w = 1 + torch.exp(-evaluation.entropy(probs))
        loss = loss * (w / w.mean())
    return loss.mean()


class DANNMethod:
    """Source-only / target-only (cross-entropy on the labelled batch) and DANN (plus the domain loss, whose gradient
    reaches the features reversed). One `update` is one step on one batch per domain."""

    def __init__(self, args: argparse.Namespace, net: DANN, model: nn.Module, src: DeviceSampler,
                 tgt: DeviceSampler | None, data: dict[str, ImageSet], dist: distributed.Dist, rng: torch.Generator,
                 steps: int):
        self.args, self.net, self.model, self.src, self.tgt, self.data = args, net, model, src, tgt, data
        self.dist, self.rng, self.steps = dist, rng, steps
        self.opt_label, self.opt_domain = make_optimizers(net, args.lr)
        self.eval_net = net  # what evaluation scored last: with domain_bn, a copy with target BN statistics

    def update(self, step: int) -> dict[str, float]:
        args, dist = self.args, self.dist
        xs, ys = self.src.sample(args.batch, dist.rank, dist.world)
        if args.augment:  # the same augmentation for both domains: one only the source saw would be a domain signal
            xs = augment_digits(xs, self.rng, args.zoom)
        out = {}
        with distributed.autocast(dist.device):
            if self.tgt is None:  # source-only / target-only: plain supervised training
                logits, _ = self.model(xs)
                loss = loss_cls = F.cross_entropy(logits, ys)
            else:  # DANN: source + target through the features; the domain head sits behind gradient reversal
                xt, _ = self.tgt.sample(args.batch, dist.rank, dist.world)
                if args.augment:
                    xt = augment_digits(xt, self.rng, args.zoom)
                coeff = reversal_coeff(step, self.steps)
                self.net.domain_classifier.reverse.coeff = coeff
                logits, dom_logits = self.model(torch.cat([xs, xt]), len(xs) if args.domain_bn else None)
                dom_true = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long().to(dist.device)
                p = logits.float().softmax(1)  # (2B, 10)
                loss_dom = domain_loss(dom_logits, dom_true, p.detach() if args.entropy_weighting else None)
                logits = logits[: len(xs)]
                loss_cls = F.cross_entropy(logits, ys)
                loss = loss_cls + loss_dom
                target_entropy = evaluation.entropy(p[len(xs):]).mean()  # of the target predictions
                if args.target_entropy:
                    loss = loss + args.target_entropy * target_entropy
                out = {"loss_dom": loss_dom.item(), "dom_acc": (dom_logits.argmax(1) == dom_true).float().mean().item(),
                       "coeff": coeff, "target_entropy": target_entropy.item()}
        self.opt_label.zero_grad(set_to_none=True)
        self.opt_domain.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_label.step()
        self.opt_domain.step()
        return {"loss_cls": loss_cls.item(), "src_acc": (logits.argmax(1) == ys).float().mean().item(), **out}

    def after_step(self, step: int) -> None:
        pass

    def evaluate(self, step: int) -> dict[str, float]:
        """Source validation accuracy, the information-maximisation score on unlabelled target train images, and the
        target dev-test accuracy (reported only). With per-domain BatchNorm (the defaults) the target side is scored
        as it will be used: by a copy whose BatchNorm statistics come from target images (AdaBN)."""
        dev, val, select, test = self.dist.device, self.data["val"], self.data["select"], self.data["target_test"]
        self.model.eval()
        metrics = {"val_acc": evaluation.accuracy(lambda x: self.model(x)[0], val.images, val.labels, dev)}
        self.eval_net = self.net
        if self.args.domain_bn and self.tgt is not None:
            self.eval_net = copy.deepcopy(self.net)
            evaluation.recompute_bn_stats(self.eval_net, select, dev, seed=self.args.seed)
        classify = lambda x: self.eval_net(x)[0]  # noqa: E731
        metrics |= {"im": evaluation.im_score(evaluation.predict_logits(classify, select, dev)),
                    "target_test_acc": evaluation.accuracy(classify, test.images, test.labels, dev)}
        self.model.train()
        return metrics

    def score(self, metrics: dict[str, float]) -> float:
        return metrics["im"] if self.args.select == "im" else metrics["val_acc"]  # never the target test labels

    def state_dict(self, full: bool) -> dict:
        if not full:  # best.pt: the network as evaluation scored it
            return {"models": {"dann": self.eval_net.state_dict()}}
        return {"models": {"dann": self.net.state_dict()},
                "optimizers": {"label": self.opt_label.state_dict(), "domain": self.opt_domain.state_dict()}}

    def load_state_dict(self, state: dict) -> None:
        checkpoints.load_state(self.net, state["models"]["dann"], "DANN")
        self.opt_label.load_state_dict(state["optimizers"]["label"])
        self.opt_domain.load_state_dict(state["optimizers"]["domain"])


def train(args: argparse.Namespace) -> None:
    if args.steps is not None and args.epochs is not None:
        raise UserError("--steps and --epochs both set the run's length; give one of them")
    cli.check_range(args, steps=">=1", epochs=">0", batch=">=1", lr=">0", target_entropy=">=0",
                    select_images=">=1", eval_every=">=1", log_every=">=1", stop_at=">=1")
    if not 0 < args.val_fraction < 1:
        raise UserError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if not (args.resume and args.run_dir):  # else the run's own pair, checked when it began
        check_pair(args.source, args.target)
    run = Path(args.run_dir or f"runs/p3/{args.mode}_{args.source}2{args.target}")
    length = {"steps": args.steps, "epochs": args.epochs}  # as given: with --resume, a new length wins
    resume = checkpoints.resume_args(args, run, KIND)
    if resume is not None:
        check_resumable(resume["config"], run)
        if length["steps"] is not None or length["epochs"] is not None:
            args.steps, args.epochs = length["steps"], length["epochs"]
    if args.source_test and args.mode == "target":
        raise UserError("--source-test is for --mode source or dann: the target's test/ split is the one scored")
    dist = distributed.setup(args.device, args.seed, args.precision)
    if args.batch % dist.world:
        raise UserError(f"--batch {args.batch} does not split over {dist.world} processes")

    # data: the labelled domain (source, or target for the upper bound) with its validation split; unlabelled
    # target train images (DANN's target batches and the selection score); the target dev-test, reported only
    labelled = args.target if args.mode == "target" else args.source
    data = adaptation_data(args.data, labelled, args.target, args.val_fraction, args.seed, args.source_test,
                           args.select_images)
    rng = torch.Generator(dist.device).manual_seed(args.seed)
    src = DeviceSampler(data["train"], dist.device, rng)
    tgt = DeviceSampler(data["target_train"], dist.device, rng) if args.mode == "dann" else None
    steps = args.steps = run_length(args, len(src))
    if resume is not None and steps < resume["step"]:
        raise UserError(f"--resume: the run has reached step {resume['step']}; --steps {steps} would end before it")
    config = {"kind": KIND, **checkpoints.run_config(args), "total_steps": steps}
    run = checkpoints.open_run(run, config, args.resume, args.overwrite, dist)

    net = build_net(config)
    model = distributed.prepare_model(net, dist, args.compile, find_unused=args.mode != "dann")  # no domain loss
    method = DANNMethod(args, net, model, src, tgt, data, dist, rng, steps)
    model.train()
    plan = loop.Schedule(steps, args.log_every, args.eval_every, stop_at=args.stop_at,
                         images_per_step=args.batch * (2 if tgt is not None else 1),
                         desc=f"{args.mode} {args.source}->{args.target}")
    best = loop.run(method, run, config, rng, plan, dist.is_main, resume)
    if "stopped" in best or not dist.is_main:
        distributed.cleanup(dist)
        return
    metrics = {"source": args.source, "target": args.target, "mode": args.mode, "steps": steps, "select": args.select,
               "best_step": best["step"], "source_val_acc" if args.mode != "target" else "target_val_acc":
               best["val_acc"], "im": best["im"], "target_test_acc": best["target_test_acc"]}
    cli.write_json(run / "metrics.json", metrics)
    checkpoints.plot_curves(run, {"losses": ["loss_cls", "loss_dom", "target_entropy"],
                                  "accuracy": ["src_acc", "dom_acc", "val_acc", "target_test_acc"],
                                  "selection": ["im"]})
    print(f"{args.mode} {args.source}->{args.target}: best step {best['step']} by {args.select}, "
          f"val acc {best['val_acc']:.4f}, target ({args.target}) dev-test acc {best['target_test_acc']:.4f}  [{run}]")
    distributed.cleanup(dist)


def build_net(cfg: dict) -> DANN:
    """The DANN network a run's config describes (configs without the newer keys are the report's)."""
    return DANN(cfg.get("input_norm", False), cfg.get("arch", "report"), cfg.get("domain_hidden", 100),
                cfg.get("domain_layers", 1), cfg.get("conditional", False))


DOMAIN_HEAD = "domain_classifier."


def load_classifier(path: str, device: torch.device) -> tuple[DANN, dict]:
    """The DANN network of a checkpoint (a run's best.pt / last.pt or a shipped one), in eval mode. Shipped
    checkpoints hold no domain classifier (training only): it is left as initialised."""
    ck = checkpoints.load_checkpoint(path, KIND)
    net = build_net(ck["config"])
    state = ck["models"]["dann"]
    if not any(k.startswith(DOMAIN_HEAD) for k in state):
        state = {**{k: v for k, v in net.state_dict().items() if k.startswith(DOMAIN_HEAD)}, **state}
    checkpoints.load_state(net, state, "DANN")
    return net.to(device).eval(), ck


def classifier(path: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    net, _ = load_classifier(path, device)
    return lambda x: net(x)[0]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.cmd == "export":
        _, ck = load_classifier(args.ckpt, torch.device("cpu"))  # the weights fit the network
        ck["models"]["dann"] = {k: v for k, v in ck["models"]["dann"].items() if not k.startswith(DOMAIN_HEAD)}
        # never over --ckpt itself; over shipped weights (checkpoints/) only with --force
        print(f"wrote {checkpoints.export_checkpoint(ck, args.ckpt, args.out, force=args.force)}")
        return
    if args.cmd == "train":
        train(args)
    else:
        evaluation.run_classifier_command(args, classifier)


if __name__ == "__main__":
    cli.cli_main(main)
