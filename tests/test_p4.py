"""P4 ADDA: optimizer ownership, the frozen source side, the target encoder's start, adaptation gains on demo
digits, exact resume, export + hw3_p4.sh end to end, and clean errors for bad inputs."""
from __future__ import annotations

import csv
import json
import os
import subprocess

import pytest
import torch
from conftest import ROOT, THREADS, assert_clean_error, run_cli, run_main

import p4_adda
from hw3 import adda, checkpoints, distributed, evaluation

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
    assert (a.encoder, a.augment, a.selftrain_steps, a.lr, a.critic_hidden) == ("lenet", False, 0, 2e-4, 500)
    assert a.starts == 1  # one run, no race
    assert isinstance(adda.make_encoder(vars(a)), LeNetEncoder)


def test_adaptation_beats_source_only(adapted):
    m = json.loads((adapted / "metrics.json").read_text())
    assert m["step"] >= 100  # chosen after stage 1, without target labels
    assert m["target_test_acc"] > m["source_only_target_test_acc"] + 0.05, m
    assert (adapted / "curves.png").is_file()
    assert json.loads((adapted / "config.json").read_text())["kind"] == "p4_adda"


@pytest.mark.parametrize("pseudo", ["teacher", "centroid"])
def test_stage2_freezes_source_and_starts_from_it_and_resume_is_exact(demo_root, tmp_path, pseudo):
    args = ["--data", str(demo_root), "--source", "usps", "--target", "mnistm", *SHORT,
            "--texture-mix", "0.5", "--pseudo", pseudo]
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
             "--batch", "8", "--select-images", "16", "--device", "cpu", "--starts", "1", check=True)
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
    assert_clean_error(run_main(p4_adda.main, "train", "--data", str(demo_root), "--source", "usps", "--target",
                                "mnistm", "--run-dir", str(tmp_path / "r"), "--align", "-1"), "--align")
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


@pytest.mark.parametrize("teacher_bn", ["student", "clean"])
def test_teacher_batchnorm_statistics(teacher_bn, tmp_path):
    """--teacher-bn clean: the teacher's BatchNorm statistics come from its own pass over the clean batch it
    labels; student: they are the average of the student's (gathered on augmented views)."""
    import copy

    method = stage3_method(tmp_path, "--teacher-bn", teacher_bn, "--batch", "16")
    args, rng, tgt, teacher = method.args, method.rng, method.tgt, method.nets["teacher"]
    before = copy.deepcopy(teacher)
    state = rng.get_state()
    method.selftrain_step()
    rng.set_state(state)
    xt, _ = tgt.sample(args.batch)  # the clean batch the teacher labelled
    own = before.eval()
    for m in own.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train()
    with torch.no_grad():
        own(xt)  # a pass of the pre-step teacher over it, BatchNorm in train mode
    bn = [k for k, v in teacher.state_dict().items() if "running_mean" in k]
    assert bn
    matches = [torch.allclose(teacher.state_dict()[k], own.state_dict()[k], atol=1e-6) for k in bn]
    assert all(matches) if teacher_bn == "clean" else not any(matches)


@pytest.mark.parametrize("diversity", [0.0, 1.0])
def test_diversity_bonus_spreads_a_collapsed_student(diversity, tmp_path):
    """--diversity: with no confident pseudo-label (threshold above 1) it is the only loss of stage 3, and it moves
    a student that puts every image in one class toward spreading them; without it nothing moves."""
    from datasets import to_unit

    method = stage3_method(tmp_path, "--diversity", str(diversity), "--threshold", "1.01", "--lr-self", "1e-2",
                           "--batch", "32", seed=0)
    nets, images = method.nets, method.data["select"]
    with torch.no_grad():
        nets["classifier"].net[-1].bias[1] += 4.0  # every image goes to class 1

    def spread() -> float:  # entropy of the mean prediction over all 64 images (batch statistics, no update)
        torch.manual_seed(0)  # the same dropout masks each time
        with torch.no_grad():
            x = to_unit(images)
            return evaluation.entropy(nets["classifier"](nets["target_encoder"](x)).softmax(1).mean(0)).item()

    before = spread()
    outs = [method.selftrain_step() for _ in range(5)]
    assert all(o["loss_self"] == 0 and o["mask"] == 0 for o in outs)
    if diversity == 0:
        assert spread() == pytest.approx(before, abs=1e-6)
    else:
        assert spread() > before + 0.2


