"""P3: digit classification across domains with DANN, and its source-only / target-only bounds.

  python p3_dann.py train --source usps --target mnistm --mode dann
  python p3_dann.py predict --ckpt checkpoints/p3_dann_mnistm.pt --images DIR --out pred.csv
  python p3_dann.py eval --ckpt runs/p3/dann_usps2mnistm/best.pt --data hw3_data --domain mnistm
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import common
from common import UserError
from datasets import DIGIT_SIZE, DeviceSampler, augment_digits, check_domain, digit_splits, load_digits
from models import DANN, dann_coeff

KIND = "p3_dann"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train source-only, DANN or target-only")
    t.add_argument("--data", help="root of the course layout (default hw3_data, or the run's own with --resume)")
    t.add_argument("--source", required=True)
    t.add_argument("--target", required=True)
    t.add_argument("--mode", choices=["source", "dann", "target"], default="dann")
    t.add_argument("--run-dir", help="run folder (default runs/p3/<mode>_<source>2<target>)")
    t.add_argument("--source-test", action="store_true", help="source / dann: also train on the source's labelled "
                   "test/ split (never scored here; the mnist data's train/ holds no 9s, its test/ only 9s)")
    t.add_argument("--epochs", type=float, default=100, help="epochs over the labelled training set (report: 100)")
    t.add_argument("--steps", type=int, help="train for this many steps instead of --epochs")
    t.add_argument("--batch", type=int, default=128, help="per domain (report: 128)")
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--input-norm", action="store_true", help="per-image standardisation inside the network")
    t.add_argument("--augment", action="store_true", help="shift / colour / inversion augmentation on the device")
    t.add_argument("--zoom", action="store_true", help="with --augment: random rescaling of the digits too")
    t.add_argument("--domain-bn", action="store_true", help="DANN: source and target pass BatchNorm separately, "
                   "and the chosen model's BatchNorm statistics are re-estimated on target train images (AdaBN)")
    t.add_argument("--val-fraction", type=float, default=0.1, help="labelled training data held out for selection")
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    common.add_precision_arg(t)
    t.add_argument("--compile", action="store_true", help="torch.compile the network (CUDA)")
    t.add_argument("--resume", action="store_true", help="continue --run-dir from last.pt, with its config")
    t.add_argument("--stop-at", type=int, help="checkpoint and stop after this step (continue with --resume)")
    t.add_argument("--overwrite", action="store_true", help="start again in a folder that holds a run")
    q = sub.add_parser("predict", help="write image_name,label for every image of a folder")
    q.add_argument("--ckpt", required=True)
    q.add_argument("--images", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--device", default="auto")
    x = sub.add_parser("export", help="write a small fp16 copy of a run's checkpoint for shipping")
    x.add_argument("--ckpt", required=True)
    x.add_argument("--out", required=True)
    e = sub.add_parser("eval", help="accuracy of a checkpoint on a labelled split")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--data", default="hw3_data")
    e.add_argument("--domain", required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--device", default="auto")
    return p.parse_args(argv)


def make_optimizers(net: DANN, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The label optimizer owns the feature extractor and label classifier; the domain optimizer the domain head."""
    opt_label = common.adam([*net.features.parameters(), *net.label_classifier.parameters()], lr)
    return opt_label, common.adam(net.domain_classifier.parameters(), lr)


