"""P1 DCGAN / P2 ACGAN: shapes, the D step, ACGAN labels, exact resume, sampling, hw3_p1p2.sh, FID, bad input."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ROOT, assert_clean_error, run_cli, run_main
from PIL import Image

import p1_dcgan
import p2_acgan
from hw3 import augment, checkpoints, cli, fid, gan
from models import (
    Z_DIM,
    ACGANDiscriminator,
    ACGANGenerator,
    ConditionalDCGANDiscriminator,
    ConditionalDCGANGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
    Truncated,
    init_dcgan,
    load_dcgan_into_conditional,
)

FIG1 = (8 * 64 + 9 * 2, 4 * 64 + 5 * 2)   # 4x8 faces, 2 px padding: (530, 266)
FIG2 = (10 * 64 + 11 * 2, 2 * 64 + 3 * 2)  # 2x10 faces: (662, 134)
TINY = ["--steps", "2", "--batch", "8", "--log-every", "1", "--sample-every", "1", "--ckpt-every", "2"]


def in_process(module, args: list[str], monkeypatch, capsys) -> SimpleNamespace:
    """Run a script's main through cli.cli_main in this process: (returncode, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [module.__file__, *args])
    with pytest.raises(SystemExit) as exc:
        cli.cli_main(module.main)
    out = capsys.readouterr()
    return SimpleNamespace(returncode=exc.value.code, stdout=out.out, stderr=out.err)


def make_nets(G: nn.Module, D: nn.Module) -> gan.Nets:
    return gan.Nets(G, D, torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999)),
                    torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999)))


@pytest.fixture(autouse=True, scope="module")
def few_bn_batches():
    """Re-estimate an average generator's BatchNorm statistics from 2 noise batches, not 100 (the same code); module
    scope, so the module fixtures below get it too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gan, "BN_BATCHES", 2)
        yield


@pytest.fixture(scope="module")
def shipped(demo_root, tmp_path_factory) -> Path:
    """Tiny trained runs of both GANs on demo faces, exported like checkpoints/ (p1_dcgan.pt, p2_acgan.pt)."""
    base = tmp_path_factory.mktemp("gan")
    for module, name in ((p1_dcgan, "p1_dcgan"), (p2_acgan, "p2_acgan")):
        module.main(["train", "--data", str(demo_root), "--run-dir", str(base / name), *TINY])
        module.main(["export", "--ckpt", str(base / name / "last.pt"), "--out", str(base / "ckpt" / f"{name}.pt")])
    return base


def test_shapes():
    z, y = torch.randn(3, Z_DIM), torch.tensor([0, 1, 1])
    assert DCGANGenerator()(z).shape == (3, 3, 64, 64)
    assert DCGANDiscriminator()(torch.randn(3, 3, 64, 64)).shape == (3,)
    assert ACGANGenerator()(z, y).shape == (3, 3, 64, 64)
    rf, attr = ACGANDiscriminator()(torch.randn(3, 3, 64, 64))
    assert rf.shape == (3,) and attr.shape == (3, 2)
    assert ConditionalDCGANGenerator()(z, y).shape == (3, 3, 64, 64)
    rf, attr = ConditionalDCGANDiscriminator()(torch.randn(3, 3, 64, 64))
    assert rf.shape == (3,) and attr.shape == (3, 2)


def test_warm_start_from_dcgan_computes_what_the_dcgan_did():
    """With attribute 0 the conditional generator is the DCGAN's, and the real/fake head is the DCGAN's D; the
    attribute input and head keep their own init."""
    torch.manual_seed(0)
    G1, D1 = DCGANGenerator().apply(init_dcgan).eval(), DCGANDiscriminator().apply(init_dcgan).eval()
    G, D = ConditionalDCGANGenerator().apply(init_dcgan).eval(), ConditionalDCGANDiscriminator().apply(init_dcgan)
    attr_row, attr_head = G.net[0][0].weight[Z_DIM].clone(), D.attribute.weight.clone()
    load_dcgan_into_conditional(G, D, G1.state_dict(), D1.state_dict())
    z, x = torch.randn(4, Z_DIM), torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(G(z, torch.zeros(4)), G1(z), atol=1e-6)
        assert not torch.allclose(G(z, torch.ones(4)), G1(z), atol=1e-4)  # the attribute does something
        assert torch.allclose(D.eval()(x)[0], D1(x), atol=1e-6)
    assert torch.equal(G.net[0][0].weight[Z_DIM], attr_row) and torch.equal(D.attribute.weight, attr_head)
    with pytest.raises((KeyError, RuntimeError)):  # a discriminator that is not a DCGAN's
        load_dcgan_into_conditional(G, D, G1.state_dict(), ACGANDiscriminator().state_dict())


def test_acgan_init_from_a_p1_run(demo_root, shipped, tmp_path, monkeypatch, capsys):
    args = ["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "r"), *TINY]
    init = shipped / "p1_dcgan" / "last.pt"
    r = in_process(p2_acgan, [*args, "--init", str(init)], monkeypatch, capsys)
    assert r.returncode == 0 and "warm start" in r.stdout and "step 2" in r.stdout
    # the config names the P1 it started from (its command's --init is a path whose file may change), also resumed
    from_p1 = {"step": 2, "sha256": hashlib.sha256(init.read_bytes()).hexdigest()}
    assert json.loads((tmp_path / "r" / "config.json").read_text())["init_from"] == from_p1
    r = in_process(p2_acgan, ["train", "--run-dir", str(tmp_path / "r"), "--resume", "--steps", "3"],
                   monkeypatch, capsys)
    assert r.returncode == 0 and json.loads((tmp_path / "r" / "config.json").read_text())["init_from"] == from_p1
    assert torch.load(tmp_path / "r" / "last.pt", weights_only=True)["config"]["init_from"] == from_p1
    r = in_process(p2_acgan, [*args, "--overwrite", "--report", "--init",
                              str(shipped / "p1_dcgan" / "last.pt")], monkeypatch, capsys)
    assert_clean_error(r, "--init starts from a DCGAN")
    r = in_process(p2_acgan, ["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "new"), *TINY, "--init",
                              str(tmp_path / "missing.pt")], monkeypatch, capsys)
    assert_clean_error(r, "not found")
    assert not (tmp_path / "new").exists()  # a bad --init leaves no run folder behind
    monkeypatch.chdir(tmp_path)  # the default, the shipped P1, is found from any folder; a missing one is one line
    assert config_of(p2_acgan, ["python", "p2_acgan.py", *args[:4], str(tmp_path / "d")], monkeypatch)["init_from"]
    monkeypatch.setattr(p2_acgan.cli, "SHIPPED", tmp_path / "empty")
    assert_clean_error(in_process(p2_acgan, [*args[:4], str(tmp_path / "d2")], monkeypatch, capsys), "not found")
    r = in_process(p2_acgan, [*args, "--overwrite", "--init", str(shipped / "ckpt" / "p2_acgan.pt")],
                   monkeypatch, capsys)
    assert_clean_error(r, "p1_dcgan")


def test_acgan_init_from_a_p1_export_that_keeps_its_discriminator(shipped, tmp_path, monkeypatch, capsys):
    """P1's export --with-d ships D beside the averaged G; P2's --init then starts both networks from it (D's fp16
    weights, its attribute head new); --with-d of an export without D is one line."""
    export = tmp_path / "p1_with_d.pt"
    p1_dcgan.main(["export", "--ckpt", str(shipped / "p1_dcgan" / "last.pt"), "--out", str(export), "--with-d"])
    ck = torch.load(export, weights_only=True)
    run_d = torch.load(shipped / "p1_dcgan" / "last.pt", weights_only=True)["models"]["D"]
    assert set(ck["models"]) == {"G", "D"} and all(torch.equal(v, run_d[k].half()) for k, v in ck["models"]["D"].items()
                                                   if v.is_floating_point())
    G, D = ConditionalDCGANGenerator(), ConditionalDCGANDiscriminator()
    p2_acgan.warm_start(SimpleNamespace(init=str(export), arch="dcgan"), G, D)
    assert "generator only" not in capsys.readouterr().out
    assert all(torch.equal(D.state_dict()[k], v.float()) for k, v in ck["models"]["D"].items() if v.is_floating_point())
    r = in_process(p1_dcgan, ["export", "--ckpt", str(shipped / "ckpt" / "p1_dcgan.pt"), "--out",
                              str(tmp_path / "again.pt"), "--with-d"], monkeypatch, capsys)
    assert_clean_error(r, "--with-d", "no discriminator")


@pytest.mark.parametrize("problem", ["p1", "p2"])
def test_d_step_gives_generator_no_gradient(problem):
    real, z, y = torch.rand(4, 3, 64, 64) * 2 - 1, torch.randn(4, Z_DIM), torch.tensor([0, 1, 0, 1])
    if problem == "p1":
        nets = make_nets(DCGANGenerator(), DCGANDiscriminator())
        p1_dcgan.d_step(nets, real, nets.G(z))
    else:
        nets = make_nets(ACGANGenerator(), ACGANDiscriminator())
        p2_acgan.d_step(nets, real, y, nets.G(z, y), y)
    assert all(p.grad is None for p in nets.G.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets.D.parameters())


class StubD(nn.Module):
    """A discriminator with fixed attribute logits per sample, so the generator's auxiliary loss is predictable."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.logits = logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.mean((1, 2, 3)) * 0 + self.w, self.logits + self.w


