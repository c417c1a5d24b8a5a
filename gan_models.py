"""The networks of P1 (DCGAN) and P2 (ACGAN), the report's architectures, and DCGAN weight init.

Discriminators return logits (no final Sigmoid): the losses use BCEWithLogits, which is the report's
Sigmoid + BCE computed stably, and safe under bf16 autocast.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize
from torch.nn.utils.parametrizations import spectral_norm

Z_DIM = 100


def init_dcgan(m: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02) (under spectral norm: the raw weight), BatchNorm weights N(1, 0.02) and
    biases 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        spectral = parametrize.is_parametrized(m, "weight")
        nn.init.normal_(m.parametrizations.weight.original if spectral else m.weight, 0.0, 0.02)
    elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def up(cin: int, cout: int, stride: int = 2, padding: int = 1) -> nn.Sequential:
    """Transposed conv 4x4 + BN + ReLU: doubles the spatial size (or 1 -> 4 with stride 1, padding 0)."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(True))


def down(cin: int, cout: int, bn: bool = True, spectral: bool = False) -> nn.Sequential:
    """Conv 4x4 stride 2 (spectrally normalised) + (BN) + LeakyReLU(0.2): halves the spatial size."""
    conv = nn.Conv2d(cin, cout, 4, 2, 1, bias=False)
    layers = [spectral_norm(conv) if spectral else conv] + ([nn.BatchNorm2d(cout)] if bn else [])
    return nn.Sequential(*layers, nn.LeakyReLU(0.2, True))


# ----------------------------------------------------------------------------- P1 DCGAN


class DCGANGenerator(nn.Module):
    """z (B, 100) -> image (B, 3, 64, 64) in [-1, 1]."""

    def __init__(self, z_dim: int = Z_DIM, width: int = 64):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(
            up(z_dim, width * 8, 1, 0),     # (B, 512, 4, 4)
            up(width * 8, width * 4),       # (B, 256, 8, 8)
            up(width * 4, width * 2),       # (B, 128, 16, 16)
            up(width * 2, width),           # (B, 64, 32, 32)
            nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh(),  # (B, 3, 64, 64)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.size(0), -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """image (B, 3, 64, 64) -> real/fake logit (B,). `spectral`: every conv spectrally normalised, no BatchNorm."""

    def __init__(self, width: int = 64, spectral: bool = False):
        super().__init__()
        bn, sn = not spectral, (spectral_norm if spectral else lambda m: m)
        self.net = nn.Sequential(
            down(3, width, bn=False, spectral=spectral),   # (B, 64, 32, 32)
            down(width, width * 2, bn, spectral),          # (B, 128, 16, 16)
            down(width * 2, width * 4, bn, spectral),      # (B, 256, 8, 8)
            down(width * 4, width * 8, bn, spectral),      # (B, 512, 4, 4)
            sn(nn.Conv2d(width * 8, 1, 4, 1, 0, bias=False)),  # (B, 1, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


# ----------------------------------------------------------------------------- P2 ACGAN, the DCGAN's networks


class ConditionalDCGANGenerator(DCGANGenerator):
    """(z (B, 100), attribute (B,) in {0, 1}) -> image (B, 3, 64, 64): the DCGAN generator with the attribute as a
    101st input, so with attribute 0 it computes exactly what a DCGAN generator with the first 100 inputs would."""

    def __init__(self, z_dim: int = Z_DIM, width: int = 64):
        super().__init__(z_dim + 1, width)
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([z.view(z.size(0), -1), attr.view(-1, 1).to(z.dtype)], 1))  # (B, 101)


class ConditionalDCGANDiscriminator(DCGANDiscriminator):
    """image (B, 3, 64, 64) -> (real/fake logit (B,), attribute logits (B, 2)): the DCGAN discriminator with an
    attribute head beside its real/fake head, both on its (B, 512, 4, 4) features."""

    def __init__(self, n_classes: int = 2, width: int = 64, spectral: bool = False):
        super().__init__(width, spectral)
        head = nn.Conv2d(width * 8, n_classes, 4, 1, 0)  # (B, 2, 1, 1)
        self.attribute = spectral_norm(head) if spectral else head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net[:-1](x)  # (B, 512, 4, 4)
        return self.net[-1](h).flatten(), self.attribute(h).flatten(1)


def load_dcgan_into_conditional(G: ConditionalDCGANGenerator, D: ConditionalDCGANDiscriminator, g_state: dict,
                                d_state: dict | None) -> None:
    """Warm start from a P1 DCGAN: every weight is copied; the generator's attribute input keeps its init, and the
    discriminator's attribute head (new) too."""
    first = "net.0.0.weight"  # (101, 512, 4, 4) here, (100, 512, 4, 4) in the DCGAN
    g_state = dict(g_state)
    weight = G.state_dict()[first].clone()
    weight[: G.z_dim] = g_state.pop(first)
    G.load_state_dict({**g_state, first: weight})
    if d_state is not None:  # an exported P1 generator comes without its discriminator
        missing, unexpected = D.load_state_dict(d_state, strict=False)
        if unexpected or any(not k.startswith("attribute.") for k in missing):
            raise KeyError(f"not a DCGAN discriminator: missing {missing}, unexpected {unexpected}")


# ----------------------------------------------------------------------------- P2 ACGAN, the report's networks


class ACGANGenerator(nn.Module):
    """(z (B, 100), attribute (B,) in {0, 1}) -> image (B, 3, 64, 64): the attribute is concatenated to z."""

    def __init__(self, z_dim: int = Z_DIM, width: int = 24):
        super().__init__()
        self.z_dim = z_dim
        self.fc = nn.Linear(z_dim + 1, width * 16)  # (B, 384)
        self.net = nn.Sequential(
            up(width * 16, width * 8, 1, 0),  # (B, 192, 4, 4)
            up(width * 8, width * 4),         # (B, 96, 8, 8)
            up(width * 4, width * 2),         # (B, 48, 16, 16)
            up(width * 2, width),             # (B, 24, 32, 32)
            nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh(),  # (B, 3, 64, 64)
        )

    def forward(self, z: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z.view(z.size(0), -1), attr.view(-1, 1).to(z.dtype)], 1))
        return self.net(h.view(h.size(0), -1, 1, 1))


