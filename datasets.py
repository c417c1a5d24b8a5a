"""The dataset loaders of the course layout: reading its files, checked (image files of any mode and size -> RGB
uint8 at the model's size; the course CSVs), the digit domains and faces, the on-disk decode cache, the train/val
splits and device-side batches. Every image becomes RGB at the model's size in one uint8 tensor (N, 3, H, W).
Bad files are a one-line UserError, or a DataWarning where skipping them is the sensible thing."""
from __future__ import annotations

import csv
import hashlib
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hw3.checkpoints import save_checkpoint
from hw3.cli import IMAGE_SUFFIXES, DataWarning, UserError

# ----------------------------------------------------------------------------- reading the course files: decoding


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
    """Decode in a thread pool -> the stacked images and the indices (into `paths`) that decoded. strict: a bad file
    is an error; else it is skipped with a warning."""
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
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
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


# ----------------------------------------------------------------------------- datasets

FACE_SIZE = 64
DOMAINS = ("mnistm", "svhn", "usps", "mnist")  # the digit domains of the course layout
DIGIT_SIZE = 28  # every domain is resized to the DANN/ADDA input size


def check_domain(name: str) -> str:
    if name not in DOMAINS:
        raise UserError(f"unknown domain '{name}'; known: {', '.join(DOMAINS)}")
    return name


def check_pair(source: str | None, target: str | None) -> None:
    """A train command's --source and --target: both given (a --resume restores the run's own), known, different."""
    if source is None or target is None:
        raise UserError("train needs --source and --target (with --resume, a --run-dir whose run has them)")
    check_domain(source), check_domain(target)
    if source == target:
        raise UserError("--source and --target must differ")


@dataclass
class ImageSet:
    """Decoded images (uint8, N x 3 x H x W), their file names, and labels (N,) or attributes, if any."""

    images: torch.Tensor
    names: list[str]
    labels: torch.Tensor | None = None


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
    check_folder(folder)
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

        def build() -> ImageSet:
            images, keep = decode_many(paths, FACE_SIZE, strict=False)
            return ImageSet(images, [paths[i].name for i in keep])

        key = _cache_key(base / split, None, FACE_SIZE, f"faces:{len(paths)}")
        return _cached(key, build) if use_cache else build()
    return load_labelled(base / split, base / f"{split}.csv", attr, FACE_SIZE, "attribute", use_cache)


def training_splits(extra_share: float) -> tuple[str, ...]:
    """The face folders a run with this --extra-share draws its real faces from."""
    return ("train", "extra") if extra_share > 0 else ("train",)


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


def adaptation_data(root: str | Path, labelled: str, target: str, val_fraction: float, seed: int, with_test: bool,
                    select_images: int) -> dict:
    """What P3 and P4 train and choose on: the labelled domain's train / validation split, the target's train images
    without labels (adaptation batches) and a seeded subset of them (unsupervised selection), and the target's
    dev-test set, which is only ever reported."""
    train, val, _ = digit_splits(root, labelled, val_fraction, seed, with_test)
    target_train = load_digits(root, target, "train")
    pick = torch.randperm(len(target_train.images), generator=torch.Generator().manual_seed(seed))
    return {"train": train, "val": val, "target_train": ImageSet(target_train.images, target_train.names),
            "select": target_train.images[pick[:select_images]], "target_test": load_digits(root, target, "test")}


def is_grey(images: torch.Tensor) -> bool:
    """Whether most images of a uint8 (N, 3, H, W) set have three equal channels (USPS, MNIST; not MNIST-M, SVHN)."""
    equal = (images[:, 0] == images[:, 1]) & (images[:, 1] == images[:, 2])  # (N, H, W)
    return bool(equal.flatten(1).all(1).float().mean() > 0.5)


class DeviceSampler:
    """Endless batches drawn by random index from a uint8 image tensor that lives on the training device; with a
    second set (`extra`), each image of a batch comes from it with probability `share` (see `sample`)."""

    def __init__(self, data: ImageSet, device: torch.device, generator: torch.Generator,
                 extra: ImageSet | None = None):
        self.images = data.images.to(device)
        self.labels = data.labels.to(device) if data.labels is not None else None
        self.extra = extra.images.to(device) if extra is not None else None
        self.extra_labels = extra.labels.to(device) if extra is not None and extra.labels is not None else None
        self.rng = generator

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, rank: int = 0, world: int = 1, share: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All ranks draw the same global batch; each keeps its own disjoint slice. Images in [-1, 1]. With
        share > 0 each image comes from the extra set with that probability (share 0 draws exactly as without)."""
        idx = torch.randint(len(self.images), (batch,), generator=self.rng, device=self.rng.device)
        idx = idx.chunk(world)[rank].to(self.images.device)
        images, labels = self.images[idx], (self.labels[idx] if self.labels is not None else None)
        if share > 0 and self.extra is not None:
            pick = torch.rand(batch, generator=self.rng, device=self.rng.device) < share  # (B,) from extra
            idx_x = torch.randint(len(self.extra), (batch,), generator=self.rng, device=self.rng.device)
            device = self.images.device
            pick, idx_x = pick.chunk(world)[rank].to(device), idx_x.chunk(world)[rank].to(device)
            images = torch.where(pick[:, None, None, None], self.extra[idx_x], images)
            if labels is not None:
                labels = torch.where(pick, self.extra_labels[idx_x], labels)
        return to_unit(images), labels


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)
