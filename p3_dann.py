"""P3: digit classification across domains with DANN, and its source-only / target-only bounds.

  python p3_dann.py train --source usps --target mnistm --mode dann
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
PLAIN = {"arch": "report", "input_norm": False, "augment": False, "zoom": False, "domain_bn": False,  # report's DANN
         "domain_hidden": 100, "domain_layers": 1, "domain_weight": 1.0, "grl_ramp": 0, "grl_delay": 0,
         "conditional": False, "entropy_weighting": False, "target_entropy": 0.0, "select": "val"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train source-only, DANN or target-only")
    t.add_argument("--data", help="root of the course layout (default hw3_data, or the run's own with --resume)")
    t.add_argument("--source", help="source domain (required, except with --resume: the run's own)")
    t.add_argument("--target", help="target domain (required, except with --resume: the run's own)")
    t.add_argument("--mode", choices=["source", "dann", "target"], default="dann")
    t.add_argument("--run-dir", help="run folder (default runs/p3/<mode>_<source>2<target>)")
    t.add_argument("--source-test", action="store_true", help="source / dann: also train on the source's labelled "
                   "test/ split (never scored here; the mnist data's train/ holds no 9s, its test/ only 9s)")
    t.add_argument("--plain", action="store_true", help="the report's DANN: " + ", ".join(f"{k}={v}" for k, v in
                                                                                        PLAIN.items()))
    t.add_argument("--epochs", type=float, default=100, help="epochs over the labelled training set (report: 100)")
    t.add_argument("--steps", type=int, default=3000, help="training steps (0: use --epochs; the tables use 3000)")
    t.add_argument("--batch", type=int, default=128, help="per domain (report: 128)")
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--arch", choices=["report", "bn"], default="bn",
                   help="feature extractor: the report's 3->32->48 or P4's wider BatchNorm encoder")
    t.add_argument("--no-input-norm", dest="input_norm", action="store_false",
                   help="no per-image standardisation inside the network")
    t.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no shift / colour / inversion augmentation (applied alike to both domains)")
    t.add_argument("--no-zoom", dest="zoom", action="store_false",
                   help="no random rescaling of the digits in the augmentation (USPS digits fill the frame)")
    t.add_argument("--no-domain-bn", dest="domain_bn", action="store_false", help="DANN: one BatchNorm pass for "
                   "both domains (default: source and target pass BatchNorm separately, and the target side is scored "
                   "and shipped with BatchNorm statistics of target train images, AdaBN)")
    t.add_argument("--domain-hidden", type=int, default=1024, help="width of the domain classifier (report: 100)")
    t.add_argument("--domain-layers", type=int, choices=[1, 2], default=2,
                   help="hidden layers of the domain classifier (report: 1; 2 adds BatchNorm, as in tllib)")
    t.add_argument("--domain-weight", type=float, default=1.0, help="weight of the domain loss")
    t.add_argument("--no-conditional", dest="conditional", action="store_false", help="DANN: the domain classifier "
                   "sees the features alone (default: their outer product with the predicted class probabilities, "
                   "CDAN, which aligns class by class)")
    t.add_argument("--no-entropy-weighting", dest="entropy_weighting", action="store_false", help="DANN: "
                   "every image's domain loss counts alike (default: weighted by 1 + exp(-entropy of its prediction), "
                   "CDAN+E)")
    t.add_argument("--target-entropy", type=float, default=0.3, help="DANN: weight of the mean prediction "
                   "entropy on target images (entropy minimisation; 0: off)")
    t.add_argument("--grl-ramp", type=int, default=0, help="steps over which the reversal coefficient "
                   "2/(1+exp(-10p))-1 ramps to 1 (0: the whole run, as in the report)")
    t.add_argument("--grl-delay", type=int, default=0, help="steps of source-only training (reversal coefficient 0) "
                   "before the ramp starts; the domain classifier trains meanwhile (a warm start)")
    t.add_argument("--select", choices=["im", "val"], default="im", help="checkpoint selection: information "
                   "maximisation on unlabelled target train images, or labelled source validation accuracy")
    t.add_argument("--select-images", type=int, default=2000, help="unlabelled target train images for --select im")
    t.add_argument("--val-fraction", type=float, default=0.1, help="labelled training data held out for selection")
    t.add_argument("--compile", action="store_true", help="torch.compile the network (CUDA)")
    loop.add_run_args(t)
    evaluation.add_classifier_commands(sub, "the DANN network")
    args = p.parse_args(argv)
    if args.cmd == "train" and args.plain:
        vars(args).update(PLAIN)
    return args


def make_optimizers(net: DANN, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The label optimizer owns the feature extractor and label classifier; the domain optimizer the domain head."""
    opt_label = distributed.adam([*net.features.parameters(), *net.label_classifier.parameters()], lr)
    return opt_label, distributed.adam(net.domain_classifier.parameters(), lr)


