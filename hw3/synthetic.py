"""Synthetic data in the course layout, for the tests: 7-segment digits in the style of each domain, cartoon faces.

  python -m hw3.synthetic demo DIR [--digits TRAIN TEST] [--faces TRAIN TEST]
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from datasets import DOMAINS
from hw3.cli import UserError, cli_main

SEGMENTS = {  # 7-segment strokes: a top, b upper right, c lower right, d bottom, e lower left, f upper left, g middle
    0: "abcdef", 1: "bc", 2: "abged", 3: "abgcd", 4: "fgbc", 5: "afgcd", 6: "afgedc", 7: "abc", 8: "abcdefg",
    9: "abcdfg",
}
SEGMENT_ENDS = {"a": ((0, 0), (1, 0)), "b": ((1, 0), (1, 1)), "c": ((1, 1), (1, 2)), "d": ((0, 2), (1, 2)),
                "e": ((0, 1), (0, 2)), "f": ((0, 0), (0, 1)), "g": ((0, 1), (1, 1))}


def digit_mask(digit: int, size: int, rng: random.Random, width: float) -> Image.Image:
    """A jittered, slanted 7-segment digit as an 'L' mask of size x size."""
    im = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(im)
    h = size * rng.uniform(0.55, 0.75)
    w = h * rng.uniform(0.4, 0.6)
    x0 = (size - w) / 2 + rng.uniform(-1.5, 1.5) * size / 28
    y0 = (size - h) / 2 + rng.uniform(-1.5, 1.5) * size / 28
    slant = rng.uniform(-0.25, 0.25)
    for s in SEGMENTS[digit]:
        (ax, ay), (bx, by) = SEGMENT_ENDS[s]
        pts = [(x0 + px * w + slant * (1 - py / 2) * h / 2, y0 + py * h / 2) for px, py in ((ax, ay), (bx, by))]
        draw.line(pts, fill=255, width=max(1, round(width)))
    return im.filter(ImageFilter.GaussianBlur(0.6 * size / 28))


def _texture(size: int, rng: random.Random) -> np.ndarray:
    """A smooth random colour texture (size, size, 3) in [0, 255], like the BSDS crops behind MNIST-M."""
    low = np.array([[[rng.randrange(256) for _ in range(3)] for _ in range(4)] for _ in range(4)], np.uint8)
    im = Image.fromarray(low, "RGB").resize((size, size), Image.BICUBIC)
    noise = np.array([rng.gauss(0, 18) for _ in range(size * size * 3)]).reshape(size, size, 3)
    return np.clip(np.asarray(im, np.float64) + noise, 0, 255)


def demo_digit(domain: str, digit: int, rng: random.Random) -> Image.Image:
    """One synthetic digit in the style of `domain`."""
    if domain == "mnist":  # thin white strokes on black, 28x28 gray
        return digit_mask(digit, 28, rng, rng.uniform(2.0, 3.0))
    if domain == "usps":  # thick, blurry strokes filling a 16x16 gray frame (the loader resizes it)
        m = digit_mask(digit, 16, rng, rng.uniform(1.8, 2.6))
        return m.filter(ImageFilter.GaussianBlur(0.4))
    if domain == "mnistm":  # strokes blended into a colour texture: |texture - stroke|
        m = np.asarray(digit_mask(digit, 28, rng, rng.uniform(2.0, 3.0)), np.float64)[..., None]
        return Image.fromarray(np.abs(_texture(28, rng) - m).astype(np.uint8), "RGB")
    if domain == "svhn":  # a coloured digit on a flat colour with neighbours cut at the borders, 32x32
        bg = np.array([rng.randrange(256) for _ in range(3)], np.float64)
        fg = 255 - bg if rng.random() < 0.7 else np.array([rng.randrange(256) for _ in range(3)], np.float64)
        img = np.ones((32, 32, 3)) * bg
        for shift, d in ((-22, rng.randrange(10)), (22, rng.randrange(10)), (0, digit)):
            m = np.asarray(digit_mask(d, 32, rng, rng.uniform(2.5, 4.0)), np.float64)[..., None] / 255
            img = img * (1 - np.roll(m, shift, axis=1)) + fg * np.roll(m, shift, axis=1)
        img += np.array([rng.gauss(0, 10) for _ in range(32 * 32 * 3)]).reshape(32, 32, 3)
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    raise UserError(f"no demo generator for domain '{domain}'")


def demo_face(smiling: int, male: int, rng: random.Random) -> Image.Image:
    """A 64x64 cartoon face; the mouth curves up when smiling, hair is short when male."""
    bg = tuple(rng.randrange(60, 200) for _ in range(3))
    im = Image.new("RGB", (64, 64), bg)
    d = ImageDraw.Draw(im)
    cx, cy = 32 + rng.uniform(-3, 3), 34 + rng.uniform(-3, 3)
    rx, ry = rng.uniform(15, 19), rng.uniform(19, 23)
    hair = tuple(rng.randrange(20, 120) for _ in range(3))
    d.ellipse([cx - rx - 3, cy - ry - 4, cx + rx + 3, cy + (ry if not male else -ry / 3)], fill=hair)
    skin = (rng.randrange(170, 240), rng.randrange(120, 190), rng.randrange(90, 160))
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
    for sx in (-1, 1):
        ex = cx + sx * rx * 0.42
        d.ellipse([ex - 2.5, cy - 6, ex + 2.5, cy - 2], fill=(30, 30, 40))
    mw, my = rx * 0.55, cy + ry * 0.45
    if smiling:
        d.arc([cx - mw, my - 7, cx + mw, my + 4], 20, 160, fill=(150, 30, 40), width=3)
    else:
        d.line([cx - mw * 0.8, my, cx + mw * 0.8, my], fill=(150, 30, 40), width=3)
    return im.filter(ImageFilter.GaussianBlur(0.5))


def write_demo(out: str | Path, n_digits: tuple[int, int] = (1000, 300), n_faces: tuple[int, ...] = (512, 128),
               domains: tuple[str, ...] = DOMAINS, seed: int = 0) -> Path:
    """Write a synthetic data set in the course layout under `out` (digits/<domain>/..., face/{train,test,extra});
    `n_faces` is (train, test) or (train, test, extra); extra defaults to half of train."""
    out = Path(out)
    for name in domains:
        for split, n in zip(("train", "test"), n_digits):
            rng = random.Random(f"{seed}-{name}-{split}")
            folder = out / "digits" / name / split
            folder.mkdir(parents=True, exist_ok=True)
            rows = []
            for i in range(n):
                label = i % 10 if i < 10 else rng.randrange(10)
                demo_digit(name, label, rng).save(folder / f"{i:05d}.png")
                rows.append(f"{i:05d}.png,{label}\n")
            (out / "digits" / name / f"{split}.csv").write_text("image_name,label\n" + "".join(rows))
    n_extra = n_faces[2] if len(n_faces) > 2 else n_faces[0] // 2
    for split, n in zip(("train", "test", "extra"), (*n_faces[:2], n_extra)):
        if n == 0:
            continue
        rng = random.Random(f"{seed}-face-{split}")
        folder = out / "face" / split
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            smiling, male = i % 2 if i < 2 else rng.randrange(2), rng.randrange(2)
            face = demo_face(smiling, male, rng)
            if split == "extra":  # like the real face/extra: other names, JPEG, blurrier
                name = f"{10001 + i:06d}.jpg"
                face.filter(ImageFilter.GaussianBlur(1)).save(folder / name, quality=90)
            else:
                name = f"{i:05d}.png"
                face.save(folder / name)
            rows.append(f"{name},{float(male)},{float(smiling)}\n")
        (out / "face" / f"{split}.csv").write_text("image_name,Male,Smiling\n" + "".join(rows))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("demo", help="write a small synthetic data set in the course layout")
    q.add_argument("out")
    q.add_argument("--digits", type=int, nargs=2, default=[1000, 300], metavar=("TRAIN", "TEST"))
    q.add_argument("--faces", type=int, nargs=2, default=[512, 128], metavar=("TRAIN", "TEST"))
    q.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = write_demo(args.out, tuple(args.digits), tuple(args.faces), seed=args.seed)
    print(f"demo data written to {out}")


if __name__ == "__main__":
    cli_main(main)