def test_self_training_learning_rate_schedule(tmp_path):
    """--self-decay cosine: stage 3 starts at --lr-self, is at half of it halfway, ends near 0; none: constant."""
    method = stage3_method(tmp_path, "--self-decay", "cosine", "--lr-self", "1e-3", "--selftrain-steps", "100",
                           "--batch", "8")
    start = method.adapt_end  # the first stage-3 step
    assert method.self_lr(start) == pytest.approx(1e-3)
    assert method.self_lr(start + 50) == pytest.approx(5e-4)
    assert method.self_lr(start + 99) < 1e-6
    method.update(start + 50)
    assert method.opts["selftrain"].param_groups[0]["lr"] == pytest.approx(5e-4)
    flat = stage3_method(tmp_path, "--lr-self", "1e-3", "--batch", "8")
    assert flat.self_lr(flat.adapt_end + 99) == pytest.approx(1e-3)


def test_source_term_moves_the_encoder_but_not_its_batchnorm_statistics(tmp_path):
    """--source-weight: the labelled source batch trains the target encoder in stage 3, but its BatchNorm running
    statistics stay those of the target views (the same as a step without the source term)."""
    steps = {}
    for weight in ("0", "1"):
        method = stage3_method(tmp_path, "--source-weight", weight, "--batch", "16", seed=0)
        out = method.selftrain_step()
        steps[weight] = (out, method.nets["target_encoder"].state_dict())
    (out0, without), (out1, with_src) = steps["0"], steps["1"]
    assert "loss_src" not in out0 and out1["loss_src"] > 0
    stats = [k for k in without if "running_" in k]
    assert stats and all(torch.equal(without[k], with_src[k]) for k in stats)
    weights = [k for k in without if k.endswith("weight")]
    assert not all(torch.equal(without[k], with_src[k]) for k in weights)


def test_source_term_alone_learns_the_source_labels(tmp_path):
    """With no confident pseudo-label (threshold above 1) the source term is stage 3's only loss, and it teaches the
    target encoder the labelled source images (64 random images, 10 labels) well above chance."""
    from datasets import to_unit

    method = stage3_method(tmp_path, "--source-weight", "1", "--threshold", "1.01",
                           "--no-augment", "--lr-self", "3e-3", "--batch", "64", seed=0)
    images, labels = method.src.images, method.src.labels
    nets = method.nets

    def source_accuracy() -> float:
        nets["target_encoder"].eval()
        with torch.no_grad():
            acc = (nets["classifier"](nets["target_encoder"](to_unit(images))).argmax(1) == labels).float().mean()
        nets["target_encoder"].train()
        return acc.item()

    before = source_accuracy()
    outs = [method.selftrain_step() for _ in range(40)]
    assert all(o["mask"] == 0 for o in outs)
    assert outs[-1]["loss_src"] < outs[0]["loss_src"] - 0.5
    assert source_accuracy() > max(before, 0.1) + 0.3


@pytest.mark.parametrize("student_aug", ["weak", "strong"])
def test_student_view(student_aug, tmp_path, monkeypatch):
    """--student-aug strong: the student of stage 3 sees augment.strong_digits of the batch; weak: the stages' own."""
    calls = []
    monkeypatch.setattr(adda, "strong_digits", lambda x, rng, zoom: calls.append(len(x)) or x)
    method = stage3_method(tmp_path, "--student-aug", student_aug, "--batch", "16")
    method.selftrain_step()
    assert calls == ([16] if student_aug == "strong" else [])


def test_cluster_centroids_by_hand():
    """Two groups of identical images: the classes they are predicted as get the groups' own (unit) features as
    centroids; a class no image is nearest to keeps its probability-weighted mean."""
    import torch.nn.functional as F

    from datasets import to_unit

    images = torch.full((30, 3, 2, 2), 128, dtype=torch.uint8)
    images[:20, 0] = 255  # group A
    images[20:, 1] = 255  # group B
    feats = to_unit(images).flatten(1)
    f = F.normalize(feats, dim=1)
    classifier = torch.nn.Linear(12, 10, bias=False)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.weight[2], classifier.weight[7] = 3 * f[0], 3 * f[20]  # A -> class 2, B -> class 7
        probs = classifier(feats).softmax(1)
    c = adda.cluster_centroids(torch.nn.Flatten(), classifier, images, torch.device("cpu"))
    assert c.shape == (10, 12) and torch.allclose(c.norm(dim=1), torch.ones(10))
    assert torch.allclose(c[2], f[0], atol=1e-5) and torch.allclose(c[7], f[20], atol=1e-5)
    assert torch.allclose(c[0], F.normalize(probs[:, 0] @ f, dim=0), atol=1e-5)


