"""The networks of P3 (DANN) and P4 (ADDA and its improved BatchNorm encoder), gradient reversal, and P4's
training helpers (gradient penalty, EMA teacher)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

# ----------------------------------------------------------------------------- P3 DANN


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
