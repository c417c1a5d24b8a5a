"""P3 DANN end to end on demo digits: learning, prediction, the course wrapper, exact resume, bad input."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, assert_clean_error, run_cli, run_main

import hw3_eval
import p3_dann
import tsne
from hw3 import checkpoints, cli, evaluation
from hw3.evaluation import im_score
from hw3_eval import csv_accuracy
from models import DANN, dann_coeff
from p3_dann import make_optimizers

FAST = ["--batch", "32", "--eval-every", "20", "--log-every", "10"]


@pytest.fixture(scope="module")
def dann_run(demo_root, tmp_path_factory):
    """A short DANN run mnist -> usps on demo digits (60 steps: target 0.88, source validation 0.87)."""
    run = tmp_path_factory.mktemp("p3") / "dann"
    run_main(p3_dann.main, "train", "--data", str(demo_root), "--source", "mnist", "--target", "usps",
             "--mode", "dann", "--steps", "60", "--batch", "64", "--eval-every", "30", "--run-dir", str(run),
             check=True)
    return run


def test_optimizers_own_disjoint_parts():
    net = DANN()
    opt_label, opt_domain = make_optimizers(net, 1e-3)
    own = lambda opt: {id(p) for g in opt.param_groups for p in g["params"]}  # noqa: E731
    label = {id(p) for m in (net.features, net.label_classifier) for p in m.parameters()}
    assert own(opt_label) == label
    assert own(opt_domain) == {id(p) for p in net.domain_classifier.parameters()}


def test_dann_learns_and_records_its_run(dann_run):
    m = json.loads((dann_run / "metrics.json").read_text())
    assert m["target_test_acc"] > 0.6, m  # chance is 0.1
    assert m["source_val_acc"] > 0.8
    rows = checkpoints.read_metrics(dann_run / "metrics.jsonl")
    assert any("dom_acc" in r for r in rows) and any("val_acc" in r for r in rows)
    assert json.loads((dann_run / "config.json").read_text())["kind"] == "p3_dann"
    assert (dann_run / "curves.png").stat().st_size > 0 and (dann_run / "best.pt").is_file()


def test_predict_one_row_per_image_in_name_order(dann_run, demo_root, tmp_path):
    out = tmp_path / "pred.csv"
    images = demo_root / "digits" / "usps" / "test"
    run_main(p3_dann.main, "predict", "--ckpt", str(dann_run / "best.pt"), "--images", str(images),
             "--out", str(out), check=True)
    lines = out.read_text().splitlines()
    assert lines[0] == "image_name,label"
    names = [ln.split(",")[0] for ln in lines[1:]]
    assert names == sorted(p.name for p in images.iterdir())
    acc, n = csv_accuracy(str(out), str(demo_root / "digits" / "usps" / "test.csv"))
    m = json.loads((dann_run / "metrics.json").read_text())
    assert n == 100 and abs(acc - m["target_test_acc"]) < 1e-6  # predict and the run's own evaluation agree


def test_wrapper_end_to_end_from_another_cwd(dann_run, demo_root, tmp_path):
    ckdir = tmp_path / "ck"
    r = run_main(p3_dann.main, "export", "--ckpt", str(dann_run / "best.pt"), "--out",
                 str(ckdir / "p3_dann_usps.pt"), check=True)
    assert (ckdir / "p3_dann_usps.json").is_file(), r.stdout
    shipped = torch.load(ckdir / "p3_dann_usps.pt", weights_only=True)["models"]["dann"]
    assert shipped and not any(k.startswith("domain_classifier.") for k in shipped)  # training-only head left out
    os.environ["HW3_CKPT_DIR"] = str(ckdir)
    try:
        r = run_cli("hw3_p3.sh", str(demo_root / "digits" / "usps" / "test"), "usps", "out dir/p.csv",
                    cwd=tmp_path, check=True)
        acc, _ = csv_accuracy(str(tmp_path / "out dir" / "p.csv"), str(demo_root / "digits" / "usps" / "test.csv"))
        assert acc > 0.6
        assert_clean_error(run_cli("hw3_p3.sh", str(demo_root), "mnistm", "x.csv", cwd=tmp_path), "p3_dann.py train")
        assert_clean_error(run_cli("hw3_p3.sh", str(demo_root), "mnist-m", "x.csv", cwd=tmp_path), "unknown target")
    finally:
        del os.environ["HW3_CKPT_DIR"]


def test_stop_at_the_last_step_finishes_the_run(demo_root, tmp_path):
    """--stop-at at the run's own last step is its end: the run finishes (metrics.json) instead of asking to resume."""
    r = run_main(p3_dann.main, "train", "--data", str(demo_root), "--source", "usps", "--target", "mnistm", "--mode",
                 "dann", "--steps", "10", *FAST, "--run-dir", str(tmp_path / "run"), "--stop-at", "10", check=True)
    assert "stopped at" not in r.stdout and (tmp_path / "run" / "metrics.json").is_file()


