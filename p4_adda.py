"""P4: ADDA (adversarial discriminative domain adaptation), and the improvements that make it beat DANN.

Three stages on one step counter:
  1. pretrain   source encoder + classifier on labelled source images;
  2. adapt      target encoder (a copy of the source encoder) against a feature critic; the source side is frozen;
  3. selftrain  target encoder, restarted from the checkpoint chosen so far, on confident, class-balanced
                pseudo-labels of target images, consistent under augmentation (FixMatch / DIRT-T
                spirit); --selftrain-steps 0 turns it off.

Model selection never sees target labels: from the end of stage 1 on, the kept checkpoint is the one with the
highest information-maximisation score H(mean p) - mean H(p) on unlabelled target *train* images.

  python p4_adda.py train --source usps --target mnistm              # improved defaults
  python p4_adda.py train --source usps --target mnistm --plain      # the report's ADDA
  python p4_adda.py export --ckpt runs/p4/usps2mnistm/best.pt --out checkpoints/p4_adda_mnistm.pt
  python p4_adda.py predict --ckpt checkpoints/p4_adda_mnistm.pt --images DIR --out pred.csv
  python p4_adda.py eval --ckpt checkpoints/p4_adda_mnistm.pt --data hw3_data --domain mnistm
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import checkpoints
import cli
import distributed
import evaluation
import loop
from augment import augment_digits, texture_mix
from cli import UserError
from datasets import DeviceSampler, ImageSet, adaptation_data, check_domain
from digit_models import BNEncoder, FeatureCritic, LeNetClassifier, LeNetEncoder, ema_update, gradient_penalty

KIND = "p4_adda"
PLAIN = {"encoder": "lenet", "input_norm": False, "augment": False, "zoom": False, "texture_mix": 0.0,  # report's ADDA
         "smooth": 0.0, "gp": 0.0, "critic_hidden": 500, "selftrain_steps": 0, "lr": 2e-4, "lr_adapt": 2e-4,
         "beta1": 0.5}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="pretrain on source, adapt a target encoder, self-train it")
    t.add_argument("--data", help="root of the course layout (default hw3_data, or the run's own with --resume)")
    t.add_argument("--source", required=True)
    t.add_argument("--target", required=True)
    t.add_argument("--run-dir", help="run folder (default runs/p4/<source>2<target>)")
    t.add_argument("--source-test", action="store_true", help="also train on the source's labelled test/ split "
                   "(never scored here; the mnist data's train/ holds no 9s, its test/ only 9s)")
    t.add_argument("--plain", action="store_true", help="the report's ADDA: " + ", ".join(f"{k}={v}" for k, v in
                                                                                         PLAIN.items()))
    t.add_argument("--pretrain-steps", type=int, default=2000, help="stage 1 steps")
    t.add_argument("--adapt-steps", type=int, default=3000, help="stage 2 steps")
    t.add_argument("--selftrain-steps", type=int, default=2000, help="stage 3 steps (0: no self-training)")
    t.add_argument("--batch", type=int, default=128, help="per domain (report: 128)")
    t.add_argument("--lr", type=float, default=1e-3, help="stage 1 Adam learning rate (report: 2e-4)")
    t.add_argument("--lr-adapt", type=float, default=2e-4, help="stage 2 learning rate, encoder and critic")
    t.add_argument("--lr-self", type=float, default=1e-4, help="stage 3 learning rate")
    t.add_argument("--beta1", type=float, default=0.9, help="stage 1 Adam beta1 (report: 0.5; stage 2 uses 0.5)")
    t.add_argument("--encoder", choices=["lenet", "bn"], default="bn", help="report's LeNet or the BatchNorm one")
    t.add_argument("--no-input-norm", dest="input_norm", action="store_false",
                   help="bn encoder without per-image standardisation")
    t.add_argument("--no-augment", dest="augment", action="store_false", help="no device-side augmentation")
    t.add_argument("--zoom", action="store_true", help="random rescale of the digits too (with augmentation)")
    t.add_argument("--texture-mix", type=float, default=0.0,
                   help="share of source images drawn into tile-shuffled unlabelled target images (stages 1-2)")
    t.add_argument("--critic-hidden", type=int, default=500, help="critic width (report: 500)")
    t.add_argument("--smooth", type=float, default=0.1, help="label smoothing of the critic's targets")
    t.add_argument("--gp", type=float, default=0.0, help="weight of a zero-centred gradient penalty on the critic")
    t.add_argument("--threshold", type=float, default=0.9, help="stage 3 pseudo-label confidence threshold")
    t.add_argument("--ema", type=float, default=0.99, help="stage 3 teacher EMA decay")
    t.add_argument("--teacher-bn", choices=["student", "clean"], default="student",
                   help="the teacher's BatchNorm statistics: averaged from the student's (gathered on augmented "
                        "views) or its own, of the clean batch it labels")
    t.add_argument("--select-images", type=int, default=2000, help="unlabelled target train images for selection")
    t.add_argument("--val-fraction", type=float, default=0.1, help="source training data held out (stage 1 log)")
    loop.add_run_args(t)
    evaluation.add_classifier_commands(sub, "the target encoder")
    args = p.parse_args(argv)
    if args.cmd == "train" and args.plain:
        vars(args).update(PLAIN)
    return args


def make_encoder(cfg: dict) -> nn.Module:
    """The encoder a config names: the report's LeNet or the BatchNorm one."""
    return LeNetEncoder() if cfg["encoder"] == "lenet" else BNEncoder(cfg.get("input_norm", True))


