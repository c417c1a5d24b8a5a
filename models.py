"""Every network of P1-P4: the DCGAN / ACGAN generators and discriminators (with DCGAN weight init and noise
truncation), DANN with its GradientReversal layer, the ADDA encoders, classifier and critic, and the small training
helpers that belong to them (gradient penalty, EMA teacher).

Discriminators return logits (no final Sigmoid): the losses use BCEWithLogits, the report's Sigmoid + BCE computed
stably, and safe under bf16 autocast.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

# ============================================================================= P1 DCGAN and P2 ACGAN

Z_DIM = 100


def init_dcgan(m: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02) and biases 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def up(cin: int, cout: int, stride: int = 2, padding: int = 1) -> nn.Sequential:
    """Transposed conv 4x4 + BN + ReLU: doubles the spatial size (or 1 -> 4 with stride 1, padding 0)."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(True))


def down(cin: int, cout: int, bn: bool = True) -> nn.Sequential:
    """Conv 4x4 stride 2 + (BN) + LeakyReLU(0.2): halves the spatial size."""
    layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)] + ([nn.BatchNorm2d(cout)] if bn else [])
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
    """image (B, 3, 64, 64) -> real/fake logit (B,)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            down(3, width, bn=False),       # (B, 64, 32, 32)
            down(width, width * 2),         # (B, 128, 16, 16)
            down(width * 2, width * 4),     # (B, 256, 8, 8)
            down(width * 4, width * 8),     # (B, 512, 4, 4)
            nn.Conv2d(width * 8, 1, 4, 1, 0, bias=False),  # (B, 1, 1, 1)
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

    def __init__(self, n_classes: int = 2, width: int = 64):
        super().__init__(width)
        self.attribute = nn.Conv2d(width * 8, n_classes, 4, 1, 0)  # (B, 2, 1, 1)

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


# ============================================================================= P3 DANN and P4 ADDA

class GradientReversalFn(torch.autograd.Function):
    """Identity forward; multiplies the gradient by -coeff backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


class GradientReversal(nn.Module):
    """Gradient reversal layer whose coefficient the training loop sets from `dann_coeff(progress)`."""

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        self.coeff = coeff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return GradientReversalFn.apply(x, self.coeff)


def dann_coeff(progress: float, gamma: float = 10.0) -> float:
    """Ganin & Lempitsky's schedule 2 / (1 + exp(-gamma p)) - 1, from 0 at p=0 towards 1 at p=1."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class InputNorm(nn.Module):
    """Per-image standardisation: each image minus its per-channel mean, over its std (one preprocessing for
    every domain, which removes most colour and contrast differences between them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean((2, 3), keepdim=True)
        return x / x.flatten(1).std(1).clamp_min(1e-3).view(-1, 1, 1, 1)


class DANNFeatures(nn.Module):
    """The report's feature extractor: image (B, 3, 28, 28) -> features (B, 768)."""

    out_dim = 48 * 4 * 4

    def __init__(self, input_norm: bool = False):
        super().__init__()
        self.net = nn.Sequential(
            InputNorm() if input_norm else nn.Identity(),
            nn.Conv2d(3, 32, 5), nn.BatchNorm2d(32), nn.ReLU(True),   # (B, 32, 24, 24)
            nn.MaxPool2d(2),                                          # (B, 32, 12, 12)
            nn.Conv2d(32, 48, 5), nn.BatchNorm2d(48), nn.ReLU(True),  # (B, 48, 8, 8)
            nn.MaxPool2d(2),                                          # (B, 48, 4, 4)
            nn.Flatten(),                                             # (B, 768)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LabelClassifier(nn.Module):
    """features (B, 768) -> digit logits (B, 10)."""

    def __init__(self, in_dim: int = DANNFeatures.out_dim, n_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, 100), nn.ReLU(True), nn.Dropout(0.5),  # (B, 100)
            nn.Linear(100, 100), nn.BatchNorm1d(100), nn.ReLU(True),  # (B, 100)
            nn.Linear(100, n_classes),                                # (B, 10)
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class DomainClassifier(nn.Module):
    """features (B, in_dim) -> source/target logits (B, 2), behind a gradient reversal layer. The report's head is
    one hidden layer of 100; `layers=2` is tllib's deeper head (Linear-BN-ReLU twice)."""

    def __init__(self, in_dim: int = DANNFeatures.out_dim, hidden: int = 100, layers: int = 1):
        super().__init__()
        self.reverse = GradientReversal()
        if layers == 1:  # the report's head (state_dict keys net.0, net.2 kept for shipped checkpoints)
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(True), nn.Linear(hidden, 2))  # (B, 2)
        else:
            blocks = [nn.Sequential(nn.Linear(i, hidden), nn.BatchNorm1d(hidden), nn.ReLU(True))  # (B, hidden)
                      for i in [in_dim] + [hidden] * (layers - 1)]
            self.net = nn.Sequential(*blocks, nn.Linear(hidden, 2))  # (B, 2)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(self.reverse(f))


class DANN(nn.Module):
    """Feature extractor shared by a label classifier and a (gradient-reversed) domain classifier.
    arch "report": the report's 3->32->48 extractor (768 features); "bn": P4's wider BatchNorm encoder (500).
    conditional: the domain classifier sees features x predicted class probabilities (CDAN, Long et al. 2018)."""

    def __init__(self, input_norm: bool = False, arch: str = "report", domain_hidden: int = 100,
                 domain_layers: int = 1, conditional: bool = False, n_classes: int = 10):
        super().__init__()
        self.features = DANNFeatures(input_norm) if arch == "report" else BNEncoder(input_norm)
        dim = self.features.out_dim
        self.conditional = conditional
        self.label_classifier = LabelClassifier(dim, n_classes)
        self.domain_classifier = DomainClassifier(dim * (n_classes if conditional else 1), domain_hidden,
                                                  domain_layers)

    def forward(self, x: torch.Tensor, n_source: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(digit logits (B, 10), domain logits (B, 2)); the domain head sees reversed gradients.
        With n_source, the first n_source images and the rest pass the features separately (per-domain BatchNorm)."""
        if n_source is None or n_source >= len(x):
            f = self.features(x)
        else:
            f = torch.cat([self.features(x[:n_source]), self.features(x[n_source:])])
        logits = self.label_classifier(f)
        if self.conditional:  # outer product of class probabilities and features; no gradient into the probabilities
            p = logits.detach().float().softmax(1).to(f.dtype)
            f = (p.unsqueeze(2) * f.unsqueeze(1)).flatten(1)  # (B, 10 * dim)
        return logits, self.domain_classifier(f)


# ----------------------------------------------------------------------------- P4 ADDA (the report's networks)


class LeNetEncoder(nn.Module):
    """The report's ADDA encoder: image (B, 3, 28, 28) -> features (B, 500)."""

    out_dim = 500

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 20, 5), nn.MaxPool2d(2), nn.ReLU(True),                     # (B, 20, 12, 12)
            nn.Conv2d(20, 50, 5), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU(True),  # (B, 50, 4, 4)
            nn.Flatten(), nn.Linear(800, 500),                                       # (B, 500)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LeNetClassifier(nn.Module):
    """features (B, 500) -> digit logits (B, 10)."""

    def __init__(self, in_dim: int = 500, n_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Dropout(0.5), nn.Linear(in_dim, n_classes))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class FeatureCritic(nn.Module):
    """The report's (weakened) ADDA discriminator: features (B, 500) -> source/target logits (B, 2)."""

    def __init__(self, in_dim: int = 500, hidden: int = 500):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(True), nn.Linear(hidden, 2))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