def test_acgan_generator_loss_uses_sampled_labels():
    b = 16
    logits = torch.randn(b, 2, generator=torch.Generator().manual_seed(3)) * 4
    nets = make_nets(ACGANGenerator(), StubD(logits))
    g = torch.Generator().manual_seed(0)
    replay = torch.Generator()
    replay.set_state(g.get_state())
    torch.randn(b, Z_DIM, generator=replay)
    y_fake = torch.randint(0, 2, (b,), generator=replay)  # what train_step samples after z
    y_real = 1 - y_fake  # the real batch's labels: a step that used them would see the opposite targets
    out = p2_acgan.train_step(nets, torch.zeros(b, 3, 64, 64), y_real, g)
    assert out["loss_g_aux"] == pytest.approx(F.cross_entropy(logits, y_fake).item(), rel=1e-5)
    assert out["loss_g_aux"] != pytest.approx(F.cross_entropy(logits, y_real).item(), rel=1e-2)


@pytest.mark.parametrize("module", [p1_dcgan, p2_acgan], ids=["p1", "p2"])
def test_resume_is_exact(demo_root, tmp_path, module):
    """2 + 2 steps with --resume end with the weights of 4 steps: batch indices, noise, sampled labels and (ACGAN)
    dropout all draw from the saved RNG states; the optimizers' states come back too."""
    args = ["train", "--data", str(demo_root), "--batch", "8", "--log-every", "1", "--sample-every", "2",
            "--ckpt-every", "2", "--extra-share", "0.5"]
    module.main([*args, "--run-dir", str(tmp_path / "a"), "--steps", "4"])
    module.main([*args, "--run-dir", str(tmp_path / "b"), "--steps", "4", "--stop-at", "2"])
    module.main(["train", "--run-dir", str(tmp_path / "b"), "--resume"])  # the recorded config comes back
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in "ab")
    assert a["step"] == b["step"] == 4
    assert a["config"]["extra_share"] == 0.5 and a["config"]["extra_images"] > 0  # the resume draws extra faces too
    assert set(a["models"]) == {"G", "D", "G_ema"}  # the default run keeps a weight average
    for net in ("G", "D", "G_ema"):
        for k, v in a["models"][net].items():
            assert torch.equal(v, b["models"][net][k]), f"{net}.{k} differs after resume"
    for net in ("G", "D"):
        for sa, sb in zip(a["optimizers"][net]["state"].values(), b["optimizers"][net]["state"].values()):
            assert all(torch.equal(sa[k], sb[k]) for k in sa), f"{net} optimizer state differs after resume"
    assert (tmp_path / "a" / "curves.png").is_file() and (tmp_path / "a" / "samples" / "step_000004.png").is_file()
    rows = checkpoints.read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert len(rows) == 4 and all(r["threads"] == torch.get_num_threads() for r in rows)  # what img_per_s ran on


def test_sample_is_deterministic_and_sized(shipped, tmp_path):
    for module, name, size in ((p1_dcgan, "p1_dcgan", FIG1), (p2_acgan, "p2_acgan", FIG2)):
        ck = str(shipped / "ckpt" / f"{name}.pt")
        for out in ("x.jpg", "y.jpg"):
            module.main(["sample", "--ckpt", ck, "--out", str(tmp_path / name / out), "--seed", "5"])
        x, y = ((tmp_path / name / f).read_bytes() for f in ("x.jpg", "y.jpg"))
        assert x == y
        assert Image.open(tmp_path / name / "x.jpg").size == size
        module.main(["sample", "--ckpt", ck, "--out", str(tmp_path / name / "other.jpg"), "--seed", "6"])
        assert (tmp_path / name / "other.jpg").read_bytes() != x
        module.main(["sample", "--ckpt", ck, "--n", "3", "--out", str(tmp_path / name / "many")])
        files = sorted((tmp_path / name / "many").glob("*.png"))
        assert len(files) == 3 and Image.open(files[0]).size == (64, 64)


def test_truncated_generator_by_hand():
    """Truncated feeds G the noise scaled by psi and passes the attribute through untouched."""
    seen = []

    class Echo(nn.Module):
        def forward(self, z, *rest):
            seen.append((z, rest))
            return z.sum(1)

    z, y = torch.randn(4, Z_DIM), torch.tensor([0, 1, 1, 0])
    assert torch.allclose(Truncated(Echo(), 0.5)(z), 0.5 * z.sum(1))
    Truncated(Echo(), 0.7)(z, y)
    assert torch.equal(seen[-1][0], 0.7 * z) and torch.equal(seen[-1][1][0], y)
    G = DCGANGenerator().eval()
    assert torch.equal(Truncated(G, 0.8)(z), G(0.8 * z))


def test_export_records_truncation_for_sample_and_eval(shipped, tmp_path, monkeypatch, capsys):
    """An export made with --truncation samples at it; --truncation on sample overrides it; bad values fail."""
    for module, name in ((p1_dcgan, "p1_dcgan"), (p2_acgan, "p2_acgan")):
        plain, cut = str(shipped / "ckpt" / f"{name}.pt"), str(tmp_path / f"{name}_psi.pt")
        module.main(["export", "--ckpt", str(shipped / name / "last.pt"), "--out", cut, "--truncation", "0.5"])
        assert torch.load(cut, weights_only=True)["config"]["truncation"] == 0.5
        figs = {}
        for tag, ck, extra in (("plain", plain, []), ("cut", cut, []), ("asked", plain, ["--truncation", "0.5"]),
                               ("undone", cut, ["--truncation", "1"])):
            module.main(["sample", "--ckpt", ck, "--out", str(tmp_path / name / f"{tag}.png"), *extra])
            figs[tag] = np.asarray(Image.open(tmp_path / name / f"{tag}.png"))
        assert np.array_equal(figs["cut"], figs["asked"]) and np.array_equal(figs["plain"], figs["undone"])
        assert not np.array_equal(figs["plain"], figs["cut"])
        for bad in ("0", "1.5", "-0.2"):
            r = in_process(module, ["sample", "--ckpt", plain, "--out", str(tmp_path / "x.png"), "--truncation",
                                    bad], monkeypatch, capsys)
            assert_clean_error(r, "--truncation")
    assert not (tmp_path / "x.png").exists()


def test_hw3_p1p2_end_to_end(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("HW3_CKPT_DIR", str(shipped / "ckpt"))
    run_cli("hw3_p1p2.sh", "figs/out", cwd=tmp_path, check=True)  # relative OUT_DIR, another cwd
    assert Image.open(tmp_path / "figs/out/fig1_2.jpg").size == FIG1
    assert Image.open(tmp_path / "figs/out/fig2_2.jpg").size == FIG2
    monkeypatch.setenv("HW3_CKPT_DIR", str(tmp_path / "nowhere"))
    assert_clean_error(run_cli("hw3_p1p2.sh", str(tmp_path / "o2")), "missing", "p1_dcgan.pt")


@pytest.mark.parametrize("n1, n2, d", [(60, 40, 16), (12, 9, 64)])  # full rank, and rank below d
def test_frechet_distance_matches_scipy_sqrtm(n1, n2, d):
    import scipy.linalg

    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(n1, d)) * rng.uniform(0.5, 2, d), rng.normal(size=(n2, d)) + 0.3
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    want = ((f1.mean(0) - f2.mean(0)) ** 2).sum() + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert fid.frechet_distance(f1, f2) == pytest.approx(want, rel=1e-5)


