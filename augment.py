"""Differentiable augmentation for GANs (DiffAugment, Zhao et al. 2020), on the device.

Every image the discriminator sees, real or fake, in the D step and in the G step, goes through the same random
transforms; they are differentiable, so the generator's gradient flows through them. On a few thousand faces this
stops D from memorising the real set. Each call draws fresh transforms from `rng`.
"""
from __future__ import annotations

import torch

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> a tuple of known transform names ('' or 'none' -> no augmentation)."""
    names = tuple(n for n in text.replace(" ", "").split(",") if n and n != "none")
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment transform '{unknown[0]}'; known: {', '.join(POLICIES)}")
    return names


class Draw:
    """Random numbers for a local batch: every rank draws the global batch's numbers and keeps its own slice, so
    N ranks augment exactly as one process with the whole batch would."""

    def __init__(self, rng: torch.Generator, rank: int = 0, world: int = 1):
        self.rng, self.rank, self.world = rng, rank, world

    def _local(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.chunk(self.world)[self.rank].to(like.device)

    def rand(self, like: torch.Tensor, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) of shape (B, *shape) for the batch `like`, in its dtype."""
        x = torch.rand(len(like) * self.world, *shape, generator=self.rng, device=self.rng.device)
        return self._local(x, like).to(like.dtype)

    def randint(self, like: torch.Tensor, low: int, high: int, *shape: int) -> torch.Tensor:
        x = torch.randint(low, high, (len(like) * self.world, *shape), generator=self.rng, device=self.rng.device)
        return self._local(x, like)


def color(x: torch.Tensor, draw: Draw) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0-2) and contrast (x0.5-1.5) per image, x in [-1, 1]."""
    x = x + (draw.rand(x, 1, 1, 1) - 0.5)
    mean = x.mean(1, keepdim=True)
    x = (x - mean) * (draw.rand(x, 1, 1, 1) * 2) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * (draw.rand(x, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, draw: Draw, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio * size pixels in x and y, filling with zeros."""
    b, c, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy, dx = draw.randint(x, -sh, sh + 1, 1), draw.randint(x, -sw, sw + 1, 1)  # (B, 1) each
    rows = torch.arange(h, device=x.device)[None] + dy + sh   # (B, H) rows of the padded image
    cols = torch.arange(w, device=x.device)[None] + dx + sw   # (B, W)
    padded = torch.nn.functional.pad(x, (sw, sw, sh, sh))     # (B, C, H + 2sh, W + 2sw)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, draw: Draw, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ratio * size per image, centred at a random pixel (it may hang over the border)."""
    _, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = draw.randint(x, 0, h, 1, 1) - ch // 2   # (B, 1, 1)
    left = draw.randint(x, 0, w, 1, 1) - cw // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment:
    """The transforms of `policy`, in order, with fresh randomness at every call; the identity if empty."""

    def __init__(self, policy: tuple[str, ...], rng: torch.Generator, rank: int = 0, world: int = 1):
        self.policy, self.draw = policy, Draw(rng, rank, world)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.policy:
            x = TRANSFORMS[name](x, self.draw)
        return x
