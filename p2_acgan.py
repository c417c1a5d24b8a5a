"""P2: ACGAN on 64x64 faces conditioned on one binary attribute (default Smiling): the DCGAN's networks with the
attribute as a 101st generator input and an attribute head beside the discriminator's real/fake head (--report: the
report's ACGAN networks and configuration).

  python p2_acgan.py train --data hw3_data --run-dir runs/p2    # 10,000 steps on from the shipped DCGAN
  python p2_acgan.py export --ckpt runs/p2/last.pt --out my_acgan.pt --truncation 0.9
  python p2_acgan.py sample --ckpt checkpoints/p2_acgan.pt --out fig2_2.jpg --seed 0
  python p2_acgan.py eval --ckpt checkpoints/p2_acgan.pt --data hw3_data --n 2000
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from hw3 import attribute_judge, checkpoints, cli, distributed, fid, gan, gan_cli
from hw3.cli import UserError
from hw3.gan import Nets, d_loss, g_loss
from models import (
    Z_DIM,
    ACGANDiscriminator,
    ACGANGenerator,
    ConditionalDCGANDiscriminator,
    ConditionalDCGANGenerator,
    load_dcgan_into_conditional,
)

KIND = "p2_acgan"


def batch_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


def d_step(nets: Nets, real: torch.Tensor, y_real: torch.Tensor, fake: torch.Tensor, y_fake: torch.Tensor
           ) -> dict[str, float]:
    """Discriminator update: real/fake on real and fake.detach(), attribute head on both (ACGAN)."""
    seen = gan.real_seen(nets, real)
    with distributed.autocast(real.device):
        rf_real, attr_real = nets.D(seen)                        # (B,), (B, 2)
        rf_fake, attr_fake = nets.D(nets.augment(fake.detach()))
        adv = d_loss(rf_real, rf_fake)
        aux = F.cross_entropy(attr_real.float(), y_real) + F.cross_entropy(attr_fake.float(), y_fake)
    nets.opt_d.zero_grad(set_to_none=True)
    (adv + aux + gan.r1_penalty(nets, rf_real, seen)).backward()
    nets.opt_d.step()
    return {"loss_d": adv.item(), "loss_d_aux": aux.item(), "d_real": torch.sigmoid(rf_real.float()).mean().item(),
            "d_fake": torch.sigmoid(rf_fake.float()).mean().item(), "aux_acc_real": batch_accuracy(attr_real, y_real),
            "aux_acc_fake": batch_accuracy(attr_fake, y_fake)}


def g_step(nets: Nets, fake: torch.Tensor, y_fake: torch.Tensor) -> dict[str, float]:
    """Generator update: fool the real/fake head, and make the attribute head read the labels it sampled."""
    with distributed.autocast(fake.device):
        rf, attr = nets.D(nets.augment(fake))
        adv, aux = g_loss(rf), F.cross_entropy(attr.float(), y_fake)
    nets.opt_g.zero_grad(set_to_none=True)
    (adv + aux).backward()
    nets.opt_g.step()
    return {"loss_g": adv.item(), "loss_g_aux": aux.item()}


def train_step(nets: Nets, real: torch.Tensor, y_real: torch.Tensor | None, rng: torch.Generator) -> dict[str, float]:
    z = nets.draw(lambda n: torch.randn(n, Z_DIM, generator=rng, device=real.device), len(real))  # (B, 100)
    y_fake = nets.draw(lambda n: torch.randint(0, 2, (n,), generator=rng, device=real.device), len(real))  # sampled
    with distributed.autocast(real.device):
        fake = nets.G(z, y_fake)  # (B, 3, 64, 64)
    return d_step(nets, real, y_real, fake, y_fake) | g_step(nets, fake, y_fake)


def pairs(G: torch.nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same noise (M, 100) with the attribute off and on -> two image batches (M, 3, 64, 64)."""
    off, on = torch.zeros(len(z), dtype=torch.long), torch.ones(len(z), dtype=torch.long)
    return G(z, off.to(z.device)), G(z, on.to(z.device))


def figure(G: torch.nn.Module, rng: torch.Generator, device: torch.device) -> tuple[torch.Tensor, int]:
    """fig2_2: 10 noise vectors, one per column; top row attribute off, bottom row on."""
    off, on = pairs(G, torch.randn(10, Z_DIM, generator=rng).to(device))
    return torch.cat([off, on]), 10


ARCHS = {"dcgan": (ConditionalDCGANGenerator, ConditionalDCGANDiscriminator),
         "report": (ACGANGenerator, ACGANDiscriminator)}


SHIPPED_P1 = "checkpoints/p1_dcgan.pt"  # --init's default: the shipped DCGAN, read beside this script from anywhere


