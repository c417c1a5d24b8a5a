"""P4 ADDA: optimizer ownership, the frozen source side, the target encoder's start, adaptation gains on demo
digits, exact resume, export + hw3_p4.sh end to end, and clean errors for bad inputs."""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, THREADS, assert_clean_error, run_cli, run_main

import p4_adda
from hw3 import adda, checkpoints, distributed

SHORT = ["--pretrain-steps", "20", "--adapt-steps", "20", "--selftrain-steps", "10", "--batch", "32",
         "--eval-every", "10", "--log-every", "5", "--device", "cpu", "--starts", "1"]


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def train(*args: str) -> None:
    """p4_adda.py train in this process (the runs that must succeed; the resume checks compare their files)."""
    r = run_main(p4_adda.main, "train", *args)
    assert r.returncode == 0, r.stderr[-2000:]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def adapted(demo_root, tmp_path_factory):
    """A short improved run mnist -> mnistm on the demo digits (its metrics and best.pt)."""
    run = tmp_path_factory.mktemp("p4") / "m2mm"
    run_main(p4_adda.main, "train", "--data", str(demo_root), "--source", "mnist", "--target", "mnistm",
             "--run-dir", str(run), "--pretrain-steps", "100", "--adapt-steps", "100", "--selftrain-steps", "100",
             "--batch", "64", "--eval-every", "50", "--texture-mix", "0", "--device", "cpu", "--starts", "1",
             check=True)
    return run


def test_optimizers_own_only_their_stage():
    a = p4_adda.parse_args(["train", "--source", "usps", "--target", "mnistm"])
    nets, opts = adda.build(vars(a), distributed.Dist(0, 1, torch.device("cpu")))
    ids = lambda *names: {id(p) for n in names for p in nets[n].parameters()}  # noqa: E731
    owned = {k: {id(p) for grp in o.param_groups for p in grp["params"]} for k, o in opts.items()}
    assert owned["critic"] == ids("critic")
    assert owned["target"] == ids("target_encoder") == owned["selftrain"]
    assert owned["pretrain"] == ids("source_encoder", "classifier")
    assert not any(owned[k] & ids("teacher") for k in owned)  # the teacher is an EMA, no optimizer's


def test_plain_is_the_report_adda():
    from models import LeNetEncoder

    a = p4_adda.parse_args(["train", "--source", "usps", "--target", "mnistm", "--plain"])
    assert (a.encoder, a.augment, a.selftrain_steps, a.lr, a.beta1, a.gp) == ("lenet", False, 0, 2e-4, 0.5, 0.0)
    assert a.starts == 1  # one run, no race
    assert (adda.CRITIC_HIDDEN, adda.LR_ADAPT) == (500, 2e-4)  # the report's critic and stage-2 rate, in every run
    assert isinstance(adda.make_encoder(vars(a)), LeNetEncoder)
    # an option given beside --plain still applies (it is not silently replaced by the report's value)
    a = p4_adda.parse_args(["train", "--source", "usps", "--target", "mnistm", "--plain", "--selftrain-steps", "5"])
    assert (a.encoder, a.selftrain_steps) == ("lenet", 5)


def test_adaptation_beats_source_only(adapted):
    m = json.loads((adapted / "metrics.json").read_text())
    assert m["step"] >= 100  # chosen after stage 1, without target labels
    assert m["target_test_acc"] > m["source_only_target_test_acc"] + 0.05, m
    assert (adapted / "curves.png").is_file()
    assert json.loads((adapted / "config.json").read_text())["kind"] == "p4_adda"


