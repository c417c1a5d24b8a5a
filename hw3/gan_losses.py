"""The GAN losses P1 and P2 share: BCE (the report's) or hinge for both players, and the R1 penalty on real images."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hw3.gan import Nets


def gan_losses_real_fake(logit: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE-with-logits against all-ones (real) or all-zeros (fake) targets."""
    target = torch.ones_like(logit) if real else torch.zeros_like(logit)
    return F.binary_cross_entropy_with_logits(logit.float(), target)


def d_adversarial_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor, loss: str) -> torch.Tensor:
    """D's loss: BCE against real 1 / fake 0, or the hinge mean max(0, 1 - D(x)) + mean max(0, 1 + D(G(z)))."""
    if loss == "hinge":
        return F.relu(1 - logit_real.float()).mean() + F.relu(1 + logit_fake.float()).mean()
    return gan_losses_real_fake(logit_real, True) + gan_losses_real_fake(logit_fake, False)


def g_adversarial_loss(logit_fake: torch.Tensor, loss: str) -> torch.Tensor:
    """G's loss: BCE against real 1 (the non-saturating loss), or -mean D(G(z)) for the hinge."""
    return -logit_fake.float().mean() if loss == "hinge" else gan_losses_real_fake(logit_fake, True)


def real_input(nets: Nets, real: torch.Tensor) -> torch.Tensor:
    """The augmented real batch D sees; a leaf that records gradients when the R1 penalty needs them."""
    x = nets.augment(real)
    return x.detach().requires_grad_() if nets.r1 > 0 else x


def r1_penalty(logit_real: torch.Tensor, x_real: torch.Tensor, weight: float) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): weight / 2 * E ||grad_x D(x)||^2 at the real images `x_real` (a grad leaf)."""
    grad, = torch.autograd.grad(logit_real.float().sum(), x_real, create_graph=True)
    return weight / 2 * grad.float().pow(2).flatten(1).sum(1).mean()
