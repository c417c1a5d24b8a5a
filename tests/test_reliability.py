"""No lost work: Ctrl-C checkpoints and exits 130, SIGKILL leaves a loadable checkpoint, NaN stops cleanly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, assert_clean_error, run_main

import p1_dcgan
import p3_dann
from hw3 import checkpoints, gan


def train_cmd(demo_root, run, steps="100000"):
    return [sys.executable, str(ROOT / "p3_dann.py"), "train", "--data", str(demo_root), "--source", "mnist",
            "--target", "usps", "--steps", steps, "--batch", "16", "--eval-every", "5", "--run-dir", str(run)]


def wait_for(path, proc, after_ns: int = -1, timeout=120):
    """Wait until the running `proc` has written `path` (rewritten it, if its mtime must pass `after_ns`)."""
    t0 = time.time()
    while not path.exists() or path.stat().st_mtime_ns <= after_ns:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "no checkpoint appeared"
        time.sleep(0.05)


def p1_cmd(demo_root, run, steps="100000"):
    """DCGAN training writing a checkpoint every step (the GAN loop's own checkpoint code)."""
    return [sys.executable, str(ROOT / "p1_dcgan.py"), "train", "--data", str(demo_root), "--steps", steps,
            "--batch", "8", "--ckpt-every", "1", "--sample-every", "1000", "--log-every", "1", "--run-dir", str(run)]


@pytest.mark.parametrize("problem", ["p3", "p1"])
def test_ctrl_c_checkpoints_and_exits_130(demo_root, tmp_path, problem):
    run = tmp_path / "run"
    cmd, kind = (train_cmd(demo_root, run), "p3_dann") if problem == "p3" else (p1_cmd(demo_root, run), "p1_dcgan")
    if problem == "p1":
        cmd[cmd.index("--ckpt-every") + 1] = "1000"  # only the Ctrl-C checkpoint
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    if problem == "p3":
        wait_for(run / "last.pt", proc)
    else:
        wait_for(run / "metrics.jsonl", proc)  # training steps are running
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    step = checkpoints.load_checkpoint(run / "last.pt", kind)["step"]
    assert step >= 1
    main = p3_dann.main if problem == "p3" else p1_dcgan.main
    r = run_main(main, *cmd[2:], "--resume", "--stop-at", str(step + 3), check=True)  # both loops honour --stop-at
    assert checkpoints.load_checkpoint(run / "last.pt", kind)["step"] == step + 3, r.stdout


@pytest.mark.parametrize("problem,delays", [("p3", (0.3, 1.1, 2.3)), ("p1", (0.2, 0.9, 2.1))])
def test_sigkill_never_leaves_a_broken_checkpoint_and_resume_continues(demo_root, tmp_path, problem, delays):
    """SIGKILL at three moments after a checkpoint write, the later two in runs resumed from the last kill: every
    last.pt loads with its optimizers, and a final resume ends at the step it is asked for."""
    run = tmp_path / "run"
    if problem == "p3":
        cmd = train_cmd(demo_root, run)
        cmd[cmd.index("--eval-every") + 1] = "1"  # a checkpoint write every step: kills land inside writes too
    else:
        cmd = p1_cmd(demo_root, run)
    kind = {"p3": "p3_dann", "p1": "p1_dcgan"}[problem]
    last, steps = run / "last.pt", []
    for i, delay in enumerate(delays):
        before = last.stat().st_mtime_ns if i else -1
        proc = subprocess.Popen(cmd + (["--resume"] if i else []), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wait_for(last, proc, before)  # this process is training and writing checkpoints
        time.sleep(delay)
        proc.kill()
        proc.wait()
        ck = checkpoints.load_checkpoint(last, kind)
        assert ck["step"] >= 1 and "optimizers" in ck
        steps.append(ck["step"])
    assert steps == sorted(steps) and steps[-1] > steps[0], steps  # each resume went on from the last kill
    step = steps[-1]
    if problem == "p3":
        r = run_main(p3_dann.main, *cmd[2:], "--resume", "--stop-at", str(step + 2))
    else:
        r = run_main(p1_dcgan.main, *p1_cmd(demo_root, run, steps=str(step + 2))[2:], "--resume")
    assert r.returncode == 0, r.stderr
    assert checkpoints.load_checkpoint(last, kind)["step"] == step + 2
    if problem == "p1":  # an explicit --steps extends the run, and config.json says so
        assert json.loads((run / "config.json").read_text())["total_steps"] == step + 2


def test_nan_loss_stops_with_the_step_and_keeps_last_good(demo_root, tmp_path, monkeypatch):
    real_ce = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def flaky_ce(*args, **kwargs):
        calls["n"] += 1
        loss = real_ce(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 20 else loss  # two calls per DANN step: NaN from step 11

    monkeypatch.setattr(p3_dann.F, "cross_entropy", flaky_ce)
    run = tmp_path / "run"
    r = run_main(p3_dann.main, "train", "--data", str(demo_root), "--source", "mnist", "--target", "usps",
                 "--steps", "40", "--batch", "16", "--eval-every", "5", "--run-dir", str(run))
    assert_clean_error(r, "non-finite", "step 11")
    ck = checkpoints.load_checkpoint(run / "last.pt", "p3_dann")
    assert ck["step"] == 10
    assert all(torch.isfinite(v).all() for v in ck["models"]["dann"].values() if v.is_floating_point())


def test_gan_divergence_stops_with_the_step_and_keeps_last_good(demo_root, tmp_path, monkeypatch):
    """A DCGAN whose losses turn to Inf at step 5: a clean error naming step 5, last.pt at step 4, finite."""
    real_loss = gan.bce
    calls = {"n": 0}

    def diverging(logit, real):
        calls["n"] += 1  # three calls per step (D real, D fake, G)
        return real_loss(logit, real) * (float("inf") if calls["n"] > 12 else 1.0)

    monkeypatch.setattr(gan, "bce", diverging)
    run = tmp_path / "run"
    r = run_main(p1_dcgan.main, "train", "--data", str(demo_root), "--steps", "20", "--batch", "8",
                 "--ckpt-every", "2", "--log-every", "1", "--run-dir", str(run))
    assert_clean_error(r, "non-finite", "step 5")
    ck = checkpoints.load_checkpoint(run / "last.pt", "p1_dcgan")
    assert ck["step"] == 4
    assert all(torch.isfinite(v).all() for net in ("G", "D") for v in ck["models"][net].values()
               if v.is_floating_point())
