"""Readers for the course layout, the on-disk decode cache, device-side batches, and the demo-data generator.

Every image, whatever its mode or size, becomes RGB at the model's size in one uint8 tensor (N, 3, H, W).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import random
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from checkpoints import save_checkpoint
from cli import DataWarning, UserError, cli_main

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
FACE_SIZE = 64


DOMAINS = ("mnistm", "svhn", "usps", "mnist")  # the digit domains of the course layout
DIGIT_SIZE = 28  # every domain is resized to the DANN/ADDA input size


def check_domain(name: str) -> str:
    if name not in DOMAINS:
        raise UserError(f"unknown domain '{name}'; known: {', '.join(DOMAINS)}")
    return name


@dataclass
class ImageSet:
    """Decoded images (uint8, N x 3 x H x W), their file names, and labels (N,) or attributes, if any."""

    images: torch.Tensor
    names: list[str]
    labels: torch.Tensor | None = None


# ----------------------------------------------------------------------------- decoding


def decode(path: str | Path, size: int) -> np.ndarray:
    """One image file -> uint8 RGB array (3, size, size). Handles L, LA, P, RGBA, CMYK, 16-bit and any size."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float64)
            a = a / 257.0 if a.max() > 255 else a
            im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
        elif im.mode == "F":
            a = np.asarray(im, dtype=np.float64)
            a = a * 255 if a.max() <= 1.0 else a
            im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def _decode_or_none(path: Path, size: int) -> np.ndarray | None:
    try:
        return decode(path, size)
    except Exception:  # PIL raises many types for truncated, zero-byte and non-image files
        return None


def decode_many(paths: list[Path], size: int, strict: bool) -> tuple[torch.Tensor, list[int]]:
    """Decode in a thread pool. strict: a bad file is an error; else it is skipped with a warning.

    Returns the stacked images and the indices (into `paths`) that decoded.
    """
    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        arrays = list(tqdm(pool.map(lambda p: _decode_or_none(p, size), paths), total=len(paths),
                           desc=f"decode {paths[0].parent.name if paths else ''}", leave=False,
                           disable=len(paths) < 2000 or not sys.stderr.isatty()))
    bad = [p for p, a in zip(paths, arrays) if a is None]
    if bad and strict:
        raise UserError(f"cannot decode image {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    if bad:
        warnings.warn(f"skipping {len(bad)} unreadable image(s), first: {bad[0]}", DataWarning, stacklevel=2)
    keep = [i for i, a in enumerate(arrays) if a is not None]
    if not keep:
        raise UserError(f"no readable images among {len(paths)} file(s) in {paths[0].parent}")
    return torch.from_numpy(np.stack([arrays[i] for i in keep])), keep


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise UserError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise UserError(f"expected a folder of images, got a file: {folder}")


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder sorted by name; other files are ignored with a warning."""
    folder = Path(folder)
    _check_folder(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    if len(images) < len(files):
        warnings.warn(f"ignoring {len(files) - len(images)} non-image file(s) in {folder}", DataWarning,
                      stacklevel=2)
    if not images:
        raise UserError(f"no images in {folder}")
    return images


# ----------------------------------------------------------------------------- CSVs


def read_csv(path: str | Path, columns: list[str]) -> list[dict[str, str]]:
    """Rows of a course CSV (BOM and CRLF tolerated) that must hold `columns`; duplicate names are an error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CSV not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot parse CSV {path}: {e}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; it has: {', '.join(header) or 'nothing'}")
    if not rows:
        raise UserError(f"{path} has no rows")
    seen: set[str] = set()
    for r in rows:
        if r["image_name"] in seen:
            raise UserError(f"{path} lists {r['image_name']} twice")
        seen.add(r["image_name"])
    return rows


def parse_int(v: str, path: Path, name: str) -> int:
    try:
        f = float(v)
    except ValueError:
        raise UserError(f"{path}: {name} has a non-numeric value '{v}'") from None
    if f != int(f):
        raise UserError(f"{path}: {name} has a non-integer value '{v}'")
    return int(f)


def parse_attribute(v: str, path: Path, attr: str) -> int:
    """Attribute values 0/1, 0.0/1.0 or -1/1 -> 0/1."""
    x = parse_int(v, path, attr)
    if x not in (-1, 0, 1):
        raise UserError(f"{path}: attribute {attr} must be 0/1 or -1/1, found '{v}'")
    return int(x > 0)


# ----------------------------------------------------------------------------- the decode cache


def cache_dir() -> Path:
    return Path(os.environ.get("HW3_CACHE", Path.home() / ".cache" / "hw3"))


def _cache_key(folder: Path, csv_path: Path | None, size: int, extra: str) -> str:
    parts = [str(folder.resolve()), str(size), extra]
    for p in (folder, csv_path):
        if p is not None:
            st = p.stat()
            parts += [str(st.st_mtime_ns), str(st.st_size)]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:20]


def _cached(key: str, build) -> ImageSet:
    path = cache_dir() / f"{key}.pt"
    if path.is_file():
        try:
            c = torch.load(path, map_location="cpu", weights_only=True)
            return ImageSet(c["images"], c["names"], c["labels"])
        except Exception:
            pass  # a damaged cache entry is rebuilt
    data = build()
    try:
        save_checkpoint(path, {"images": data.images, "names": data.names, "labels": data.labels})
    except OSError as e:
        warnings.warn(f"cannot write the decode cache {path}: {e}", DataWarning, stacklevel=2)
    return data


