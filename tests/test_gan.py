"""P1 DCGAN / P2 ACGAN: shapes, the D step, ACGAN labels, exact resume, sampling, hw3_p1p2.sh, FID, bad input."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
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
from hw3 import augment, checkpoints, cli, fid, gan, gan_losses
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
    r = in_process(p2_acgan, [*args, "--init", str(shipped / "p1_dcgan" / "last.pt")], monkeypatch, capsys)
    assert r.returncode == 0 and "warm start" in r.stdout and "step 2" in r.stdout
    r = in_process(p2_acgan, [*args, "--overwrite", "--arch", "report", "--init",
                              str(shipped / "p1_dcgan" / "last.pt")], monkeypatch, capsys)
    assert_clean_error(r, "--arch dcgan")
    r = in_process(p2_acgan, ["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "new"), *TINY, "--init",
                              str(tmp_path / "missing.pt")], monkeypatch, capsys)
    assert_clean_error(r, "not found")
    assert not (tmp_path / "new").exists()  # a bad --init leaves no run folder behind
    r = in_process(p2_acgan, [*args, "--overwrite", "--init", str(shipped / "ckpt" / "p2_acgan.pt")],
                   monkeypatch, capsys)
    assert_clean_error(r, "p1_dcgan")


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
            "--ckpt-every", "2"]
    module.main([*args, "--run-dir", str(tmp_path / "a"), "--steps", "4"])
    module.main([*args, "--run-dir", str(tmp_path / "b"), "--steps", "2"])
    module.main([*args, "--run-dir", str(tmp_path / "b"), "--steps", "4", "--resume"])
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in "ab")
    assert a["step"] == b["step"] == 4
    assert set(a["models"]) == {"G", "D", "G_ema"}  # the default run keeps a weight average
    for net in ("G", "D", "G_ema"):
        for k, v in a["models"][net].items():
            assert torch.equal(v, b["models"][net][k]), f"{net}.{k} differs after resume"
    for net in ("G", "D"):
        for sa, sb in zip(a["optimizers"][net]["state"].values(), b["optimizers"][net]["state"].values()):
            assert all(torch.equal(sa[k], sb[k]) for k in sa), f"{net} optimizer state differs after resume"
    assert (tmp_path / "a" / "curves.png").is_file() and (tmp_path / "a" / "samples" / "step_000004.png").is_file()
    assert len(checkpoints.read_metrics(tmp_path / "b" / "metrics.jsonl")) == 4


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
        files = sorted((tmp_path / name / "many").iterdir())
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
    r = in_process(p1_dcgan, ["sample", "--ckpt", str(shipped / "ckpt" / "p2_acgan.pt"), "--out",
                                str(tmp_path / "f.jpg")], monkeypatch, capsys)
    assert_clean_error(r, "p2_acgan", "p1_dcgan")
    r = in_process(p2_acgan, ["sample", "--ckpt", str(shipped / "ckpt" / "p2_acgan.pt"), "--out",
                                str(tmp_path / "f.gif")], monkeypatch, capsys)
    assert_clean_error(r, ".jpg")


def flat_weights(run: Path) -> torch.Tensor:
    models = torch.load(run / "last.pt", weights_only=True)["models"]
    return torch.cat([v.float().flatten() for net in ("G", "D") for k, v in models[net].items()
                      if "num_batches" not in k])


def test_dcgan_two_ranks_match_one_process_with_the_whole_batch(demo_root, tmp_path):
    """DDP over gloo: 2 ranks x 8 images end where 1 process x 16 does (global BatchNorm statistics, each rank
    its slice of the global noise); rank 0 alone writes the run folder. fp32, so the only difference is float
    noise, which Adam's first step turns into a lr-sized move of a handful of near-zero-gradient weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "--data", str(demo_root), "--precision", "fp32", "--steps", "1", "--batch", "16"]
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
    assert ((ddp - one).abs() > 1e-5).float().mean() < 1e-3       # the same step, up to float noise
    assert ((ddp - half).abs() > 1e-5).float().mean() > 1e-2      # unlike what one rank alone would do


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
    r = in_process(p1_dcgan, [*args, "--run-dir", str(tmp_path / "c"), "--steps", "4", "--lr-decay-from", "4"],
                   monkeypatch, capsys)
    assert r.returncode != 0 and "--lr-decay-from must be in [0, 4)" in r.stderr
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
    assert r.returncode != 0 and "--lr and --lr-d > 0" in r.stderr


