"""Training / prediction throughput: this project's pipeline against a conventional one, same model, same batch.

The conventional pipeline is the usual way: a Dataset that opens each PNG with PIL per item, torchvision
transforms, a DataLoader with worker processes, and an fp32 model. Ours is what the training scripts do:
decode once (cached uint8 tensor), draw batches by index on the training device, train through
distributed.prepare_model / distributed.autocast / distributed.adam (fused Adam). "ours, fp32" is the default on CPU
(`--precision auto`); "ours, bf16" is `--precision bf16` (bf16 autocast + channels_last, for CPUs with native
bf16; the default on CUDA). Each measurement runs in a fresh process.

  python benchmarks/bench_speed.py --data hw3_data --repeats 3 > benchmarks/speed_cpu.md
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets import DeviceSampler, load_digits, load_faces  # noqa: E402
from hw3 import distributed  # noqa: E402
from models import DANN, DCGANDiscriminator, DCGANGenerator, dann_coeff  # noqa: E402  # noqa: E402


class PILFolder(Dataset):
    """The conventional dataset: PIL decode + transforms per item, in DataLoader workers."""

    def __init__(self, folder: Path, csv_path: Path | None, column: str | None, size: int):
        import torchvision.transforms as T

        if csv_path is not None:
            with open(csv_path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.items = [(folder / r["image_name"], int(float(r[column]))) for r in rows]
        else:
            self.items = [(p, 0) for p in sorted(folder.iterdir())]
        self.tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, y = self.items[i]
        return self.tf(Image.open(path).convert("RGB")), y


def endless(loader: DataLoader):
    while True:
        yield from loader


CPU = torch.device("cpu")


PIPELINES = (("ours", True), ("ours", False), ("conventional", False))  # (data path, bf16)


def prepared(net: torch.nn.Module) -> torch.nn.Module:
    """The model as the training scripts prepare it (channels_last under bf16; plain fp32 otherwise)."""
    return distributed.prepare_model(net, distributed.Dist(0, 1, CPU))


def dann_step(net, opt, xs, ys, xt, p):
    net.domain_classifier.reverse.coeff = dann_coeff(p)
    with distributed.autocast(CPU):  # a no-op unless the process runs --precision bf16
        logits, dom = net(torch.cat([xs, xt]))
    dom_true = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long()
    loss = F.cross_entropy(logits[: len(xs)].float(), ys) + F.cross_entropy(dom.float(), dom_true)
    opt.zero_grad()
    loss.backward()
    opt.step()


def gan_step(g, d, opt_g, opt_d, real):
    z = torch.randn(len(real), 100)
    ones, zeros = torch.ones(len(real)), torch.zeros(len(real))
    bce = F.binary_cross_entropy_with_logits
    with distributed.autocast(CPU):  # a no-op unless the process runs --precision bf16
        fake = g(z)
        loss_d = bce(d(real).float(), ones) + bce(d(fake.detach()).float(), zeros)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    with distributed.autocast(CPU):  # a no-op unless the process runs --precision bf16
        loss_g = bce(d(fake).float(), ones)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()


def timed(fn, steps: int, warmup: int) -> float:
    """Steps per second of `fn(i)` after `warmup` untimed steps."""
    for i in range(warmup):
        fn(i)
    t0 = time.perf_counter()
    for i in range(steps):
        fn(i)
    return steps / (time.perf_counter() - t0)


def batches(pipeline: str, data, folder: Path, csv_path: Path, column: str, size: int, batch: int, workers: int,
            g: torch.Generator):
    """A `next batch` function: our device sampler over the decoded `data()`, or the conventional DataLoader."""
    if pipeline == "ours":
        sampler = DeviceSampler(data(), CPU, g)
        return lambda: sampler.sample(batch)
    loader = endless(DataLoader(PILFolder(folder, csv_path, column, size), batch, shuffle=True, num_workers=workers,
                                drop_last=True, persistent_workers=workers > 0))
    return lambda: next(loader)


def bench_dann(root: Path, pipeline: str, steps: int, warmup: int, workers: int, batch: int = 128
               ) -> float:
    """Steps/s of DANN training usps->mnistm with one pipeline."""
    g = torch.Generator().manual_seed(0)
    base = root / "digits"
    src, tgt = (batches(pipeline, lambda d=d: load_digits(root, d, "train"), base / d / "train",
                        base / d / "train.csv", "label", 28, batch, workers, g) for d in ("usps", "mnistm"))
    torch.manual_seed(0)
    net = prepared(DANN(input_norm=True))
    opt = (distributed.adam if pipeline == "ours" else torch.optim.Adam)(net.parameters(), 2e-4)

    def step(i):
        (xs, ys), (xt, _) = src(), tgt()
        dann_step(net, opt, xs, ys, xt, i / steps)

    return timed(step, steps, warmup)


def bench_dcgan(root: Path, pipeline: str, steps: int, warmup: int, workers: int, batch: int = 128
                ) -> float:
    """Steps/s of DCGAN training at 64x64 with one pipeline."""
    real = batches(pipeline, lambda: load_faces(root, "train", "Smiling"), root / "face" / "train",
                   root / "face" / "train.csv", "Smiling", 64, batch, workers, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    g, d = prepared(DCGANGenerator()), prepared(DCGANDiscriminator())
    adam = distributed.adam if pipeline == "ours" else torch.optim.Adam
    opt_g, opt_d = (adam(m.parameters(), 2e-4, betas=(0.5, 0.999)) for m in (g, d))
    return timed(lambda i: gan_step(g, d, opt_g, opt_d, real()[0]), steps, warmup)


def in_fresh_process(a: argparse.Namespace, bench: str, variant: int) -> float:
    """Run one (benchmark, pipeline) measurement in a new Python process: no imports, threads or DataLoader
    workers of one pipeline can slow down another."""
    r = subprocess.run([sys.executable, __file__, "--data", a.data, "--steps", str(a.steps), "--gan-steps",
                        str(a.gan_steps), "--workers", str(a.workers), "--one", f"{bench}:{variant}"],
                       check=True, capture_output=True, text=True)
    return float(r.stdout.strip().splitlines()[-1])


def bench_predict(root: Path) -> tuple[float, int]:
    """Wall seconds of `hw3_p3.sh` on the MNIST-M dev-test folder, process start included, and the image count."""
    folder = root / "digits" / "mnistm" / "test"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run(["bash", str(Path(__file__).resolve().parents[1] / "hw3_p3.sh"), str(folder), "mnistm",
                        f"{tmp}/p.csv"], check=True, capture_output=True)
        return time.perf_counter() - t0, len(os.listdir(folder))


def bench_first_batch(root: Path) -> tuple[float, float]:
    """Seconds until the MNIST-M training set is a tensor: cold (empty cache, decode) and warm (cache hit)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HW3_CACHE"] = tmp
        t0 = time.perf_counter()
        load_digits(root, "mnistm", "train")
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_digits(root, "mnistm", "train")
        return cold, time.perf_counter() - t0


