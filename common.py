"""One home for the helpers every script shares: errors, device/AMP/seed, DDP, checkpoints, run folders, logging."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

ROOT = Path(__file__).resolve().parent


class UserError(Exception):
    """A problem with the user's input: reported as one line on stderr, exit code 2, no traceback."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty), cut at 200 chars."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


class DataWarning(UserWarning):
    """Something in the user's data was skipped (unreadable image, stray file): always shown, one line."""


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def cli_main(main: Callable[[list[str] | None], Any]) -> None:
    """Run `main`: user errors and OS errors become one clean line, warnings one line each, Ctrl-C exit 130."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        warnings.simplefilter("always", DataWarning)
        try:
            sys.exit(main(None) or 0)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(1)
        except OSError as e:  # disk full, permissions, a path under a file...: the OS's words and the path
            where = f": {e.filename}" if e.filename else ""
            print(f"error: {e.strerror or e}{where}", file=sys.stderr)
            sys.exit(1)


# ----------------------------------------------------------------------------- device, seeds, AMP


@dataclass
class Dist:
    """Where this process runs: rank and world size (1 without torchrun) and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto", seed: int = 0, precision: str = "auto") -> Dist:
    """Pick the device and training precision, join a torchrun process group if there is one, seed every RNG."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available")
    dev = torch.device(device)
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    set_precision(precision, dev)
    seed_everything(seed)
    return Dist(rank, world, dev)


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA); training code draws randomness from torch only."""
    random.seed(seed)
    torch.manual_seed(seed)


PRECISIONS = ("auto", "fp32", "bf16")
_precision = "auto"  # set once per training process by setup(); "auto": bf16 on CUDA, fp32 on CPU


def add_precision_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="training precision: auto = bf16 autocast on CUDA, fp32 on CPU; bf16 on a CPU with "
                             "native bf16 (AVX512-BF16/AMX) trains ~2x faster there")


def cpu_bf16() -> bool:
    """This CPU runs bf16 natively (oneDNN)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def set_precision(name: str, device: torch.device) -> None:
    global _precision
    if name not in PRECISIONS:
        raise UserError(f"unknown precision '{name}'; expected one of {', '.join(PRECISIONS)}")
    if name == "bf16" and device.type == "cpu" and not cpu_bf16():
        raise UserError("--precision bf16: this CPU has no native bf16; use fp32")
    _precision = name


def precision(device: torch.device) -> str:
    """What training runs in on `device` (recorded in each run's config)."""
    bf16 = _precision == "bf16" or (_precision == "auto" and device.type == "cuda")
    return "bf16 autocast" if bf16 else "fp32"


def autocast(device: torch.device, training: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast where the precision says so; inference on CPU always stays fp32 (exact predictions)."""
    if precision(device) == "fp32" or (device.type == "cpu" and not training):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def adam(params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
         weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters): the same update, ~25% faster DANN steps on CPU."""
    return torch.optim.Adam(params, lr, betas=betas, weight_decay=weight_decay, fused=True)


class AllReduceSum(torch.autograd.Function):
    """Sum over ranks; its gradient is again the sum over ranks (each rank's loss depends on the total)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all torchrun ranks, for CPU / gloo
    (nn.SyncBatchNorm is GPU-only). Per-channel sums go through a differentiable all-reduce, so gradients
    are those of one process with the whole batch. Same parameters and buffers as nn.BatchNorm*d."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        xf = x.float()  # statistics in fp32, also under bf16 autocast
        c, dims = x.size(1), [0, *range(2, x.dim())]
        count = torch.full((1,), x.numel() // c, dtype=xf.dtype, device=x.device)
        stats = AllReduceSum.apply(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))  # (2C + 1,), all ranks
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp(min=0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = 1 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def global_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of `module` becomes a GlobalBatchNorm sharing its parameters and buffers (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            setattr(module, name, new)
        else:
            global_batchnorm(child)
    return module


def prepare_model(model: nn.Module, d: Dist, compile: bool = False, find_unused: bool = False) -> nn.Module:
    """Move to the device (channels_last where training is bf16), optionally compile, wrap in DDP under torchrun
    with BatchNorm over the global batch (SyncBatchNorm on CUDA, GlobalBatchNorm on CPU)."""
    model = model.to(d.device)
    if precision(d.device) != "fp32":  # oneDNN / cuDNN run bf16 convolutions fastest in NHWC
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model)
    if d.world > 1 and any(p.requires_grad for p in model.parameters()):
        if d.device.type == "cuda":  # batch statistics over the global batch
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = global_batchnorm(model)
        ids = [d.device.index] if d.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers, whose state_dict keys are stable."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def all_reduce_mean(x: float, d: Dist) -> float:
    """Mean of a scalar over ranks (identity without torchrun)."""
    if d.world == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.item() / d.world


def cleanup(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def check_finite(losses: dict[str, float], step: int) -> None:
    """Stop a diverged run with a message naming the step; the last good checkpoint stays on disk."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise UserError(f"non-finite {', '.join(bad)} at step {step}; the last good checkpoint is kept, "
                        "lower the learning rate or resume from it")


# ----------------------------------------------------------------------------- checkpoints


def rng_state() -> dict:
    """Every RNG a training step may touch, for exact resume."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then os.replace over the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict:
    """Load on CPU with weights_only=True (no code runs); check it is a checkpoint of `kind`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"expected a checkpoint file, got a folder: {path}")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, or a pickle that wants to run code
        raise UserError(f"cannot read checkpoint {path}: {first_line(e)}") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "models" not in ckpt:
        raise UserError(f"{path} is not a checkpoint of this project")
    if kind is not None and ckpt["config"].get("kind") != kind:
        raise UserError(f"{path} is a '{ckpt['config'].get('kind')}' checkpoint, this script needs '{kind}'")
    return ckpt