def test_fid_self_zero_noise_large(demo_root):
    from datasets import load_faces

    faces = load_faces(demo_root, "test").images[:10]
    noise = torch.randint(0, 256, faces.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    net = fid.Inception(torch.device("cpu"))
    f_faces, f_noise = net.features(faces), net.features(noise)
    assert f_faces.shape == (10, 2048) and np.isfinite(f_faces).all()
    assert abs(fid.frechet_distance(f_faces, f_faces)) < 1e-2
    assert fid.frechet_distance(f_faces, f_noise) > 100


def test_bad_inputs(demo_root, shipped, tmp_path, monkeypatch, capsys):
    r = in_process(p2_acgan, ["train", "--data", str(demo_root), "--attr", "Dimples", "--run-dir",
                              str(tmp_path / "r"), *TINY], monkeypatch, capsys)
    assert_clean_error(r, "Dimples")
    (tmp_path / "empty" / "face" / "train").mkdir(parents=True)
    r = in_process(p1_dcgan, ["train", "--data", str(tmp_path / "empty"), "--run-dir", str(tmp_path / "r"), *TINY],
                   monkeypatch, capsys)
    assert_clean_error(r, "no images")
    (tmp_path / "noextra" / "face" / "train").mkdir(parents=True)
    for name in ("00000.png", "00001.png"):
        (tmp_path / "noextra" / "face" / "train" / name).write_bytes((demo_root / "face" / "train" / name).read_bytes())
    r = in_process(p1_dcgan, ["train", "--data", str(tmp_path / "noextra"), "--run-dir", str(tmp_path / "r"), *TINY,
                              "--extra-share", "0.5"], monkeypatch, capsys)
    assert_clean_error(r, "face/extra", "--extra-share 0")
    assert not (tmp_path / "r").exists()
    r = in_process(p1_dcgan, ["sample", "--ckpt", str(shipped / "ckpt" / "p2_acgan.pt"), "--out",
                                str(tmp_path / "f.jpg")], monkeypatch, capsys)
    assert_clean_error(r, "p2_acgan", "p1_dcgan")
    r = in_process(p2_acgan, ["sample", "--ckpt", str(shipped / "ckpt" / "p2_acgan.pt"), "--out",
                                str(tmp_path / "f.gif")], monkeypatch, capsys)
    assert_clean_error(r, ".jpg")


def flat_weights(run: Path) -> dict[str, torch.Tensor]:
    """Each network's weights of a run's last.pt as one flat vector, by name ("G", "D")."""
    models = torch.load(run / "last.pt", weights_only=True)["models"]
    return {net: torch.cat([v.float().flatten() for k, v in models[net].items() if "num_batches" not in k])
            for net in ("G", "D")}


def share_apart(a: torch.Tensor, b: torch.Tensor) -> float:
    """The share of weights more than 1e-5 apart."""
    return ((a - b).abs() > 1e-5).float().mean().item()


def test_dcgan_two_ranks_match_one_process_with_the_whole_batch(demo_root, tmp_path):
    """DDP over gloo: 2 ranks x 8 images end where 1 process x 16 does (global BatchNorm statistics, each rank
    its slice of the global noise, R1's double backward across ranks); rank 0 alone writes the run folder. fp32, so
    the only difference is float noise, which Adam's first step turns into a lr-sized move of the near-zero-gradient
    weights (0.17 % of them on the demo faces; one rank's half batch moves far more). Step 0 pays R1, made strong
    here: a double backward that stopped at the ranks' BatchNorm sums moved 1 % of D's weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "--data", str(demo_root), "--precision", "fp32", "--r1", "10", "--steps", "1", "--batch", "16"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "p1_dcgan.py"), *args, "--run-dir", str(tmp_path / "ddp")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2
    assert torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["step"] == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread, as each rank had; in this process (no Python start)
    try:
        for batch, run in (("16", "one"), ("8", "half")):
            run_main(p1_dcgan.main, *args[:-1], batch, "--run-dir", str(tmp_path / run), check=True)
    finally:
        torch.set_num_threads(threads)
    ddp, one, half = (flat_weights(tmp_path / run) for run in ("ddp", "one", "half"))
    both = {run: torch.cat([w["G"], w["D"]]) for run, w in (("ddp", ddp), ("one", one), ("half", half))}
    assert share_apart(both["ddp"], both["one"]) < 1e-2    # the same step, up to float noise
    assert share_apart(ddp["D"], one["D"]) < 1e-3          # D's R1 step too
    assert share_apart(both["ddp"], both["half"]) > 2e-1   # unlike what one rank alone would do


class Recorder:
    """An augmentation that records what it is given and shifts it by a constant (so its use is visible)."""

    def __init__(self):
        self.seen: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return x + 0.25


def test_discriminator_sees_every_image_augmented():
    """DiffAugment sits in front of D for real and fake images, in the D step and in the G step."""
    nets = make_nets(DCGANGenerator(), DCGANDiscriminator())
    nets.augment = Recorder()
    real, z = torch.rand(4, 3, 64, 64) * 2 - 1, torch.randn(4, Z_DIM)
    fake = nets.G(z)
    p1_dcgan.d_step(nets, real, fake)
    assert len(nets.augment.seen) == 2 and nets.augment.seen[0] is real
    assert torch.equal(nets.augment.seen[1], fake.detach())
    p1_dcgan.g_step(nets, fake)
    assert len(nets.augment.seen) == 3 and nets.augment.seen[2] is fake


def test_generator_gradient_flows_through_diffaugment():
    from hw3.augment import POLICIES, DiffAugment

    nets = make_nets(DCGANGenerator(), DCGANDiscriminator())
    nets.augment = DiffAugment(POLICIES, torch.Generator().manual_seed(0))
    fake = nets.G(torch.randn(4, Z_DIM))
    assert not torch.equal(nets.augment(fake), fake)  # it does change the images
    p1_dcgan.g_step(nets, fake)
    assert all(p.grad is not None for p in nets.G.parameters())
    assert sum(p.grad.abs().sum() for p in nets.G.parameters()) > 0


def test_diffaugment_ranks_slice_the_global_batch():
    """Two ranks with 4 images each augment exactly as one process with the 8 (same seed)."""
    from hw3.augment import POLICIES, DiffAugment

    x = torch.rand(8, 3, 16, 16) * 2 - 1
    whole = DiffAugment(POLICIES, torch.Generator().manual_seed(1))(x)
    halves = [DiffAugment(POLICIES, torch.Generator().manual_seed(1), rank, 2)(x.chunk(2)[rank]) for rank in (0, 1)]
    assert torch.equal(torch.cat(halves), whole)


def test_diffaugment_transforms_by_hand():
    from hw3.augment import Draw, cutout, parse_policy, translation

    x = torch.arange(64.0).view(1, 1, 8, 8)
    moved = translation(x, Draw(torch.Generator().manual_seed(0)))  # a shift of up to 1 px, zero filled
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
              if torch.equal(moved, torch.nn.functional.pad(x, (1, 1, 1, 1))[..., 1 + dy:9 + dy, 1 + dx:9 + dx])]
    assert len(shifts) == 1
    holed = cutout(torch.ones(2, 3, 8, 8), Draw(torch.Generator().manual_seed(0)))
    assert ((holed == 0).sum((1, 2, 3)) <= 3 * 16).all() and (holed == 0).any()  # one 4x4 square at most
    assert parse_policy("none") == () and parse_policy("color, cutout") == ("color", "cutout")
    with pytest.raises(ValueError, match="flip"):
        parse_policy("color,flip")


def test_ema_update_by_hand():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    nn.init.zeros_(net[0].weight)
    ema = gan.EMA(net, decay=0.5)
    net[0].weight.data.fill_(2.0)
    net[1].running_mean.fill_(7.0)
    ema.update(net, step=1000)                      # decay min(0.5, 1001/1010) = 0.5: 0 -> 1
    assert ema.net[0].weight.item() == pytest.approx(1.0)
    assert ema.net[1].running_mean.item() == 7.0    # statistics are copied, not averaged
    ema.update(net, step=1000)                      # 1 -> 1.5
    assert ema.net[0].weight.item() == pytest.approx(1.5)
    ema.update(net, step=0)                         # warm-up: decay 1/10, so mostly the current weights
    assert ema.net[0].weight.item() == pytest.approx(0.1 * 1.5 + 0.9 * 2.0)
    assert not any(p.requires_grad for p in ema.net.parameters())


def test_lr_factor_by_hand():
    assert [gan.lr_factor(k, 10, None) for k in (0, 9)] == [1.0, 1.0]
    # 10 steps, decay from step 6: 1 until then, then 4/4, 3/4, 2/4, 1/4 for steps 6..9 (0-based)
    assert [gan.lr_factor(k, 10, 6) for k in range(10)] == [1.0] * 6 + [1.0, 0.75, 0.5, 0.25]
    # warm restarts at 4 and 8 of 12 steps: the first cycle decays from 2 to its end; each restart holds half the
    # rate for half its cycle, then decays it
    assert [gan.lr_factor(k, 12, 2, [4, 8]) for k in range(12)] == \
        [1.0, 1.0, 1.0, 0.5] + [0.5, 0.5, 0.5, 0.25] * 2


def test_warm_restarts_as_options(demo_root, tmp_path, monkeypatch, capsys):
    """--restarts logs the schedule's rate at every step, is recorded, and resuming a finished run with it gives the
    weights of the same run from scratch; restarts out of order or past the end, and a first decay past the first
    restart, are one-line errors."""
    args = ["train", "--data", str(demo_root), "--batch", "8", "--log-every", "1", "--sample-every", "8",
            "--ckpt-every", "2", "--lr", "1e-3"]
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "a"), "--steps", "8", "--lr-decay-from", "2", "--restarts", "4"])
    rates = [m["lr"] for m in checkpoints.read_metrics(tmp_path / "a" / "metrics.jsonl")]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4, 2.5e-4])  # decay, restart, decay
    assert json.loads((tmp_path / "a" / "config.json").read_text())["restarts"] == [4]
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "b"), "--steps", "4", "--lr-decay-from", "2"])  # finished
    p1_dcgan.main(["train", "--run-dir", str(tmp_path / "b"), "--resume", "--steps", "8", "--restarts", "4"])
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in "ab")
    assert all(torch.equal(v, b["models"]["G"][k]) for k, v in a["models"]["G"].items())
    for bad, says in ((["4", "4"], "--restarts must be increasing"), (["8"], "--restarts must be increasing"),
                      (["4", "--lr-decay-from", "5"], "--lr-decay-from 5 lies past the first of --restarts (4)")):
        r = in_process(p1_dcgan, [*args, "--run-dir", str(tmp_path / "c"), "--steps", "8", "--restarts", *bad],
                       monkeypatch, capsys)
        assert_clean_error(r, says)
        assert not (tmp_path / "c").exists()


def test_the_recipe_restarts_at_its_own_length_only(demo_root, tmp_path, monkeypatch, capsys):
    """A fresh run of the recipe's length (a script's GanSpec) gets its warm restarts and a first decay over the last
    sixth of the first cycle; another length, 'none', --init or --report get none; 'none' with steps is a one-line
    error."""
    for module in (p1_dcgan, p2_acgan):
        monkeypatch.setattr(module, "SPEC", dataclasses.replace(module.SPEC, steps=900, restarts=(600, 700, 800)))
    base = ["python", "p1_dcgan.py", "train", "--data", str(demo_root), "--run-dir", str(tmp_path / "r")]
    schedule = ("steps", "restarts", "lr_decay_from", "extra_until")
    config = config_of(p1_dcgan, base, monkeypatch)
    assert [config[k] for k in schedule] == [900, [600, 700, 800], 500, 500]
    assert [config_of(p1_dcgan, [*base, *more], monkeypatch)[k] for k in schedule for more in (
        ["--steps", "600"], ["--restarts", "none"])] == [600, 900, None, None, 500, 750, 500, 750]
    assert config_of(p1_dcgan, [*base, "--report"], monkeypatch)["restarts"] is None
    p2_base = [*base[:1], "p2_acgan.py", *base[2:]]
    default = config_of(p2_acgan, p2_base, monkeypatch)  # P2's recipe: a warm start from the shipped P1, no restarts
    assert default["restarts"] is None and default["init"] == "checkpoints/p1_dcgan.pt"
    assert default["init_from"]["sha256"] == hashlib.sha256((ROOT / "checkpoints/p1_dcgan.pt").read_bytes()).hexdigest()
    scratch = config_of(p2_acgan, [*p2_base, "--init", "none"], monkeypatch)
    assert scratch["restarts"] == [600, 700, 800] and scratch["init"] is None and "init_from" not in scratch
    export = tmp_path / "p1.pt"
    p1_dcgan.main(["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "p1"), *TINY])
    p1_dcgan.main(["export", "--ckpt", str(tmp_path / "p1" / "last.pt"), "--out", str(export), "--with-d"])
    assert config_of(p2_acgan, [*base[:1], "p2_acgan.py", *base[2:], "--init", str(export)],
                     monkeypatch)["restarts"] is None
    r = in_process(p1_dcgan, [*base[2:-1], str(tmp_path / "bad"), "--restarts", "none", "4"], monkeypatch, capsys)
    assert_clean_error(r, "--restarts takes steps or 'none', not both")
    assert not (tmp_path / "bad").exists()


def test_lr_decay_reaches_the_optimizers_and_resumes_exactly(demo_root, tmp_path, monkeypatch, capsys):
    """A run that ends with a decay, and the same run resumed with --lr-decay-from added half-way (the recorded
    config of a constant-rate run does not override it), end with the same weights; the last step's rate is 1/2
    of --lr (decay over the last 2 of 4 steps). A decay start past the run's end is a one-line error."""
    args = ["train", "--data", str(demo_root), "--batch", "8", "--log-every", "1", "--sample-every", "4",
            "--ckpt-every", "2", "--lr", "1e-3"]
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "a"), "--steps", "4", "--lr-decay-from", "2"])
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "b"), "--steps", "2"])
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "b"), "--steps", "4", "--resume", "--lr-decay-from", "2"])
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in "ab")
    for net in ("G", "D"):
        assert a["optimizers"][net]["param_groups"][0]["lr"] == pytest.approx(5e-4)
        for k, v in a["models"][net].items():
            assert torch.equal(v, b["models"][net][k]), f"{net}.{k} differs after resume"
    assert a["config"]["lr_decay_from"] == b["config"]["lr_decay_from"] == 2
    r = in_process(p1_dcgan, [*args, "--run-dir", str(tmp_path / "c"), "--steps", "4", "--lr-decay-from", "5"],
                   monkeypatch, capsys)
    assert_clean_error(r, "--lr-decay-from must be at most 4")
    assert not (tmp_path / "c").exists()