def test_stage2_freezes_source_and_starts_from_it_and_resume_is_exact(demo_root, tmp_path):
    args = ["--data", str(demo_root), "--source", "usps", "--target", "mnistm", *SHORT, "--texture-mix", "0.5"]
    train(*args, "--run-dir", str(tmp_path / "full"))
    part = tmp_path / "part"
    train(*args, "--run-dir", str(part), "--stop-at", "20")  # the end of stage 1
    at_p = load(part / "last.pt")
    assert at_p["step"] == 20
    assert same(at_p["models"]["target_encoder"], at_p["models"]["source_encoder"])
    train(*args, "--run-dir", str(part), "--resume", "--stop-at", "33")  # mid stage 2
    train(*args, "--run-dir", str(part), "--resume", "--stop-at", "45")  # mid stage 3
    train(*args, "--run-dir", str(part), "--resume")
    end, full = load(part / "last.pt"), load(tmp_path / "full" / "last.pt")
    for k in ("source_encoder", "classifier"):
        assert same(end["models"][k], at_p["models"][k]), f"{k} changed after stage 1"
    assert not same(end["models"]["target_encoder"], at_p["models"]["target_encoder"])
    for k in full["models"]:
        assert same(end["models"][k], full["models"][k]), f"resumed {k} differs from the uninterrupted run"
    assert json.loads((part / "metrics.json").read_text()) == json.loads((tmp_path / "full" / "metrics.json")
                                                                            .read_text())


def test_a_run_from_before_the_strong_view_resumes_as_it_began(demo_root, tmp_path):
    """A run whose recorded config has no student_aug (started before --student-aug strong became the default)
    resumes with the weak view it was trained with, to the same result as an uninterrupted weak-view run."""
    args = ["--data", str(demo_root), "--source", "mnistm", "--target", "usps", *SHORT,
            "--student-aug", "weak"]
    train(*args, "--run-dir", str(tmp_path / "full"))
    part = tmp_path / "part"
    train(*args, "--run-dir", str(part), "--stop-at", "30")  # mid stage 2
    ck = load(part / "last.pt")
    del ck["config"]["student_aug"]
    torch.save(ck, part / "last.pt")
    train("--run-dir", str(part), "--resume")  # no --student-aug (the default), no --source / --target (the run's)
    end, full = load(part / "last.pt"), load(tmp_path / "full" / "last.pt")
    assert same(end["models"]["target_encoder"], full["models"]["target_encoder"])


@pytest.mark.parametrize("source, target, share", [("usps", "mnistm", 0.25), ("mnistm", "usps", 0.0),
                                                  ("mnistm", "svhn", 0.0)])
def test_texture_mix_auto_reads_the_domains(demo_root, tmp_path, source, target, share):
    """The default --texture-mix auto mixes only from a grey source into a colour target, and records the share."""
    run = tmp_path / "r"
    run_main(p4_adda.main, "train", "--data", str(demo_root), "--source", source, "--target", target,
             "--run-dir", str(run), "--pretrain-steps", "1", "--adapt-steps", "0", "--selftrain-steps", "0",
             "--batch", "8", "--device", "cpu", "--starts", "1", check=True)
    assert json.loads((run / "config.json").read_text())["texture_mix"] == share


def test_starts_race_keeps_the_highest_im_score_and_equals_its_plain_run(demo_root, tmp_path):
    """--starts 2: both seeds train to --race-steps, the one with the higher im-score there moves to the run folder
    and trains on, to the same weights as a plain run of its seed; a race stopped before its step resumes to the
    same end."""
    args = ["--data", str(demo_root), "--source", "usps", "--target", "mnistm", *SHORT, "--texture-mix", "0",
            "--starts", "2", "--race-steps", "30"]
    run, part = tmp_path / "race", tmp_path / "part"
    train(*args, "--run-dir", str(run))
    record = json.loads((run / "starts.json").read_text())
    def im_at_30(folder) -> float:
        return [r["im"] for r in checkpoints.read_metrics(folder / "metrics.jsonl") if r["step"] == 30 and "im" in r][0]

    winner = record["winner_seed"]
    assert not (run / "starts" / f"seed{winner}" / "last.pt").exists()  # the winner's files moved to the run folder
    ims = {1 - winner: im_at_30(run / "starts" / f"seed{1 - winner}"), winner: im_at_30(run)}
    assert record["im_by_seed"] == {str(k): v for k, v in ims.items()} and ims[winner] == max(ims.values())
    assert load(run / "starts" / f"seed{1 - winner}" / "last.pt")["step"] == 30
    end = load(run / "last.pt")
    assert end["step"] == 50 and (run / "best.pt").is_file() and (run / "metrics.json").is_file()
    plain = tmp_path / "plain"
    train(*args[:-4], "--run-dir", str(plain), "--seed", str(winner))
    assert all(same(end["models"][k], load(plain / "last.pt")["models"][k]) for k in end["models"])
    train(*args, "--run-dir", str(part), "--stop-at", "25")
    assert not (part / "starts.json").exists() and load(part / "starts" / "seed1" / "last.pt")["step"] == 25
    train("--run-dir", str(part), "--resume")  # the race's settings are its own
    assert all(same(end["models"][k], load(part / "last.pt")["models"][k]) for k in end["models"])


