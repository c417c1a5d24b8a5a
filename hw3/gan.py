"""What P1 (DCGAN) and P2 (ACGAN) share: the GAN method for the run loop, the generator's EMA, sampling and image
grids. Each script supplies its networks and its training step through a `GanSpec`; gan_cli has the commands."""
from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from datasets import DeviceSampler, load_faces, read_csv, training_splits
from hw3 import checkpoints, cli, distributed, evaluation, loop
from hw3.augment import DiffAugment, mirror, parse_policy
from hw3.cli import UserError
from hw3.schedule import lr_factor, resolve_schedule
from models import Z_DIM, init_dcgan

BN_BATCHES = 100  # noise batches of 64 that re-estimate an average generator's BatchNorm statistics
# probes that measured no gain and left the code (commit 38f8f44 has them): their values in the runs before
REMOVED = {"loss": "bce", "spectral_norm": False, "lr_d": None, "d_warmup": 0}
REMOVED_IN = "38f8f44"
# what a run recorded before an option existed trained with (a default that later changed)
OLDER = {"xflip": False, "extra_share": 0.0, "extra_until": None, "restarts": None, "r1": 0.0}
RESUME_WINS = ("steps", "lr_decay_from", "lr", "extra_until", "restarts")  # with --resume: a new schedule
LR = 2e-4  # both Adam rates (the report's); --lr has no argparse default, so --resume can tell whether it was given
# --report's configuration, beside each script's report_args: no DiffAugment, EMA, mirroring, extra faces or decay
REPORT = {"diffaug": "none", "ema": 0.0, "xflip": False, "extra_share": 0.0, "extra_until": None,
          "lr_decay_from": None, "restarts": None, "lr": LR, "r1": 0.0}
R1_EVERY = 16  # lazy R1: the penalty on every 16th D step only, weighted by 16 (StyleGAN2's lazy regularisation)


@dataclass
class Nets:
    """The two networks (possibly DDP-wrapped for the forward pass) and their optimizers."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rank: int = 0   # under torchrun: this process's slice of every global batch
    world: int = 1
    augment: Callable[[torch.Tensor], torch.Tensor] = lambda x: x  # what D sees, real and fake (DiffAugment)
    r1: float = 0.0  # this step's R1 weight: --r1 * R1_EVERY on every R1_EVERY-th step, else 0

    def draw(self, make: Callable[[int], torch.Tensor], local: int) -> torch.Tensor:
        """This rank's slice of a global batch made by `make(global_size)` (noise, sampled labels): every rank
        draws the same global tensor, so N ranks see what one process with the whole batch sees."""
        return make(local * self.world).chunk(self.world)[self.rank]


Step = Callable[[Nets, torch.Tensor, "torch.Tensor | None", torch.Generator], dict[str, float]]


def bce(logit: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE-with-logits against all-ones (real) or all-zeros (fake): the report's Sigmoid + BCE, computed stably."""
    target = torch.ones_like(logit.float()) if real else torch.zeros_like(logit.float())
    return F.binary_cross_entropy_with_logits(logit.float(), target)


def d_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """D's loss: real images toward 1, fakes toward 0."""
    return bce(logit_real, True) + bce(logit_fake, False)