def test_warm_restart_of_a_decayed_run(demo_root, tmp_path, monkeypatch, capsys):
    """A decayed run resumed with an explicit --lr restarts at that rate: metrics.jsonl logs the rate of every step
    (the decay, then the new rate, then its own decay), config.json and the optimizers hold the new rate; a rate <= 0
    is a one-line error."""
    args = ["train", "--data", str(demo_root), "--batch", "8", "--log-every", "1", "--sample-every", "8",
            "--ckpt-every", "2", "--run-dir", str(tmp_path / "a")]
    p1_dcgan.main([*args, "--steps", "2", "--lr", "1e-3", "--lr-decay-from", "0"])
    p1_dcgan.main([*args, "--steps", "6", "--resume", "--lr", "4e-4", "--lr-decay-from", "4"])
    rates = [m["lr"] for m in checkpoints.read_metrics(tmp_path / "a" / "metrics.jsonl")]
    assert rates == pytest.approx([1e-3, 5e-4, 4e-4, 4e-4, 4e-4, 2e-4])  # steps 1-6: decay, restart, decay
    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert ck["config"]["lr"] == 4e-4 and json.loads((tmp_path / "a" / "config.json").read_text())["lr"] == 4e-4
    assert [ck["optimizers"][n]["param_groups"][0]["lr"] for n in "GD"] == pytest.approx([2e-4, 2e-4])
    r = in_process(p1_dcgan, [*args, "--steps", "8", "--resume", "--lr", "0"], monkeypatch, capsys)
    assert_clean_error(r, "--lr must be > 0")


def test_adversarial_losses_by_hand():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    bce = F.binary_cross_entropy_with_logits
    assert gan.d_loss(real, fake).item() == pytest.approx((bce(real, torch.ones(2)) + bce(fake, torch.zeros(2))).item())
    assert gan.g_loss(fake).item() == pytest.approx(bce(fake, torch.ones(2)).item())


def test_recalibrate_batchnorm_by_hand():
    class Tiny(nn.Module):  # z (B, 100) -> BatchNorm of 2 * z[:, :1]
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(1)

        def forward(self, z):
            return self.bn(2 * z[:, :1])

    G = Tiny().eval()
    G.bn.running_mean.fill_(5.0)  # stale statistics, e.g. the live generator's copied into an EMA
    spec = gan.GanSpec(kind="tiny", build_g=Tiny, build_d=Tiny, generate=lambda G, z, y: G(z), figure=None, step=None)
    gan.recalibrate_batchnorm(G, spec, torch.device("cpu"), batches=4, batch=8, seed=3)
    z = torch.randn(4 * 8, Z_DIM, generator=torch.Generator().manual_seed(3))[:, :1].view(4, 8)  # the same draws
    assert G.bn.running_mean.item() == pytest.approx(2 * z.mean().item(), abs=1e-5)  # mean of the batch means
    assert G.bn.running_var.item() == pytest.approx(4 * z.var(1).mean().item(), rel=1e-4)
    assert not G.training and G.bn.momentum == 0.1  # back in eval mode, momentum restored


