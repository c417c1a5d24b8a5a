"""Checkpoints (atomic writes, weights_only loads, fp16 export) and run folders (config, metrics, curves)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import random
import shlex
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from hw3.cli import UserError, check_output_file, first_line, make_folder, write_json
from hw3.distributed import Dist, precision, unwrap


def check_finite(losses: dict[str, float], step: int) -> None:
    """Stop a diverged run with a message naming the step; the last good checkpoint stays on disk."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        raise UserError(f"non-finite {', '.join(bad)} at step {step}; the last good checkpoint is kept, "
                        "lower the learning rate or resume from it")


def rng_state() -> dict:
    """Every RNG a training step may touch, for exact resume."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back what rng_state saved; CUDA states only for the GPUs visible now (a run saved on 2 GPUs resumes on 1,
    one saved on a CPU on a GPU)."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def restore_generator(rng: torch.Generator, state: torch.Tensor) -> None:
    """Put a saved batch generator's state back. A state saved on another kind of device (a CPU generator's cannot
    enter a CUDA one, nor the reverse) seeds the generator from a hash of it instead: the run goes on
    deterministically, not identically (no device gives another's random numbers), and says so."""
    try:
        rng.set_state(state)
    except RuntimeError:
        seed = int.from_bytes(hashlib.sha256(state.cpu().numpy().tobytes()).digest()[:8], "little")
        rng.manual_seed(seed)
        print(f"resuming on {rng.device.type} a run saved on another device: its batch generator is re-seeded "
              f"from the saved state ({seed}); the run continues deterministically, not bit-identically")


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
    if path.stat().st_size == 0:
        raise UserError(f"cannot read checkpoint {path}: the file is empty")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise UserError(f"cannot read checkpoint {path}: permission denied") from None
    except Exception as e:  # truncated file, not a torch file, or a pickle that wants to run code
        text = str(e)
        if "central directory" in text or "zip archive" in text or isinstance(e, EOFError):
            cause = "the file is truncated or not a PyTorch checkpoint"
        elif "weights_only" in text or "Unsupported global" in text:
            cause = "it holds code objects, not plain tensors (not a checkpoint of this project)"
        else:
            cause = first_line(e)
        raise UserError(f"cannot read checkpoint {path}: {cause}") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "models" not in ckpt:
        raise UserError(f"{path} is not a checkpoint of this project (no config and models)")
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


def float_state(state: dict) -> dict:
    """A state_dict with floating tensors in fp32 (shipped weights are fp16)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


PATH_KEYS = ("data", "run_dir", "run", "real", "init")  # config entries naming a path of the training machine


def portable(value: Any, key: str = "") -> Any:
    """What a shipped config may say of a path: a folder's own name (`hw3_data`, the run's name), never where it
    was on the machine that trained it."""
    if isinstance(value, dict):
        return {k: portable(v, k) for k, v in value.items()}
    if isinstance(value, str) and key == "command":  # the words of a command line, each its own path
        return shlex.join(Path(w).name if os.path.isabs(w) else w for w in shlex.split(value))
    if isinstance(value, str) and (key in PATH_KEYS or os.path.isabs(value)):
        return Path(value).name
    return value


def export_checkpoint(ck: dict, src: str | Path, out: str | Path, keep: tuple[str, ...] | None = None,
                      force: bool = False) -> Path:
    """Ship a run's checkpoint `ck`, read from `src` by the script's own loader (so weights that do not fit the
    networks are never shipped): fp16 weights of the `keep` models (default all), config, step and best metrics;
    no optimizer or RNG state. The run's metrics.json, if any, is copied beside it as <out>.json. Never over `src`
    itself; over shipped weights (checkpoints/) only with `force`."""
    out = check_output_file(out, (".pt",), reads=(src,), force=force)
    if out.with_suffix(".json").exists():
        check_output_file(out.with_suffix(".json"), (".json",), reads=(src,), force=force)
    slim = {k: portable(v) for k, v in ck.items() if k not in ("optimizers", "rng", "models")}
    slim["models"] = {name: half_state(sd) for name, sd in ck["models"].items() if keep is None or name in keep}
    save_checkpoint(out, slim)
    run_metrics = Path(src).parent / "metrics.json"
    if run_metrics.is_file():
        command = {"command": slim["config"]["command"]} if "command" in slim["config"] else {}
        write_json(out.with_suffix(".json"), {**command, "config": slim["config"],
                                              "metrics": portable(json.loads(run_metrics.read_text()))})
    return out


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__}


RUN_ONLY_ARGS = ("cmd", "resume", "overwrite", "stop_at", "device", "given", "force", "argv")


def run_config(args) -> dict:
    """The arguments that define a run (what config.json and checkpoints record)."""
    return {k: v for k, v in vars(args).items() if k not in RUN_ONLY_ARGS}


def resume_args(args, run: Path, kind: str, explicit_wins: tuple[str, ...] = (), older: dict | None = None
                ) -> dict | None:
    """With --resume: load <run>/last.pt, put its recorded config back into `args` and return the checkpoint (None
    for a fresh run). A value given for --data (the data may have moved) or for a key of `explicit_wins` stays; a
    key of `older` the recorded config lacks (the run began before that setting existed) takes its value there.
    Either way an unset --data ends as the run's own, else hw3_data."""
    ck = load_checkpoint(Path(run) / "last.pt", kind) if args.resume else None
    for k, v in ({**(older or {}), **ck["config"]} if ck else {}).items():
        if k in (*RUN_ONLY_ARGS, "kind", "run_dir") or not hasattr(args, k):
            continue
        if k in ("data", *explicit_wins) and getattr(args, k) is not None:
            continue
        setattr(args, k, v)
    args.data = args.data or "hw3_data"
    return ck


