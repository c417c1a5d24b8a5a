"""Reading the course's files, checked: image files of any mode and size (-> RGB uint8 at the model's size) and
the course CSVs. Bad files are a one-line UserError, or a DataWarning where skipping them is the sensible thing."""
from __future__ import annotations

import csv
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cli import DataWarning, UserError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


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


def check_folder(folder: Path) -> None:
    """A folder that exists and is a folder, else a one-line error."""
    if not folder.exists():
        raise UserError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise UserError(f"expected a folder of images, got a file: {folder}")


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder sorted by name; other files are ignored with a warning."""
    folder = Path(folder)
    check_folder(folder)
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
