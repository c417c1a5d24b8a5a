"""The ADDA method of P4: its networks and optimizers, and the three stages on one step counter as one method for
the run loop (`loop.run`): pretrain (source encoder + classifier), adapt (target encoder against a feature critic;
the source side frozen), selftrain (target encoder on an EMA teacher's confident, class-balanced pseudo-labels)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from datasets import DeviceSampler, ImageSet
from hw3 import checkpoints, distributed, evaluation
from hw3.augment import augment_digits, strong_digits, texture_mix
from models import BNEncoder, FeatureCritic, LeNetClassifier, LeNetEncoder, ema_update, gradient_penalty

KIND = "p4_adda"
LR_ADAPT = 2e-4    # stage 2's Adam rate, encoder and critic (betas 0.5, 0.999), the report's
CRITIC_HIDDEN = 500  # the critic's width, the report's
THRESHOLD = 0.9    # stage 3: the smallest (aligned) teacher confidence that makes a pseudo-label
EMA = 0.99         # stage 3: the teacher's decay


def make_encoder(cfg: dict) -> nn.Module:
    """The encoder a config names: the report's LeNet or the BatchNorm one. (Runs of commit 1a7f9f9 could record
    other conv widths; their checkpoints still load.)"""
    if cfg["encoder"] == "lenet":
        return LeNetEncoder()
    return BNEncoder(cfg.get("input_norm", True), tuple(cfg.get("width", (32, 64))))


def build(cfg: dict, dist: distributed.Dist) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
    """The five networks and four optimizers; each optimizer owns exactly the parameters its stage trains."""
    nets = {"source_encoder": make_encoder(cfg), "classifier": LeNetClassifier(), "target_encoder": make_encoder(cfg),
            "critic": FeatureCritic(500, CRITIC_HIDDEN), "teacher": make_encoder(cfg)}
    nets = {k: distributed.prepare_model(v, dist) for k, v in nets.items()}
    adam = distributed.adam
    opts = {"pretrain": adam([*nets["source_encoder"].parameters(), *nets["classifier"].parameters()], cfg["lr"],
                             betas=(cfg["beta1"], 0.999)),
            "critic": adam(nets["critic"].parameters(), LR_ADAPT, betas=(0.5, 0.999)),
            "target": adam(nets["target_encoder"].parameters(), LR_ADAPT, betas=(0.5, 0.999)),
            "selftrain": adam(nets["target_encoder"].parameters(), cfg["lr_self"])}
    return nets, opts


class ADDAMethod:
    """The three stages on one step counter: pretrain (source encoder + classifier), adapt (target encoder against
    the critic; the source side frozen), selftrain (target encoder on the EMA teacher's balanced pseudo-labels)."""

    def __init__(self, args: argparse.Namespace, nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer],
                 src: DeviceSampler, tgt: DeviceSampler, data: dict[str, ImageSet | torch.Tensor],
                 dist: distributed.Dist, rng: torch.Generator, run: Path):
        self.args, self.nets, self.opts, self.src, self.tgt, self.data = args, nets, opts, src, tgt, data
        self.dist, self.rng, self.run = dist, rng, run
        self.pretrain_end = args.pretrain_steps
        self.adapt_end = args.pretrain_steps + args.adapt_steps
        self.pbar = torch.full((10,), 0.1, device=dist.device)  # running mean of the teacher's predictions
        self.summary: dict = {}  # source-only accuracy, each stage's best checkpoint (the ablation rows)

    def stage(self, step: int) -> str:
        return "pretrain" if step < self.pretrain_end else "adapt" if step < self.adapt_end else "selftrain"

    def set_modes(self, step: int) -> None:
        """Stage 1 trains the source side; afterwards it is frozen (eval mode, no gradients)."""
        pre = self.stage(step) == "pretrain"
        for k in ("source_encoder", "classifier"):
            self.nets[k].train(pre).requires_grad_(pre)
        self.nets["target_encoder"].train(), self.nets["critic"].train()
        self.nets["teacher"].eval().requires_grad_(False)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return augment_digits(x, self.rng)

    def source_view(self, xs: torch.Tensor, xt: torch.Tensor | None = None) -> torch.Tensor:
        """What every stage trains on of a source batch: texture-mixed into target images (`xt`, or a batch drawn
        only when mixing), then augmented, as the run's settings say."""
        if self.args.texture_mix > 0:
            xs = texture_mix(xs, self.tgt.sample(self.args.batch)[0] if xt is None else xt, self.rng,
                             self.args.texture_mix)
        return self.augment(xs) if self.args.augment else xs

    def update(self, step: int) -> dict[str, float]:
        if step == self.adapt_end:  # the first step of stage 3; the last state of stage 2 has been scored
            self.start_selftraining()
        stage = self.stage(step)
        return {"pretrain": self.pretrain_step, "adapt": self.adapt_step, "selftrain": self.selftrain_step}[stage]()

    def start_selftraining(self) -> None:
        """Stage 3 starts from the checkpoint chosen so far (unsupervised), and the teacher as a copy of it. Done at
        the stage's first update, not at the end of stage 2's last one: that state is evaluated (and may be the one
        chosen) before it is swapped out."""
        n = self.nets
        if (self.run / "best.pt").is_file():
            best = checkpoints.load_checkpoint(self.run / "best.pt", KIND)
            n["target_encoder"].load_state_dict(best["models"]["target_encoder"])
        n["teacher"].load_state_dict(n["target_encoder"].state_dict())
        self.set_modes(self.adapt_end)

    def pretrain_step(self) -> dict[str, float]:
        args, (src_enc, cls) = self.args, (self.nets["source_encoder"], self.nets["classifier"])
        xs, ys = self.src.sample(args.batch)
        xs = self.source_view(xs)
        with distributed.autocast(self.dist.device):
            logits = cls(src_enc(xs))
            loss = F.cross_entropy(logits, ys)
        self.opts["pretrain"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["pretrain"].step()
        return {"loss_cls": loss.item(), "src_acc": (logits.argmax(1) == ys).float().mean().item()}

    def adapt_step(self) -> dict[str, float]:
        args, n = self.args, self.nets
        (xs, _), (xt, _) = self.src.sample(args.batch), self.tgt.sample(args.batch)
        xs = self.source_view(xs, xt)
        if args.augment:
            xt = self.augment(xt)
        dom = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long().to(self.dist.device)  # source 0, target 1
        with distributed.autocast(self.dist.device):
            with torch.no_grad():
                fs = n["source_encoder"](xs)
            ft = n["target_encoder"](xt)
            # critic step: tell source features from target ones (its optimizer owns only the critic)
            out = n["critic"](torch.cat([fs, ft.detach()]))
            loss_critic = F.cross_entropy(out.float(), dom, label_smoothing=args.smooth)  # the report's: 0
            if args.gp > 0:
                loss_critic = loss_critic + args.gp * gradient_penalty(n["critic"], fs.float(), ft.detach().float(),
                                                                    self.rng)
        self.opts["critic"].zero_grad(set_to_none=True)
        loss_critic.backward()
        self.opts["critic"].step()
        with distributed.autocast(self.dist.device):  # encoder step: target features the critic takes for source
            loss_enc = F.cross_entropy(n["critic"](ft).float(), dom[: len(xs)])
        self.opts["target"].zero_grad(set_to_none=True)
        loss_enc.backward()
        self.opts["target"].step()
        return {"loss_critic": loss_critic.item(), "loss_enc": loss_enc.item(),
                "critic_acc": (out.argmax(1) == dom).float().mean().item()}

    def selftrain_step(self) -> dict[str, float]:
        args, n = self.args, self.nets
        xt, _ = self.tgt.sample(args.batch)
        with torch.no_grad(), distributed.autocast(self.dist.device):
            p = n["classifier"](n["teacher"](xt)).float().softmax(1)  # the teacher's view: the clean image
            self.pbar = 0.99 * self.pbar + 0.01 * p.mean(0)
            p = p / self.pbar  # distribution alignment: rare predicted classes boosted, labels balanced
            conf, pseudo = (p / p.sum(1, keepdim=True)).max(1)
            mask = (conf >= THRESHOLD).float()
        view = strong_digits(xt, self.rng) if args.student_aug == "strong" else self.augment(xt)
        with distributed.autocast(self.dist.device):  # the student's view: an augmented image
            logits = n["classifier"](n["target_encoder"](view)).float()
            loss = (F.cross_entropy(logits, pseudo, reduction="none") * mask).mean()
        spread = evaluation.entropy(logits.softmax(1).mean(0))  # of the batch's mean prediction: low = one class
        self.opts["selftrain"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["selftrain"].step()
        ema_update(n["teacher"], n["target_encoder"], EMA)  # weights and BatchNorm statistics
        return {"loss_self": loss.item(), "mask": mask.mean().item(), "spread": spread.item()}

    def after_step(self, step: int) -> None:
        """At the end of stage 1 the target encoder starts as the source encoder (what the end of stage 1 is then
        scored with: the source-only model). Stage 3's start is in `update`."""
        if step == self.pretrain_end:
            self.nets["target_encoder"].load_state_dict(self.nets["source_encoder"].state_dict())
            self.set_modes(step)

    def evaluate(self, step: int) -> dict[str, float]:
        n, dev = self.nets, self.dist.device
        for k in ("source_encoder", "classifier", "target_encoder"):
            n[k].eval()
        metrics = {}
        if step <= self.pretrain_end:  # the source side changes in stage 1 only
            val = self.data["val"]
            metrics["val_acc"] = evaluation.accuracy(lambda x: n["classifier"](n["source_encoder"](x)), val.images,
                                                     val.labels, dev)
        if step >= self.pretrain_end:  # the target encoder exists: the criterion, and the (report-only) test accuracy
            classify = lambda x: n["classifier"](n["target_encoder"](x))  # noqa: E731
            test = self.data["target_test"]
            metrics["im"] = evaluation.im_score(evaluation.predict_logits(classify, self.data["select"], dev))
            metrics["target_test_acc"] = evaluation.accuracy(classify, test.images, test.labels, dev)
            self.record(step, metrics)
        self.set_modes(step)
        return metrics

    def record(self, step: int, metrics: dict[str, float]) -> None:
        """The summary's rows: the source-only accuracy, and each stage's best checkpoint by the same criterion."""
        if step == self.pretrain_end:
            self.summary["source_only_target_test_acc"] = metrics["target_test_acc"]
        by = self.summary.setdefault("by_stage", {})
        stage = self.stage(step - 1)
        if metrics["im"] > by.get(stage, {}).get("im", -float("inf")):
            by[stage] = {"im": metrics["im"], "step": step, "target_test_acc": metrics["target_test_acc"]}
        self.summary["last_target_test_acc"] = metrics["target_test_acc"]

    def score(self, metrics: dict[str, float]) -> float | None:
        return metrics.get("im")  # from the end of stage 1 on; unlabelled target images only

    def state_dict(self, full: bool) -> dict:
        keep = self.nets if full else {k: self.nets[k] for k in ("source_encoder", "target_encoder", "classifier")}
        state = {"models": {k: v.state_dict() for k, v in keep.items()}, "summary": self.summary}
        if full:
            state |= {"optimizers": {k: o.state_dict() for k, o in self.opts.items()}, "pbar": self.pbar.cpu()}
        return state

    def load_state_dict(self, state: dict) -> None:
        for k, net in self.nets.items():
            checkpoints.load_state(net, state["models"][k], k)
        for k, opt in self.opts.items():
            opt.load_state_dict(state["optimizers"][k])
        self.pbar, self.summary = state["pbar"].to(self.dist.device), state["summary"]
        self.set_modes(state["step"])