def test_export_ships_the_average_with_its_own_batchnorm_statistics(shipped):
    run = torch.load(shipped / "p1_dcgan" / "last.pt", map_location="cpu", weights_only=True)["models"]["G_ema"]
    out = torch.load(shipped / "ckpt" / "p1_dcgan.pt", map_location="cpu", weights_only=True)["models"]["G"]
    G = DCGANGenerator()
    G.load_state_dict(run)
    gan.recalibrate_batchnorm(G, p1_dcgan.SPEC, torch.device("cpu"))
    for k, v in G.state_dict().items():
        if k.endswith("running_mean"):
            assert not torch.allclose(run[k].float(), v, atol=1e-3)  # the live generator's were replaced ...
        if v.is_floating_point():
            assert torch.allclose(out[k].float(), v, rtol=1e-2, atol=1e-3), k  # ... by the average's own (fp16)


def test_mirror_by_hand():
    """Each image comes back as itself or its left-right mirror, both happen, and two ranks slice one global draw."""
    x = torch.rand(16, 3, 8, 8)
    out = augment.mirror(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    halves = [augment.mirror(x.chunk(2)[rank], torch.Generator().manual_seed(0), rank, 2) for rank in (0, 1)]
    assert torch.equal(torch.cat(halves), out)




# ----------------------------------------------------------------------------- the surface (issues 37, 38)


@pytest.mark.parametrize("module", [p1_dcgan, p2_acgan], ids=["p1", "p2"])
def test_help_shows_every_default_and_train_has_at_most_30_options(module, monkeypatch):
    """Every option that takes a value says its default in --help; train keeps at most 30 options."""
    seen = {}
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", lambda self, argv=None: seen.setdefault("p", self) and
                        (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        module.main(["train"])
    subs = next(a for a in seen["p"]._actions if isinstance(a, argparse._SubParsersAction)).choices
    for cmd, sub in subs.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.required or not action.option_strings or action.nargs == 0:
                continue
            assert "default" in formatter._expand_help(action), f"{cmd} {action.option_strings[-1]}"
        if cmd == "train":
            assert sum(1 for a in sub._actions if a.option_strings and "-h" not in a.option_strings) <= 30


def test_extra_faces_share_and_finish_by_hand():
    """share 0 draws exactly as a sampler without extra faces; share P takes ~P of each batch from the extra set."""
    from datasets import DeviceSampler, ImageSet

    train = ImageSet(torch.zeros(50, 3, 4, 4, dtype=torch.uint8), [f"t{i}" for i in range(50)], torch.zeros(50).long())
    extra = ImageSet(torch.full((30, 3, 4, 4), 255, dtype=torch.uint8), [f"x{i}" for i in range(30)],
                     torch.ones(30).long())
    plain = DeviceSampler(train, torch.device("cpu"), torch.Generator().manual_seed(0))
    mixed = DeviceSampler(train, torch.device("cpu"), torch.Generator().manual_seed(0), extra)
    a, b = plain.sample(16), mixed.sample(16, share=0.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    images, labels = mixed.sample(4000, share=0.3)
    from_extra = images[:, 0, 0, 0] > 0  # extra faces are white, train faces black
    assert torch.equal(from_extra.long(), labels)  # the labels come from the same set as the images
    assert 0.27 < from_extra.float().mean().item() < 0.33


def test_extra_until_finishes_on_face_train(demo_root, tmp_path):
    """--extra-until 2 on a 4-step run: the config records it, and the steps after it draw face/train only (the
    same weights as a run with --extra-share 0 from that step are not expected; the share is checked by hand above)
    -- here: a run whose extra faces end at step 0 equals a run without them."""
    args = ["train", "--data", str(demo_root), "--batch", "8", "--log-every", "1", "--sample-every", "4",
            "--ckpt-every", "4", "--steps", "3"]
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "a"), "--extra-share", "0.5", "--extra-until", "0"])
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "b"), "--extra-share", "0"])
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "c"), "--extra-share", "0.5"])
    a, b, c = (torch.load(tmp_path / r / "last.pt", weights_only=True)["models"]["G"] for r in "abc")
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert not all(torch.equal(v, c[k]) for k, v in a.items())


def test_a_run_recorded_before_the_new_defaults_resumes_as_it_was(demo_root, tmp_path):
    """A run whose config predates --extra-share and mirroring by default (their keys absent) resumes without them."""
    run = tmp_path / "r"
    p1_dcgan.main(["train", "--data", str(demo_root), "--run-dir", str(run), *TINY, "--steps", "3", "--stop-at", "1",
                   "--extra-share", "0", "--no-xflip"])
    ck = torch.load(run / "last.pt", weights_only=True)
    for key in ("extra_share", "extra_until", "xflip"):
        del ck["config"][key]
    torch.save(ck, run / "last.pt")
    p1_dcgan.main(["train", "--run-dir", str(run), "--resume"])
    config = json.loads((run / "config.json").read_text())
    assert (config["extra_share"], config["xflip"]) == (0.0, False) and "extra_images" not in config