def same_value(a: Any, b: Any) -> bool:
    """Equal, a list and a tuple of the same items too (a config read back from a checkpoint holds lists)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def refuse_other_values(config: dict, today: dict, commit: str | dict[str, str], run: str | Path, why: str) -> None:
    """--resume continues a run only as today's code can: a key of `today` (key -> the value today's code trains
    with) that the run's config records with another value is one line naming the commit that still has it (one
    commit, or one per key)."""
    for key, value in today.items():
        if key in config and not same_value(config[key], value):
            flag, had = "--" + key.replace("_", "-"), config[key]
            where = commit[key] if isinstance(commit, dict) else commit
            raise UserError(f"--resume: {run} trained with {key}={had} ({flag} {had}), {why}; resume it with commit "
                            f"{where}")


def open_run(run_dir: str | Path, config: dict, resume: bool, overwrite: bool, dist: Dist) -> Path:
    """Create the run folder (or reopen it with `resume`) and write config.json; refuse to clobber a finished run
    unless asked."""
    run = Path(run_dir)
    if resume and not (run / "last.pt").exists():
        raise UserError(f"--resume: last.pt not found in {run}")
    if not resume and (run / "last.pt").exists() and not overwrite:
        raise UserError(f"{run} already holds a run; pass --resume to continue it or --overwrite to start again")
    if dist.is_main:  # a resumed run rewrites config.json too: an explicit --steps or --data is then on record
        make_folder(run, "run folder")
        try:
            if overwrite and not resume:
                (run / "metrics.jsonl").unlink(missing_ok=True)
            write_json(run / "config.json", {**config, "versions": versions(), "world_size": dist.world,
                                             "device": str(dist.device), "precision": precision(dist.device)})
        except OSError as e:
            raise UserError(f"cannot write run folder {run}: {e.strerror}") from None
    return run


class MetricLog:
    """Appends one JSON line per logging step to metrics.jsonl (rank 0 only); drops lines past a resumed step."""

    def __init__(self, run: Path, is_main: bool = True, resume_step: int = 0):
        self.path = run / "metrics.jsonl"
        self.on = is_main
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
            if pts:  # a marker on every point of a short series: a single point shows too
                ax.plot(*zip(*pts), label=k, lw=1, marker="o" if len(pts) < 30 else None, ms=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = run / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