def test_adversarial_losses_by_hand():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    # hinge: mean(max(0, 1 - [2, 0])) + mean(max(0, 1 + [-2, 0.5])) = 0.5 + 0.75; G: -mean(fake) = 0.75
    assert gan_losses.d_adversarial_loss(real, fake, "hinge").item() == pytest.approx(1.25)
    assert gan_losses.g_adversarial_loss(fake, "hinge").item() == pytest.approx(0.75)
    bce = F.binary_cross_entropy_with_logits
    assert gan_losses.d_adversarial_loss(real, fake, "bce").item() == pytest.approx(
        (bce(real, torch.ones(2)) + bce(fake, torch.zeros(2))).item())
    assert gan_losses.g_adversarial_loss(fake, "bce").item() == pytest.approx(bce(fake, torch.ones(2)).item())


def test_r1_penalty_by_hand():
    """D(x) = <w, x>: its gradient at every image is w, so R1 = weight / 2 * ||w||^2 and its gradient on w is
    weight * w."""
    w = torch.randn(3, 4, 4, requires_grad=True)
    nets = gan.Nets(nn.Identity(), nn.Identity(), None, None, r1=0.5)
    x = gan_losses.real_input(nets, torch.randn(5, 3, 4, 4))
    assert x.requires_grad and x.is_leaf
    penalty = gan_losses.r1_penalty((x * w).sum((1, 2, 3)), x, 0.5)
    assert penalty.item() == pytest.approx(0.25 * w.pow(2).sum().item(), rel=1e-5)
    penalty.backward()
    assert torch.allclose(w.grad, 0.5 * w.detach(), rtol=1e-5)
    plain = gan.Nets(nn.Identity(), nn.Identity(), None, None)  # no R1: the augmented batch as it is
    assert not gan_losses.real_input(plain, torch.randn(2, 3)).requires_grad


def test_r1_reaches_the_discriminator_and_not_the_generator():
    """The same D step with and without R1: D's gradients differ, G gets none either way."""
    torch.manual_seed(0)
    G, D = DCGANGenerator(), DCGANDiscriminator()
    real, z = torch.rand(4, 3, 64, 64) * 2 - 1, torch.randn(4, Z_DIM)
    grads = []
    for r1 in (0.0, 10.0):
        G.zero_grad(set_to_none=True)
        nets = make_nets(G, copy.deepcopy(D))
        nets.r1, nets.opt_d = r1, torch.optim.SGD(nets.D.parameters(), lr=0.0)  # lr 0: D stays as it was
        out = p1_dcgan.d_step(nets, real, nets.G(z))
        assert all(p.grad is None for p in G.parameters())
        grads.append(torch.cat([p.grad.flatten() for p in nets.D.parameters()]))
    assert out["r1"] > 0 and not torch.allclose(grads[0], grads[1])


def test_spectral_norm_discriminator():
    """--spectral-norm: no BatchNorm in D, and each conv's weight (as a matrix) has a largest singular value ~1 once
    the power iteration has run a few train-mode passes; the DCGAN init reaches the raw weights."""
    torch.manual_seed(0)
    D = DCGANDiscriminator(spectral=True)
    D.apply(init_dcgan)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    raw = D.net[1][0].parametrizations.weight.original
    assert raw.std().item() == pytest.approx(0.02, rel=0.05)
    for _ in range(30):
        D(torch.randn(2, 3, 64, 64))
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.05)
    rf, attr = ConditionalDCGANDiscriminator(spectral=True)(torch.randn(2, 3, 64, 64))
    assert rf.shape == (2,) and attr.shape == (2, 2)