def summary(xs: list[float]) -> str:
    return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="hw3_data")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--gan-steps", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the conventional pipeline")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: BENCH:VARIANT, run in a child process
    a = p.parse_args()
    root = Path(a.data)
    benches = {"dann": (bench_dann, a.steps), "dcgan": (bench_dcgan, a.gan_steps)}
    if a.one:
        bench, variant = a.one.split(":")
        fn, steps = benches[bench]
        pipeline, bf16 = PIPELINES[int(variant)]
        distributed.set_precision("bf16" if bf16 else "fp32", CPU)  # for this whole process, as --precision does
        print(fn(root, pipeline, steps, 2, a.workers))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"conventional DataLoader with {a.workers} workers; native CPU bf16: {distributed.cpu_bf16()}; "
          f"min / median / max over {a.repeats} repeats\n")
    print("| benchmark | ours, bf16 | ours, fp32 (CPU default) | conventional | ours bf16 / conventional | "
          "ours fp32 / conventional |")
    print("|---|---|---|---|---|---|")
    for name, bench, batch_images in (("DANN usps->mnistm train, steps/s", "dann", 256),
                                      ("DCGAN 64x64 train, steps/s", "dcgan", 128)):
        res = [[in_fresh_process(a, bench, v) for v in range(len(PIPELINES))] for _ in range(a.repeats)]
        ours, fp32, conv = ([r[k] for r in res] for k in range(3))
        print(f"| {name} | {summary(ours)} | {summary(fp32)} | {summary(conv)} | "
              f"{summary([r[0] / r[2] for r in res])} | {summary([r[1] / r[2] for r in res])} |")
        print(f"| {name.split(',')[0]}, images/s | {summary([x * batch_images for x in ours])} | "
              f"{summary([x * batch_images for x in fp32])} | {summary([x * batch_images for x in conv])} | | |")
    pred = [bench_predict(root) for _ in range(a.repeats)]
    n = pred[0][1]
    print(f"| hw3_p3.sh on {n} MNIST-M images, wall s (process start included) | {summary([t for t, _ in pred])} "
          "| | | | |")
    print(f"| hw3_p3.sh, images/s end to end | {summary([n / t for t, _ in pred])} | | | | |")
    first = [bench_first_batch(root) for _ in range(a.repeats)]
    print(f"| MNIST-M train (53k) to tensor, cold cache s | {summary([c for c, _ in first])} | | | | |")
    print(f"| MNIST-M train (53k) to tensor, warm cache s | {summary([w for _, w in first])} | | | | |")


if __name__ == "__main__":
    main()
