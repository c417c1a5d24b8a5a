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
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import common
from common import UserError
from datasets import (
    DIGIT_SIZE,
    DeviceSampler,
    ImageSet,
    augment_digits,
    check_domain,
    digit_splits,
    load_digits,
    texture_mix,
)
from models import BNEncoder, FeatureCritic, LeNetClassifier, LeNetEncoder

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
    t.add_argument("--select-images", type=int, default=2000, help="unlabelled target train images for selection")
    t.add_argument("--val-fraction", type=float, default=0.1, help="source training data held out (stage 1 log)")
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    common.add_precision_arg(t)
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last.pt")
    t.add_argument("--overwrite", action="store_true", help="start again in a folder that holds a run")
    t.add_argument("--stop-at", type=int, help=argparse.SUPPRESS)  # checkpoint and stop here, as Ctrl-C would
    x = sub.add_parser("export", help="ship a run's checkpoint: fp16 target encoder + classifier + config")
    x.add_argument("--ckpt", required=True)
    x.add_argument("--out", required=True)
    q = sub.add_parser("predict", help="write image_name,label for every image of a folder (target encoder)")
    q.add_argument("--ckpt", required=True)
    q.add_argument("--images", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--device", default="auto")
    e = sub.add_parser("eval", help="accuracy of a checkpoint's target encoder on a labelled split")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--data", default="hw3_data")
    e.add_argument("--domain", required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    if a.cmd == "train" and a.plain:
        vars(a).update(PLAIN)
    return a


def make_encoder(cfg: dict) -> nn.Module:
    """The encoder a config names: the report's LeNet or the BatchNorm one."""
    return LeNetEncoder() if cfg["encoder"] == "lenet" else BNEncoder(cfg.get("input_norm", True))


def im_score(logits: torch.Tensor) -> float:
    """Information maximisation H(mean p) - mean H(p): high when predictions are confident AND diverse."""
    p = logits.float().softmax(1)
    ent = lambda q: -(q * q.clamp_min(1e-8).log()).sum(-1)  # noqa: E731
    return (ent(p.mean(0)) - ent(p).mean()).item()


def gradient_penalty(critic: nn.Module, fs: torch.Tensor, ft: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Zero-centred penalty on the critic's gradient at random interpolates of source and target features."""
    eps = torch.rand(len(fs), 1, generator=g, device=g.device).to(fs.device)
    x = (eps * fs + (1 - eps) * ft).requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad((out[:, 1] - out[:, 0]).sum(), x, create_graph=True)
    return grad.pow(2).sum(1).mean()


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student, parameters and BatchNorm statistics alike."""
    for t, s in zip(teacher.state_dict().values(), student.state_dict().values()):
        if t.is_floating_point():
            t.mul_(decay).add_(s, alpha=1 - decay)
        else:
            t.copy_(s)


def build(cfg: dict, d: common.Dist) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
    """The five networks and four optimizers; each optimizer owns exactly the parameters its stage trains."""
    nets = {"source_encoder": make_encoder(cfg), "classifier": LeNetClassifier(), "target_encoder": make_encoder(cfg),
            "critic": FeatureCritic(500, cfg["critic_hidden"]), "teacher": make_encoder(cfg)}
    nets = {k: common.prepare_model(v, d) for k, v in nets.items()}
    adam = common.adam
    opts = {"pretrain": adam([*nets["source_encoder"].parameters(), *nets["classifier"].parameters()], cfg["lr"],
                             betas=(cfg["beta1"], 0.999)),
            "critic": adam(nets["critic"].parameters(), cfg["lr_adapt"], betas=(0.5, 0.999)),
            "target": adam(nets["target_encoder"].parameters(), cfg["lr_adapt"], betas=(0.5, 0.999)),
            "selftrain": adam(nets["target_encoder"].parameters(), cfg["lr_self"])}
    return nets, opts


def train(a: argparse.Namespace) -> None:
    run = Path(a.run_dir or f"runs/p4/{a.source}2{a.target}")
    if a.resume:  # the run's own settings win over the command line's (except where data and device are)
        common.resume_args(a, run, KIND)
    a.data = a.data or "hw3_data"
    check_domain(a.source), check_domain(a.target)
    if a.source == a.target:
        raise UserError("--source and --target must differ")
    if a.pretrain_steps < 1 or a.adapt_steps < 0 or a.selftrain_steps < 0:
        raise UserError("--pretrain-steps must be >= 1, --adapt-steps and --selftrain-steps >= 0")
    d = common.setup(a.device, a.seed, a.precision)
    if d.world > 1:
        raise UserError("p4_adda.py runs in one process; start it with python, not torchrun")
    config = {"kind": KIND, **common.run_config(a)}

    # data: labelled source (train / validation), unlabelled target train; target dev-test only reported
    src_train, src_val, _ = digit_splits(a.data, a.source, a.val_fraction, a.seed, a.source_test)
    tgt_train = load_digits(a.data, a.target, "train")
    tgt_test = load_digits(a.data, a.target, "test")  # reported for the chosen checkpoint, never used to choose
    pick = torch.randperm(len(tgt_train.images), generator=torch.Generator().manual_seed(a.seed))[:a.select_images]
    select_images = tgt_train.images[pick]  # unlabelled: model selection by im_score
    g = torch.Generator(d.device).manual_seed(a.seed)
    src = DeviceSampler(src_train, d.device, g)
    tgt = DeviceSampler(ImageSet(tgt_train.images, tgt_train.names), d.device, g)  # labels dropped: cannot leak
    P, A, S = a.pretrain_steps, a.adapt_steps, a.selftrain_steps
    steps = P + A + S
    config["total_steps"] = steps
    run = common.open_run(run, config, a.resume, a.overwrite, d)

    nets, opts = build(config, d)
    src_enc, cls, tgt_enc, critic, teacher = (nets[k] for k in
                                              ("source_encoder", "classifier", "target_encoder", "critic", "teacher"))
    pbar = torch.full((10,), 0.1, device=d.device)  # running mean of the teacher's predictions (class balance)
    step, best = 0, {"im": -float("inf"), "step": 0}
    if a.resume:
        ck = common.load_checkpoint(run / "last.pt", KIND)
        for k, net in nets.items():
            common.load_state(net, ck["models"][k], k)
        for k, opt in opts.items():
            opt.load_state_dict(ck["optimizers"][k])
        step, best, pbar = ck["step"], ck["best"], ck["pbar"].to(d.device)
        g.set_state(ck["rng"]["batches"])
        common.set_rng_state(ck["rng"]["global"])
    log = common.MetricLog(run, d, step)

    def stage(s: int) -> str:
        return "pretrain" if s < P else "adapt" if s < P + A else "selftrain"

    def set_modes(s: int) -> None:
        """Stage 1 trains the source side; afterwards it is frozen (eval mode, no gradients)."""
        pre = stage(s) == "pretrain"
        for net in (src_enc, cls):
            net.train(pre).requires_grad_(pre)
        tgt_enc.train(), critic.train(), teacher.eval().requires_grad_(False)

    def enter_stage(s: int) -> None:
        """At a stage boundary: the target encoder starts as the source encoder; the teacher as the chosen one."""
        if s == P:
            tgt_enc.load_state_dict(src_enc.state_dict())
        if s == P + A:  # self-training starts from the checkpoint chosen so far (unsupervised), not the last
            if (run / "best.pt").is_file():
                tgt_enc.load_state_dict(common.load_checkpoint(run / "best.pt", KIND)["models"]["target_encoder"])
            teacher.load_state_dict(tgt_enc.state_dict())
        set_modes(s)

    def checkpoint(path: Path, full: bool = True) -> None:
        keep = nets if full else {k: nets[k] for k in ("source_encoder", "target_encoder", "classifier")}
        state = {"config": config, "step": step, "best": best, "models": {k: v.state_dict() for k, v in keep.items()}}
        if full:
            state |= {"optimizers": {k: o.state_dict() for k, o in opts.items()}, "pbar": pbar.cpu(),
                      "rng": {"batches": g.get_state(), "global": common.rng_state()}}
        common.save_checkpoint(path, state)

    def aug(x: torch.Tensor) -> torch.Tensor:
        return augment_digits(x, g, a.zoom)

    def pretrain_step() -> dict[str, float]:
        xs, ys = src.sample(a.batch)
        if a.texture_mix > 0:
            xs = texture_mix(xs, tgt.sample(a.batch)[0], g, a.texture_mix)
        if a.augment:
            xs = aug(xs)
        with common.autocast(d.device):
            logits = cls(src_enc(xs))
            loss = F.cross_entropy(logits, ys)
        opts["pretrain"].zero_grad(set_to_none=True)
        loss.backward()
        opts["pretrain"].step()
        return {"loss_cls": loss.item(), "src_acc": (logits.argmax(1) == ys).float().mean().item()}

    def adapt_step() -> dict[str, float]:
        (xs, _), (xt, _) = src.sample(a.batch), tgt.sample(a.batch)
        if a.texture_mix > 0:
            xs = texture_mix(xs, xt, g, a.texture_mix)
        if a.augment:
            xs, xt = aug(xs), aug(xt)
        dom = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long().to(d.device)  # source 0, target 1
        with common.autocast(d.device):
            with torch.no_grad():
                fs = src_enc(xs)
            ft = tgt_enc(xt)
            # critic step: tell source features from target ones (its optimizer owns only the critic)
            out = critic(torch.cat([fs, ft.detach()]))
            loss_critic = F.cross_entropy(out.float(), dom, label_smoothing=a.smooth)
            if a.gp > 0:
                loss_critic = loss_critic + a.gp * gradient_penalty(critic, fs.float(), ft.detach().float(), g)
        opts["critic"].zero_grad(set_to_none=True)
        loss_critic.backward()
        opts["critic"].step()
        with common.autocast(d.device):  # encoder step: target features the critic takes for source ones
            loss_enc = F.cross_entropy(critic(ft).float(), dom[: len(xs)])
        opts["target"].zero_grad(set_to_none=True)
        loss_enc.backward()
        opts["target"].step()
        return {"loss_critic": loss_critic.item(), "loss_enc": loss_enc.item(),
                "critic_acc": (out.argmax(1) == dom).float().mean().item()}

    def selftrain_step() -> dict[str, float]:
        nonlocal pbar
        xt, _ = tgt.sample(a.batch)
        with torch.no_grad(), common.autocast(d.device):
            p = cls(teacher(xt)).float().softmax(1)  # the teacher's view: the clean image
            pbar = 0.99 * pbar + 0.01 * p.mean(0)
            p = p / pbar  # distribution alignment: rare predicted classes are boosted, so labels stay balanced
            conf, pseudo = (p / p.sum(1, keepdim=True)).max(1)
            mask = (conf >= a.threshold).float()
        with common.autocast(d.device):  # the student's view: an augmented image
            logits = cls(tgt_enc(aug(xt)))
            loss = (F.cross_entropy(logits.float(), pseudo, reduction="none") * mask).mean()
        opts["selftrain"].zero_grad(set_to_none=True)
        loss.backward()
        opts["selftrain"].step()
        ema_update(teacher, tgt_enc, a.ema)
        return {"loss_self": loss.item(), "mask": mask.mean().item()}

    def evaluate_now() -> dict[str, float]:
        for net in (src_enc, cls, tgt_enc):
            net.eval()
        out = {}
        if step <= P:  # the source side changes in stage 1 only
            out["val_acc"] = common.accuracy(lambda x: cls(src_enc(x)), src_val.images, src_val.labels, d.device)
        if step >= P:  # the target encoder exists: unsupervised criterion, and the (report-only) test accuracy
            out["im"] = im_score(common.predict_logits(lambda x: cls(tgt_enc(x)), select_images, d.device))
            out["target_test_acc"] = common.accuracy(lambda x: cls(tgt_enc(x)), tgt_test.images, tgt_test.labels,
                                                     d.device)
        set_modes(step)
        return out

    steps_fn = {"pretrain": pretrain_step, "adapt": adapt_step, "selftrain": selftrain_step}
    set_modes(step)
    window: list[dict[str, float]] = []
    t0 = time.time()
    with common.GracefulStop() as stop, tqdm(total=steps, initial=step, desc=f"{a.source}->{a.target}",
                                             dynamic_ncols=True, mininterval=2) as bar:
        while step < steps:
            out = steps_fn[stage(step)]()
            step += 1
            common.check_finite(out, step)
            window.append(out)
            bar.update()
            if step in (P, P + A):
                enter_stage(step)
            if step % a.log_every == 0 or step in (P, P + A, steps):
                mean = {k: sum(w[k] for w in window if k in w) / sum(k in w for w in window)
                        for k in {k for w in window for k in w}}
                mean["img_per_s"] = len(window) * a.batch / (time.time() - t0)
                log.write(step, mean)
                bar.set_description(f"{a.source}->{a.target} {stage(step - 1)}")
                bar.set_postfix({k: f"{v:.3f}" for k, v in mean.items() if k != "img_per_s"})
                window, t0 = [], time.time()
            if step % a.eval_every == 0 or step in (P, P + A, steps):
                ev = evaluate_now()
                log.write(step, ev)
                if step == P:
                    best["source_only_target_test_acc"] = ev["target_test_acc"]
                if step >= P:  # the ablation rows: each stage's best checkpoint by the same criterion
                    by = best.setdefault("by_stage", {})
                    if ev["im"] > by.get(stage(step - 1), {}).get("im", -float("inf")):
                        by[stage(step - 1)] = {"im": ev["im"], "step": step, "target_test_acc": ev["target_test_acc"]}
                if step >= P and ev["im"] > best["im"]:  # selection on unlabelled target images only
                    best |= {"im": ev["im"], "step": step, "target_test_acc": ev["target_test_acc"],
                             "stage": stage(step - 1)}
                    checkpoint(run / "best.pt", full=False)
                best["last_target_test_acc"] = ev.get("target_test_acc")
                checkpoint(run / "last.pt")
            if stop.requested or step == a.stop_at:
                checkpoint(run / "last.pt")
                if stop.requested:
                    raise KeyboardInterrupt
                print(f"stopped at step {step}; continue with --resume")
                return

    metrics = {"source": a.source, "target": a.target, "plain": a.plain, "steps": steps, "selection": "im_score on "
               f"{len(select_images)} unlabelled {a.target} train images", **best}
    common.write_json(run / "metrics.json", metrics)
    common.plot_curves(run, {"losses": ["loss_cls", "loss_critic", "loss_enc", "loss_self"],
                             "accuracy": ["src_acc", "critic_acc", "val_acc", "target_test_acc", "mask"],
                             "selection": ["im"]})
    print(f"{a.source}->{a.target}: source-only {best['source_only_target_test_acc']:.4f}; chosen step {best['step']}"
          f" ({best['stage']}), im {best['im']:.3f}, target ({a.target}) dev-test acc {best['target_test_acc']:.4f}"
          f"  [{run}]")


def load_encoders(path: str, device: torch.device | str) -> tuple[nn.Module | None, nn.Module, nn.Module, dict]:
    """(source encoder, target encoder, classifier, checkpoint) of a P4 checkpoint, in eval mode.
    A shipped checkpoint holds no source encoder: it comes back as None."""
    ck = common.load_checkpoint(path, KIND)
    nets = {}
    for k in ("source_encoder", "target_encoder", "classifier"):
        if k not in ck["models"]:
            if k == "source_encoder":
                nets[k] = None
                continue
            raise UserError(f"{path} holds no {k.replace('_', ' ')}")
        net = LeNetClassifier() if k == "classifier" else make_encoder(ck["config"])
        common.load_state(net, ck["models"][k], k.replace("_", " "))
        nets[k] = net.float().to(device).eval()
    return nets["source_encoder"], nets["target_encoder"], nets["classifier"], ck


def export(a: argparse.Namespace) -> None:
    *_, ck = load_encoders(a.ckpt, "cpu")  # the weights fit the networks
    print(f"wrote {common.export_checkpoint(ck, a.ckpt, a.out, keep=('target_encoder', 'classifier'))}")


def predict(a: argparse.Namespace) -> None:
    d = common.setup(a.device)
    _, enc, cls, _ = load_encoders(a.ckpt, d.device)
    n = common.predict_folder(lambda x: cls(enc(x)), a.images, a.out, d.device, DIGIT_SIZE)
    print(f"wrote {n} predictions to {a.out}")


def evaluate(a: argparse.Namespace) -> None:
    check_domain(a.domain)
    d = common.setup(a.device)
    _, enc, cls, _ = load_encoders(a.ckpt, d.device)
    data = load_digits(a.data, a.domain, a.split)
    common.print_accuracy(lambda x: cls(enc(x)), data.images, data.labels, d.device, f"{a.domain}/{a.split}")


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    {"train": train, "export": export, "predict": predict, "eval": evaluate}[a.cmd](a)


if __name__ == "__main__":
    common.cli_main(main)