def test_export_and_hw3_p4_end_to_end(adapted, demo_root, tmp_path):
    ckdir = tmp_path / "ck"
    run_main(p4_adda.main, "export", "--ckpt", str(adapted / "best.pt"), "--out",
             str(ckdir / "p4_adda_mnistm.pt"), check=True)
    shipped = load(ckdir / "p4_adda_mnistm.pt")
    assert set(shipped["models"]) == {"target_encoder", "classifier"}
    assert all(v.dtype != torch.float32 for sd in shipped["models"].values() for v in sd.values())
    assert (ckdir / "p4_adda_mnistm.json").is_file()

    src, enc, cls, ck = p4_adda.load_encoders(str(adapted / "best.pt"), "cpu")
    assert not (src.training or enc.training or cls.training) and ck["config"]["kind"] == "p4_adda"

    images = demo_root / "digits" / "mnistm" / "test"
    env = {**os.environ, "HW3_CKPT_DIR": str(ckdir), "OMP_NUM_THREADS": str(THREADS)}
    r = subprocess.run(["bash", str(ROOT / "hw3_p4.sh"), str(images), "mnistm", "out/pred.csv"], cwd=tmp_path,
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "pred.csv").open()))
    truth = {r["image_name"]: r["label"] for r in csv.DictReader((images.parent / "test.csv").open())}
    assert [r["image_name"] for r in rows] == sorted(truth)
    acc = sum(r["label"] == truth[r["image_name"]] for r in rows) / len(rows)
    assert acc > 0.3
    r = subprocess.run(["bash", str(ROOT / "hw3_p4.sh"), str(images), "usps", "x.csv"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "p4_adda.py train" in r.stderr
    assert_clean_error(run_cli("hw3_p4.sh", str(images), "cifar", "x.csv", cwd=tmp_path), "cifar")


def test_bad_inputs(demo_root, adapted, tmp_path):
    assert_clean_error(run_main(p4_adda.main, "train", "--data", str(demo_root), "--source", "kmnist", "--target",
                                "mnistm", "--run-dir", str(tmp_path / "r")), "kmnist")
    assert_clean_error(run_main(p4_adda.main, "predict", "--ckpt", str(adapted / "best.pt"), "--images",
                                str(tmp_path / "nope"), "--out", str(tmp_path / "p.csv")), "not found")
    p3 = tmp_path / "p3.pt"
    checkpoints.save_checkpoint(p3, {"config": {"kind": "p3_dann"}, "models": {"dann": {}}})
    assert_clean_error(run_main(p4_adda.main, "predict", "--ckpt", str(p3), "--images", str(demo_root), "--out",
                                str(tmp_path / "p.csv")), "p3_dann")
    assert_clean_error(run_main(p4_adda.main, "eval", "--ckpt", str(adapted / "best.pt"), "--data", str(demo_root),
                                "--domain", "nope"), "nope")
    assert_clean_error(run_main(p4_adda.main, "train", "--data", str(tmp_path), "--source", "usps", "--target",
                                "mnistm", "--run-dir", str(tmp_path / "r")), "usps")
    for bad in ("1.5", "-0.1", "some"):
        assert_clean_error(run_main(p4_adda.main, "train", "--data", str(demo_root), "--source", "usps", "--target",
                                    "mnistm", "--run-dir", str(tmp_path / "r"), "--texture-mix", bad), "--texture-mix")
    assert_clean_error(run_main(p4_adda.main, "train", "--data", str(demo_root), "--target", "mnistm", "--run-dir",
                                str(tmp_path / "r")), "--source")
    assert_clean_error(run_main(p4_adda.main, "train", "--source", "usps"), "--target")  # no --run-dir either
    assert not (tmp_path / "r").exists()


def test_teacher_ema_update_by_hand():
    from models import ema_update

    teacher = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    student = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    torch.nn.init.constant_(teacher[0].weight, 1.0)
    torch.nn.init.constant_(student[0].weight, 3.0)
    student[1].running_mean.fill_(2.0)
    student[1].num_batches_tracked.fill_(7)
    ema_update(teacher, student, decay=0.75)
    assert teacher[0].weight.item() == pytest.approx(0.75 * 1 + 0.25 * 3)
    assert teacher[1].running_mean.item() == pytest.approx(0.25 * 2)   # BN statistics are averaged too
    assert teacher[1].num_batches_tracked.item() == 7                  # integer buffers are copied
    assert student[0].weight.item() == 3.0                             # the student is untouched


def test_gradient_penalty_of_a_linear_critic():
    """For a linear critic the gradient of (logit_1 - logit_0) is W[1] - W[0] everywhere: the penalty is its norm^2."""
    from models import gradient_penalty

    critic = torch.nn.Linear(4, 2)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, 0, 2, 0], [0, 3, 0, 1]]))
    fs, ft = torch.randn(8, 4), torch.randn(8, 4)
    gp = gradient_penalty(critic, fs, ft, torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx((torch.tensor([-1.0, 3, -2, 1]) ** 2).sum().item())
    gp.backward()  # differentiable: it trains the critic
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def stage3_method(tmp_path, *flags: str, seed: int | None = None) -> adda.ADDAMethod:
    """An ADDA method (CPU) whose next step is its first of stage 3 (1 pretrain step, no adaptation), on 64 random
    target images (also its selection images); `seed` seeds the networks' init."""
    from datasets import DeviceSampler, ImageSet

    args = p4_adda.parse_args(["train", "--source", "usps", "--target", "mnistm", "--pretrain-steps", "1",
                               "--adapt-steps", "0", *flags])
    args.texture_mix = 0.0  # train() resolves "auto" from the data; these steps draw no texture
    dist = distributed.Dist(0, 1, torch.device("cpu"))
    if seed is not None:
        torch.manual_seed(seed)
    nets, opts = adda.build(vars(args), dist)
    images = torch.randint(0, 256, (64, 3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    names, rng = [f"{i}.png" for i in range(64)], torch.Generator().manual_seed(1)
    src = DeviceSampler(ImageSet(images, names, torch.arange(64) % 10), dist.device, rng)  # the same, labelled
    tgt = DeviceSampler(ImageSet(images, names), dist.device, rng)
    method = adda.ADDAMethod(args, nets, opts, src, tgt, {"select": images}, dist, rng, tmp_path)
    method.set_modes(1)
    return method


@pytest.mark.parametrize("student_aug", ["weak", "strong"])
def test_student_view(student_aug, tmp_path, monkeypatch):
    """--student-aug strong: the student of stage 3 sees augment.strong_digits of the batch; weak: the stages' own."""
    calls = []
    monkeypatch.setattr(adda, "strong_digits", lambda x, rng: calls.append(len(x)) or x)
    method = stage3_method(tmp_path, "--student-aug", student_aug, "--batch", "16")
    method.selftrain_step()
    assert calls == ([16] if student_aug == "strong" else [])



def test_distribution_alignment_sets_which_confidence_is_thresholded(tmp_path, monkeypatch):
    """Stage 3 thresholds the teacher's predictions divided by their running mean (here skewed toward class 0): the
    step's mask is the one of the aligned predictions, computed by hand on the same batch, not of the raw ones."""
    import copy

    method = stage3_method(tmp_path, "--batch", "32", seed=0)
    nets, rng, tgt = method.nets, method.rng, method.tgt
    teacher, state = copy.deepcopy(nets["teacher"]), rng.get_state()
    xt, _ = tgt.sample(32)  # the batch the step will label
    rng.set_state(state)
    with torch.no_grad():
        p = nets["classifier"](teacher(xt)).softmax(1)
    method.pbar = torch.tensor([0.5] + [0.5 / 9] * 9)
    pbar = 0.99 * method.pbar + 0.01 * p.mean(0)
    conf = {aligned: (q / q.sum(1, keepdim=True)).max(1).values for aligned, q in ((False, p), (True, p / pbar))}
    threshold = conf[True].median().item()
    monkeypatch.setattr(adda, "THRESHOLD", threshold)
    masks = {a: (c >= threshold).float().mean().item() for a, c in conf.items()}
    assert masks[False] != masks[True]  # a case where the alignment decides
    assert method.selftrain_step()["mask"] == pytest.approx(masks[True])


# ----------------------------------------------------------------------------- the surface: options and defaults

U2M = ["--source", "usps", "--target", "mnistm", *SHORT, "--texture-mix", "0"]  # 20 / 20 / 10 steps, one start


@pytest.fixture(scope="module")
def u2m_run(demo_root, tmp_path_factory):
    """A U2M run, uninterrupted (what the tests below continue a copy of, or compare resumed runs with)."""
    run = tmp_path_factory.mktemp("p4") / "u2m"
    train("--data", str(demo_root), *U2M, "--run-dir", str(run))
    return run


def help_entries(text: str) -> dict[str, str]:
    """Option -> its text in an argparse --help (the metavar and the help, joined over wrapped lines)."""
    entries, key = {}, None
    for line in text.splitlines():
        m = re.match(r"  (--?[\w-]+)(.*)", line)
        if m:
            key = m.group(1)
            entries[key] = m.group(2)
        elif key and line.startswith("    "):
            entries[key] += " " + line.strip()
        else:
            key = None
    return entries


def test_help_shows_every_default():
    """Every option of every sub-command that takes a value and is not required says its default in --help (an
    option whose default is None says what that means); train keeps at most 30 options."""
    top = run_main(p4_adda.main, "--help")
    subs = re.search(r"\{([a-z,]+)\}", top.stdout).group(1).split(",")
    assert set(subs) == {"train", "predict", "export", "eval"}
    for name in subs:
        r = run_main(p4_adda.main, name, "--help")
        assert r.returncode == 0, r.stderr
        usage = r.stdout.split("\n\n")[0]
        entries = help_entries(r.stdout)
        valued = {k: v for k, v in entries.items() if re.match(r" [A-Z{]", v)}  # "--batch BATCH ...", "--x {a,b}"
        optional = {k: v for k, v in valued.items() if f"[{k} " in usage or f"[{k}]" in usage}
        assert optional or name == "export", name
        silent = [k for k, v in optional.items() if "default" not in v]
        assert not silent, f"{name}: {silent} do not show their default"
        if name == "train":
            assert len([k for k in entries if k.startswith("--")]) - 1 <= 30  # --help itself not counted


@pytest.mark.parametrize("record", sorted((ROOT / "checkpoints").glob("p4_*.json")), ids=lambda p: p.stem)
def test_shipped_config_is_what_its_command_trains(record):
    """checkpoints/p4_*.json records the command that trains the shipped model with today's code: its options,
    parsed by p4_adda's parser, give the recorded config, key by key. The texture share 'auto' is decided from the
    data (grey usps or mnist to colour: 0.25, else 0; test_texture_mix_auto_reads_the_domains); a race's seed is its
    winner's; options removed since are at the values today's code trains with."""
    shipped = json.loads(record.read_text())
    words = shlex.split(shipped["command"])
    assert words[:3] == ["python", "p4_adda.py", "train"]
    args = p4_adda.parse_args(words[2:])
    want = {k: v for k, v in checkpoints.run_config(args).items() if k != "given"}
    cfg = {**p4_adda.BEFORE_DEFAULTS, **shipped["config"]}
    if want["texture_mix"] == "auto":
        grey_to_colour = cfg["source"] in ("usps", "mnist") and cfg["target"] in ("mnistm", "svhn")
        want["texture_mix"] = p4_adda.AUTO_TEXTURE_MIX if grey_to_colour else 0.0
    if args.starts > 1:  # the race's winner, one of seeds 3s..3s+2, trained what ships
        race = shipped["race"]
        assert str(race["winner_seed"]) == max(race["im_by_seed"], key=race["im_by_seed"].get) == str(cfg["seed"])
        assert cfg["seed"] in range(args.seed * args.starts, (args.seed + 1) * args.starts)
        # made as plain runs of the starts before --starts existed: the same weights (the race test above)
        cfg |= {"seed": args.seed, "starts": args.starts, "race_steps": race["step"]}
    if args.starts == 1:  # one start: no race, whatever its step (a config from before the race lacks it)
        want.pop("race_steps")
        cfg.pop("race_steps", None)
    for key in sorted(set(cfg) | set(want)):
        if key in ("kind", "run_dir"):
            continue
        if key == "total_steps":
            assert cfg[key] == args.pretrain_steps + args.adapt_steps + args.selftrain_steps
        elif key in p4_adda.REMOVED:
            assert p4_adda.same_value(cfg[key], p4_adda.REMOVED[key]), key
        else:
            assert key in cfg and key in want and p4_adda.same_value(cfg[key], want[key]), \
                f"{key}: recorded {cfg.get(key)!r}, the command gives {want.get(key)!r}"
    assert shipped["export"].startswith(f"python p4_adda.py export --ckpt runs/exp/{cfg['run_dir']}/")


# ----------------------------------------------------------------------------- what a run does, and refuses


def test_the_last_state_of_stage_2_is_scored_before_stage_3_swaps_it(u2m_run, demo_root, tmp_path):
    """Stage 3 restarts from the checkpoint chosen so far; the last state of stage 2 is scored (and may be chosen)
    first: the evaluation of step 40, stage 2's end, equals that of a run whose stage 2 goes on past step 40."""
    train("--data", str(demo_root), *U2M, "--adapt-steps", "30", "--selftrain-steps", "0", "--stop-at", "40",
          "--run-dir", str(tmp_path / "b"))

    def scored(run, step) -> dict:
        return [r for r in checkpoints.read_metrics(run / "metrics.jsonl") if r["step"] == step and "im" in r][0]

    assert scored(u2m_run, 40) == scored(tmp_path / "b", 40)  # u2m_run: stage 2 is steps 20-40


def test_a_race_shorter_than_race_steps_compares_and_names_its_last_step(demo_root, tmp_path):
    """Starts that end before --race-steps (3,000 by default) are compared at their last step, and the record and
    the report say that step. (Stopped inside stage 1 first: a race stops there too, and resumes.)"""
    run = tmp_path / "race"
    r = run_main(p4_adda.main, "train", "--data", str(demo_root), *U2M, "--pretrain-steps", "10", "--adapt-steps",
                 "5", "--selftrain-steps", "5", "--batch", "16", "--eval-every", "5", "--starts", "2",
                 "--run-dir", str(run), "--stop-at", "5")
    assert r.returncode == 0 and not (run / "starts.json").exists(), r.stderr[-2000:]
    r = run_main(p4_adda.main, "train", "--run-dir", str(run), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads((run / "starts.json").read_text())
    assert record["step"] == 20 and load(run / "last.pt")["step"] == 20
    assert "im-score at step 20 " in r.stdout and "step 3000" not in r.stdout, r.stdout


def test_torchrun_is_refused_once(demo_root, tmp_path):
    """P4 trains in one process: under torchrun rank 0 alone says so, in one line; no run folder is made."""
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "p4_adda.py"), "train", "--data", str(demo_root), *U2M, "--run-dir",
                        str(tmp_path / "r")], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0
    assert r.stderr.count("runs in one process") == 1, r.stderr[-3000:]
    assert "error: p4_adda.py runs in one process; start it with python, not torchrun\n" in r.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag, value", [("--batch", "0"), ("--pretrain-steps", "0"), ("--adapt-steps", "-5"),
                                         ("--selftrain-steps", "-5"), ("--lr", "0"), ("--lr-self", "-0.001"),
                                         ("--gp", "-1"), ("--starts", "0"), ("--race-steps", "0"),
                                         ("--eval-every", "0"), ("--log-every", "0"), ("--stop-at", "0"),
                                         ("--seed", "-1")])
