"""Device, precision and seeds; DDP under torchrun, with BatchNorm over the global batch on CPU (gloo) too."""
from __future__ import annotations

import argparse
import contextlib
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
import torch.nn as nn

from hw3.cli import UserError


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
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
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
    """bf16 autocast where the precision says so, for training; inference (predictions, AdaBN statistics, selection
    scores) runs in exact fp32 on every device, so a GPU gives the labels a CPU gives."""
    if not training:
        return exact_fp32()
    if precision(device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def exact_fp32():
    """No autocast and no TF32 inside (CUDA matmuls and convolutions in full fp32); the flags come back after."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with contextlib.ExitStack() as stack:
            for kind in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
                stack.enter_context(torch.autocast(kind, enabled=False))
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def adam(params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
         weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters): the same update, ~25% faster DANN steps on CPU."""
    return torch.optim.Adam(params, lr, betas=betas, weight_decay=weight_decay, fused=True)


class AllReduceSum(torch.autograd.Function):
    """Sum over ranks; its gradient is again the sum over ranks (each rank's loss depends on the total)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        torch_dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return AllReduceSum.apply(grad)  # differentiable in turn: R1's double backward crosses ranks too


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all torchrun ranks, on CPU (gloo; nn.SyncBatchNorm
    is GPU-only) and CUDA (SyncBatchNorm has no double backward, which R1 needs). Per-channel sums go through a
    differentiable all-reduce, so gradients are those of one process with the whole batch. Same parameters and buffers
    as nn.BatchNorm*d."""

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


def prepare_model(model: nn.Module, dist: Dist, compile: bool = False, find_unused: bool = False) -> nn.Module:
    """Move to the device (channels_last where training is bf16), optionally compile, wrap in DDP under torchrun
    with BatchNorm over the global batch (GlobalBatchNorm)."""
    model = model.to(dist.device)
    if precision(dist.device) != "fp32":  # oneDNN / cuDNN run bf16 convolutions fastest in NHWC
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model)
    if dist.world > 1 and any(p.requires_grad for p in model.parameters()):
        model = global_batchnorm(model)  # batch statistics over the global batch
        ids = [dist.device.index] if dist.device.type == "cuda" else None
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


def all_reduce_mean(x: float, dist: Dist) -> float:
    """Mean of a scalar over ranks (identity without torchrun)."""
    if dist.world == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=dist.device)
    torch_dist.all_reduce(t)
    return t.item() / dist.world


def cleanup(dist: Dist) -> None:
    if dist.world > 1 and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