def reversal_coeff(step: int, delay: int, ramp: int) -> float:
    """0 for the first `delay` steps, then Ganin's 2/(1+exp(-10p))-1 with p going 0 -> 1 over `ramp` steps."""
    return 0.0 if step < delay else dann_coeff(min(1.0, (step - delay) / max(1, ramp)))


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
        self.eval_net = net  # what evaluation scored last: with --domain-bn, a copy with target BN statistics

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
                coeff = reversal_coeff(step, args.grl_delay, args.grl_ramp or self.steps - args.grl_delay)
                self.net.domain_classifier.reverse.coeff = coeff
                logits, dom_logits = self.model(torch.cat([xs, xt]), len(xs) if args.domain_bn else None)
                dom_true = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long().to(dist.device)
                p = logits.float().softmax(1)  # (2B, 10)
                loss_dom = domain_loss(dom_logits, dom_true, p.detach() if args.entropy_weighting else None)
                logits = logits[: len(xs)]
                loss_cls = F.cross_entropy(logits, ys)
                loss = loss_cls + args.domain_weight * loss_dom
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
        target dev-test accuracy (reported only). With --domain-bn the target side is scored as it will be used:
        by a copy whose BatchNorm statistics come from target images (AdaBN)."""
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
    if not (args.resume and args.run_dir):  # else the run's own pair, checked when it began
        check_pair(args.source, args.target)
    run = Path(args.run_dir or f"runs/p3/{args.mode}_{args.source}2{args.target}")
    resume = checkpoints.resume_args(args, run, KIND)
    if args.grl_delay < 0 or args.grl_ramp < 0:
        raise UserError("--grl-delay and --grl-ramp must be >= 0")
    if args.source_test and args.mode == "target":
        raise UserError("--source-test is for --mode source or dann: the target's test/ split is the one scored")
    if args.mode == "target":
        args.select = "val"  # the labelled domain is the target itself
    dist = distributed.setup(args.device, args.seed, args.precision)
    if args.batch % dist.world:
        raise UserError(f"--batch {args.batch} does not split over {dist.world} processes")
    config = {"kind": KIND, **checkpoints.run_config(args)}

    # data: the labelled domain (source, or target for the upper bound) with its validation split; unlabelled
    # target train images (DANN's target batches and the selection score); the target dev-test, reported only
    labelled = args.target if args.mode == "target" else args.source
    data = adaptation_data(args.data, labelled, args.target, args.val_fraction, args.seed, args.source_test,
                           args.select_images)
    rng = torch.Generator(dist.device).manual_seed(args.seed)
    src = DeviceSampler(data["train"], dist.device, rng)
    tgt = DeviceSampler(data["target_train"], dist.device, rng) if args.mode == "dann" else None
    steps = args.steps or max(1, round(args.epochs * len(src) / args.batch))
    config["total_steps"] = steps
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
        print(f"wrote {checkpoints.export_checkpoint(ck, args.ckpt, args.out)}")
        return
    if args.cmd == "train":
        train(args)
    else:
        evaluation.run_classifier_command(args, classifier)


if __name__ == "__main__":
    cli.cli_main(main)
