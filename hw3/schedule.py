"""The GANs' learning-rate schedule, as options: a constant rate, a linear decay at the end, warm restarts."""
from __future__ import annotations

import argparse

from hw3.cli import UserError


def lr_factor(done: int, steps: int, decay_from: int | None, restarts: list[int] | None = None) -> float:
    """The learning rate's multiplier before step `done` (0-based): 1, then from step `decay_from` a linear ramp
    that reaches 1 / (end - decay_from) on the step before `end`, the first restart or the last step (None: constant).
    Each warm restart runs at half the rate, held for the first half of its cycle, then decayed the same way."""
    start = max((s for s in restarts or [] if s <= done), default=None)  # the restart this step's cycle began at
    end = min((s for s in restarts or [] if s > done), default=steps)
    if start is not None:
        return 0.5 * lr_factor(done - start, end - start, (end - start) // 2)
    if decay_from is None or done < decay_from:
        return 1.0
    return (end - done) / (end - decay_from)


def restart_step(text: str) -> int | None:
    """One value of --restarts: a step, or 'none' (no restarts)."""
    return None if text == "none" else int(text)


def resolve_schedule(args: argparse.Namespace, steps: int, resumed: bool, given: set[str],
                     recipe: tuple[int, ...] = ()) -> None:
    """Fill in and check --lr-decay-from, --extra-until and --restarts for a run of `steps` steps (in place);
    `recipe`: the restarts a fresh run gets without --restarts, --init or --report (None: none, as older runs)."""
    if args.restarts is not None and None in args.restarts:  # 'none'
        if args.restarts != [None]:
            raise UserError("--restarts takes steps or 'none', not both")
        args.restarts = None
    elif args.restarts is None and not (resumed or args.report or getattr(args, "init", None)):
        args.restarts = list(recipe) or None
    first = args.restarts[0] if args.restarts else steps  # the end of the first cycle
    if args.restarts and (args.restarts != sorted(set(args.restarts)) or not 0 < first or args.restarts[-1] >= steps):
        raise UserError(f"--restarts must be increasing steps between 0 and --steps {steps}, got {args.restarts}")
    if args.lr_decay_from is None:  # the default schedule: the last sixth decays (older runs: a constant rate)
        args.lr_decay_from = steps if resumed or args.report else first - first // 6
    if args.extra_until is None:  # the default: a finish on face/train while the rate decays
        args.extra_until = steps if resumed or args.report else args.lr_decay_from
    for name in ("lr_decay_from", "extra_until"):
        if getattr(args, name) > steps and name not in given and resumed:  # a run cut short by --steps
            print(f"the run's {name} step {getattr(args, name)} lies past --steps {steps}: it ends before it")
            setattr(args, name, steps)
        if getattr(args, name) > steps:
            raise UserError(f"--{name.replace('_', '-')} must be at most {steps} (the run's steps), "
                            f"got {getattr(args, name)}")
    if args.lr_decay_from > first and "lr_decay_from" in given:
        raise UserError(f"--lr-decay-from {args.lr_decay_from} lies past the first of --restarts ({first})")
    args.lr_decay_from = min(args.lr_decay_from, first)  # --report or an older run: constant up to the first restart