def load_state(model: nn.Module, state: dict, what: str) -> None:
    """load_state_dict with a one-line error when the checkpoint does not match the network."""
    try:
        unwrap(model).load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"checkpoint does not match the {what} network: {first_line(e)}") from None


def half_state(state: dict) -> dict:
    """A copy of a state_dict with floating tensors in fp16 (for shipped weights)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def export_checkpoint(ck: dict, src: str | Path, out: str | Path, keep: tuple[str, ...] | None = None) -> Path:
    """Ship a run's checkpoint `ck`, read from `src` by the script's own loader (so weights that do not fit the
    networks are never shipped): fp16 weights of the `keep` models (default all), config, step and best metrics;
    no optimizer or RNG state. The run's metrics.json, if any, is copied beside it as <out>.json."""
    out = check_output_file(out, (".pt",))
    slim = {k: v for k, v in ck.items() if k not in ("optimizers", "rng")}
    slim["models"] = {name: half_state(sd) for name, sd in ck["models"].items() if keep is None or name in keep}
    save_checkpoint(out, slim)
    run_metrics = Path(src).parent / "metrics.json"
    if run_metrics.is_file():
        write_json(out.with_suffix(".json"), {"config": ck["config"], "metrics": json.loads(run_metrics.read_text())})
    return out


# ----------------------------------------------------------------------------- run folders and logging


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__}


RUN_ONLY_ARGS = ("cmd", "resume", "overwrite", "stop_at", "device")


def run_config(a) -> dict:
    """The arguments that define a run (what config.json and checkpoints record)."""
    return {k: v for k, v in vars(a).items() if k not in RUN_ONLY_ARGS}


def resume_args(a, run: Path, kind: str) -> dict:
    """Load <run>/last.pt and put its recorded config back into the arguments `a`; returns the checkpoint."""
    ck = load_checkpoint(Path(run) / "last.pt", kind)
    for k, v in ck["config"].items():
        if k in (*RUN_ONLY_ARGS, "kind", "run_dir") or not hasattr(a, k):
            continue
        if k == "data" and a.data is not None:  # data may have moved: an explicit --data wins
            continue
        setattr(a, k, v)
    return ck


