"""P1: DCGAN on 64x64 faces, with the report's networks and hyper-parameters.

  python p1_dcgan.py train --data hw3_data --run-dir runs/p1
  python p1_dcgan.py export --ckpt runs/p1/last.pt --out checkpoints/p1_dcgan.pt
  python p1_dcgan.py sample --ckpt checkpoints/p1_dcgan.pt --out fig1_2.jpg --seed 0
  python p1_dcgan.py eval --ckpt checkpoints/p1_dcgan.pt --data hw3_data --n 1000
  python p1_dcgan.py train --run-dir runs/p1_more --init runs/p1/last.pt --xflip  # continue a run, its D too
"""
from __future__ import annotations

import argparse

import torch

from hw3 import checkpoints, cli, distributed, fid, gan, gan_cli
from hw3.gan import Nets
from hw3.gan_losses import d_adversarial_loss, g_adversarial_loss, r1_penalty, real_input
from models import Z_DIM, DCGANDiscriminator, DCGANGenerator

KIND = "p1_dcgan"


def d_step(nets: Nets, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """One discriminator update on real images and fake.detach(): no gradient reaches the generator."""
    x_real = real_input(nets, real)
    with distributed.autocast(real.device):
        logit_real, logit_fake = nets.D(x_real), nets.D(nets.augment(fake.detach()))  # (B,), (B,)
        loss = d_adversarial_loss(logit_real, logit_fake, nets.loss)
        r1 = r1_penalty(logit_real, x_real, nets.r1) if nets.r1 > 0 else 0.0
    nets.opt_d.zero_grad(set_to_none=True)
    (loss + r1).backward()
    nets.opt_d.step()
    return {"loss_d": loss.item(), "d_real": torch.sigmoid(logit_real.float()).mean().item(),
            "d_fake": torch.sigmoid(logit_fake.float()).mean().item()} | ({"r1": r1.item()} if nets.r1 > 0 else {})


def g_step(nets: Nets, fake: torch.Tensor) -> dict[str, float]:
    """One generator update: make the (just updated) discriminator call the fakes real."""
    with distributed.autocast(fake.device):
        loss = g_adversarial_loss(nets.D(nets.augment(fake)), nets.loss)
    nets.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    nets.opt_g.step()
    return {"loss_g": loss.item()}


def train_step(nets: Nets, real: torch.Tensor, labels: torch.Tensor | None, rng: torch.Generator) -> dict[str, float]:
    z = nets.draw(lambda n: torch.randn(n, Z_DIM, generator=rng, device=real.device), len(real))  # (B, 100)
    with distributed.autocast(real.device):
        fake = nets.G(z)  # (B, 3, 64, 64)
    return d_step(nets, real, fake) | (g_step(nets, fake) if nets.train_g else {})


def figure(G: torch.nn.Module, rng: torch.Generator, device: torch.device) -> tuple[torch.Tensor, int]:
    """fig1_2: 32 faces from 32 noise vectors, 4 rows of 8."""
    z = torch.randn(32, Z_DIM, generator=rng).to(device)
    return G(z), 8


def warm_start(args: argparse.Namespace, G: torch.nn.Module, D: torch.nn.Module) -> None:
    """--init: continue from a P1 checkpoint: a run's last.pt (both networks) or an export (the generator only;
    D keeps its fresh init, see --d-warmup)."""
    if not args.init:
        return
    models = checkpoints.load_checkpoint(args.init, KIND)["models"]
    checkpoints.load_state(G, checkpoints.float_state(models["G"]), "generator")
    if "D" in models:
        checkpoints.load_state(D, models["D"], "discriminator")
    print(f"warm start from {args.init}{'' if 'D' in models else ' (generator only)'}")


SPEC = gan.GanSpec(kind=KIND, build_g=lambda config: DCGANGenerator(),
                   build_d=lambda config: DCGANDiscriminator(spectral=config.get("spectral_norm", False)),
                   generate=lambda G, z, y: G(z), figure=figure, step=train_step, warm_start=warm_start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = gan_cli.add_commands(p, batch=128, epochs=50)
    cmds["train"].add_argument("--init", help="start from a P1 checkpoint (a run's last.pt, or an export: G only)")
    args = p.parse_args(argv)
    gan_cli.run_command(args, SPEC, evaluate)


def evaluate(args: argparse.Namespace) -> None:
    """FID of --n generated faces against the real folder."""
    real, floor, device, G, ck = gan_cli.prepare_eval(args, SPEC)
    fake, _ = gan.generate_n(G, SPEC, args.n, args.seed, device)
    gan_cli.report(args, {"checkpoint_step": ck["step"], "truncation": G.psi,
                          **fid.fid_metrics(fake, real, device, floor)})


if __name__ == "__main__":
    cli.cli_main(main)