def test_centroid_pseudo_labels_every_image(tmp_path):
    """--pseudo centroid: stage 3 clusters the teacher's features of the selection images at its start and every
    CENTROID_EVERY steps after, and trains on every image (mask 1) whatever the threshold."""
    method = stage3_method(tmp_path, "--pseudo", "centroid", "--threshold", "1.01", "--batch", "16")
    out = method.update(1)  # the first stage-3 step
    first = method.centroids
    assert first.shape == (10, 500) and out["mask"] == 1.0 and out["loss_self"] > 0
    method.update(2)
    assert method.centroids is first  # kept between clusterings
    method.update(1 + adda.CENTROID_EVERY)
    assert method.centroids is not first and not torch.equal(method.centroids, first)  # the teacher has moved


def test_agree_keeps_the_teachers_labels_its_centroids_agree_with(tmp_path):
    """--pseudo agree: the mask is the share of the (all confident, threshold 0) teacher labels that the nearest
    centroid repeats, computed here by hand from a copy of the teacher and the same batch."""
    import copy

    import torch.nn.functional as F

    method = stage3_method(tmp_path, "--pseudo", "agree", "--threshold", "0", "--batch", "32", seed=0)
    args, nets, rng, tgt = method.args, method.nets, method.rng, method.tgt
    teacher, state = copy.deepcopy(nets["teacher"]), rng.get_state()
    out = method.update(1)
    rng.set_state(state)
    xt, _ = tgt.sample(args.batch)  # the batch the step labelled
    with torch.no_grad():
        features = teacher(xt)
        p = nets["classifier"](features).softmax(1)
        balanced = (p / (0.99 * 0.1 + 0.01 * p.mean(0))).argmax(1)
        nearest = (F.normalize(features, dim=1) @ method.centroids.T).argmax(1)
    agree = (nearest == balanced).float().mean().item()
    assert 0 < agree < 1  # a case where the filter does something
    assert out["mask"] == pytest.approx(agree)


@pytest.mark.parametrize("align", [0.0, 1.0, 2.0])
def test_align_sets_which_confidence_is_thresholded(align, tmp_path):
    """--align A thresholds the teacher's predictions divided by their running mean (here skewed toward class 0) to
    the power A; the step's mask is checked against each power's, computed by hand on the same batch."""
    import copy

    method = stage3_method(tmp_path, "--align", str(align), "--batch", "32", seed=0)
    args, nets, rng, tgt = method.args, method.nets, method.rng, method.tgt
    teacher, state = copy.deepcopy(nets["teacher"]), rng.get_state()
    xt, _ = tgt.sample(args.batch)  # the batch the step will label
    rng.set_state(state)
    with torch.no_grad():
        p = nets["classifier"](teacher(xt)).softmax(1)
    method.pbar = torch.tensor([0.5] + [0.5 / 9] * 9)
    pbar = 0.99 * method.pbar + 0.01 * p.mean(0)
    aligned = {a: p / pbar ** a for a in (0.0, 1.0, 2.0)}
    conf = {a: (q / q.sum(1, keepdim=True)).max(1).values for a, q in aligned.items()}
    args.threshold = conf[align].median().item()
    masks = {a: (c >= args.threshold).float().mean().item() for a, c in conf.items()}
    assert all(masks[a] != masks[align] for a in masks if a != align)  # a case where the power decides
    assert method.update(1)["mask"] == pytest.approx(masks[align])


def test_encoder_width_is_recorded_and_loads_back(demo_root, tmp_path):
    """--width C1 C2 builds the bn encoder with those channels; eval rebuilds it from the run's config."""
    run = tmp_path / "w"
    run_main(p4_adda.main, "train", "--data", str(demo_root), "--source", "mnist", "--target", "mnistm",
             "--run-dir", str(run), *SHORT, "--width", "8", "16", check=True)
    _, enc, _, ck = p4_adda.load_encoders(str(run / "best.pt"), "cpu")
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert ck["config"]["width"] == [8, 16] and [c.out_channels for c in convs] == [8, 16]
    r = run_main(p4_adda.main, "eval", "--ckpt", str(run / "best.pt"), "--data", str(demo_root), "--domain",
                 "mnistm")
    assert r.returncode == 0 and "accuracy" in r.stdout
    assert_clean_error(run_main(p4_adda.main, "train", "--data", str(demo_root), "--source", "mnist", "--target",
                                "mnistm", "--run-dir", str(tmp_path / "bad"), "--width", "0", "16"), "--width")