def test_a_run_of_a_removed_probe_is_refused_on_resume(demo_root, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    p1_dcgan.main(["train", "--data", str(demo_root), "--run-dir", str(run), *TINY, "--stop-at", "1",
                   "--steps", "3"])
    ck = torch.load(run / "last.pt", weights_only=True)
    ck["config"]["loss"] = "hinge"  # what a run of the removed --loss probe recorded
    torch.save(ck, run / "last.pt")
    r = in_process(p1_dcgan, ["train", "--run-dir", str(run), "--resume"], monkeypatch, capsys)
    assert_clean_error(r, "--loss hinge", gan.REMOVED_IN)
    ck["config"]["loss"] = "bce"  # the default value of a removed option resumes
    torch.save(ck, run / "last.pt")
    assert in_process(p1_dcgan, ["train", "--run-dir", str(run), "--resume"], monkeypatch, capsys).returncode == 0


@pytest.mark.parametrize("bad, words", [
    (["--batch", "0"], ["--batch must be >= 1"]),
    (["--steps", "-5"], ["--steps must be >= 1"]),
    (["--lr", "0"], ["--lr must be > 0"]),
    (["--extra-share", "1.5"], ["--extra-share"]),
    (["--ema", "1"], ["--ema"]),
    (["--steps", "4", "--epochs", "1"], ["--steps or --epochs"]),
    (["--report", "--epochs", "0"], ["--epochs must be > 0"]),
    (["--extra-until", "9"], ["--extra-until must be at most 2"]),
    (["--r1", "-1"], ["--r1 must be >= 0"]),
])
def test_bad_numbers_are_one_line_and_leave_no_run_folder(demo_root, tmp_path, monkeypatch, capsys, bad, words):
    args = ["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "r"), "--steps", "2", "--batch", "8"]
    if "--steps" in bad or "--epochs" in bad:
        args = args[:5] + args[7:]
    r = in_process(p1_dcgan, [*args, *bad], monkeypatch, capsys)
    assert_clean_error(r, *words)
    assert not (tmp_path / "r").exists()


def test_report_says_which_of_its_settings_an_explicit_option_replaced(demo_root, tmp_path, monkeypatch, capsys):
    r = in_process(p1_dcgan, ["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "r"), "--report",
                              "--steps", "1", "--batch", "8", "--diffaug", "color"], monkeypatch, capsys)
    assert r.returncode == 0 and "--report, except --batch 8 (the report's: 128), --diffaug color" in r.stdout
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (config["batch"], config["diffaug"], config["ema"], config["xflip"]) == (8, "color", 0.0, False)


def test_resume_honours_an_explicit_length_and_refuses_epochs(demo_root, tmp_path, monkeypatch, capsys):
    args = ["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "r"), *TINY]
    p1_dcgan.main(args)
    p1_dcgan.main(["train", "--run-dir", str(tmp_path / "r"), "--resume", "--steps", "3"])
    assert torch.load(tmp_path / "r" / "last.pt", weights_only=True)["step"] == 3
    r = in_process(p1_dcgan, ["train", "--run-dir", str(tmp_path / "r"), "--resume", "--epochs", "9"],
                   monkeypatch, capsys)
    assert_clean_error(r, "--resume takes --steps")


def test_no_output_overwrites_what_the_user_has(demo_root, shipped, tmp_path, monkeypatch, capsys):
    """sample --n into a folder of real faces, export over its own input or over shipped weights, eval --json
    over a shipped JSON: refused with one line naming the path; --force, or an earlier output of the same kind,
    goes ahead."""
    export = str(shipped / "ckpt" / "p1_dcgan.pt")
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "00000.png").write_bytes((demo_root / "face" / "train" / "00000.png").read_bytes())
    before = (faces / "00000.png").read_bytes()
    r = in_process(p1_dcgan, ["sample", "--ckpt", export, "--n", "2", "--out", str(faces)], monkeypatch, capsys)
    assert_clean_error(r, str(faces), "--force")
    assert (faces / "00000.png").read_bytes() == before
    p1_dcgan.main(["sample", "--ckpt", export, "--n", "2", "--out", str(tmp_path / "mine")])
    p1_dcgan.main(["sample", "--ckpt", export, "--n", "3", "--out", str(tmp_path / "mine")])  # its own: again
    assert len(list((tmp_path / "mine").glob("*.png"))) == 3
    p1_dcgan.main(["sample", "--ckpt", export, "--n", "1", "--out", str(faces), "--force"])
    last = str(shipped / "p1_dcgan" / "last.pt")
    r = in_process(p1_dcgan, ["export", "--ckpt", last, "--out", last], monkeypatch, capsys)
    assert_clean_error(r, "reads")
    monkeypatch.setattr(cli, "SHIPPED", tmp_path / "ship")
    (tmp_path / "ship").mkdir()
    (tmp_path / "ship" / "p1_dcgan.pt").write_bytes(Path(export).read_bytes())
    r = in_process(p1_dcgan, ["export", "--ckpt", last, "--out", str(tmp_path / "ship" / "p1_dcgan.pt")],
                   monkeypatch, capsys)
    assert_clean_error(r, "shipped", "--force")
    assert (tmp_path / "ship" / "p1_dcgan.pt").read_bytes() == Path(export).read_bytes()
    p1_dcgan.main(["export", "--ckpt", last, "--out", str(tmp_path / "ship" / "p1_dcgan.pt"), "--force"])
    (tmp_path / "ship" / "p1_dcgan.json").write_text("{}")
    r = in_process(p1_dcgan, ["eval", "--ckpt", export, "--data", str(demo_root), "--n", "4", "--json",
                              str(tmp_path / "ship" / "p1_dcgan.json")], monkeypatch, capsys)
    assert_clean_error(r, "shipped")


def test_a_new_judge_goes_to_the_cache_with_a_line(demo_root, monkeypatch, capsys):
    from datasets import cache_dir
    from hw3 import attribute_judge

    net, info = attribute_judge.load_or_train_classifier(None, demo_root, "Male", torch.device("cpu"))
    out = capsys.readouterr().out
    path = cache_dir() / "p2_Male_classifier.pt"
    assert "no judge for 'Male'" in out and str(path) in out and path.is_file()
    assert not (cli.SHIPPED / "p2_Male_classifier.pt").exists()
    attribute_judge.load_or_train_classifier(None, demo_root, "Male", torch.device("cpu"))
    assert "no judge" not in capsys.readouterr().out  # the second time it is read back


def test_shipped_generators_still_load_and_draw_the_docs_figures(tmp_path):
    """The shipped exports (trained before the probes left) load with today's code and draw docs/fig*_2.jpg."""
    for module, name, fig in ((p1_dcgan, "p1_dcgan", "fig1_2.jpg"), (p2_acgan, "p2_acgan", "fig2_2.jpg")):
        module.main(["sample", "--ckpt", str(ROOT / "checkpoints" / f"{name}.pt"), "--out", str(tmp_path / fig)])
        assert (tmp_path / fig).read_bytes() == (ROOT / "docs" / fig).read_bytes()


def config_of(module, words: list[str], monkeypatch, **swap: str) -> dict:
    """The config a recorded train command (`python pN_x.py train ...`) would train, up to the loop; `swap` replaces
    option values (run_dir=..., data=...)."""
    words = list(words)
    for key, value in swap.items():
        words[words.index("--" + key.replace("_", "-")) + 1] = value
    seen = {}
    with monkeypatch.context() as mp:
        mp.setattr(gan.loop, "run", lambda method, run_dir, cfg, *a, **k: seen.update(cfg) or {"stopped": 1})
        module.main(words[2:])
    return seen


NOT_OPTIONS = ("run_dir", "command", "versions", "device", "world_size", "precision")


def test_shipped_json_names_its_command_or_says_it_came_from_a_chain(demo_root, tmp_path, monkeypatch):
    """Each checkpoints/p1|p2 JSON records the one command that trains it (run on the demo data up to the loop, it
    gives the shipped config option for option, a warm start's `init_from` too: a P1 shipped since would make the
    command train something else); weights from a chain of runs say so and list the chain."""
    for name, module in (("p1_dcgan", p1_dcgan), ("p2_acgan", p2_acgan)):
        record = json.loads((ROOT / "checkpoints" / f"{name}.json").read_text())
        assert "command" in record
        if record["command"] is None:
            assert "chain" in record["command_note"] and record["trained"]["history"]
            continue
        words = shlex.split(record["command"])
        assert words[:3] == ["python", f"{name}.py", "train"] and record["config"]["command"] == record["command"]
        seen = config_of(module, words, monkeypatch, run_dir=str(tmp_path / name), data=str(demo_root))
        seen = checkpoints.portable(seen)  # as an export records it: a path option (P2's --init) by its name
        options = [k for k in record["config"] if k not in (*NOT_OPTIONS, "data", "train_images", "extra_images",
                                                               "truncation")]  # truncation: export's, not train's
        assert {k: seen[k] for k in options} == {k: record["config"][k] for k in options}


def test_a_finished_run_writes_metrics_json_and_curves_show_a_single_point(demo_root, tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    run = tmp_path / "r"
    p1_dcgan.main(["train", "--data", str(demo_root), "--run-dir", str(run), *TINY])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["images_seen"] == 16 and metrics["last_logged"]["step"] == 2
    drawn, plot = [], Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda self, *a, **k: drawn.append((a, k)) or plot(self, *a, **k))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "d_real": 0.5}) + "\n")
    gan.plot_gan_curves(run)
    (xs, ys), style = drawn[0]
    assert list(xs) == [1] and style.get("marker") not in (None, "", "None")  # a lone point needs a marker


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, a folder that takes no file")
def test_an_unwritable_output_is_named_before_the_slow_part(shipped, demo_root, tmp_path, monkeypatch, capsys):
    """/proc takes no new file: the error names the user's path (not a temporary file) and comes before any work."""
    import p3_dann

    export = str(shipped / "ckpt" / "p1_dcgan.pt")
    for module, argv in ((p1_dcgan, ["sample", "--ckpt", export, "--out", "/proc/hw3.jpg"]),
                         (p1_dcgan, ["eval", "--ckpt", export, "--data", str(demo_root), "--n", "4", "--json",
                                     "/proc/hw3.json"]),
                         (p3_dann, ["predict", "--ckpt", str(ROOT / "checkpoints" / "p3_dann_usps.pt"), "--images",
                                    str(demo_root / "digits" / "usps" / "test"), "--out", "/proc/hw3.csv"])):
        r = in_process(module, argv, monkeypatch, capsys)
        assert_clean_error(r, "cannot write /proc/hw3.")
        assert ".tmp" not in r.stderr and "inception" not in r.stderr


def face_copy(demo_root: Path, root: Path, splits: tuple[str, ...] = ("train", "test", "extra")) -> Path:
    """A copy of the demo's face folders (images and CSVs) under root/face, to break one piece of."""
    import shutil

    for split in splits:
        shutil.copytree(demo_root / "face" / split, root / "face" / split)
        shutil.copy(demo_root / "face" / f"{split}.csv", root / "face" / f"{split}.csv")
    return root


def test_the_extra_faces_need_their_csv_with_the_training_columns(demo_root, tmp_path, monkeypatch, capsys):
    """P2 reads face/extra.csv: missing, it is one line; a column train.csv has and it lacks (or the other way) is
    one line naming the column; both before a run folder exists."""
    root = face_copy(demo_root, tmp_path / "d")
    (root / "face" / "extra.csv").unlink()
    alone = ["train", "--data", str(root), "--run-dir", str(tmp_path / "r"), *TINY]
    train = [*alone, "--extra-share", "0.5"]
    assert_clean_error(in_process(p2_acgan, train, monkeypatch, capsys), "extra.csv")
    lines = (demo_root / "face" / "extra.csv").read_text().splitlines()
    header = lines[0].split(",")
    drop = header.index("Male")
    (root / "face" / "extra.csv").write_text("\n".join(",".join(c for i, c in enumerate(line.split(","))
                                                                 if i != drop) for line in lines) + "\n")
    r = in_process(p2_acgan, train, monkeypatch, capsys)
    assert_clean_error(r, "extra.csv", "Male")
    assert not (tmp_path / "r").exists()
    p2_acgan.main(alone)  # face/train alone (the default) does not read extra.csv
    assert (tmp_path / "r" / "last.pt").is_file()