@pytest.mark.parametrize("module", [p1_dcgan, p2_acgan], ids=["p1", "p2"])
def test_levers_train_and_resume_exactly(demo_root, tmp_path, module):
    """Hinge loss, R1, spectral norm and a discriminator rate of its own: 2 + 2 steps resumed end as 4 steps do, and
    each optimizer ends with its own rate; --report turns every lever off."""
    args = ["train", "--data", str(demo_root), "--batch", "8", "--log-every", "1", "--sample-every", "4",
            "--ckpt-every", "2", "--loss", "hinge", "--r1", "1", "--spectral-norm", "--lr", "1e-4", "--lr-d", "4e-4"]
    module.main([*args, "--run-dir", str(tmp_path / "a"), "--steps", "4"])
    module.main([*args, "--run-dir", str(tmp_path / "b"), "--steps", "2"])
    module.main(["train", "--run-dir", str(tmp_path / "b"), "--steps", "4", "--resume"])  # the config comes back
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in "ab")
    for net in ("G", "D"):
        for k, v in a["models"][net].items():
            assert torch.equal(v, b["models"][net][k]), f"{net}.{k} differs after resume"
    assert a["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert a["optimizers"]["D"]["param_groups"][0]["lr"] == pytest.approx(4e-4)
    assert any("parametrizations" in k for k in a["models"]["D"])
    assert all("r1" in m for m in checkpoints.read_metrics(tmp_path / "a" / "metrics.jsonl"))
    module.main([*args, "--run-dir", str(tmp_path / "c"), "--steps", "1", "--report"])
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert (config["loss"], config["r1"], config["spectral_norm"], config["lr_d"]) == ("bce", 0.0, False, None)


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


def weights(state: dict) -> dict:
    """The learned tensors of a state_dict (BatchNorm running statistics move in any train-mode forward)."""
    return {k: v.float() for k, v in state.items() if "running" not in k and "num_batches" not in k}


def test_p1_init_d_warmup_xflip_and_exact_resume(demo_root, shipped, tmp_path, monkeypatch, capsys):
    """--init from an export loads its generator; --d-warmup 2 leaves G's weights alone for 2 steps while D learns;
    then G trains; with --xflip, 2 + 2 resumed steps end as 4 do; --report turns both off."""
    export = shipped / "ckpt" / "p1_dcgan.pt"
    args = ["train", "--data", str(demo_root), "--batch", "8", "--log-every", "1", "--sample-every", "4",
            "--ckpt-every", "2", "--init", str(export), "--d-warmup", "2", "--xflip"]
    r = in_process(p1_dcgan, [*args, "--run-dir", str(tmp_path / "a"), "--steps", "4"], monkeypatch, capsys)
    assert r.returncode == 0 and "generator only" in r.stdout
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "b"), "--steps", "2"])
    start = weights(torch.load(export, weights_only=True)["models"]["G"])
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert all(torch.equal(v, start[k]) for k, v in weights(b["models"]["G"]).items())
    assert not b["optimizers"]["G"]["state"] and b["optimizers"]["D"]["state"]  # only D's optimizer stepped
    assert all("loss_g" not in m for m in checkpoints.read_metrics(tmp_path / "b" / "metrics.jsonl"))
    p1_dcgan.main(["train", "--run-dir", str(tmp_path / "b"), "--steps", "4", "--resume"])
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in "ab")
    for net in ("G", "D", "G_ema"):
        for k, v in a["models"][net].items():
            assert torch.equal(v, b["models"][net][k]), f"{net}.{k} differs after resume"
    assert not all(torch.equal(v, start[k]) for k, v in weights(a["models"]["G"]).items())  # G trained after warm-up
    p1_dcgan.main([*args, "--run-dir", str(tmp_path / "c"), "--steps", "1", "--report"])
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert (config["xflip"], config["d_warmup"]) == (False, 0)


def test_p1_init_bad_inputs(demo_root, shipped, tmp_path, monkeypatch, capsys):
    args = ["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "new"), *TINY]
    r = in_process(p1_dcgan, [*args, "--init", str(tmp_path / "missing.pt")], monkeypatch, capsys)
    assert_clean_error(r, "not found")
    r = in_process(p1_dcgan, [*args, "--init", str(shipped / "ckpt" / "p2_acgan.pt")], monkeypatch, capsys)
    assert_clean_error(r, "p1_dcgan")
    r = in_process(p1_dcgan, [*args, "--d-warmup", "-1"], monkeypatch, capsys)
    assert_clean_error(r, "--d-warmup")
    assert not (tmp_path / "new").exists()  # a bad --init leaves no run folder behind


def test_acgan_d_warmup_and_xflip(demo_root, tmp_path):
    """P2 shares the flags: with --d-warmup 2, two steps update D only (G's optimizer never steps)."""
    p2_acgan.main(["train", "--data", str(demo_root), "--run-dir", str(tmp_path / "r"), *TINY, "--d-warmup", "2",
                   "--xflip"])
    ck = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert not ck["optimizers"]["G"]["state"] and ck["optimizers"]["D"]["state"]
    assert ck["config"]["xflip"] and all("loss_g" not in m for m in checkpoints.read_metrics(tmp_path / "r" /
                                                                                               "metrics.jsonl"))