def build(cfg: dict, dist: distributed.Dist) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
    """The five networks and four optimizers; each optimizer owns exactly the parameters its stage trains."""
    nets = {"source_encoder": make_encoder(cfg), "classifier": LeNetClassifier(), "target_encoder": make_encoder(cfg),
            "critic": FeatureCritic(500, cfg["critic_hidden"]), "teacher": make_encoder(cfg)}
    nets = {k: distributed.prepare_model(v, dist) for k, v in nets.items()}
    adam = distributed.adam
    opts = {"pretrain": adam([*nets["source_encoder"].parameters(), *nets["classifier"].parameters()], cfg["lr"],
                             betas=(cfg["beta1"], 0.999)),
            "critic": adam(nets["critic"].parameters(), cfg["lr_adapt"], betas=(0.5, 0.999)),
            "target": adam(nets["target_encoder"].parameters(), cfg["lr_adapt"], betas=(0.5, 0.999)),
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
        return augment_digits(x, self.rng, self.args.zoom)

    def update(self, step: int) -> dict[str, float]:
        return {"pretrain": self.pretrain_step, "adapt": self.adapt_step, "selftrain": self.selftrain_step}[
            self.stage(step)]()

    def pretrain_step(self) -> dict[str, float]:
        args, (src_enc, cls) = self.args, (self.nets["source_encoder"], self.nets["classifier"])
        xs, ys = self.src.sample(args.batch)
        if args.texture_mix > 0:
            xs = texture_mix(xs, self.tgt.sample(args.batch)[0], self.rng, args.texture_mix)
        if args.augment:
            xs = self.augment(xs)
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
        if args.texture_mix > 0:
            xs = texture_mix(xs, xt, self.rng, args.texture_mix)
        if args.augment:
            xs, xt = self.augment(xs), self.augment(xt)
        dom = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long().to(self.dist.device)  # source 0, target 1
        with distributed.autocast(self.dist.device):
            with torch.no_grad():
                fs = n["source_encoder"](xs)
            ft = n["target_encoder"](xt)
            # critic step: tell source features from target ones (its optimizer owns only the critic)
            out = n["critic"](torch.cat([fs, ft.detach()]))
            loss_critic = F.cross_entropy(out.float(), dom, label_smoothing=args.smooth)
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
        clean_bn = args.teacher_bn == "clean"
        for m in n["teacher"].modules():  # "clean": BatchNorm statistics of the clean batch it labels (no dropout)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(clean_bn)
        with torch.no_grad(), distributed.autocast(self.dist.device):
            p = n["classifier"](n["teacher"](xt)).float().softmax(1)  # the teacher's view: the clean image
            self.pbar = 0.99 * self.pbar + 0.01 * p.mean(0)
            p = p / self.pbar  # distribution alignment: rare predicted classes are boosted, labels stay balanced
            conf, pseudo = (p / p.sum(1, keepdim=True)).max(1)
            mask = (conf >= args.threshold).float()
        with distributed.autocast(self.dist.device):  # the student's view: an augmented image
            logits = n["classifier"](n["target_encoder"](self.augment(xt)))
            loss = (F.cross_entropy(logits.float(), pseudo, reduction="none") * mask).mean()
        self.opts["selftrain"].zero_grad(set_to_none=True)
        loss.backward()
        self.opts["selftrain"].step()
        ema_update(n["teacher"], n["target_encoder"], args.ema, buffers=not clean_bn)
        return {"loss_self": loss.item(), "mask": mask.mean().item()}

    def after_step(self, step: int) -> None:
        """At a stage boundary: the target encoder starts as the source encoder; the teacher as the chosen one."""
        n = self.nets
        if step == self.pretrain_end:
            n["target_encoder"].load_state_dict(n["source_encoder"].state_dict())
        if step == self.adapt_end:  # self-training starts from the checkpoint chosen so far (unsupervised)
            if (self.run / "best.pt").is_file():
                best = checkpoints.load_checkpoint(self.run / "best.pt", KIND)
                n["target_encoder"].load_state_dict(best["models"]["target_encoder"])
            n["teacher"].load_state_dict(n["target_encoder"].state_dict())
        if step in (self.pretrain_end, self.adapt_end):
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


def train(args: argparse.Namespace) -> None:
    run = Path(args.run_dir or f"runs/p4/{args.source}2{args.target}")
    resume = checkpoints.resume_args(args, run, KIND) if args.resume else None  # the run's own settings win
    args.data = args.data or "hw3_data"
    check_domain(args.source), check_domain(args.target)
    if args.source == args.target:
        raise UserError("--source and --target must differ")
    if args.pretrain_steps < 1 or args.adapt_steps < 0 or args.selftrain_steps < 0:
        raise UserError("--pretrain-steps must be >= 1, --adapt-steps and --selftrain-steps >= 0")
    dist = distributed.setup(args.device, args.seed, args.precision)
    if dist.world > 1:
        raise UserError("p4_adda.py runs in one process; start it with python, not torchrun")
    config = {"kind": KIND, **checkpoints.run_config(args)}

    data = adaptation_data(args.data, args.source, args.target, args.val_fraction, args.seed, args.source_test,
                           args.select_images)
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
    if args.cmd in ("train", "export"):
        {"train": train, "export": export}[args.cmd](args)
    else:
        evaluation.run_classifier_command(args, classifier)


if __name__ == "__main__":
    cli.cli_main(main)
