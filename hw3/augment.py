"""Device-side augmentation, one home: the digits' (P3, P4), and DiffAugment for the GANs (Zhao et al. 2020).

DiffAugment: every image the discriminator sees, real or fake, in the D step and in the G step, goes through random
transforms; they are differentiable, so the generator's gradient flows through them. On a few thousand faces this
stops D from memorising the real set. Each call draws fresh transforms from `rng`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


def mirror(x: torch.Tensor, rng: torch.Generator, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Each image of this rank's slice flipped left-right with probability 1/2 (one global draw, like the batch)."""
    flip = torch.rand(len(x) * world, generator=rng, device=rng.device).chunk(world)[rank] < 0.5  # (B,)
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)


# ----------------------------------------------------------------------------- digits (P3, P4)


def random_zoom(x: torch.Tensor, rng: torch.Generator, lo: float = 0.7, hi: float = 1.15) -> torch.Tensor:
    """Random rescale of each image about its centre (USPS digits fill the frame, MNIST ones do not)."""
    s = lo + (hi - lo) * torch.rand(len(x), generator=rng, device=rng.device).to(x.device)
    theta = torch.zeros(len(x), 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)


def augment_digits(x: torch.Tensor, rng: torch.Generator, zoom: bool = False) -> torch.Tensor:
    """Device-side augmentation of a float batch in [-1, 1]: random shift (+-2 px), per-image colour
    mixing of the channels with random gains and offsets, random inversion, and (zoom) random rescaling."""
    if zoom:
        x = random_zoom(x, rng)
    b, c, h, w = x.shape
    dev = x.device
    pad = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    dx, dy = (torch.randint(0, 5, (2, b), generator=rng, device=dev))
    rows = (torch.arange(h, device=dev)[None, :] + dy[:, None])  # (B, H)
    cols = (torch.arange(w, device=dev)[None, :] + dx[:, None])  # (B, W)
    x = pad[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
            rows[:, None, :, None], cols[:, None, None, :]]
    mix = torch.rand(b, c, c, generator=rng, device=dev) * 0.5 + torch.eye(c, device=dev) * 0.5
    x = torch.einsum("bij,bjhw->bihw", mix / mix.sum(2, keepdim=True), x)
    gain = 0.5 + torch.rand(b, c, 1, 1, generator=rng, device=dev)
    offset = (torch.rand(b, c, 1, 1, generator=rng, device=dev) - 0.5)
    x = x * gain + offset
    flip = torch.rand(b, 1, 1, 1, generator=rng, device=dev) < 0.5
    return torch.where(flip, -x, x).clamp_(-1, 1)


STRONG_OPS = ("rotate", "shear", "scale", "blur", "sharpen", "noise", "posterize", "solarize", "autocontrast")


def box_blur(x: torch.Tensor) -> torch.Tensor:
    """3x3 mean of each channel (edges replicated)."""
    c = x.shape[1]
    kernel = torch.full((c, 1, 3, 3), 1 / 9, device=x.device, dtype=x.dtype)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


def strong_digits(x: torch.Tensor, rng: torch.Generator, zoom: bool = False, n_ops: int = 2) -> torch.Tensor:
    """The student's view for self-training (RandAugment / FixMatch spirit): `augment_digits`, then `n_ops`
    different ops of STRONG_OPS per image, each at a random magnitude. Every draw is made for every image, so the
    generator advances the same way whatever is picked."""
    x = augment_digits(x, rng, zoom)
    b, dev = len(x), x.device
    u = lambda: torch.rand(b, generator=rng, device=rng.device).to(dev)  # noqa: E731  (B,) uniform [0, 1)
    order = torch.rand(b, len(STRONG_OPS), generator=rng, device=rng.device).argsort(1)[:, :n_ops].to(dev)
    on = torch.zeros(b, len(STRONG_OPS), dtype=torch.bool, device=dev).scatter_(1, order, True)  # (B, ops)
    op = {name: on[:, i] for i, name in enumerate(STRONG_OPS)}
    # geometry: rotation (+-30 degrees), shear (+-0.3), scale (0.75-1.2), composed into one affine map per image
    angle = torch.where(op["rotate"], (u() - 0.5) * math.radians(60), 0.0)
    shear = torch.where(op["shear"], (u() - 0.5) * 0.6, 0.0)
    scale = torch.where(op["scale"], 0.75 + 0.45 * u(), 1.0)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 1] = cos / scale, (cos * shear - sin) / scale
    theta[:, 1, 0], theta[:, 1, 1] = sin / scale, (sin * shear + cos) / scale
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid.to(x.dtype), padding_mode="border", align_corners=False)
    pick = lambda name: op[name].view(b, 1, 1, 1)  # noqa: E731
    col = lambda v: v.view(b, 1, 1, 1).to(x.dtype)  # noqa: E731
    blur = box_blur(x)
    x = torch.where(pick("blur"), torch.lerp(x, blur, col(0.5 + 0.5 * u())), x)
    x = torch.where(pick("sharpen"), x + col(0.5 + u()) * (x - blur), x)
    noise = torch.randn(x.shape, generator=rng, device=rng.device).to(x)
    x = torch.where(pick("noise"), x + col(0.05 + 0.15 * u()) * noise, x)
    levels = col(4.0 + (u() * 5).floor())  # 4-8 levels per channel
    posterized = ((x.clamp(-1, 1) + 1) / 2 * (levels - 1)).round() / (levels - 1) * 2 - 1
    x = torch.where(pick("posterize"), posterized, x)
    x = torch.where(pick("solarize") & (x > col(u())), -x, x)  # pixels above a threshold in [0, 1) inverted
    low, high = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    stretched = (x - low) / (high - low).clamp_min(1e-3) * 2 - 1
    x = torch.where(pick("autocontrast"), stretched, x)
    return x.clamp_(-1, 1)


def shuffle_patches(x: torch.Tensor, rng: torch.Generator, patch: int = 4) -> torch.Tensor:
    """Each image (B, C, H, W) cut into a grid of patch x patch tiles, put back in a random order of its own:
    the colours and textures stay, the digit's shape does not."""
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    tiles = x[:, :, :gh * patch, :gw * patch].reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(b, gh * gw, c, patch, patch)  # (B, tiles, C, p, p)
    order = torch.rand(b, gh * gw, generator=rng, device=rng.device).argsort(1).to(x.device)
    tiles = tiles[torch.arange(b, device=x.device)[:, None], order]
    out = tiles.reshape(b, gh, gw, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * patch, gw * patch)
    return torch.nn.functional.pad(out, (0, w - gw * patch, 0, h - gh * patch), mode="replicate")


def texture_mix(xs: torch.Tensor, xt: torch.Tensor, rng: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Source digits (light strokes on dark, in [-1, 1]) drawn into unlabelled target images whose tiles are
    shuffled, as |background - digit| per channel (how MNIST-M was made from BSDS photos); each image with
    probability p. Only the target's textures and colours are used, never its labels."""
    digit = (xs.mean(1, keepdim=True) + 1) / 2            # (B, 1, H, W) in [0, 1]
    background = (shuffle_patches(xt, rng) + 1) / 2         # (B, C, H, W) in [0, 1]
    mixed = (background - digit).abs() * 2 - 1
    pick = torch.rand(len(xs), 1, 1, 1, generator=rng, device=rng.device).to(xs.device) < p
    return torch.where(pick, mixed, xs)