def load_labelled(folder: str | Path, csv_path: str | Path, column: str, size: int, kind: str,
                  use_cache: bool = True) -> ImageSet:
    """Images named by a CSV with one label column: kind 'digit' (0-9) or 'attribute' (0/1, -1/1)."""
    folder, csv_path = Path(folder), Path(csv_path)
    _check_folder(folder)
    if not csv_path.is_file():
        raise UserError(f"CSV not found: {csv_path}")

    def build() -> ImageSet:
        rows = read_csv(csv_path, ["image_name", column])
        names = [r["image_name"] for r in rows]
        if kind == "digit":
            labels = [parse_int(r[column], csv_path, column) for r in rows]
            bad = [v for v in labels if not 0 <= v <= 9]
            if bad:
                raise UserError(f"{csv_path}: label {bad[0]} is out of range 0-9")
        else:
            labels = [parse_attribute(r[column], csv_path, column) for r in rows]
        absent = [n for n in names if not (folder / n).is_file()]
        if absent:
            raise UserError(f"{csv_path} names {len(absent)} file(s) missing from {folder} (first: {absent[0]})")
        images, keep = decode_many([folder / n for n in names], size, strict=False)
        return ImageSet(images, [names[i] for i in keep], torch.tensor([labels[i] for i in keep]))

    if not use_cache:
        return build()
    return _cached(_cache_key(folder, csv_path, size, f"{kind}:{column}"), build)


def load_digits(root: str | Path, domain: str, split: str, use_cache: bool = True) -> ImageSet:
    """<root>/digits/<domain>/<split>/ + <split>.csv -> images (N, 3, 28, 28) uint8 and labels (N,)."""
    check_domain(domain)
    base = Path(root) / "digits" / domain
    if not base.is_dir():
        raise UserError(f"no {domain} data under {root} (expected {base})")
    return load_labelled(base / split, base / f"{split}.csv", "label", DIGIT_SIZE, "digit", use_cache)


def load_faces(root: str | Path, split: str = "train", attr: str | None = None, use_cache: bool = True) -> ImageSet:
    """<root>/face/<split>/ + <split>.csv -> images (N, 3, 64, 64) uint8 and the attribute (N,) in {0, 1}."""
    base = Path(root) / "face"
    if attr is None:  # unconditional GAN: every image of the folder, no CSV needed
        paths = list_images(base / split)
        images, keep = decode_many(paths, FACE_SIZE, strict=False)
        return ImageSet(images, [paths[i].name for i in keep])
    return load_labelled(base / split, base / f"{split}.csv", attr, FACE_SIZE, "attribute", use_cache)


def load_folder(folder: str | Path, size: int) -> ImageSet:
    """Every image of a folder, sorted by file name, for prediction: an unreadable image is an error."""
    paths = list_images(folder)
    images, _ = decode_many(paths, size, strict=True)
    return ImageSet(images, [p.name for p in paths])


def split_val(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random (train, validation) split of range(n)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * fraction))) if n > 1 else 0
    return perm[n_val:], perm[:n_val]


# ----------------------------------------------------------------------------- device-side batches


def digit_splits(root: str | Path, domain: str, val_fraction: float = 0.1, seed: int = 0, with_test: bool = False
                 ) -> tuple[ImageSet, ImageSet, ImageSet]:
    """(train, validation carved from train by a seeded split, dev-test) of one digit domain; with_test: train/
    and test/ together are split into train and validation (for a source domain, whose test/ is never scored)."""
    full, test = load_digits(root, domain, "train"), load_digits(root, domain, "test")
    if with_test:
        full = ImageSet(torch.cat([full.images, test.images]), full.names + test.names,
                        torch.cat([full.labels, test.labels]))
    missing = sorted(set(range(10)) - set(full.labels.tolist()))
    if missing:
        where = "train/ + test/" if with_test else "train/"
        hint = "" if with_test else " (--source-test also trains on a source's test/)"
        warnings.warn(f"{domain} {where} has no images of class {', '.join(map(str, missing))}: a model trained on "
                      "it cannot predict " + ("them" if len(missing) > 1 else "it") + hint, DataWarning, stacklevel=2)
    tr, va = split_val(len(full.names), val_fraction, seed)
    pick = lambda idx: ImageSet(full.images[idx], [full.names[i] for i in idx.tolist()], full.labels[idx])  # noqa: E731
    return pick(tr), pick(va), test


class DeviceSampler:
    """Endless batches drawn by random index from a uint8 image tensor that lives on the training device."""

    def __init__(self, data: ImageSet, device: torch.device, generator: torch.Generator):
        self.images = data.images.to(device)
        self.labels = data.labels.to(device) if data.labels is not None else None
        self.rng = generator

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All ranks draw the same global batch; each keeps its own disjoint slice. Images in [-1, 1]."""
        idx = torch.randint(len(self.images), (batch,), generator=self.rng, device=self.rng.device)
        idx = idx.chunk(world)[rank].to(self.images.device)
        return to_unit(self.images[idx]), (self.labels[idx] if self.labels is not None else None)




def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


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


# ----------------------------------------------------------------------------- demo data

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


def write_demo(out: str | Path, n_digits: tuple[int, int] = (1000, 300), n_faces: tuple[int, int] = (512, 128),
               domains: tuple[str, ...] = DOMAINS, seed: int = 0) -> Path:
    """Write a synthetic data set in the course layout under `out` (digits/<domain>/..., face/...)."""
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
    for split, n in zip(("train", "test"), n_faces):
        if n == 0:
            continue
        rng = random.Random(f"{seed}-face-{split}")
        folder = out / "face" / split
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            smiling, male = i % 2 if i < 2 else rng.randrange(2), rng.randrange(2)
            demo_face(smiling, male, rng).save(folder / f"{i:05d}.png")
            rows.append(f"{i:05d}.png,{float(male)},{float(smiling)}\n")
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
