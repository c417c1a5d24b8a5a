"""The run loop every training script goes through (DomainBed's shape).

A method is an object with `update(step) -> dict[str, float]` (one training step), `evaluate(step)`,
`score(metrics)` (the selection criterion, or None), `after_step(step)` and `state_dict(full)` /
`load_state_dict(state)`. `run` owns the rest: progress bar, window means, metrics.jsonl, evaluation and checkpoint
selection, atomic `last.pt` / `best.pt`, exact resume, Ctrl-C (checkpoint, exit 130) and `--stop-at`.

After step N's update the loop calls `after_step(N)`, then evaluates, scores and checkpoints step N. So what
`after_step` changes is what gets scored and saved: it must not swap out a state that could be chosen (a stage that
starts from another state does that in its first `update`, after the last state before it has been scored).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from hw3.checkpoints import MetricLog, check_finite, restore_generator, rng_state, save_checkpoint, set_rng_state
from hw3.cli import GracefulStop
from hw3.distributed import add_precision_arg


class Method(Protocol):
    def update(self, step: int) -> dict[str, float]: ...
    def after_step(self, step: int) -> None: ...
    def evaluate(self, step: int) -> dict[str, float]: ...
    def score(self, metrics: dict[str, float]) -> float | None: ...
    def state_dict(self, full: bool) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Schedule:
    """When the loop logs, evaluates and checkpoints (every N steps, and at the listed `boundaries`)."""

    steps: int
    log_every: int = 50
    eval_every: int = 0          # 0: never evaluate (GANs), only checkpoint
    ckpt_every: int = 0          # extra last.pt writes between evaluations (0: at evaluations only)
    stop_at: int | None = None
    images_per_step: int = 1     # for the images/s column
    boundaries: tuple[int, ...] = ()
    desc: str = ""
    extra_state: dict = field(default_factory=dict)


def add_run_args(parser: argparse.ArgumentParser, log_every: int = 50, evaluates: bool = True,
                 eval_every: int = 500) -> None:
    """The options every training script shares: logging (and evaluation) period, seed, device, precision, and the
    run-folder controls (--resume, --overwrite, --stop-at)."""
    if evaluates:
        parser.add_argument("--eval-every", type=int, default=eval_every,
                            help="steps between evaluations (each may choose a new best.pt)")
    parser.add_argument("--log-every", type=int, default=log_every, help="steps between lines of metrics.jsonl")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N; auto: cuda if there is one")
    add_precision_arg(parser)
    parser.add_argument("--resume", action="store_true", help="continue --run-dir from its last.pt, with its config")
    parser.add_argument("--overwrite", action="store_true", help="start again in a folder that holds a run")
    parser.add_argument("--stop-at", type=int, help="checkpoint and stop after this step (default: none, train to "
                        "the end; continue with --resume)")


def run(method: Method, run_dir: Path, config: dict, rng: torch.Generator, plan: Schedule, is_main: bool = True,
        resume: dict | None = None) -> dict:
    """Train `method` for `plan.steps` steps (from a resumed checkpoint if given). Returns the best record:
    {"score", "step", **metrics at that step}, or {} when the method never scores."""
    step, best = 0, {}
    if resume is not None:
        method.load_state_dict(resume)
        step, best = resume["step"], resume.get("best", {})
        restore_generator(rng, resume["rng"]["batches"])  # from another device too
        set_rng_state(resume["rng"]["global"])
    log = MetricLog(run_dir, is_main, step)

    def checkpoint(name: str, full: bool = True) -> None:
        if not is_main:
            return
        state = {"config": config, "step": step, "best": best, **method.state_dict(full)}
        if full:
            state["rng"] = {"batches": rng.get_state(), "global": rng_state()}
        save_checkpoint(run_dir / name, state)

    window: list[dict[str, float]] = []
    t0 = time.time()
    with GracefulStop() as stop, tqdm(total=plan.steps, initial=step, desc=plan.desc, disable=not is_main,
                                      dynamic_ncols=True, mininterval=2) as bar:
        while step < plan.steps:
            out = method.update(step)
            step += 1
            check_finite(out, step)
            method.after_step(step)
            window.append(out)
            bar.update()
            edge = step == plan.steps or step in plan.boundaries
            if step % plan.log_every == 0 or edge:
                keys = {k for w in window for k in w}
                mean = {k: sum(w[k] for w in window if k in w) / sum(k in w for w in window) for k in sorted(keys)}
                mean["img_per_s"] = len(window) * plan.images_per_step / (time.time() - t0)
                mean["threads"] = torch.get_num_threads()  # what that speed ran on
                log.write(step, mean)
                bar.set_postfix({k: f"{v:.3f}" for k, v in list(mean.items())[:4]})
                window, t0 = [], time.time()
            evaluated = plan.eval_every and (step % plan.eval_every == 0 or edge)
            if evaluated:
                metrics = method.evaluate(step)
                log.write(step, metrics)
                score = method.score(metrics)
                if score is not None and score > best.get("score", -float("inf")):  # never target test labels
                    best = {"score": score, "step": step, **metrics}
                    checkpoint("best.pt", full=False)
            if evaluated or (plan.ckpt_every and step % plan.ckpt_every == 0) or edge or stop.requested:
                checkpoint("last.pt")
            if stop.requested:
                raise KeyboardInterrupt
            if step == plan.stop_at and step < plan.steps:  # a stop at the last step is the run's end
                checkpoint("last.pt")
                if is_main:
                    print(f"stopped at step {step}; continue with --resume --run-dir {run_dir}")
                return {"stopped": step}
    return best