def test_numeric_options_are_checked_before_any_folder(demo_root, tmp_path, flag, value):
    run = tmp_path / "r"
    r = run_main(p4_adda.main, "train", "--data", str(demo_root), *U2M, "--run-dir", str(run), flag, value)
    assert_clean_error(r, flag)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not run.exists()


@pytest.mark.parametrize("extra, word", [(["--race-steps", "30"], "--race-steps"),  # one start (U2M: --starts 1)
                                         (["--plain", "--race-steps", "30"], "--race-steps"),
                                         (["--resume", "--overwrite"], "--overwrite")])
def test_contradictory_options_are_refused_in_one_line(demo_root, tmp_path, extra, word):
    run = tmp_path / "r"
    r = run_main(p4_adda.main, "train", "--data", str(demo_root), *U2M, "--run-dir", str(run), *extra)
    assert_clean_error(r, word)
    assert not run.exists()


def test_resume_with_stage_lengths_extends_or_ends_the_run_or_refuses(u2m_run, demo_root, tmp_path):
    """--resume with --pretrain-steps / --adapt-steps / --selftrain-steps: a longer stage 3 extends a finished run
    to the weights of a run that long from the start; a boundary the run has not reached moves; one it has passed,
    an end before its step, another setting, or a --stop-at it has passed: one line, and nothing runs."""
    args = ["--data", str(demo_root), *U2M]
    done, longer, part = tmp_path / "done", tmp_path / "longer", tmp_path / "part"
    shutil.copytree(u2m_run, done)  # ended at step 50
    train("--run-dir", str(done), "--resume", "--selftrain-steps", "20")
    train(*args, "--selftrain-steps", "20", "--run-dir", str(longer))
    end = load(done / "last.pt")
    assert end["step"] == 60 and end["config"]["selftrain_steps"] == 20 and end["config"]["total_steps"] == 60
    assert all(same(end["models"][k], load(longer / "last.pt")["models"][k]) for k in end["models"])
    assert json.loads((done / "metrics.json").read_text())["steps"] == 60

    train(*args, "--run-dir", str(part), "--stop-at", "30")  # mid stage 2 (steps 20-40)
    for flag, value in (("--pretrain-steps", "25"), ("--pretrain-steps", "10"), ("--adapt-steps", "5"),
                        ("--lr", "5e-3"), ("--seed", "3"), ("--student-aug", "weak"), ("--stop-at", "30")):
        assert_clean_error(run_main(p4_adda.main, "train", "--run-dir", str(part), "--resume", flag, value), flag)
    assert load(part / "last.pt")["step"] == 30
    train("--run-dir", str(part), "--resume", "--adapt-steps", "25", "--stop-at", "47")  # stage 2 now ends at 45
    ck = load(part / "last.pt")
    assert ck["step"] == 47 and (ck["config"]["adapt_steps"], ck["config"]["total_steps"]) == (25, 55)
    assert_clean_error(run_main(p4_adda.main, "train", "--run-dir", str(part), "--resume", "--selftrain-steps", "1"),
                       "--selftrain-steps")  # would end at 46, before step 47
    train("--run-dir", str(part), "--resume", "--selftrain-steps", "3")  # ends the run sooner: at step 48
    assert load(part / "last.pt")["step"] == 48 and json.loads((part / "metrics.json").read_text())["steps"] == 48