def train(a: argparse.Namespace) -> None:
    run = Path(a.run_dir or f"runs/p3/{a.mode}_{a.source}2{a.target}")
    ck = common.resume_args(a, run, KIND) if a.resume else None
    a.data = a.data or "hw3_data"
    check_domain(a.source), check_domain(a.target)
    if a.source == a.target:
        raise UserError("--source and --target must differ")
    d = common.setup(a.device, a.seed, a.precision)
    if a.batch % d.world:
        raise UserError(f"--batch {a.batch} does not split over {d.world} processes")
    config = {"kind": KIND, **common.run_config(a)}

    # data: the labelled domain (source, or target for the upper bound) with its validation split
    labelled = a.target if a.mode == "target" else a.source
    if a.source_test and a.mode == "target":
        raise UserError("--source-test is for --mode source or dann: the target's test/ split is the one scored")
    train_set, val_set, _ = digit_splits(a.data, labelled, a.val_fraction, a.seed, a.source_test)
    target_test = load_digits(a.data, a.target, "test")  # reported for the chosen checkpoint, never used to choose
    g = torch.Generator(d.device).manual_seed(a.seed)
    src = DeviceSampler(train_set, d.device, g)
    tgt = DeviceSampler(load_digits(a.data, a.target, "train"), d.device, g) if a.mode == "dann" else None
    steps = a.steps or max(1, round(a.epochs * len(src) / a.batch))
    config["total_steps"] = steps
    run = common.open_run(run, config, a.resume, a.overwrite, d)

    # model: two optimizers, one owning the features + label classifier, one the domain classifier
    net = DANN(a.input_norm)
    opt_label, opt_domain = make_optimizers(net, a.lr)
    model = common.prepare_model(net, d, a.compile, find_unused=a.mode != "dann")  # no domain loss without DANN
    step, best = 0, {"val_acc": -1.0, "step": 0}
    if ck is not None:
        common.load_state(net, ck["models"]["dann"], "DANN")
        opt_label.load_state_dict(ck["optimizers"]["label"])
        opt_domain.load_state_dict(ck["optimizers"]["domain"])
        step, best = ck["step"], ck["best"]
        g.set_state(ck["rng"]["batches"])
        common.set_rng_state(ck["rng"]["global"])
    log = common.MetricLog(run, d, step)

    def checkpoint(path: Path, full: bool = True) -> None:
        if not d.is_main:
            return
        state = {"config": config, "step": step, "best": best, "models": {"dann": net.state_dict()}}
        if full:
            state |= {"optimizers": {"label": opt_label.state_dict(), "domain": opt_domain.state_dict()},
                      "rng": {"batches": g.get_state(), "global": common.rng_state()}}
        common.save_checkpoint(path, state)

    def train_step(progress: float) -> dict[str, float]:
        xs, ys = src.sample(a.batch, d.rank, d.world)
        if a.augment:
            xs = augment_digits(xs, g, a.zoom)
        with common.autocast(d.device):
            if tgt is None:  # source-only / target-only: plain supervised training
                logits, _ = model(xs)
                loss_cls = F.cross_entropy(logits, ys)
                loss_dom, dom_acc = None, None
            else:  # DANN: one pass over source + target; the domain head sits behind gradient reversal
                xt, _ = tgt.sample(a.batch, d.rank, d.world)
                net.domain_classifier.reverse.coeff = dann_coeff(progress)
                logits, dom_logits = model(torch.cat([xs, xt]), len(xs) if a.domain_bn else None)
                logits = logits[: len(xs)]
                dom_true = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long().to(d.device)
                loss_cls = F.cross_entropy(logits, ys)
                loss_dom = F.cross_entropy(dom_logits, dom_true)
                dom_acc = (dom_logits.argmax(1) == dom_true).float().mean().item()
            loss = loss_cls if loss_dom is None else loss_cls + loss_dom
        opt_label.zero_grad(set_to_none=True)
        opt_domain.zero_grad(set_to_none=True)
        loss.backward()
        opt_label.step()
        opt_domain.step()
        out = {"loss_cls": loss_cls.item(), "src_acc": (logits.argmax(1) == ys).float().mean().item()}
        if loss_dom is not None:
            out |= {"loss_dom": loss_dom.item(), "dom_acc": dom_acc}
        return out

    model.train()
    window: list[dict[str, float]] = []
    t0 = time.time()
    with common.GracefulStop() as stop, tqdm(total=steps, initial=step, desc=f"{a.mode} {a.source}->{a.target}",
                                             disable=not d.is_main, dynamic_ncols=True) as bar:
        while step < steps:
            out = train_step(step / steps)
            step += 1
            common.check_finite(out, step)
            window.append(out)
            bar.update()
            if step % a.log_every == 0 or step == steps:
                mean = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                mean["coeff"] = net.domain_classifier.reverse.coeff if tgt is not None else 0.0
                mean["img_per_s"] = len(window) * a.batch * (2 if tgt is not None else 1) / (time.time() - t0)
                log.write(step, mean)
                bar.set_postfix(cls=f"{mean['loss_cls']:.3f}", acc=f"{mean['src_acc']:.2f}")
                window, t0 = [], time.time()
            if step % a.eval_every == 0 or step == steps:
                model.eval()
                val_acc = common.accuracy(lambda x: model(x)[0], val_set.images, val_set.labels, d.device)
                tgt_acc = common.accuracy(lambda x: model(x)[0], target_test.images, target_test.labels, d.device)
                model.train()
                log.write(step, {"val_acc": val_acc, "target_test_acc": tgt_acc})
                if val_acc > best["val_acc"]:  # selection looks at labelled training-domain data only
                    best = {"val_acc": val_acc, "step": step, "target_test_acc": tgt_acc}
                    checkpoint(run / "best.pt", full=False)
                checkpoint(run / "last.pt")
            if stop.requested:
                checkpoint(run / "last.pt")
                raise KeyboardInterrupt
            if step == a.stop_at:
                checkpoint(run / "last.pt")
                print(f"stopped at step {step}; continue with --resume --run-dir {run}")
                return

    if d.is_main and a.domain_bn and tgt is not None:  # AdaBN: the chosen model gets target BatchNorm statistics
        ck_best = common.load_checkpoint(run / "best.pt", KIND)
        common.load_state(net, ck_best["models"]["dann"], "DANN")
        common.recompute_bn_stats(net, tgt.images, d.device, seed=a.seed)
        best["target_test_acc_source_bn"] = best["target_test_acc"]
        best["target_test_acc"] = common.accuracy(lambda x: net(x)[0], target_test.images, target_test.labels,
                                                  d.device)
        step = ck_best["step"]
        checkpoint(run / "best.pt", full=False)
    if d.is_main:
        metrics = {"source": a.source, "target": a.target, "mode": a.mode, "steps": steps,
                   "best_step": best["step"], "source_val_acc" if a.mode != "target" else "target_val_acc":
                   best["val_acc"], **{k: v for k, v in best.items() if k.startswith("target_test")}}
        common.write_json(run / "metrics.json", metrics)
        common.plot_curves(run, {"losses": ["loss_cls", "loss_dom"],
                                 "accuracy": ["src_acc", "dom_acc", "val_acc", "target_test_acc"]})
        print(f"{a.mode} {a.source}->{a.target}: best step {best['step']}, val acc {best['val_acc']:.4f}, "
              f"target ({a.target}) dev-test acc {best['target_test_acc']:.4f}  [{run}]")
    common.cleanup(d)