def test_the_folder_fid_judges_on_is_never_a_training_folder(demo_root, tmp_path, monkeypatch, capsys):
    """face/extra linked to face/test is refused by train; eval refuses a --real that is the generator's training
    folder (face/train, or face/extra when the run drew from it)."""
    root = face_copy(demo_root, tmp_path / "d", ("train", "test"))
    (root / "face" / "extra").symlink_to(root / "face" / "test", target_is_directory=True)
    r = in_process(p1_dcgan, ["train", "--data", str(root), "--run-dir", str(tmp_path / "bad"), *TINY,
                              "--extra-share", "0.5"], monkeypatch, capsys)
    assert_clean_error(r, "face/extra", "face/test")
    assert not (tmp_path / "bad").exists()
    run = tmp_path / "r"
    p1_dcgan.main(["train", "--data", str(demo_root), "--run-dir", str(run), *TINY, "--extra-share", "0.5"])
    for split in ("train", "extra"):
        r = in_process(p1_dcgan, ["eval", "--ckpt", str(run / "last.pt"), "--data", str(demo_root), "--n", "4",
                                  "--real", str(demo_root / "face" / split)], monkeypatch, capsys)
        assert_clean_error(r, "trained on", f"face/{split}")


def test_a_run_records_the_one_command_that_trains_it(demo_root, tmp_path, monkeypatch, capsys):
    """config.json and the export's JSON carry the train command (less --stop-at and --overwrite); running that
    command gives the same config option for option; a resume keeps it, a resume with a new length makes it a
    chain (None)."""
    run = tmp_path / "r"
    argv = ["train", "--data", str(demo_root), "--run-dir", str(run), *TINY, "--steps", "3", "--stop-at", "1",
            "--extra-share", "0.25"]
    p1_dcgan.main(argv)
    p1_dcgan.main(["train", "--run-dir", str(run), "--resume"])
    config = json.loads((run / "config.json").read_text())
    words = config["command"].split()
    assert words[:3] == ["python", "p1_dcgan.py", "train"] and "--stop-at" not in words and "0.25" in words
    p1_dcgan.main(["export", "--ckpt", str(run / "last.pt"), "--out", str(tmp_path / "g.pt")])
    shipped = json.loads((tmp_path / "g.json").read_text())  # the same words, no path of this machine
    assert shipped["command"] == config["command"].replace(str(demo_root), demo_root.name).replace(str(run), run.name)
    assert shipped["config"]["command"] == shipped["command"]

    seen = config_of(p1_dcgan, words, monkeypatch, run_dir=str(tmp_path / "again"))
    options = [k for k in config if k not in NOT_OPTIONS]
    assert {k: seen[k] for k in options} == {k: config[k] for k in options}
    p1_dcgan.main(["train", "--run-dir", str(run), "--resume", "--steps", "4"])
    assert json.loads((run / "config.json").read_text())["command"] is None


def test_the_shipped_json_gets_its_evaluations_and_training_time(shipped, tmp_path):
    """benchmarks/gan_record.py completes an export's JSON: every seed's FID and their mean, the run's steps, images
    and core-hours; an evaluation of another checkpoint is refused in one line."""
    for ext in (".pt", ".json"):
        (tmp_path / f"p1_dcgan{ext}").write_bytes((shipped / "ckpt" / f"p1_dcgan{ext}").read_bytes())
    evals = []
    for seed, score in ((1, 40.0), (2, 41.0)):
        evals.append(tmp_path / f"eval{seed}.json")
        evals[-1].write_text(json.dumps({"checkpoint_step": 2, "fid": score, "fid_generated": 8, "seed": seed}))
    script = [sys.executable, str(ROOT / "benchmarks" / "gan_record.py"), str(tmp_path / "p1_dcgan.pt"), "--run",
              str(shipped / "p1_dcgan"), "--eval"]
    r = subprocess.run([*script, *map(str, evals)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "p1_dcgan.json").read_text())
    assert record["eval"]["fid"] == 40.0 and record["eval_seeds"] == {"seeds": [1, 2], "fid": [40.0, 41.0],
                                                                      "fid_mean": 40.5, "fid_spread": 1.0}
    assert record["trained"]["steps"] == 2 and record["trained"]["images_seen"] == 16
    assert record["trained"]["core_hours"] is not None and record["command"] == record["config"]["command"]
    evals[1].write_text(json.dumps({"checkpoint_step": 3, "fid": 1.0, "fid_generated": 8, "seed": 2}))
    r = subprocess.run([*script, *map(str, evals)], capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "another checkpoint" in r.stderr


def benchmark(name: str):
    """A script of benchmarks/ as a module (they import their neighbours by name, so the folder is on the path)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_the_ship_rule_names_every_bar_a_run_misses():
    """benchmarks/gan_ship.py ships a run only below the shipped mean FID; an ACGAN also needs its attribute bars on
    every seed and at most the shipped DCGAN's FID + 4; of several runs (seeds), the best ships only if all pass."""
    gan_ship = benchmark("gan_ship")
    good = [{"fid": 40.0, "attr_acc": 0.99, "flip_rate": 0.98, "seed": 1},
            {"fid": 41.0, "attr_acc": 0.985, "flip_rate": 0.975, "seed": 2}]
    assert gan_ship.verdict("p1_dcgan", good[:1], below=40.5) == []
    assert gan_ship.verdict("p1_dcgan", good, below=40.5) == ["mean FID 40.500 is not below 40.5"]
    assert gan_ship.verdict("p2_acgan", good, below=41.0, dcgan_fid=37.0) == []
    worse = [good[0], {**good[1], "flip_rate": 0.96}]
    assert gan_ship.verdict("p2_acgan", worse, below=41.0, dcgan_fid=36.0) == [
        "flip_rate 0.96 < 0.97 (seed 2)", "mean FID 40.500 trails the shipped DCGAN's 36.0 by more than 4.0"]
    assert gan_ship.shipped_fid({"eval": {"fid": 42.0}}) == 42.0
    assert gan_ship.shipped_fid({"eval": {"fid": 42.0}, "eval_seeds": {"fid_mean": 41.5}}) == 41.5
    seed1, seed2 = Path("runs/s1"), Path("runs/s2")  # seeds of one recipe: the lower mean ships, if both pass
    assert gan_ship.choose({seed1: (41.0, []), seed2: (40.0, [])}) == seed2
    assert gan_ship.choose({seed2: (40.0, [])}, shipped=40.5) == seed2  # seeds judged one at a time: the lower ships
    assert gan_ship.choose({seed2: (40.0, [])}, shipped=39.5) is None
    assert gan_ship.choose({seed1: (41.0, []), seed2: (40.0, ["mean FID 40.000 is not below 39.0"])}) is None
    assert gan_ship.choose({}) is None


def test_the_ship_script_knows_when_a_new_dcgan_leaves_the_acgan_behind(tmp_path):
    """The shipped ACGAN records the SHA-256 of the P1 export it started from; shipping another P1 makes it stale."""
    gan_ship = benchmark("gan_ship")
    assert not gan_ship.acgan_is_stale(tmp_path)  # nothing shipped
    (tmp_path / "p1_dcgan.pt").write_bytes(b"the P1 export")
    sha = hashlib.sha256(b"the P1 export").hexdigest()
    (tmp_path / "p2_acgan.json").write_text(json.dumps({"config": {"init_from": {"step": 80000, "sha256": sha}}}))
    assert not gan_ship.acgan_is_stale(tmp_path)
    (tmp_path / "p1_dcgan.pt").write_bytes(b"a newer P1 export")
    assert gan_ship.acgan_is_stale(tmp_path)
    (tmp_path / "p2_acgan.json").write_text(json.dumps({"config": {"init_from": None}}))  # from scratch: never stale
    assert not gan_ship.acgan_is_stale(tmp_path)


def test_a_time_to_quality_curve_outlives_its_run_folder(tmp_path, monkeypatch, capsys):
    """benchmarks/gan_curve.py --keep records a run's scored snapshots (step, images, core-hours, FID at each N) in a
    committed JSON, and draws them from there once the run folder is gone."""
    gan_curve = benchmark("gan_curve")
    run = tmp_path / "p1_a"
    (run / "snap").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"batch": 8, "extra_share": 0.0, "restarts": [20]}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "img_per_s": 4.0, "threads": 2}) + "\n"
                                               for s in (5, 10)))
    (run / "snap" / "fid_10_n1000.json").write_text(json.dumps({"fid": 99.5}))
    monkeypatch.setattr(gan_curve, "KEPT", tmp_path / "kept.json")
    monkeypatch.setattr(sys, "argv", ["gan_curve.py", str(run), "--keep"])
    gan_curve.main()
    shutil.rmtree(run)
    kept = gan_curve.kept_series()
    assert kept == {"p1_a (face/train alone, restarts at 20)": [{"step": 10, "images": 80, "hours": 80 / 4 * 2 / 3600,
                                                                  1000: 99.5}]}
    monkeypatch.setattr(sys, "argv", ["gan_curve.py", "--plot", str(tmp_path / "c.png")])
    gan_curve.main()  # no runs given: the chain and the kept series
    assert "| p1_a (face/train alone, restarts at 20) | 10 | 80 |" in capsys.readouterr().out
    assert (tmp_path / "c.png").stat().st_size > 0
    assert gan_curve.recipe({"extra_share": 0.5, "extra_until": 10, "r1": 0.01}) == "extra share 0.5 until 10, R1 0.01"