def test_exact_resume(demo_root, tmp_path):
    args = ["train", "--data", str(demo_root), "--source", "usps", "--target", "mnistm", "--mode", "dann",
            "--steps", "40", *FAST]
    run_main(p3_dann.main, *args, "--run-dir", str(tmp_path / "full"), check=True)
    run_main(p3_dann.main, *args, "--run-dir", str(tmp_path / "split"), "--stop-at", "15", check=True)
    r = run_main(p3_dann.main, "train", "--data", str(demo_root), "--run-dir", str(tmp_path / "split"), "--resume",
                 check=True)  # the run's own --source, --target and settings
    assert "dann usps->mnistm" in r.stdout
    a, b = (torch.load(tmp_path / x / "last.pt", weights_only=True)["models"]["dann"] for x in ("full", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hw3_eval_hand_case(tmp_path):
    (tmp_path / "gt.csv").write_text("image_name,label\na.png,1\nb.png,2\nc.png,3\nd.png,4\n")
    (tmp_path / "p.csv").write_text("image_name,label\r\nd.png,4\r\nc.png,0\r\nb.png,2\r\na.png,1\r\n")
    r = run_main(hw3_eval.main, str(tmp_path / "p.csv"), str(tmp_path / "gt.csv"))
    assert "0.7500" in r.stdout
    (tmp_path / "short.csv").write_text("image_name,label\na.png,1\n")
    assert_clean_error(run_main(hw3_eval.main, str(tmp_path / "short.csv"), str(tmp_path / "gt.csv")), "no prediction")
    (tmp_path / "cols.csv").write_text("name,label\na.png,1\n")
    assert_clean_error(run_main(hw3_eval.main, str(tmp_path / "cols.csv"), str(tmp_path / "gt.csv")), "lacks column")


def test_bad_inputs(dann_run, demo_root, tmp_path):
    train = ["train", "--data", str(demo_root), "--steps", "2", "--run-dir", str(tmp_path / "r")]
    assert_clean_error(run_main(p3_dann.main, *train, "--source", "mnist", "--target", "mnist-m"), "unknown domain")
    assert_clean_error(run_main(p3_dann.main, *train, "--source", "mnist"), "--target")
    assert_clean_error(run_main(p3_dann.main, "train", "--target", "usps"), "--source")  # no --run-dir either
    assert_clean_error(run_main(p3_dann.main, *train, "--source", "mnist", "--target", "usps", "--mode", "target",
                                "--source-test"), "--source-test is for")  # would train on the scored split
    assert_clean_error(run_main(p3_dann.main, "train", "--data", str(tmp_path / "nowhere"), "--source", "mnist",
                               "--target", "usps", "--run-dir", str(tmp_path / "r")), "no mnist data")
    # an existing run is not clobbered without --overwrite
    assert_clean_error(run_main(p3_dann.main, "train", "--data", str(demo_root), "--source", "mnist",
                               "--target", "usps", "--run-dir", str(dann_run)), "already holds a run")
    assert_clean_error(run_main(p3_dann.main, *train, "--source", "mnist", "--target", "usps", "--resume",
                               "--run-dir", str(tmp_path / "none")), "not found")
    out = str(tmp_path / "p.csv")
    pred = ["predict", "--images", str(demo_root / "digits" / "usps" / "test"), "--out", out]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert_clean_error(run_main(p3_dann.main, *pred, "--ckpt", str(tmp_path / "junk.pt")),
                       "cannot read checkpoint")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes((dann_run / "best.pt").read_bytes()[:2000])
    assert_clean_error(run_main(p3_dann.main, *pred, "--ckpt", str(trunc)), "cannot read")
    other = torch.load(dann_run / "best.pt", weights_only=True)
    other["config"]["kind"] = "p4_adda"
    torch.save(other, tmp_path / "other.pt")
    assert_clean_error(run_main(p3_dann.main, *pred, "--ckpt", str(tmp_path / "other.pt")),
                       "p4_adda")
    bad = torch.load(dann_run / "best.pt", weights_only=True)
    bad["models"]["dann"].pop("features.net.1.weight")
    torch.save(bad, tmp_path / "bad.pt")
    assert_clean_error(run_main(p3_dann.main, *pred, "--ckpt", str(tmp_path / "bad.pt")),
                       "does not match")
    ck = ["--ckpt", str(dann_run / "best.pt")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(run_main(p3_dann.main, "predict", *ck, "--images", str(empty), "--out", str(tmp_path / "p.csv")),
                       "no images")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(demo_root / "digits" / "usps" / "test", corrupt)
    (corrupt / "00003.png").write_bytes(b"\x89PNG\r\n")
    assert_clean_error(run_main(p3_dann.main, "predict", *ck, "--images", str(corrupt),
                               "--out", str(tmp_path / "p.csv")), "cannot decode", "00003.png")
    assert not (tmp_path / "p.csv").exists()
    assert_clean_error(run_main(p3_dann.main, "predict", *ck, "--images", str(corrupt), "--out", str(tmp_path)),
                       ".csv")
    assert_clean_error(run_main(p3_dann.main, "eval", *ck, "--data", str(demo_root), "--domain", "svhn2"),
                       "unknown domain")


def test_tsne_plots(dann_run, demo_root, tmp_path):
    r = run_main(tsne.main, "--ckpt", str(dann_run / "best.pt"), "--data", str(demo_root), "--per-class", "8",
                 "--out-dir", str(tmp_path / "t"))
    assert (tmp_path / "t" / "tsne_class.png").stat().st_size > 0, r.stdout
    assert (tmp_path / "t" / "tsne_domain.png").stat().st_size > 0


def test_two_ranks_with_torchrun_on_cpu(demo_root, tmp_path):
    """DDP over gloo: two processes train one model, rank 0 alone writes the run folder."""
    run = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "p3_dann.py"), "train", "--data", str(demo_root), "--source", "mnist",
                        "--target", "usps", "--steps", "12", "--batch", "32", "--eval-every", "6",
                        "--run-dir", str(run)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert checkpoints.load_checkpoint(run / "last.pt", "p3_dann")["step"] == 12
    assert r.stdout.count("dann mnist->usps: best step") == 1  # one summary line: rank 0 alone reports


def test_tsne_and_eval_bad_inputs(dann_run, demo_root, tmp_path):
    assert_clean_error(run_main(tsne.main, "--ckpt", str(tmp_path / "none.pt"), "--out-dir", str(tmp_path)),
                       "not found")
    other = torch.load(dann_run / "best.pt", weights_only=True)
    other["config"]["kind"] = "p1_dcgan"
    torch.save(other, tmp_path / "gan.pt")
    assert_clean_error(run_main(tsne.main, "--ckpt", str(tmp_path / "gan.pt"), "--out-dir", str(tmp_path)),
                       "p1_dcgan")
    assert_clean_error(run_main(tsne.main, "--ckpt", str(dann_run / "best.pt"), "--data", str(demo_root),
                                "--target", "mnist_m", "--out-dir", str(tmp_path)), "unknown domain")
    assert_clean_error(run_main(hw3_eval.main, str(tmp_path / "none.csv"), str(tmp_path / "gt.csv")), "not found")
    (tmp_path / "gt.csv").write_text("image_name,label\na.png,1\n")
    (tmp_path / "dup.csv").write_text("image_name,label\na.png,1\na.png,2\n")
    assert_clean_error(run_main(hw3_eval.main, str(tmp_path / "dup.csv"), str(tmp_path / "gt.csv")), "twice")
    (tmp_path / "nan.csv").write_text("image_name,label\na.png,x\n")
    assert_clean_error(run_main(hw3_eval.main, str(tmp_path / "nan.csv"), str(tmp_path / "gt.csv")), "non-numeric")


def test_print_accuracy_overall_and_per_class(capsys):
    labels = torch.tensor([0, 0, 1, 1, 1, 9])
    images = torch.zeros(6, 3, 28, 28, dtype=torch.uint8)
    guesses = torch.tensor([0, 1, 1, 1, 0, 4])  # class 0: 1/2, class 1: 2/3, class 9: 0/1
    model = lambda x: torch.nn.functional.one_hot(guesses[: len(x)], 10).float()  # noqa: E731
    evaluation.print_accuracy(model, images, labels, torch.device("cpu"), "mnistm/test")
    assert capsys.readouterr().out.splitlines() == ["accuracy on mnistm/test (6 images): 0.5000",
                                                    "per class: 0 0.500, 1 0.667, 9 0.000"]


def test_reversal_schedule_values():
    assert dann_coeff(0.0) == 0.0
    assert dann_coeff(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.9866
    assert dann_coeff(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)  # 0.99991
    assert dann_coeff(0.1) < dann_coeff(0.2) < dann_coeff(0.5)
    # the run's schedule: p = step / steps, capped at 1
    assert p3_dann.reversal_coeff(0, 400) == 0.0
    assert p3_dann.reversal_coeff(200, 400) == pytest.approx(dann_coeff(0.5))
    assert p3_dann.reversal_coeff(10_000, 400) == pytest.approx(dann_coeff(1.0))


def test_information_maximisation_by_hand():
    eye = torch.eye(10) * 50                      # confident and spread over the 10 classes: log 10
    assert im_score(eye) == pytest.approx(math.log(10), abs=1e-4)
    assert im_score(torch.zeros(10, 10)) == pytest.approx(0.0, abs=1e-6)   # uniform: nothing known
    same = torch.zeros(10, 10)
    same[:, 3] = 50                               # confident but all one class: collapsed
    assert im_score(same) == pytest.approx(0.0, abs=1e-4)
    half = torch.cat([eye[:5], torch.zeros(5, 10)])
    assert 0 < im_score(half) < im_score(eye)


def test_both_domains_get_the_same_augmentation(demo_root, tmp_path, monkeypatch):
    """An augmentation only the source saw would itself tell the domains apart: DANN augments both batches."""
    calls = []

    def recording(x, g, zoom=False):
        calls.append((len(x), zoom))
        return x

    monkeypatch.setattr(p3_dann, "augment_digits", recording)
    p3_dann.main(["train", "--data", str(demo_root), "--source", "mnist", "--target", "usps", "--steps", "3",
                  "--batch", "16", "--eval-every", "3", "--run-dir", str(tmp_path / "r")])
    assert calls == [(16, True)] * 6  # source and target batch, every step, with the same settings


def test_plain_is_the_report_configuration(demo_root, tmp_path):
    p3_dann.main(["train", "--data", str(demo_root), "--source", "mnist", "--target", "usps", "--plain",
                  "--steps", "2", "--batch", "8", "--eval-every", "2", "--run-dir", str(tmp_path / "r")])
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["arch"] == "report" and not cfg["input_norm"] and not cfg["augment"] and cfg["select"] == "val"
    assert not cfg["conditional"] and not cfg["entropy_weighting"] and cfg["target_entropy"] == 0
    net, _ = p3_dann.load_classifier(str(tmp_path / "r" / "best.pt"), torch.device("cpu"))
    assert net.features.out_dim == 768 and net.domain_classifier.net[0].out_features == 100


def test_dann_beats_source_only_on_a_domain_shift(demo_root, tmp_path):
    """Same (default) flags and seed: demo mnist (white strokes on black) -> demo mnistm (strokes cut into colour
    textures). Aligning the features must beat source-only on the target (measured with the defaults at 100 steps:
    0.54 vs 0.44 at seed 0, 0.53 vs 0.19 / 0.49 vs 0.39 at seeds 1 / 2; at 200 steps 0.67 vs 0.50 at seed 0)."""
    acc = {}
    for mode in ("source", "dann"):
        p3_dann.main(["train", "--data", str(demo_root), "--source", "mnist", "--target", "mnistm", "--mode", mode,
                      "--steps", "100", "--batch", "32", "--eval-every", "50", "--run-dir", str(tmp_path / mode)])
        acc[mode] = json.loads((tmp_path / mode / "metrics.json").read_text())["target_test_acc"]
    assert acc["dann"] > acc["source"] + 0.05, acc


def test_domain_loss_entropy_weighting_by_hand():
    dom_logits, dom_true = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(dom_logits, dom_true, reduction="none")
    assert p3_dann.domain_loss(dom_logits, dom_true).item() == pytest.approx(ce.mean().item())
    probs = torch.stack([torch.eye(10)[3], torch.full((10,), 0.1)])  # confident: w = 2; uniform: w = 1 + 1/10
    w = torch.tensor([2.0, 1.1]) / 1.55
    assert p3_dann.domain_loss(dom_logits, dom_true, probs).item() == pytest.approx((w * ce).mean().item(), rel=1e-5)


def test_conditional_domain_head_sees_features_times_probabilities():
    """CDAN: the domain head's input is the outer product (B, 10 * 500); its gradient reaches the features
    (reversed) but not the label classifier, whose probabilities enter detached."""
    torch.manual_seed(0)
    net = DANN(True, "bn", 64, 2, conditional=True).train()
    assert net.domain_classifier.net[0][0].in_features == 10 * 500
    x = torch.rand(8, 3, 28, 28)
    _, dom = net(x, 4)
    dom.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in net.label_classifier.parameters())
    assert any(p.grad is not None and p.grad.any() for p in net.features.parameters())


# ----------------------------------------------------------------------------- the command line (issues 37, 38)

SHORT = ["--batch", "8", "--eval-every", "2", "--log-every", "1", "--select-images", "16"]
REMOVED_OPTIONS = ("--arch", "--no-input-norm", "--no-augment", "--no-zoom", "--no-domain-bn", "--domain-hidden",
                   "--domain-layers", "--domain-weight", "--grl-ramp", "--grl-delay", "--select ")


def test_train_has_at_most_30_options_and_none_removed():
    """Every option earns its place (issue 37): at most 30, and the removed ones are gone from --help and README."""
    r = run_main(p3_dann.main, "train", "--help")
    options = set(re.findall(r"^  (--[a-z][\w-]*)", r.stdout, re.M))
    assert 20 <= len(options) <= 30, sorted(options)
    readme = (ROOT / "README.md").read_text()
    p3_part = readme[readme.index("### P3 DANN"):readme.index("### P4")]
    for name in REMOVED_OPTIONS:
        assert name.strip() not in options and name not in p3_part, name


def takes_a_value(action: argparse.Action) -> bool:
    return bool(action.option_strings) and action.nargs != 0 and not action.required


def test_help_shows_every_default():
    """--help says the default of every option that takes a value (issue 37), in every P3 sub-command and tsne.py."""
    top = p3_dann.build_parser()
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subs) == {"train", "predict", "export", "eval"}
    for name, parser in [*subs.items(), ("tsne.py", tsne.build_parser())]:
        assert issubclass(parser.formatter_class, cli.HelpFormatter), name
        fmt = parser._get_formatter()
        for action in filter(takes_a_value, parser._actions):
            assert "default" in fmt._get_help_string(action), (name, action.option_strings)


@pytest.mark.parametrize("shipped", ["p3_dann_usps", "p3_dann_mnistm"])
def test_shipped_config_is_its_one_command(shipped):
    """checkpoints/p3_*.json records the one command that trains it; parsed, it gives the recorded config."""
    record = json.loads((ROOT / "checkpoints" / f"{shipped}.json").read_text())
    cmd = shlex.split(record["command"])
    assert cmd[:3] == ["python", "p3_dann.py", "train"]
    args = p3_dann.parse_args(cmd[2:])
    args.steps = p3_dann.run_length(args, n_labelled=0)
    config = {**vars(args), "total_steps": args.steps}
    recorded = record["config"]
    unused = {"kind", "data", "run_dir", "compile", "log_every", "epochs"}  # paths, speed, logging; epochs: steps won
    for key, value in recorded.items():
        if key in p3_dann.REMOVED:
            assert value == p3_dann.REMOVED[key][0], key  # a removed option at the value today's code trains with
        elif key not in unused:
            assert config[key] == value, (key, config[key], value)
    assert shlex.split(record["export"])[-3:] == ["--out", f"checkpoints/{shipped}.pt", "--force"]
    p3_dann.check_resumable(recorded, ROOT)  # a run of the shipped recipe resumes on today's code


def small_run(demo_root, run, *extra: str, steps: str = "4") -> None:
    run_main(p3_dann.main, "train", "--data", str(demo_root), "--source", "mnist", "--target", "usps", "--steps", steps,
             *SHORT, "--run-dir", str(run), *extra, check=True)


def test_resume_honours_a_new_length(demo_root, tmp_path):
    """--resume --steps N extends a run to N (it used to end at the run's own length); below the step reached, one
    line."""
    run = tmp_path / "run"
    small_run(demo_root, run)
    r = run_main(p3_dann.main, "train", "--run-dir", str(run), "--resume", "--steps", "6", check=True)
    assert checkpoints.load_checkpoint(run / "last.pt", "p3_dann")["step"] == 6, r.stdout
    assert json.loads((run / "config.json").read_text())["total_steps"] == 6
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6
    assert_clean_error(run_main(p3_dann.main, "train", "--run-dir", str(run), "--resume", "--steps", "3"),
                       "step 6", "--steps 3")
    assert checkpoints.load_checkpoint(run / "last.pt", "p3_dann")["step"] == 6


def test_epochs_sets_the_length_and_contradicts_steps(demo_root, tmp_path):
    """--epochs alone is used (it used to lose to the default --steps 3000); with --steps it is refused."""
    r = run_main(p3_dann.main, "train", "--data", str(demo_root), "--source", "mnist", "--target", "usps", "--epochs",
                 "0.5", "--steps", "10", "--stop-at", "1", "--run-dir", str(tmp_path / "both"))
    assert_clean_error(r, "--steps", "--epochs")
    assert not (tmp_path / "both").exists()
    run = tmp_path / "epochs"  # demo mnist: 270 training images after validation; 0.3 epochs of 27 = 3 steps
    run_main(p3_dann.main, "train", "--data", str(demo_root), "--source", "mnist", "--target", "usps", "--epochs",
             "0.3", "--batch", "27", "--eval-every", "3", "--select-images", "16", "--stop-at", "4", "--run-dir",
             str(run), check=True)
    assert json.loads((run / "config.json").read_text())["total_steps"] == 3
    assert checkpoints.load_checkpoint(run / "last.pt", "p3_dann")["step"] == 3


@pytest.mark.parametrize("bad", [("--steps", "-5"), ("--batch", "0"), ("--lr", "0"), ("--epochs", "-1"),
                                 ("--eval-every", "0"), ("--val-fraction", "1")])
def test_bad_numbers_are_refused_before_a_run_folder(demo_root, tmp_path, bad):
    """One line, exit 2, no run folder left behind (--steps -5 was a KeyError after writing config.json; --batch 0 a
    ValueError from affine_grid)."""
    run = tmp_path / "run"
    r = run_main(p3_dann.main, "train", "--data", str(demo_root), "--source", "mnist", "--target", "usps", *bad,
                 "--stop-at", "1", "--run-dir", str(run))  # (--stop-at: a run the check misses ends at once)
    assert_clean_error(r, bad[0])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not run.exists()


def test_resume_refuses_a_setting_of_a_removed_option(demo_root, tmp_path):
    """A removed option at the value today's code trains with resumes; at another value, one line naming the commit
    that still has it."""
    run = tmp_path / "run"
    small_run(demo_root, run, steps="2")
    good = torch.load(run / "last.pt", weights_only=True)
    for key, value, commit in [("domain_weight", 0.3, "1a7f9f9"), ("grl_delay", 1000, "1a7f9f9"),
                               ("domain_bn", False, "1a7f9f9"), ("select", "val", "1a7f9f9"),
                               ("class_weights", True, "337204b")]:
        old = {**good, "config": {**good["config"], key: value}}
        torch.save(old, run / "last.pt")
        r = run_main(p3_dann.main, "train", "--run-dir", str(run), "--resume", "--steps", "3")
        assert_clean_error(r, key, commit)
        assert len(r.stderr.strip().splitlines()) == 1
    old = {**good, "config": {**good["config"], "domain_weight": 1.0, "grl_delay": 0, "grl_ramp": 0,
                              "class_weights": False}}  # an old run's record of the defaults
    torch.save(old, run / "last.pt")
    run_main(p3_dann.main, "train", "--run-dir", str(run), "--resume", "--steps", "3", check=True)
    assert checkpoints.load_checkpoint(run / "last.pt", "p3_dann")["step"] == 3


def test_predict_refuses_the_labels_beside_the_images_unless_forced(demo_root, tmp_path):
    """predict --images D/test --out D/test.csv would overwrite the ground truth: refused; --force overwrites."""
    shutil.copytree(demo_root / "digits" / "usps" / "test", tmp_path / "test")
    labels = tmp_path / "test.csv"
    shutil.copy(demo_root / "digits" / "usps" / "test.csv", labels)
    truth = labels.read_bytes()
    pred = ["predict", "--ckpt", str(ROOT / "checkpoints" / "p3_dann_usps.pt"), "--images", str(tmp_path / "test"),
            "--out", str(labels)]
    assert_clean_error(run_main(p3_dann.main, *pred), "label CSV", "--force")
    assert labels.read_bytes() == truth
    run_main(p3_dann.main, *pred, "--force", check=True)
    assert labels.read_bytes() != truth and labels.read_text().startswith("image_name,label\n")


def test_export_refuses_its_input_and_shipped_weights_unless_forced(dann_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(dann_run / "last.pt", run / "last.pt")
    before = (run / "last.pt").read_bytes()
    assert_clean_error(run_main(p3_dann.main, "export", "--ckpt", str(run / "last.pt"), "--out", str(run / "last.pt")),
                       "reads")
    assert (run / "last.pt").read_bytes() == before
    shipped = tmp_path / "checkpoints"  # a stand-in for checkpoints/: its files are shipped weights
    shipped.mkdir()
    monkeypatch.setattr(cli, "SHIPPED", shipped)
    target = shipped / "p3_dann_usps.pt"
    shutil.copy(ROOT / "checkpoints" / "p3_dann_usps.pt", target)
    old = target.read_bytes()
    export = ["export", "--ckpt", str(run / "last.pt"), "--out", str(target)]
    assert_clean_error(run_main(p3_dann.main, *export), "shipped", "--force")
    assert target.read_bytes() == old
    run_main(p3_dann.main, *export, "--force", check=True)
    assert checkpoints.load_checkpoint(target, "p3_dann")["step"] == 60


def test_tsne_refuses_a_folder_of_other_files_unless_forced(tmp_path, demo_root):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    call = ["--ckpt", str(ROOT / "checkpoints" / "p3_dann_usps.pt"), "--data", str(demo_root), "--source", "mnist",
            "--per-class", "4", "--out-dir", str(out)]
    assert_clean_error(run_main(tsne.main, *call), "did not write", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    run_main(tsne.main, *call, "--force", check=True)
    assert (out / "tsne_class.png").is_file() and (out / "notes.txt").read_text() == "mine\n"
    run_main(tsne.main, *call, check=True)  # its own earlier output: written over without --force
    assert_clean_error(run_main(tsne.main, *call[:-1], str(tmp_path / "x"), "--per-class", "0"), "--per-class")


def test_a_single_point_shows_in_the_curves(tmp_path, monkeypatch):
    """A run no longer than --eval-every evaluates once: its im / val_acc series is one point, which a line without
    markers does not draw (curves.png showed nothing there)."""
    import matplotlib.pyplot as plt

    (tmp_path / "metrics.jsonl").write_text('{"step": 10, "loss_cls": 2.0}\n{"step": 20, "loss_cls": 1.5, "im": 0.4}\n')
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at
    checkpoints.plot_curves(tmp_path, {"losses": ["loss_cls"], "selection": ["im"]})
    (line,) = figures[0].axes[1].lines
    assert len(line.get_xdata()) == 1 and line.get_marker() not in (None, "None", "", " ")


def test_figs_folder_is_ignored_by_git():
    """The README's t-SNE example writes figs/: not something to commit by accident."""
    assert "figs/" in (ROOT / ".gitignore").read_text().splitlines()