def g_loss(logit_fake: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss: its fakes toward 1."""
    return bce(logit_fake, True)


def real_seen(nets: Nets, real: torch.Tensor) -> torch.Tensor:
    """The real batch as D sees it (augmented); on an R1 step a leaf that D's input gradient can be taken at."""
    seen = nets.augment(real)
    return seen.detach().requires_grad_() if nets.r1 else seen


def r1_penalty(nets: Nets, logit_real: torch.Tensor, seen: torch.Tensor) -> torch.Tensor | float:
    """R1 (Mescheder et al. 2018): r1/2 * E ||d logit / d x||^2 at the real images D saw; 0 on other steps."""
    if not nets.r1:
        return 0.0
    grad, = torch.autograd.grad(logit_real.float().sum(), seen, create_graph=True)  # (B, 3, 64, 64)
    return nets.r1 / 2 * grad.float().square().flatten(1).sum(1).mean()


@dataclass(frozen=True)
class GanSpec:
    """What a GAN script plugs into the shared code."""

    kind: str                                   # checkpoint kind, e.g. "p1_dcgan"
    build_g: Callable[[dict], nn.Module]        # a run's config -> its generator (the config names the architecture)
    build_d: Callable[[dict], nn.Module]
    # (G, z (B, 100), attribute (B,) or None) -> images (B, 3, 64, 64)
    generate: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
    figure: Callable[[nn.Module, torch.Generator, torch.device], tuple[torch.Tensor, int]]  # -> images, columns
    step: Step                                  # one D update then one G update on a real batch
    conditional: bool = False                   # needs an attribute column
    report_args: dict = field(default_factory=dict)  # what --report sets besides REPORT (the script's own)
    steps: int = 60_000                         # the recipe's length (--steps default)
    restarts: tuple[int, ...] = ()              # its warm restarts (--restarts default at that length)
    r1: float = 0.0                             # its R1 weight (--r1 default)
    report_epochs: int = 50                     # the report's length (--report default)
    older: dict = field(default_factory=dict)   # the script's own OLDER
    # (args, G, D) -> what the config records of them: weights to start from (a fresh run only, after the DCGAN init)
    warm_start: Callable[[argparse.Namespace, nn.Module, nn.Module], dict] | None = None


# ----------------------------------------------------------------------------- training


class EMA:
    """An exponential moving average of a generator's weights, used for sampling, export and figures. The decay
    ramps up as min(decay, (1 + step) / (10 + step)) so early averages are not dominated by the random init."""

    def __init__(self, net: nn.Module, decay: float):
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for avg, p in zip(self.net.parameters(), net.parameters()):
            avg.lerp_(p.detach(), 1 - decay)
        for avg, b in zip(self.net.buffers(), net.buffers()):  # BatchNorm statistics: the current ones
            avg.copy_(b)


class GANMethod:
    """One D update then one G update per step (the script's `spec.step`), the generator's weight average after
    it, and a grid from the fixed noise every `sample_every` steps."""

    def __init__(self, args: argparse.Namespace, spec: GanSpec, nets: Nets, G: nn.Module, D: nn.Module,
                 sampler: DeviceSampler, rng: torch.Generator, dist: distributed.Dist, run: Path, steps: int):
        self.args, self.spec, self.nets, self.G, self.D = args, spec, nets, G, D
        self.sampler, self.rng, self.dist, self.run, self.steps = sampler, rng, dist, run, steps
        self.ema = EMA(G, args.ema) if args.ema > 0 else None
        self.fixed_noise_seed = args.seed + 12345  # snapshots of one run compare: always the same noise

    def update(self, step: int) -> dict[str, float]:
        factor = lr_factor(step, self.steps, self.args.lr_decay_from, self.args.restarts)
        for opt in (self.nets.opt_g, self.nets.opt_d):
            for group in opt.param_groups:
                group["lr"] = self.args.lr * factor
        until = self.args.extra_until
        share = self.args.extra_share if until is None or step < until else 0.0  # then a finish on face/train
        real, labels = self.sampler.sample(self.args.batch, self.dist.rank, self.dist.world, share)  # (B, 3, 64, 64)
        self.nets.r1 = self.args.r1 * R1_EVERY if step % R1_EVERY == 0 else 0.0
        if self.args.xflip:
            real = mirror(real, self.rng, self.dist.rank, self.dist.world)
        out = self.spec.step(self.nets, real, labels, self.rng)
        return out | {"lr": self.args.lr * factor, "epoch": (step + 1) * self.args.batch / len(self.sampler)}

    def after_step(self, step: int) -> None:
        if self.ema is not None:
            self.ema.update(self.G, step)
        if self.dist.is_main and (step % self.args.sample_every == 0 or step == self.steps):
            net = self.ema.net if self.ema is not None else self.G
            net.eval()  # the fixed noise has its own CPU generator: the training RNG is untouched
            with torch.inference_mode():
                images, cols = self.spec.figure(net, torch.Generator().manual_seed(self.fixed_noise_seed),
                                                self.dist.device)
            self.G.train()
            save_grid(images, cols, self.run / "samples" / f"step_{step:06d}.png")

    def evaluate(self, step: int) -> dict[str, float]:
        return {}  # FID is its own command (eval): too slow for the loop on a CPU

    def score(self, metrics: dict[str, float]) -> None:
        return None

    def state_dict(self, full: bool) -> dict:
        models = {"G": self.G.state_dict(), "D": self.D.state_dict()}
        if self.ema is not None:
            models["G_ema"] = self.ema.net.state_dict()
        return {"models": models, "optimizers": {"G": self.nets.opt_g.state_dict(), "D": self.nets.opt_d.state_dict()}}

    def load_state_dict(self, state: dict) -> None:
        checkpoints.load_state(self.G, state["models"]["G"], "generator")
        checkpoints.load_state(self.D, state["models"]["D"], "discriminator")
        if self.ema is not None:
            checkpoints.load_state(self.ema.net, state["models"]["G_ema"], "generator average")
        self.nets.opt_g.load_state_dict(state["optimizers"]["G"])
        self.nets.opt_d.load_state_dict(state["optimizers"]["D"])


def check_training_folders(args: argparse.Namespace, attr: str | None) -> None:
    """face/extra, if drawn from, must exist with train.csv's columns; no training folder may be face/test (FID's)."""
    face = Path(args.data) / "face"
    if args.extra_share > 0 and not (face / "extra").is_dir():
        raise UserError(f"no {face / 'extra'}: --extra-share {args.extra_share} draws that share of the faces from "
                        "there (face_celeba_extra.zip); --extra-share 0 trains on face/train alone")
    for split in training_splits(args.extra_share):
        if (face / "test").is_dir() and (face / split).resolve() == (face / "test").resolve():
            raise UserError(f"{face / split} is {face / 'test'}, the faces FID judges on: train on other faces")
    if args.extra_share > 0 and attr is not None:
        train_cols, extra_cols = (set(read_csv(face / f"{s}.csv", ["image_name", attr])[0]) for s in ("train", "extra"))
        if train_cols != extra_cols:
            differ = ", ".join(sorted(train_cols ^ extra_cols))
            raise UserError(f"{face / 'extra.csv'} and {face / 'train.csv'} differ in the column(s) {differ}: the "
                            "extra faces need the training CSV's columns")


def train(args: argparse.Namespace, spec: GanSpec, attr: str | None = None) -> None:
    """Data on the device, Adam for both nets, DiffAugment in front of D, then the shared run loop."""
    given = cli.given_options(args)
    # the recorded config wins, except an explicit length or schedule (--steps extends a run, --lr a warm restart)
    resume = checkpoints.resume_args(args, Path(args.run_dir), spec.kind, older=OLDER | spec.older,
                                     explicit_wins=RESUME_WINS)
    if resume is not None:
        checkpoints.refuse_other_values(resume["config"], REMOVED, REMOVED_IN, args.run_dir, "a probe removed since")
        if "epochs" in given and "steps" not in given:
            raise UserError("--resume takes --steps to change a run's length, not --epochs")
    elif args.report:
        report = {**REPORT, **spec.report_args}
        mine = sorted(k for k in report if k in given and getattr(args, k) != report[k])
        vars(args).update({k: v for k, v in report.items() if k not in mine})
        if mine:  # an explicit option wins over --report's value, and says so
            print("--report, except " + ", ".join(f"--{k.replace('_', '-')} {getattr(args, k)} (the report's: "
                                                  f"{report[k]})" for k in mine))
        if args.steps is None and args.epochs is None:
            args.epochs = spec.report_epochs
    if args.steps is not None and args.epochs is not None and {"steps", "epochs"} <= given:
        raise UserError("give --steps or --epochs, not both")
    if args.steps is None and args.epochs is None:
        args.steps = spec.steps  # the recipe's length
    args.lr = LR if args.lr is None else args.lr
    cli.check_range(args, steps=">=1", epochs=">0", batch=">=1", lr=">0", betas="[0,1)", extra_share="[0,1)",
                    ema="[0,1)", r1=">=0", lr_decay_from=">=0", extra_until=">=0", sample_every=">=1", ckpt_every=">=1",
                    log_every=">=1")
    try:
        policy = parse_policy(args.diffaug)
    except ValueError as e:
        raise UserError(str(e)) from None
    dist = distributed.setup(args.device, args.seed, args.precision)
    if args.batch % dist.world:
        raise UserError(f"--batch {args.batch} does not split over {dist.world} processes")
    data = load_faces(args.data, "train", attr)
    check_training_folders(args, attr)
    extra = load_faces(args.data, "extra", attr) if args.extra_share > 0 else None
    rng = torch.Generator(dist.device).manual_seed(args.seed)  # batch indices, z, sampled labels, augmentation
    sampler = DeviceSampler(data, dist.device, rng, extra)
    steps = args.steps if args.steps is not None else max(1, round(args.epochs * len(sampler) / args.batch))
    resolve_schedule(args, steps, resume is not None, given, spec.restarts if steps == spec.steps else ())
    if resume is None:
        command = cli.command_line(args, f"{spec.kind}.py")
    else:  # a resume keeps the run's command, unless it moved the schedule: the run is then a chain
        command = None if given & set(RESUME_WINS) else resume["config"].get("command")
    config = {"kind": spec.kind, **checkpoints.run_config(args), "total_steps": steps, "train_images": len(sampler),
              "command": command}
    if extra is not None:
        config["extra_images"] = len(extra.images)
    G, D = spec.build_g(config), spec.build_d(config)
    G.apply(init_dcgan), D.apply(init_dcgan)
    if spec.warm_start is not None and resume is None:  # before the run folder: a bad --init leaves nothing behind
        config |= spec.warm_start(args, G, D)
    elif resume is not None and "init_from" in resume["config"]:
        config["init_from"] = resume["config"]["init_from"]
    run = checkpoints.open_run(args.run_dir, config, args.resume, args.overwrite, dist)
    opt_g = distributed.adam(G.parameters(), args.lr, betas=tuple(args.betas))
    opt_d = distributed.adam(D.parameters(), args.lr, betas=tuple(args.betas))
    nets = Nets(distributed.prepare_model(G, dist), distributed.prepare_model(D, dist), opt_g, opt_d, dist.rank,
                dist.world, DiffAugment(policy, rng, dist.rank, dist.world))
    method = GANMethod(args, spec, nets, G, D, sampler, rng, dist, run, steps)
    nets.G.train(), nets.D.train()
    plan = loop.Schedule(steps, args.log_every, eval_every=0, ckpt_every=args.ckpt_every, stop_at=args.stop_at,
                         images_per_step=args.batch, desc=spec.kind)
    try:
        out = loop.run(method, run, config, rng, plan, dist.is_main, resume)
    finally:  # also after Ctrl-C: the curves of what was trained
        if dist.is_main and (run / "metrics.jsonl").is_file():
            plot_gan_curves(run)
    if dist.is_main and "stopped" not in out:  # metrics.json: where the run ended (FID is the eval command's)
        last = checkpoints.read_metrics(run / "metrics.jsonl")[-1:] or [{}]
        cli.write_json(run / "metrics.json", {"steps": steps, "images_seen": steps * args.batch,
                                              "last_logged": last[0]})
        print(f"{spec.kind}: {steps} steps, {steps * args.batch} images seen  [{run}]")
    distributed.cleanup(dist)


def plot_gan_curves(run: Path) -> Path:
    """curves.png: D/G losses, D(x) and D(G(z)), auxiliary accuracy (the panels that were logged)."""
    groups = {"losses": ["loss_d", "loss_g", "loss_d_aux", "loss_g_aux"],
              "discriminator outputs": ["d_real", "d_fake"],
              "auxiliary accuracy": ["aux_acc_real", "aux_acc_fake"]}
    logged = set().union(*map(set, checkpoints.read_metrics(run / "metrics.jsonl")))
    return checkpoints.plot_curves(run, {t: ks for t, ks in groups.items() if logged & set(ks)})


# ----------------------------------------------------------------------------- generators, sampling, grids


def load_generator(path: str | Path, spec: GanSpec, device: torch.device) -> tuple[nn.Module, dict]:
    """The generator of a run checkpoint or a shipped fp16 one, in float32 eval mode on `device`."""
    ck = checkpoints.load_checkpoint(path, spec.kind)
    G = spec.build_g(ck["config"]).to(device).eval()
    state = ck["models"].get("G_ema", ck["models"]["G"])  # the weight average, where the run kept one
    checkpoints.load_state(G, checkpoints.float_state(state), "generator")
    if "G_ema" in ck["models"]:  # a run's average still has the live generator's statistics (exports are fixed)
        recalibrate_batchnorm(G, spec, device)
    return G, ck


def recalibrate_batchnorm(G: nn.Module, spec: GanSpec, device: torch.device, batches: int | None = None,
                          batch: int = 64, seed: int = 0) -> nn.Module:
    """Re-estimate G's BatchNorm running statistics for its own weights: the mean over `batches` (BN_BATCHES)
    noise batches in train mode. An EMA generator needs it, its weights never produced the live generator's."""
    batches = BN_BATCHES if batches is None else batches
    rng = torch.Generator().manual_seed(seed)

    def forward_batches() -> None:
        for _ in range(batches):
            z = torch.randn(batch, Z_DIM, generator=rng).to(device)  # (B, 100)
            y = torch.randint(0, 2, (batch,), generator=rng).to(device) if spec.conditional else None
            spec.generate(G, z, y)

    evaluation.reestimate_batchnorm(G, forward_batches)
    return G


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255] on the CPU (round to nearest)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def save_grid(images: torch.Tensor, cols: int, path: str | Path, padding: int = 2) -> Path:
    """A grid of images in [-1, 1] (N, 3, 64, 64), `cols` per row, `padding` px of black between and around."""
    from torchvision.utils import make_grid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(to_uint8(images), nrow=cols, padding=padding)  # (3, H, W) uint8
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path, quality=95)
    return path


@torch.inference_mode()
def generate_n(G: nn.Module, spec: GanSpec, n: int, seed: int, device: torch.device, batch: int = 500
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n generated images as uint8 (n, 3, 64, 64) on the CPU; a conditional GAN alternates attribute 0, 1."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, Z_DIM, generator=rng)
    y = torch.arange(n) % 2 if spec.conditional else None
    out = [to_uint8(spec.generate(G, z[i:i + batch].to(device), None if y is None else y[i:i + batch].to(device)))
           for i in range(0, n, batch)]
    return torch.cat(out), y