def acgan_block(cin: int, cout: int, stride: int, bn: bool = True) -> nn.Sequential:
    """Conv 3x3 + (BN) + LeakyReLU(0.2) + Dropout(0.5), the report's ACGAN discriminator block."""
    layers = [nn.Conv2d(cin, cout, 3, stride, 1 if stride == 2 else 0, bias=False)]
    layers += [nn.BatchNorm2d(cout)] if bn else []
    return nn.Sequential(*layers, nn.LeakyReLU(0.2, True), nn.Dropout(0.5))


class ACGANDiscriminator(nn.Module):
    """image (B, 3, 64, 64) -> (real/fake logit (B,), attribute logits (B, 2))."""

    def __init__(self, n_classes: int = 2):
        super().__init__()
        self.net = nn.Sequential(
            acgan_block(3, 16, 2, bn=False),  # (B, 16, 32, 32)
            acgan_block(16, 32, 1),           # (B, 32, 30, 30)
            acgan_block(32, 64, 2),           # (B, 64, 15, 15)
            acgan_block(64, 128, 1),          # (B, 128, 13, 13)
            acgan_block(128, 256, 2),         # (B, 256, 7, 7)
            acgan_block(256, 512, 1),         # (B, 512, 5, 5)
            nn.Flatten(),                     # (B, 12800)
        )
        self.real_fake = nn.Linear(512 * 5 * 5, 1)
        self.attribute = nn.Linear(512 * 5 * 5, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return self.real_fake(h).flatten(), self.attribute(h)


# ----------------------------------------------------------------------------- sampling


class Truncated(nn.Module):
    """A generator fed noise of standard deviation psi <= 1 (the truncation trick): fewer samples from the tails of
    the noise, where a generator has learnt least, for a little less variety. psi = 1 leaves the noise as it is."""

    def __init__(self, G: nn.Module, psi: float):
        super().__init__()
        self.G, self.psi = G, psi

    def forward(self, z: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return self.G(self.psi * z, *rest)


def truncate(G: nn.Module, ck: dict, psi: float | None) -> Truncated:
    """G for sampling at the truncation psi: the command line's, else the one the export recorded, else 1 (none)."""
    return Truncated(G, ck["config"].get("truncation", 1.0) if psi is None else psi)