def warm_start(args: argparse.Namespace, G: torch.nn.Module, D: torch.nn.Module) -> dict:
    """--init: start from a P1 DCGAN checkpoint: a run's last.pt or an export with --with-d (both networks), or an
    export of the generator alone. Returns what the config records of it: its step and the file's SHA-256."""
    if not args.init:
        return {}
    if args.arch != "dcgan":
        raise UserError("--init starts from a DCGAN: --report's networks cannot take it")
    path = cli.SHIPPED / "p1_dcgan.pt" if args.init == SHIPPED_P1 else Path(args.init)
    ck = checkpoints.load_checkpoint(path, "p1_dcgan")
    try:
        d_state = checkpoints.float_state(ck["models"]["D"]) if "D" in ck["models"] else None
        load_dcgan_into_conditional(G, D, checkpoints.float_state(ck["models"]["G"]), d_state)
    except (KeyError, RuntimeError) as e:
        raise UserError(f"--init {args.init}: {cli.first_line(e)}") from None
    print(f"warm start from {args.init} (P1 step {ck['step']}{', generator only' if 'D' not in ck['models'] else ''})")
    return {"init_from": {"step": ck["step"], "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}}


def arch(config: dict) -> tuple[type[torch.nn.Module], type[torch.nn.Module]]:
    """The (generator, discriminator) classes a run's config names; runs recorded before --arch: the report's."""
    return ARCHS[config.get("arch", "report")]


SPEC = gan.GanSpec(kind=KIND, build_g=lambda config: arch(config)[0](), build_d=lambda config: arch(config)[1](),
                   generate=lambda G, z, y: G(z, y), figure=figure, step=train_step, conditional=True,
                   report_args={"arch": "report", "batch": 100, "init": None}, report_epochs=100,
                   older={"arch": "report", "init": None}, steps=10_000,  # the recipe: a warm start from the shipped P1
                   warm_start=warm_start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    cmds = gan_cli.add_commands(p, SPEC)
    cmds["train"].add_argument("--attr", default="Smiling", help="CSV column to condition on (0/1 or -1/1)")
    cmds["train"].set_defaults(arch="dcgan")  # --report: the report's networks (a run's config records which)
    cmds["train"].add_argument("--init", default=SHIPPED_P1, type=lambda s: None if s == "none" else s,
                               help="start from a P1 DCGAN checkpoint: a run's last.pt or an export (both networks if "
                                    "exported --with-d; the config records its step and SHA-256); 'none': from "
                                    f"scratch (default: {SHIPPED_P1}, the shipped DCGAN; --report: none)")
    cmds["eval"].add_argument("--classifier", help="attribute judge (default: checkpoints/p2_<attr>_classifier.pt "
                                                   "if it judges the attribute, else one trained on "
                                                   "<data>/face/train and kept in the cache folder)")
    gan_cli.run_command(cli.parse(p, argv), SPEC, evaluate)


def evaluate(args: argparse.Namespace) -> None:
    """FID of --n faces (half with the attribute off, half on, same noise), attribute accuracy and flip rate."""
    real, floor, device, G, ck = gan_cli.prepare_eval(args, SPEC)
    attr = ck["config"]["attr"]
    judge, judge_info = attribute_judge.load_or_train_classifier(args.classifier, args.data, attr, device)
    z = torch.randn(max(1, args.n // 2), Z_DIM, generator=torch.Generator().manual_seed(args.seed))
    offs, ons = [], []
    with torch.inference_mode():
        for chunk in z.split(500):
            off, on = pairs(G, chunk.to(device))
            offs.append(gan.to_uint8(off)), ons.append(gan.to_uint8(on))
    off, on = torch.cat(offs), torch.cat(ons)  # uint8 (M, 3, 64, 64) each
    p_off, p_on = attribute_judge.judge(judge, off, device), attribute_judge.judge(judge, on, device)
    metrics = {"checkpoint_step": ck["step"], "truncation": G.psi, "attr": attr,
               "attr_acc": round(((p_off == 0).float().mean().item() + (p_on == 1).float().mean().item()) / 2, 4),
               "attr_acc_off": round((p_off == 0).float().mean().item(), 4),
               "attr_acc_on": round((p_on == 1).float().mean().item(), 4),
               "flip_rate": round((p_off != p_on).float().mean().item(), 4), "attr_images_per_value": len(z),
               "classifier_test_acc": judge_info["test_acc"]}
    metrics |= fid.fid_metrics(torch.cat([off, on]), real, device, floor)
    gan_cli.report(args, metrics)


if __name__ == "__main__":
    cli.cli_main(main)
