"""P1: DCGAN on 64x64 faces, the report's networks; trained with DiffAugment, a lazy R1 penalty, an EMA generator and
mirrored faces, the extra CelebA faces an option (the defaults are the recipe; --report is the report's configuration).

  python p1_dcgan.py train --data hw3_data --run-dir runs/p1
  python p1_dcgan.py export --ckpt runs/p1/last.pt --out my_dcgan.pt --truncation 0.9
  python p1_dcgan.py sample --ckpt checkpoints/p1_dcgan.pt --out fig1_2.jpg --seed 0
  python p1_dcgan.py eval --ckpt checkpoints/p1_dcgan.pt --data hw3_data --n 2000
"""
from __future__ import annotations

import argparse

import torch

from hw3 import cli, distributed, fid, gan, gan_cli
from hw3.gan import Nets, d_loss, g_loss
from models import Z_DIM, DCGANDiscriminator, DCGANGenerator

KIND = "p1_dcgan"


def d_step(nets: Nets, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """One discriminator update on real images and fake.detach(): no gradient reaches the generator."""
    seen = gan.real_seen(nets, real)
    with distributed.autocast(real.device):
        logit_real, logit_fake = nets.D(seen), nets.D(nets.augment(fake.detach()))  # (B,), (B,)
        loss = d_loss(logit_real, logit_fake)
    nets.opt_d.zero_grad(set_to_none=True)
    (loss + gan.r1_penalty(nets, logit_real, seen)).backward()
    nets.opt_d.step()
    return {"loss_d": loss.item(), "d_real": torch.sigmoid(logit_real.float()).mean().item(),
            "d_fake": torch.sigmoid(logit_fake.float()).mean().item()}


def g_step(nets: Nets, fake: torch.Tensor) -> dict[str, float]:
    """One generator update: make the (just updated) discriminator call the fakes real."""
    with distributed.autocast(fake.device):
        loss = g_loss(nets.D(nets.augment(fake)))
    nets.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    nets.opt_g.step()
    return {"loss_g": loss.item()}


def train_step(nets: Nets, real: torch.Tensor, labels: torch.Tensor | None, rng: torch.Generator) -> dict[str, float]:
    z = nets.draw(lambda n: torch.randn(n, Z_DIM, generator=rng, device=real.device), len(real))  # (B, 100)
    with distributed.autocast(real.device):
        fake = nets.G(z)  # (B, 3, 64, 64)
    return d_step(nets, real, fake) | g_step(nets, fake)


def figure(G: torch.nn.Module, rng: torch.Generator, device: torch.device) -> tuple[torch.Tensor, int]:
    """fig1_2: 32 faces from 32 noise vectors, 4 rows of 8."""
    z = torch.randn(32, Z_DIM, generator=rng).to(device)
    return G(z), 8


SPEC = gan.GanSpec(kind=KIND, build_g=lambda config: DCGANGenerator(), build_d=lambda config: DCGANDiscriminator(),
                   generate=lambda G, z, y: G(z), figure=figure, step=train_step, report_args={"batch": 128},
                   steps=80_000, restarts=(60_000, 70_000), r1=0.01)  # the recipe: two warm restarts at half rate


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    cmds = gan_cli.add_commands(p, SPEC)
    cmds["export"].add_argument("--with-d", action="store_true",
                                help="keep the discriminator too (fp16), so P2's --init can start from both networks")
    gan_cli.run_command(cli.parse(p, argv), SPEC, evaluate)


def evaluate(args: argparse.Namespace) -> None:
    """FID of --n generated faces against the real folder."""
    real, floor, device, G, ck = gan_cli.prepare_eval(args, SPEC)
    fake, _ = gan.generate_n(G, SPEC, args.n, args.seed, device)
    gan_cli.report(args, {"checkpoint_step": ck["step"], "truncation": G.psi,
                          **fid.fid_metrics(fake, real, device, floor)})


if __name__ == "__main__":
    cli.cli_main(main)