OLD_PROBES = {"source_test": False, "zoom": False, "width": [32, 64], "critic_hidden": 500, "lr_adapt": 2e-4,
              "self_decay": "none", "pseudo": "teacher", "align": 1.0, "diversity": 0.0, "source_weight": 0.0,
              "teacher_bn": "student", "threshold": 0.9, "ema": 0.99, "select_images": 2000, "val_fraction": 0.1}


def test_runs_of_removed_options_resume_at_their_defaults_and_are_refused_otherwise(u2m_run, demo_root, tmp_path):
    """A run from before the probes left (its config names them): at the values today's code trains with it
    resumes, to the weights of an uninterrupted run; with another value --resume is refused in one line naming the
    commit that has the option; its checkpoints still load and predict (an encoder of other widths too)."""
    part = tmp_path / "part"
    train("--data", str(demo_root), *U2M, "--run-dir", str(part), "--stop-at", "30")
    ck = load(part / "last.pt")
    ck["config"] |= OLD_PROBES
    torch.save(ck, part / "last.pt")
    for key, value in (("pseudo", "agree"), ("align", 2.0), ("width", [48, 96]), ("threshold", 0.95)):
        odd = tmp_path / f"odd_{key}"
        odd.mkdir()
        torch.save({**ck, "config": {**ck["config"], key: value}}, odd / "last.pt")
        assert_clean_error(run_main(p4_adda.main, "train", "--run-dir", str(odd), "--resume"), key, "1a7f9f9")
    train("--run-dir", str(part), "--resume")
    end, whole = load(part / "last.pt"), load(u2m_run / "last.pt")
    assert all(same(end["models"][k], whole["models"][k]) for k in whole["models"])

    old = load(u2m_run / "best.pt")  # a checkpoint of an encoder with other conv widths (--width 8 16, once)
    from models import BNEncoder

    old["config"]["width"] = [8, 16]
    for k in ("source_encoder", "target_encoder"):
        old["models"][k] = BNEncoder(True, (8, 16)).state_dict()
    torch.save(old, tmp_path / "w.pt")
    r = run_main(p4_adda.main, "eval", "--ckpt", str(tmp_path / "w.pt"), "--data", str(demo_root), "--domain",
                 "mnistm")
    assert r.returncode == 0 and "accuracy" in r.stdout, r.stderr