def open_run(run_dir: str | Path, config: dict, resume: bool, overwrite: bool, d: Dist) -> Path:
    """Create the run folder and write config.json; refuse to clobber a finished run unless asked."""
    run = Path(run_dir)
    if resume:
        if not (run / "last.pt").exists():
            raise UserError(f"--resume: last.pt not found in {run}")
        return run
    if (run / "last.pt").exists() and not overwrite:
        raise UserError(f"{run} already holds a run; pass --resume to continue it or --overwrite to start again")
    if d.is_main:
        make_folder(run, "run folder")
        try:
            if overwrite:
                (run / "metrics.jsonl").unlink(missing_ok=True)
            write_json(run / "config.json", {**config, "versions": versions(), "world_size": d.world,
                                             "device": str(d.device), "precision": precision(d.device)})
        except OSError as e:
            raise UserError(f"cannot write run folder {run}: {e.strerror}") from None
    return run


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


class MetricLog:
    """Appends one JSON line per logging step to metrics.jsonl (rank 0 only); drops lines past a resumed step."""

    def __init__(self, run: Path, d: Dist, resume_step: int = 0):
        self.path = run / "metrics.jsonl"
        self.on = d.is_main
        if self.on and self.path.exists():  # a resumed run rewrites history after its checkpoint
            lines = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
            keep = [ln for ln in lines if json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))

    def write(self, step: int, values: dict[str, float]) -> None:
        if self.on:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **{k: round(float(v), 6) for k, v in values.items()}}) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def plot_curves(run: Path, groups: dict[str, Iterable[str]]) -> Path:
    """curves.png: one panel per group of metric names, against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run / "metrics.jsonl")
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, (title, keys) in zip(axes[0], groups.items()):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if k in r]
            if pts:
                ax.plot(*zip(*pts), label=k, lw=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = run / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


class GracefulStop:
    """Turns Ctrl-C into a flag that the training loop checks between steps (so it can checkpoint, exit 130)."""

    def __init__(self):
        self.requested = False

    def __enter__(self) -> GracefulStop:
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._old = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def make_folder(path: str | Path, what: str = "output folder") -> Path:
    """Create a folder (and its parents) to write into, or fail with one line naming what is in the way."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise UserError(f"cannot create {what} {path}: {p} exists and is not a folder")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {what} {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"cannot write into {what} {path}: permission denied")
    return path


def check_output_file(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    """An output file path: suffix checked, never a folder, parent created and writable."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"output {path} should end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UserError(f"output {path} is a folder")
    make_folder(path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write {path}: permission denied")
    return path


# ----------------------------------------------------------------------------- classification helpers (P3, P4)


@torch.inference_mode()
def predict_logits(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: torch.device,
                   batch: int = 1024) -> torch.Tensor:
    """Logits of `model` on uint8 images (N, 3, H, W), batched, under inference_mode; returned on CPU."""
    from datasets import to_unit

    out = []
    for i in range(0, len(images), batch):
        x = to_unit(images[i:i + batch].to(device, non_blocking=True))
        with autocast(device, training=False):
            out.append(model(x).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, images: torch.Tensor, device: torch.device, batch: int = 512,
                       max_images: int = 20000, seed: int = 0) -> None:
    """AdaBN: re-estimate every BatchNorm's running statistics on `images` (uint8, unlabelled), in place."""
    from datasets import to_unit

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:max_images]
    model.train()
    for i in range(0, len(idx), batch):
        with autocast(device, training=False):
            model(to_unit(images[idx[i:i + batch]].to(device)))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


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
    import csv

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:  # the csv module quotes names that hold commas or quotes
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["image_name", "label"])
        w.writerows((n, int(y)) for n, y in zip(names, labels))
    os.replace(tmp, path)


def predict_folder(classify: Callable[[torch.Tensor], torch.Tensor], images: str | Path, out: str | Path,
                   device: torch.device, size: int) -> int:
    """Predict every image of a folder (sorted by name) and write image_name,label rows to `out`."""
    from datasets import load_folder

    out = check_output_file(out, (".csv",))
    data = load_folder(images, size)
    labels = predict_logits(classify, data.images, device).argmax(1)
    write_predictions(out, data.names, labels.tolist())
    return len(data.names)