# ----------------------------------------------------------------------------- P4 improved


class BNEncoder(nn.Module):
    """The LeNet encoder made stronger: wider, BatchNorm after every layer, optional per-image input
    normalisation. image (B, 3, 28, 28) -> features (B, 500). A copy trained on the target keeps its own
    BatchNorm statistics, which is a large part of what adaptation gains."""

    out_dim = 500

    def __init__(self, input_norm: bool = True, width: tuple[int, int] = (32, 64)):
        super().__init__()
        c1, c2 = width
        self.net = nn.Sequential(
            InputNorm() if input_norm else nn.Identity(),
            nn.Conv2d(3, c1, 5, bias=False), nn.BatchNorm2d(c1), nn.ReLU(True),   # (B, 32, 24, 24)
            nn.MaxPool2d(2),                                                     # (B, 32, 12, 12)
            nn.Conv2d(c1, c2, 5, bias=False), nn.BatchNorm2d(c2), nn.ReLU(True),  # (B, 64, 8, 8)
            nn.MaxPool2d(2), nn.Dropout2d(0.1),                                  # (B, 64, 4, 4)
            nn.Flatten(), nn.Linear(c2 * 16, 500, bias=False), nn.BatchNorm1d(500),  # (B, 500)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ----------------------------------------------------------------------------- P4 training helpers


def gradient_penalty(critic: nn.Module, fs: torch.Tensor, ft: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Zero-centred penalty on the critic's gradient at random interpolates of source and target features."""
    eps = torch.rand(len(fs), 1, generator=rng, device=rng.device).to(fs.device)
    x = (eps * fs + (1 - eps) * ft).requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad((out[:, 1] - out[:, 0]).sum(), x, create_graph=True)
    return grad.pow(2).sum(1).mean()


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float, buffers: bool = True) -> None:
    """teacher <- decay * teacher + (1 - decay) * student, parameters and (with `buffers`) BatchNorm statistics."""
    pairs = zip(teacher.state_dict().values(), student.state_dict().values()) if buffers else \
        zip(teacher.parameters(), student.parameters())
    for t, s in pairs:
        if t.is_floating_point():
            t.mul_(decay).add_(s, alpha=1 - decay)
        else:
            t.copy_(s)