def test_outputs_never_overwrite_what_they_read_or_ship(u2m_run, demo_root, tmp_path, monkeypatch):
    """predict never writes the label CSV beside its images (unless --force); export never writes over the
    checkpoint it reads, nor over shipped weights (checkpoints/) unless --force."""
    from hw3 import cli

    images = tmp_path / "digits" / "test"
    shutil.copytree(demo_root / "digits" / "usps" / "test", images)
    truth = tmp_path / "digits" / "test.csv"
    shutil.copy(demo_root / "digits" / "usps" / "test.csv", truth)
    before = truth.read_bytes()
    predict = ["predict", "--ckpt", str(u2m_run / "best.pt"), "--images", str(images), "--out", str(truth)]
    assert_clean_error(run_main(p4_adda.main, *predict), "test.csv", "--force")
    assert truth.read_bytes() == before
    run_main(p4_adda.main, *predict, "--force", check=True)
    assert truth.read_bytes() != before and truth.read_text().startswith("image_name,label\n")

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(u2m_run / "last.pt", run / "last.pt")
    before = (run / "last.pt").read_bytes()
    assert_clean_error(run_main(p4_adda.main, "export", "--ckpt", str(run / "last.pt"), "--out",
                                str(run / "last.pt")), "last.pt")
    assert (run / "last.pt").read_bytes() == before

    shipped = tmp_path / "checkpoints"  # stands for the repository's checkpoints/
    shipped.mkdir()
    shutil.copy(ROOT / "checkpoints" / "p4_adda_usps.pt", shipped / "p4_adda_usps.pt")
    monkeypatch.setattr(cli, "SHIPPED", shipped)
    before = (shipped / "p4_adda_usps.pt").read_bytes()
    export = ["export", "--ckpt", str(u2m_run / "best.pt"), "--out", str(shipped / "p4_adda_usps.pt")]
    assert_clean_error(run_main(p4_adda.main, *export), "--force")
    assert (shipped / "p4_adda_usps.pt").read_bytes() == before
    run_main(p4_adda.main, *export, "--force", check=True)
    assert (shipped / "p4_adda_usps.pt").read_bytes() != before