def test_r1_penalty_by_hand():
    """For D(x) = <w, x> the input gradient is w at every image: the penalty is r1/2 * |w|^2; 0 off its steps."""
    w = torch.randn(3, 4, 4)
    D = lambda x: (x * w).sum((1, 2, 3))  # noqa: E731  (B,)
    nets = make_nets(nn.Linear(1, 1), nn.Linear(1, 1))
    real = torch.randn(5, 3, 4, 4)
    assert not gan.real_seen(nets, real).requires_grad and gan.r1_penalty(nets, D(real), real) == 0.0
    nets.r1 = 0.3
    seen = gan.real_seen(nets, real)
    assert torch.allclose(gan.r1_penalty(nets, D(seen), seen), 0.3 / 2 * w.square().sum())


@pytest.mark.parametrize("module", [p1_dcgan, p2_acgan], ids=["p1", "p2"])
def test_r1_is_paid_on_every_16th_step_at_16_times_its_weight(demo_root, tmp_path, monkeypatch, module):
    paid = []
    penalty = gan.r1_penalty
    monkeypatch.setattr(gan, "r1_penalty", lambda nets, *a: paid.append(nets.r1) or penalty(nets, *a))
    module.main(["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "r"), *TINY, "--steps", "18",
                   "--r1", "0.5"])
    assert paid == [0.5 * gan.R1_EVERY] + [0.0] * 15 + [0.5 * gan.R1_EVERY, 0.0]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["r1"] == 0.5


def test_r1_is_p1s_default(demo_root, tmp_path):
    """P1's recipe has R1 (P2's not): a run given no --r1 records the recipe's weight."""
    for module, weight in ((p1_dcgan, 0.01), (p2_acgan, 0.0)):
        run = tmp_path / module.KIND
        module.main(["train", "--data", str(demo_root), "--run-dir", str(run), *TINY, "--steps", "1"])
        assert json.loads((run / "config.json").read_text())["r1"] == module.SPEC.r1 == weight


def test_r1_keeps_a_discriminator_smooth_at_the_real_images():
    """D trained to split two overlapping clouds: with R1 its input gradient at the real ones stays far smaller."""
    def input_gradient(r1: float) -> float:
        torch.manual_seed(0)
        D = nn.Sequential(nn.Flatten(), nn.Linear(48, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1), nn.Flatten(0))
        nets = make_nets(nn.Linear(1, 1), D)
        nets.opt_d = torch.optim.Adam(D.parameters(), 1e-2)
        real, fake = torch.randn(64, 3, 4, 4) * 0.5 + 0.3, torch.randn(64, 3, 4, 4) * 0.5 - 0.3
        for _ in range(200):
            nets.r1 = r1
            p1_dcgan.d_step(nets, real, fake)
        seen = real.clone().requires_grad_()
        grad, = torch.autograd.grad(D(seen).sum(), seen)
        return grad.square().flatten(1).sum(1).mean().item()

    assert input_gradient(1.0) < 0.2 * input_gradient(0.0)


def process_state(pid: int, wanted: str, timeout: float = 5.0) -> str:
    """A process's state letter from /proc (T: stopped), waiting up to `timeout` s for `wanted`."""
    end = time.monotonic() + timeout
    while True:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == wanted or time.monotonic() > end:
            return state
        time.sleep(0.05)


def test_the_snapshot_watcher_keeps_the_last_step_of_a_finished_run(tmp_path):
    """A run that ends on a step of --at logs no later step: its last.pt there is still kept, and a last.pt that is
    not yet at that step is not."""
    gan_snapshots = benchmark("gan_snapshots")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 5}) + "\n" + json.dumps({"step": 10}) + "\n")
    torch.save({"step": 9}, run / "last.pt")  # the log reached 10 before the checkpoint did
    gan_snapshots.keep(run, [10], ckpt_every=4)
    assert not (run / "snap" / "step_10.pt").exists()
    torch.save({"step": 10}, run / "last.pt")
    gan_snapshots.keep(run, [5, 10], ckpt_every=4)
    assert torch.load(run / "snap" / "step_10.pt", weights_only=True)["step"] == 10
    assert not (run / "snap" / "step_5.pt").exists()  # the log is past 5 + ckpt_every // 2: that checkpoint is gone


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds trainings in /proc (Linux)")
def test_the_snapshot_watcher_scores_with_the_trainings_paused(tmp_path, monkeypatch):
    """benchmarks/gan_snapshots.py --score-paused finds a run's training by its command line, holds it stopped while
    the snapshot is scored, and lets it go on after."""
    gan_snapshots = benchmark("gan_snapshots")
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)", "train"]
    ours = subprocess.Popen([*sleeper, "--run-dir", "runs/a"], cwd=tmp_path)
    other = subprocess.Popen([*sleeper, "--run-dir=runs/b"], cwd=tmp_path)
    try:
        run = tmp_path / "runs" / "a"
        assert gan_snapshots.training_pids(run) == [ours.pid]
        assert gan_snapshots.training_pids(tmp_path / "runs" / "b") == [other.pid]
        (run / "snap").mkdir(parents=True)
        out = run / "snap" / "fid_10_n1000.json"
        probe = f"""import json, sys, time
for _ in range(100):  # the 'eval': the training's state, once it reads T or after 5 s
    state = open('/proc/{ours.pid}/stat').read().rsplit(')', 1)[1].split()[0]
    if state == 'T':
        break
    time.sleep(0.05)
json.dump({{'fid': state}}, open(sys.argv[1], 'w'))"""
        monkeypatch.setattr(gan_snapshots, "eval_command", lambda *a: ([sys.executable, "-c", probe, str(out)], out))
        gan_snapshots.score_paused([run], 10, "data")
        assert json.loads(out.read_text())["fid"] == "T"  # stopped while its snapshot was scored
        assert process_state(ours.pid, "S") == "S" and process_state(other.pid, "S") == "S"  # going on after
        script = [sys.executable, str(ROOT / "benchmarks" / "gan_snapshots.py"), str(run), "--at", "10,20"]
        r = subprocess.run([*script, "--score-paused", "15"], capture_output=True, text=True)  # no snapshot there
        assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "not among --at" in r.stderr
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds trainings in /proc (Linux)")
def test_a_killed_snapshot_watcher_lets_the_paused_training_go_on(tmp_path):
    """`kill` (SIGTERM) of a watcher in the middle of a paused scoring still resumes the training it stopped."""
    training = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "train", "--run-dir", "runs/a"],
                                cwd=tmp_path)
    run = tmp_path / "runs" / "a"
    (run / "snap").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"kind": "p1_dcgan", "ckpt_every": 10}))
    (run / "snap" / "step_10.pt").write_text("not a checkpoint")  # its eval fails, after a while
    watcher = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "gan_snapshots.py"), "runs/a", "--at", "10",
                                "--score-paused", "10", "--keep-only", "--poll", "0.1"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL)
    try:
        assert process_state(training.pid, "T", timeout=120) == "T"  # paused for the scoring (after importing torch)
        watcher.terminate()
        assert watcher.wait(timeout=30) == 143
        assert process_state(training.pid, "S") == "S"  # going on
    finally:
        for proc in (watcher, training):
            proc.kill()
            proc.wait()