def load_classifier(path: str, device: torch.device) -> tuple[DANN, dict]:
    """The DANN network of a checkpoint (a run's best.pt / last.pt or a shipped one), in eval mode."""
    ck = common.load_checkpoint(path, KIND)
    net = DANN(ck["config"].get("input_norm", False))
    common.load_state(net, ck["models"]["dann"], "DANN")
    return net.to(device).eval(), ck


def predict(a: argparse.Namespace) -> None:
    d = common.setup(a.device)
    net, _ = load_classifier(a.ckpt, d.device)
    n = common.predict_folder(lambda x: net(x)[0], a.images, a.out, d.device, DIGIT_SIZE)
    print(f"wrote {n} predictions to {a.out}")


def evaluate(a: argparse.Namespace) -> None:
    check_domain(a.domain)
    d = common.setup(a.device)
    net, _ = load_classifier(a.ckpt, d.device)
    data = load_digits(a.data, a.domain, a.split)
    common.print_accuracy(lambda x: net(x)[0], data.images, data.labels, d.device, f"{a.domain}/{a.split}")


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    if a.cmd == "export":
        _, ck = load_classifier(a.ckpt, torch.device("cpu"))  # the weights fit the network
        print(f"wrote {common.export_checkpoint(ck, a.ckpt, a.out)}")
        return
    {"train": train, "predict": predict, "eval": evaluate}[a.cmd](a)


if __name__ == "__main__":
    common.cli_main(main)
