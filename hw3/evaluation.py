"""Classification helpers of P3 / P4: batched prediction, accuracy, AdaBN, prediction CSVs, and scores for choosing
a model without target labels."""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn as nn

from datasets import DIGIT_SIZE, check_domain, load_digits, load_folder, to_unit
from hw3 import distributed
from hw3.cli import add_force, check_output_file
from hw3.distributed import autocast


@torch.inference_mode()
def predict_logits(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: torch.device,
                   batch: int = 1024) -> torch.Tensor:
    """Logits of `model` on uint8 images (N, 3, H, W), batched, under inference_mode; returned on CPU."""
    out = []
    for i in range(0, len(images), batch):
        x = to_unit(images[i:i + batch].to(device, non_blocking=True))
        with autocast(device, training=False):
            out.append(model(x).float().cpu())
    return torch.cat(out)


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of `model`."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def batchnorm_momentum(model: nn.Module, momentum: float | None) -> Iterator[list[nn.modules.batchnorm._BatchNorm]]:
    """Inside: every BatchNorm layer of `model` (yielded) updates its running statistics with `momentum` (None: a
    cumulative average; 0: not at all); their own momenta come back on exit."""
    norms = batchnorm_layers(model)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = momentum
    try:
        yield norms
    finally:
        for m, own in zip(norms, momenta):
            m.momentum = own


def frozen_batchnorm_stats(model: nn.Module) -> contextlib.AbstractContextManager:
    """Inside: train-mode BatchNorm layers normalise by the batch's statistics but leave their running ones as they
    are (momentum 0), so a batch of another domain does not move what the model predicts with."""
    return batchnorm_momentum(model, 0.0)


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, forward_batches: Callable[[], None]) -> None:
    """Reset every BatchNorm's running statistics and keep the cumulative average over the train-mode forward passes
    of `forward_batches()`; momenta restored, model left in eval mode."""
    with batchnorm_momentum(model, None) as norms:  # a cumulative average over the batches
        for m in norms:
            m.reset_running_stats()
        model.train()
        forward_batches()
    model.eval()


def recompute_bn_stats(model: nn.Module, images: torch.Tensor, device: torch.device, batch: int = 512,
                       max_images: int = 20000, seed: int = 0) -> None:
    """AdaBN: re-estimate every BatchNorm's running statistics on `images` (uint8, unlabelled), in place."""
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:max_images]

    def forward_batches() -> None:
        for i in range(0, len(idx), batch):
            with autocast(device, training=False):
                model(to_unit(images[idx[i:i + batch]].to(device)))

    reestimate_batchnorm(model, forward_batches)


def accuracy(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
             device: torch.device) -> float:
    """Top-1 accuracy of `model` on a labelled image tensor."""
    return (predict_logits(model, images, device).argmax(1) == labels.cpu()).float().mean().item()


def print_accuracy(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
                   device: torch.device, where: str) -> None:
    """Print the top-1 accuracy of `model` on a labelled split, overall and per class (the eval sub-commands)."""
    pred, labels = predict_logits(model, images, device).argmax(1), labels.cpu()
    print(f"accuracy on {where} ({len(labels)} images): {(pred == labels).float().mean().item():.4f}")
    print("per class: " + ", ".join(f"{c} {(pred[labels == c] == c).float().mean().item():.3f}"
                                    for c in labels.unique().tolist()))


def write_predictions(path: str | Path, names: list[str], labels: list[int]) -> None:
    """image_name,label rows, written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:  # the csv module quotes names that hold commas or quotes
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["image_name", "label"])
        w.writerows((n, int(y)) for n, y in zip(names, labels))
    os.replace(tmp, path)


def predict_folder(classify: Callable[[torch.Tensor], torch.Tensor], images: str | Path, out: str | Path,
                   device: torch.device, size: int, reads: tuple[str | Path, ...] = (), force: bool = False) -> int:
    """Predict every image of a folder (sorted by name) and write image_name,label rows to `out`: never over a file
    of `reads` (say the checkpoint), nor, unless `force`, over the label CSV beside `images` or a shipped file."""
    out = check_output_file(out, (".csv",), reads=(images, *reads), force=force)
    data = load_folder(images, size)
    labels = predict_logits(classify, data.images, device).argmax(1)
    write_predictions(out, data.names, labels.tolist())
    return len(data.names)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of probability vectors along the last dimension."""
    return -(p * p.clamp_min(1e-8).log()).sum(-1)


def im_score(logits: torch.Tensor) -> float:
    """Information maximisation H(mean p) - mean H(p) of logits (N, C): high when predictions are confident AND
    spread over the classes; needs no labels, so it can rank checkpoints on unlabelled target images."""
    p = logits.float().softmax(1)
    return (entropy(p.mean(0)) - entropy(p).mean()).item()


def add_classifier_commands(sub: argparse._SubParsersAction, what: str) -> None:
    """The predict / export / eval sub-commands that P3 and P4 share; `what` names the network they use. predict
    and export take --force (cli.add_force): the script passes it on to the output checks."""
    q = sub.add_parser("predict", help=f"write image_name,label for every image of a folder ({what})")
    q.add_argument("--ckpt", required=True, help="a run's best.pt / last.pt, or a shipped checkpoint")
    q.add_argument("--images", required=True, help="folder of images (any mode and size)")
    q.add_argument("--out", required=True, help="the CSV to write: image_name,label")
    q.add_argument("--device", default="auto")
    add_force(q)
    x = sub.add_parser("export", help="ship a run's checkpoint: fp16 weights + config + metrics")
    x.add_argument("--ckpt", required=True, help="a run's best.pt or last.pt")
    x.add_argument("--out", required=True, help="the .pt to write, with its .json beside it")
    add_force(x)
    e = sub.add_parser("eval", help=f"accuracy of a checkpoint on a labelled split ({what})")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--data", default="hw3_data")
    e.add_argument("--domain", required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--device", default="auto")


def run_classifier_command(args: argparse.Namespace,
                           load: Callable[[str, torch.device], Callable[[torch.Tensor], torch.Tensor]]) -> None:
    """`predict` / `eval` of a P3 or P4 checkpoint; `load(ckpt, device)` returns its classifier (images -> logits)."""
    if args.cmd == "eval":
        check_domain(args.domain)
    device = distributed.setup(args.device).device
    classify = load(args.ckpt, device)
    if args.cmd == "predict":
        n = predict_folder(classify, args.images, args.out, device, DIGIT_SIZE, reads=(args.ckpt,),
                           force=args.force)
        print(f"wrote {n} predictions to {args.out}")
    else:
        data = load_digits(args.data, args.domain, args.split)
        print_accuracy(classify, data.images, data.labels, device, f"{args.domain}/{args.split}")
