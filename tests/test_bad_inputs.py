"""The bad-input matrix (issue #6): every CLI x every kind of bad input it takes.

Each case either fails cleanly (exit code != 0, a last stderr line "error: ..." naming the problem, no traceback,
nothing of the user's changed) or, where skipping is the sensible behaviour, warns on one line and writes correct
output. Python CLIs run in this process through cli.cli_main (fast); the .sh wrappers run as subprocesses.
Count: `python -m pytest tests/test_bad_inputs.py --collect-only -q | tail -1`.
"""
from __future__ import annotations

import csv
import hashlib
import pickle
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_clean_error, run_cli, run_main
from PIL import Image

import hw3_eval
import p1_dcgan
import p2_acgan
import p3_dann
import p4_adda
import tsne

SHIPPED = {k: ROOT / "checkpoints" / f"{k}.pt" for k in
           ("p1_dcgan", "p2_acgan", "p3_dann_usps", "p4_adda_usps", "p2_Smiling_classifier")}
KIND_OF = {"p1_dcgan": "p1_dcgan", "p2_acgan": "p2_acgan", "p3_dann_usps": "p3_dann", "p4_adda_usps": "p4_adda"}


@dataclass
class Expect:
    """ok: the run succeeds (warn: with a one-line warning); else it fails with a line holding `words`."""

    ok: bool
    words: tuple[str, ...] = ()
    warn: bool = False


def error(*words: str) -> Expect:
    return Expect(False, words)


OK, OK_WARN = Expect(True), Expect(True, warn=True)


def matrix(clis: dict, kinds: dict, wrapper_kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every (cli, kind) pair, except that a .sh wrapper gets only `wrapper_kinds`: it resolves the paths and hands
    them to the Python CLI it wraps, whose own rows cover every kind; a wrapper keeps the kinds its shell code decides
    (missing files, quoting of spaced and non-ASCII paths) and one that passes through Python's message."""
    return [(cli, kind) for cli in clis for kind in kinds if not cli.endswith(".sh") or kind in wrapper_kinds]


def check(r: subprocess.CompletedProcess, expect: Expect) -> None:
    if not expect.ok:
        assert_clean_error(r, *expect.words)
        return
    assert r.returncode == 0, f"expected success:\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    warned = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert bool(warned) == expect.warn, r.stderr


def run_checked(folder: Path, run, expect: Expect) -> subprocess.CompletedProcess:
    """Run a CLI (`run()`) and check it against `expect`; a failing run must leave every file under `folder` as it
    was (no partial output either)."""
    before = snapshot(folder)
    r = run()
    check(r, expect)
    if not expect.ok:
        assert snapshot(folder) == before
    return r


def snapshot(folder: Path) -> dict[str, str]:
    """Hashes of every file under `folder`: what 'nothing of the user's changed' compares."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Case:
    """A scratch folder holding the inputs of one case; user files other than the outputs must survive."""

    tmp: Path
    demo: Path
    outputs: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------- image files of odd kinds


def write_odd_images(folder: Path, like: Path) -> None:
    """Valid images of unusual kinds made from `like`: grey, RGBA, 16-bit grey, odd size, JPEG, upper-case suffix."""
    rgb = Image.open(like).convert("RGB")
    grey = rgb.convert("L")
    rgb.putalpha(255)
    rgb.save(folder / "odd_rgba.png")
    grey.save(folder / "odd_grey.png")
    Image.fromarray(np.asarray(grey).astype(np.uint16) * 257).save(folder / "odd_grey16.png")
    grey.convert("RGB").resize((37, 23)).save(folder / "odd_size.png")
    grey.convert("RGB").save(folder / "odd_jpeg.JPG", quality=95)


def damage(folder: Path, kind: str) -> None:
    """One defect in a folder of PNGs."""
    first = sorted(folder.glob("*.png"))[0]
    if kind == "zero_byte":
        first.write_bytes(b"")
    elif kind == "truncated":
        first.write_bytes(first.read_bytes()[:60])
    elif kind == "fake_png":
        (folder / "notes.png").write_text("this is text, not a PNG\n")
    elif kind == "non_image":
        (folder / "README.txt").write_text("downloaded from the course page\n")
    elif kind == "odd_images":
        write_odd_images(folder, first)
    else:
        raise ValueError(kind)


# ----------------------------------------------------------------------------- 1. image folders (prediction, FID)

FOLDER_KINDS = {
    "missing": error("not found"),
    "file_not_folder": error("got a file"),
    "empty": error("no images"),
    "zero_byte": error("cannot decode"),
    "truncated": error("cannot decode"),
    "fake_png": error("cannot decode", "notes.png"),
    "non_image": OK_WARN,
    "odd_images": OK,
    "non_ascii_spaced": OK,
}


def image_folder(c: Case, kind: str, n: int = 6) -> Path:
    folder = c.tmp / ("tést ïmages 1" if kind == "non_ascii_spaced" else "images")
    if kind == "missing":
        return folder
    if kind == "file_not_folder":
        folder.write_bytes(b"\x89PNG")
        return folder
    folder.mkdir()
    if kind == "empty":
        return folder
    for p in sorted((c.demo / "digits" / "usps" / "test").glob("*.png"))[:n]:
        shutil.copy(p, folder / p.name)
    if kind != "non_ascii_spaced":
        damage(folder, kind)
    return folder


def predict_cli(script: str):
    def run(c: Case, images: Path) -> subprocess.CompletedProcess:
        out = c.tmp / "pred.csv"
        c.outputs.append(out)
        module = p3_dann if script == "p3" else p4_adda
        ckpt = SHIPPED["p3_dann_usps" if script == "p3" else "p4_adda_usps"]
        return run_main(module.main, "predict", "--ckpt", str(ckpt), "--images", str(images), "--out", str(out))
    return run


def wrapper_cli(script: str):
    def run(c: Case, images: Path) -> subprocess.CompletedProcess:
        out = c.tmp / "pred.csv"
        c.outputs.append(out)
        return run_cli(script, str(images), "usps", str(out))
    return run


def fid_cli(module):
    def run(c: Case, images: Path) -> subprocess.CompletedProcess:
        return run_main(module.main, "eval", "--ckpt", str(SHIPPED[module.KIND]), "--real", str(images), "--n", "4",
                        "--data", str(c.demo))
    return run


FOLDER_CLIS = {"p3_dann.py predict": predict_cli("p3"), "p4_adda.py predict": predict_cli("p4"),
               "hw3_p3.sh": wrapper_cli("hw3_p3.sh"), "hw3_p4.sh": wrapper_cli("hw3_p4.sh"),
               "p1_dcgan.py eval --real": fid_cli(p1_dcgan), "p2_acgan.py eval --real": fid_cli(p2_acgan)}


def read_predictions(path: Path) -> dict[str, int]:
    with path.open(newline="") as f:
        return {r["image_name"]: int(r["label"]) for r in csv.DictReader(f)}


@pytest.mark.parametrize("cli,kind", matrix(FOLDER_CLIS, FOLDER_KINDS, ("missing", "non_image", "non_ascii_spaced")))
def test_image_folder(demo_root, tmp_path, cli, kind):
    c = Case(tmp_path, demo_root)
    images = image_folder(c, kind)
    r = run_checked(tmp_path, lambda: FOLDER_CLIS[cli](c, images), FOLDER_KINDS[kind])
    if not FOLDER_KINDS[kind].ok:
        return
    if "predict" in cli or cli.endswith(".sh"):
        pred = read_predictions(c.outputs[0])
        names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in (".png", ".jpg"))
        assert sorted(pred) == names
        if kind == "odd_images":  # the same picture stored as RGBA, or 16-bit grey, gets the same label
            first = sorted(n for n in names if not n.startswith("odd_"))[0]
            assert pred["odd_rgba.png"] == pred[first]
            assert pred["odd_grey16.png"] == pred["odd_grey.png"]
    else:
        assert "fid=" in r.stdout


# ----------------------------------------------------------------------------- 2. digit data roots (train, eval, t-SNE)

def small_digits(c: Case, name: str = "data") -> Path:
    """A copy of two demo domains (usps, mnist) with 40 train and 20 test images each."""
    root = c.tmp / name
    for dom in ("usps", "mnist"):
        for split, n in (("train", 40), ("test", 20)):
            src = c.demo / "digits" / dom
            rows = list(csv.DictReader((src / f"{split}.csv").open()))[:n]
            (root / "digits" / dom / split).mkdir(parents=True)
            for r in rows:
                shutil.copy(src / split / r["image_name"], root / "digits" / dom / split / r["image_name"])
            write_csv(root / "digits" / dom / f"{split}.csv", ["image_name", "label"],
                      [[r["image_name"], r["label"]] for r in rows])
    return root


def write_csv(path: Path, header: list[str], rows: list[list[str]], bom: bool = False, crlf: bool = False) -> None:
    end = "\r\n" if crlf else "\n"
    text = end.join(",".join(map(str, r)) for r in [header, *rows]) + end
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())


def edit_csv(path: Path, kind: str, column: str) -> None:
    """One defect (or an odd but valid form) in a course CSV."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    col = header.index(column)
    if kind == "missing_column":
        header[col] = "something_else"
    elif kind == "extra_column":
        header, body = [*header, "note"], [[*r, "x"] for r in body]
    elif kind == "absent_rows":
        body.append(["ghost.png", *body[0][1:]])
    elif kind == "duplicate_rows":
        body.append(body[0])
    elif kind == "label_out_of_range":
        body[0][col] = "10" if column == "label" else "2"
    elif kind == "label_not_a_number":
        body[0][col] = "seven"
    write_csv(path, header, body, bom=kind == "bom_crlf", crlf=kind == "bom_crlf")


DATA_KINDS = {
    "missing_root": error("usps"),
    "root_is_file": error("usps"),
    "domain_folder_missing": error("no usps data"),
    "csv_missing": error("csv not found"),
    "image_folder_empty": error("missing"),
    "missing_column": error("lacks column"),
    "extra_column": OK,
    "absent_rows": error("missing", "ghost.png"),
    "duplicate_rows": error("twice"),
    "bom_crlf": OK,
    "label_out_of_range": error("out of range"),
    "label_not_a_number": error("non-numeric"),
    "zero_byte": OK_WARN,
    "truncated": OK_WARN,
    "non_image": OK,
    "odd_images": OK,
    "unknown_domain": error("unknown domain", "usps-x"),
    "non_ascii_spaced": OK,
}


def digit_root(c: Case, kind: str, split: str) -> Path:
    """A digits root whose usps `split` has the defect `kind` (the unknown domain is in the command instead)."""
    if kind == "missing_root":
        return c.tmp / "nowhere"
    if kind == "root_is_file":
        (c.tmp / "root.txt").write_text("x")
        return c.tmp / "root.txt"
    root = small_digits(c, "dätä root" if kind == "non_ascii_spaced" else "data")
    usps = root / "digits" / "usps"
    if kind == "domain_folder_missing":
        shutil.rmtree(usps)
    elif kind == "csv_missing":
        (usps / f"{split}.csv").unlink()
    elif kind == "image_folder_empty":
        shutil.rmtree(usps / split)
        (usps / split).mkdir()
    elif kind in ("zero_byte", "truncated", "non_image", "odd_images"):
        damage(usps / split, kind)
        if kind == "odd_images":  # list the new files in the CSV too
            with (usps / f"{split}.csv").open("a") as f:
                f.writelines(f"{p.name},3\n" for p in sorted((usps / split).glob("odd_*")))
    elif kind not in ("unknown_domain", "non_ascii_spaced"):
        edit_csv(usps / f"{split}.csv", kind, "label")
    return root


def source_domain(kind: str) -> str:
    return "usps-x" if kind == "unknown_domain" else "usps"


def p3_train(c: Case, kind: str) -> subprocess.CompletedProcess:
    root = digit_root(c, kind, "train")
    return run_main(p3_dann.main, "train", "--data", str(root), "--source", source_domain(kind), "--target", "mnist",
                    "--steps", "2", "--batch", "8", "--eval-every", "2", "--run-dir", str(c.tmp / "run"))


def p4_train(c: Case, kind: str) -> subprocess.CompletedProcess:
    root = digit_root(c, kind, "train")
    return run_main(p4_adda.main, "train", "--data", str(root), "--source", source_domain(kind), "--target", "mnist",
                    "--pretrain-steps", "1", "--adapt-steps", "1", "--selftrain-steps", "1", "--batch", "8",
                    "--eval-every", "1", "--starts", "1", "--run-dir", str(c.tmp / "run"))


def eval_cli(module, ckpt: str):
    def run(c: Case, kind: str) -> subprocess.CompletedProcess:
        root = digit_root(c, kind, "test")
        return run_main(module.main, "eval", "--ckpt", str(SHIPPED[ckpt]), "--data", str(root),
                        "--domain", source_domain(kind), "--split", "test")
    return run


def tsne_cli(c: Case, kind: str) -> subprocess.CompletedProcess:
    root = digit_root(c, kind, "test")
    c.outputs.append(c.tmp / "tsne")
    return run_main(tsne.main, "--ckpt", str(SHIPPED["p3_dann_usps"]), "--data", str(root), "--source",
                    source_domain(kind), "--target", "mnist", "--per-class", "3", "--out-dir", str(c.tmp / "tsne"))


DATA_CLIS = {"p3_dann.py train": p3_train, "p4_adda.py train": p4_train,
             "p3_dann.py eval": eval_cli(p3_dann, "p3_dann_usps"), "p4_adda.py eval": eval_cli(p4_adda, "p4_adda_usps"),
             "tsne.py": tsne_cli}


@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("cli", DATA_CLIS)
def test_digit_data(demo_root, tmp_path, cli, kind):
    c = Case(tmp_path, demo_root)
    r = DATA_CLIS[cli](c, kind)
    check(r, DATA_KINDS[kind])
    if DATA_KINDS[kind].ok:
        if "train" in cli:
            assert (tmp_path / "run" / "last.pt").is_file()
        elif "eval" in cli:
            assert "accuracy" in r.stdout
        else:
            assert (tmp_path / "tsne" / "tsne_domain.png").stat().st_size > 0


# ----------------------------------------------------------------------------- 3. face data roots (GAN training)

FACE_KINDS = {  # P1 reads only the folder; P2 also train.csv with the attribute column
    "missing_root": (error("not found"), error("not found")),
    "root_is_file": (error("not found"), error("not found")),
    "image_folder_empty": (error("no images"), error("missing")),
    "csv_missing": (OK, error("csv not found")),
    "missing_column": (OK, error("lacks column", "Smiling")),
    "extra_column": (OK, OK),
    "absent_rows": (OK, error("missing", "ghost.png")),
    "duplicate_rows": (OK, error("twice")),
    "bom_crlf": (OK, OK),
    "label_out_of_range": (OK, error("0/1")),
    "label_not_a_number": (OK, error("non-numeric")),
    "zero_byte": (OK_WARN, OK_WARN),
    "truncated": (OK_WARN, OK_WARN),
    "non_image": (OK_WARN, OK),
    "odd_images": (OK, OK),
    "non_ascii_spaced": (OK, OK),
}


def face_root(c: Case, kind: str) -> Path:
    if kind == "missing_root":
        return c.tmp / "nowhere"
    if kind == "root_is_file":
        (c.tmp / "root.txt").write_text("x")
        return c.tmp / "root.txt"
    root = c.tmp / ("fäce data" if kind == "non_ascii_spaced" else "data")
    face = root / "face"
    (face / "train").mkdir(parents=True)
    with (c.demo / "face" / "train.csv").open(newline="") as f:
        rows = list(csv.reader(f))[:17]
    for r in rows[1:]:
        shutil.copy(c.demo / "face" / "train" / r[0], face / "train" / r[0])
    write_csv(face / "train.csv", rows[0], rows[1:])
    if kind == "image_folder_empty":
        shutil.rmtree(face / "train")
        (face / "train").mkdir()
    elif kind == "csv_missing":
        (face / "train.csv").unlink()
    elif kind in ("zero_byte", "truncated", "non_image", "odd_images"):
        damage(face / "train", kind)
        if kind == "odd_images":
            smiling = rows[0].index("Smiling")
            extra = [[p.name] + ["1" if i == smiling else "0" for i in range(1, len(rows[0]))]
                     for p in sorted((face / "train").glob("odd_*"))]
            write_csv(face / "train.csv", rows[0], rows[1:] + extra)
    elif kind != "non_ascii_spaced":
        edit_csv(face / "train.csv", kind, "Smiling")
    return root


@pytest.mark.parametrize("kind", FACE_KINDS)
@pytest.mark.parametrize("problem", ["p1_dcgan.py train", "p2_acgan.py train"])
def test_face_data(demo_root, tmp_path, problem, kind):
    c = Case(tmp_path, demo_root)
    module = p1_dcgan if problem.startswith("p1") else p2_acgan
    r = run_main(module.main, "train", "--data", str(face_root(c, kind)), "--run-dir", str(tmp_path / "run"),
                 "--steps", "1", "--batch", "4", "--sample-every", "1", "--extra-share", "0")  # face/train's faults
    expect = FACE_KINDS[kind][module is p2_acgan]
    check(r, expect)
    assert (tmp_path / "run" / "last.pt").is_file() == expect.ok


# ----------------------------------------------------------------------------- 4. checkpoints

def malicious_pickle(path: Path, marker: Path) -> None:
    """A pickle that would create `marker` if anything unpickled it with weights_only=False."""
    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))
    path.write_bytes(pickle.dumps({"config": {"kind": "p3_dann"}, "models": Evil()}))


def bad_checkpoint(c: Case, kind: str, good: Path, other: Path, name: str = "model.pt") -> Path:
    """A checkpoint file with the defect `kind`; `good` is a valid one for the CLI, `other` another problem's."""
    path = c.tmp / "ckpts" / name
    path.parent.mkdir(exist_ok=True)
    if kind == "missing":
        return path
    if kind == "folder":
        path.mkdir()
    elif kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:3000])
    elif kind == "not_a_checkpoint":
        path.write_bytes(b"<html>404 Not Found</html>\n")
    elif kind == "code_in_pickle":
        malicious_pickle(path, c.tmp / "pwned")
    elif kind == "other_problem":
        shutil.copy(other, path)
    elif kind == "wrong_shapes":
        ck = torch.load(good, weights_only=True)
        first = next(iter(ck["models"]))
        key = next(iter(ck["models"][first]))
        ck["models"][first][key] = torch.zeros(3, 1, 1)
        torch.save(ck, path)
    return path


CKPT_KINDS = {"missing": error("not found"), "folder": error("folder"), "zero_byte": error("cannot read"),
              "truncated": error("cannot read"), "not_a_checkpoint": error("cannot read"),
              "code_in_pickle": error("cannot read"), "other_problem": error("checkpoint"),
              "wrong_shapes": error("does not match")}

OTHER = {"p1_dcgan": "p2_acgan", "p2_acgan": "p1_dcgan", "p3_dann_usps": "p4_adda_usps",
         "p4_adda_usps": "p3_dann_usps", "p2_Smiling_classifier": "p1_dcgan"}


def ckpt_cli(module, shipped: str, *args: str, slot: str = "--ckpt", other: str | None = None):
    """A CLI whose checkpoint argument `slot` gets the bad file (the others get valid ones)."""
    def run(c: Case, kind: str) -> subprocess.CompletedProcess:
        ck = bad_checkpoint(c, kind, SHIPPED[shipped], SHIPPED[other or OTHER[shipped]])
        fill = {"OUT": str(c.tmp / "out"), "DATA": str(c.demo), "IMAGES": str(c.demo / "digits" / "usps" / "test")}
        argv = list(args)
        for key, value in fill.items():
            argv = [x.replace(key, value) for x in argv]
        if slot != "--ckpt":
            argv += ["--ckpt", str(SHIPPED["p2_acgan"])]
        return run_main(module.main, *argv, slot, str(ck))
    return run


def wrapper_ckpt_cli(script: str, shipped: str):
    """hw3_*.sh reads checkpoints/<name>_<target>.pt; HW3_CKPT_DIR points it at a folder with the bad one."""
    def run(c: Case, kind: str) -> subprocess.CompletedProcess:
        name = "p1_dcgan.pt" if script == "hw3_p1p2.sh" else f"{shipped}.pt"
        ck = bad_checkpoint(c, kind, SHIPPED[shipped], SHIPPED[OTHER[shipped]], name)
        if script == "hw3_p1p2.sh":
            shutil.copy(SHIPPED["p2_acgan"], ck.parent / "p2_acgan.pt")
            args = [str(c.tmp / "figs")]
        else:
            args = [str(c.demo / "digits" / "usps" / "test"), "usps", str(c.tmp / "pred.csv")]
        return run_cli(script, *args, extra_env={"HW3_CKPT_DIR": str(ck.parent)})
    return run


def resume_cli(module, train_args: tuple[str, ...], kind_name: str):
    """train --resume on a run folder whose last.pt is bad."""
    def run(c: Case, kind: str) -> subprocess.CompletedProcess:
        run_dir = c.tmp / "run"
        good = c.tmp / "good.pt"
        argv = [a.replace("DATA", str(c.demo)) for a in train_args]
        r = run_main(module.main, "train", *argv, "--run-dir", str(run_dir))
        assert r.returncode == 0, r.stderr
        shutil.move(run_dir / "last.pt", good)
        other = {"p1_dcgan": SHIPPED["p2_acgan"], "p3_dann": SHIPPED["p4_adda_usps"]}[kind_name]
        bad = bad_checkpoint(c, kind, good, other)
        if bad.exists():
            shutil.move(bad, run_dir / "last.pt")
        return run_main(module.main, "train", *argv, "--run-dir", str(run_dir), "--resume")
    return run


CKPT_CLIS = {
    "p1_dcgan.py sample": ckpt_cli(p1_dcgan, "p1_dcgan", "sample", "--out", "OUT.jpg"),
    "p2_acgan.py sample": ckpt_cli(p2_acgan, "p2_acgan", "sample", "--out", "OUT.jpg"),
    "p1_dcgan.py export": ckpt_cli(p1_dcgan, "p1_dcgan", "export", "--out", "OUT.pt"),
    "p1_dcgan.py eval": ckpt_cli(p1_dcgan, "p1_dcgan", "eval", "--data", "DATA", "--n", "4"),
    "p2_acgan.py eval": ckpt_cli(p2_acgan, "p2_acgan", "eval", "--data", "DATA", "--n", "4"),
    "p2_acgan.py eval --classifier": ckpt_cli(p2_acgan, "p2_Smiling_classifier", "eval", "--data", "DATA", "--n",
                                              "4", slot="--classifier"),
    "p3_dann.py predict": ckpt_cli(p3_dann, "p3_dann_usps", "predict", "--images", "IMAGES", "--out", "OUT.csv"),
    "p3_dann.py eval": ckpt_cli(p3_dann, "p3_dann_usps", "eval", "--data", "DATA", "--domain", "usps"),
    "p3_dann.py export": ckpt_cli(p3_dann, "p3_dann_usps", "export", "--out", "OUT.pt"),
    "p4_adda.py predict": ckpt_cli(p4_adda, "p4_adda_usps", "predict", "--images", "IMAGES", "--out", "OUT.csv"),
    "p4_adda.py eval": ckpt_cli(p4_adda, "p4_adda_usps", "eval", "--data", "DATA", "--domain", "usps"),
    "p4_adda.py export": ckpt_cli(p4_adda, "p4_adda_usps", "export", "--out", "OUT.pt"),
    "tsne.py": ckpt_cli(tsne, "p3_dann_usps", "--data", "DATA", "--out-dir", "OUT", other="p1_dcgan"),
    "hw3_p1p2.sh": wrapper_ckpt_cli("hw3_p1p2.sh", "p1_dcgan"),
    "hw3_p3.sh": wrapper_ckpt_cli("hw3_p3.sh", "p3_dann_usps"),
    "hw3_p4.sh": wrapper_ckpt_cli("hw3_p4.sh", "p4_adda_usps"),
    "p1_dcgan.py train --resume": resume_cli(p1_dcgan, ("--data", "DATA", "--steps", "1", "--batch", "4"), "p1_dcgan"),
    "p3_dann.py train --resume": resume_cli(p3_dann, ("--data", "DATA", "--source", "mnist", "--target", "usps",
                                                      "--steps", "1", "--batch", "8", "--eval-every", "1"), "p3_dann"),
}


@pytest.mark.parametrize("cli,kind", matrix(CKPT_CLIS, CKPT_KINDS, ("missing", "folder", "wrong_shapes")))
def test_checkpoint(demo_root, tmp_path, cli, kind):
    c = Case(tmp_path, demo_root)
    r = CKPT_CLIS[cli](c, kind)
    expect = CKPT_KINDS[kind]
    if cli.endswith(".sh") and kind in ("missing", "folder"):  # the shell looks for the file itself
        expect = error("no model" if cli != "hw3_p1p2.sh" else "missing generator")
    if cli.endswith("--classifier") and kind == "missing":  # documented: the judge is trained and saved there
        expect = OK
    check(r, expect)
    assert not (tmp_path / "pwned").exists()  # weights_only=True: the pickle's code never ran
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir()), "an output appeared"
    assert not (tmp_path / "pred.csv").exists() and not (tmp_path / "figs" / "fig1_2.jpg").exists()


# ----------------------------------------------------------------------------- 5. output paths

OUT_KINDS = {
    "parent_is_a_file": error("not a folder"),
    "existing_folder": error("folder"),
    "other_file_type": error("should end in"),
    "existing_same_type": OK,
    "non_ascii_spaced": OK,
}


def out_path(c: Case, kind: str, suffix: str) -> Path:
    """Where the CLI is told to write; user files around it are made here too."""
    if kind == "parent_is_a_file":
        (c.tmp / "notes.txt").write_text("mine\n")
        return c.tmp / "notes.txt" / f"out{suffix}"
    if kind == "existing_folder":
        (c.tmp / f"out{suffix}").mkdir()
        (c.tmp / f"out{suffix}" / "keep.txt").write_text("mine\n")
        return c.tmp / f"out{suffix}"
    if kind == "other_file_type":
        (c.tmp / "photo.tif").write_bytes(b"II*\x00 my photo")
        return c.tmp / "photo.tif"
    if kind == "existing_same_type":
        (c.tmp / f"out{suffix}").write_text("old\n")
        return c.tmp / f"out{suffix}"
    return c.tmp / "rés ults" / f"out{suffix}"


def out_cli(suffix: str, call):
    """(suffix the CLI writes, how to call it with an output path)."""
    return suffix, call


def train_run(module, *args: str):
    """A tiny training run into --run-dir (a folder output)."""
    return lambda c, out: run_main(module.main, "train", "--data", str(c.demo), *args, "--run-dir", str(out))


OUT_CLIS = {
    "p3_dann.py predict": out_cli(".csv", lambda c, out: run_main(
        p3_dann.main, "predict", "--ckpt", str(SHIPPED["p3_dann_usps"]), "--images",
        str(c.demo / "digits" / "usps" / "test"), "--out", str(out))),
    "p4_adda.py predict": out_cli(".csv", lambda c, out: run_main(
        p4_adda.main, "predict", "--ckpt", str(SHIPPED["p4_adda_usps"]), "--images",
        str(c.demo / "digits" / "usps" / "test"), "--out", str(out))),
    "hw3_p3.sh": out_cli(".csv", lambda c, out: run_cli("hw3_p3.sh", str(c.demo / "digits" / "usps" / "test"),
                                                        "usps", str(out))),
    "hw3_p4.sh": out_cli(".csv", lambda c, out: run_cli("hw3_p4.sh", str(c.demo / "digits" / "usps" / "test"),
                                                        "usps", str(out))),
    "p1_dcgan.py sample": out_cli(".jpg", lambda c, out: run_main(
        p1_dcgan.main, "sample", "--ckpt", str(SHIPPED["p1_dcgan"]), "--out", str(out))),
    "p2_acgan.py sample": out_cli(".png", lambda c, out: run_main(
        p2_acgan.main, "sample", "--ckpt", str(SHIPPED["p2_acgan"]), "--out", str(out))),
    "p3_dann.py export": out_cli(".pt", lambda c, out: run_main(
        p3_dann.main, "export", "--ckpt", str(SHIPPED["p3_dann_usps"]), "--out", str(out))),
    "p1_dcgan.py eval --json": out_cli(".json", lambda c, out: run_main(
        p1_dcgan.main, "eval", "--ckpt", str(SHIPPED["p1_dcgan"]), "--data", str(c.demo), "--n", "4", "--json",
        str(out))),
}
DIR_OUT_KINDS = {  # outputs that are folders: a file in the way is the error
    "parent_is_a_file": error("not a folder"),
    "existing_file": error("not a folder"),
    "non_ascii_spaced": OK,
}


def dir_out_path(c: Case, kind: str) -> Path:
    if kind == "parent_is_a_file":
        (c.tmp / "notes.txt").write_text("mine\n")
        return c.tmp / "notes.txt" / "out"
    if kind == "existing_file":
        (c.tmp / "out").write_text("mine\n")
        return c.tmp / "out"
    return c.tmp / "rés ults" / "out dir"


DIR_OUT_CLIS = {
    "p1_dcgan.py sample --n": lambda c, out: run_main(p1_dcgan.main, "sample", "--ckpt", str(SHIPPED["p1_dcgan"]),
                                                      "--n", "3", "--out", str(out)),
    "hw3_p1p2.sh": lambda c, out: run_cli("hw3_p1p2.sh", str(out)),
    "tsne.py --out-dir": lambda c, out: run_main(tsne.main, "--ckpt", str(SHIPPED["p3_dann_usps"]), "--data",
                                                 str(c.demo), "--per-class", "3", "--out-dir", str(out)),
    "p3_dann.py train --run-dir": train_run(p3_dann, "--source", "mnist", "--target", "usps", "--steps", "1",
                                            "--batch", "8", "--eval-every", "1"),
    "p4_adda.py train --run-dir": train_run(p4_adda, "--source", "mnist", "--target", "usps", "--pretrain-steps",
                                            "1", "--adapt-steps", "0", "--selftrain-steps", "0", "--batch", "8",
                                            "--eval-every", "1"),
    "p2_acgan.py train --run-dir": train_run(p2_acgan, "--steps", "1", "--batch", "4"),
}


@pytest.mark.parametrize("cli,kind", matrix(OUT_CLIS, OUT_KINDS, ("parent_is_a_file", "non_ascii_spaced")))
def test_output_file(demo_root, tmp_path, cli, kind):
    c = Case(tmp_path, demo_root)
    suffix, call = OUT_CLIS[cli]
    out = out_path(c, kind, suffix)
    before = snapshot(tmp_path)
    r = call(c, out)
    expect = OUT_KINDS[kind]
    check(r, expect)
    after = snapshot(tmp_path)
    if expect.ok:  # the output was (re)written; every other file is as it was
        assert out.is_file() and out.read_bytes() != b"old\n"
        after.pop(str(out.relative_to(tmp_path)))
        before.pop(str(out.relative_to(tmp_path)), None)
        assert {k: after[k] for k in before} == before
    else:
        assert after == before


@pytest.mark.parametrize("kind", DIR_OUT_KINDS)
@pytest.mark.parametrize("cli", DIR_OUT_CLIS)
def test_output_folder(demo_root, tmp_path, cli, kind):
    c = Case(tmp_path, demo_root)
    out = dir_out_path(c, kind)
    expect = DIR_OUT_KINDS[kind]
    if cli == "hw3_p1p2.sh" and not expect.ok:
        expect = error("out_dir")
    run_checked(tmp_path, lambda: DIR_OUT_CLIS[cli](c, out), expect)
    if expect.ok:
        assert out.is_dir() and any(out.iterdir())


# ----------------------------------------------------------------------------- 6. hw3_eval.py CSVs

EVAL_KINDS = {
    "missing": error("not found"),
    "folder": error("not found"),
    "empty_file": error("lacks column"),
    "binary": error("cannot parse"),
    "missing_column": error("lacks column"),
    "extra_column": OK,
    "duplicate_rows": error("twice"),
    "bom_crlf": OK,
    "label_not_a_number": error("non-numeric"),
    "label_out_of_range": error("out of range"),
    "absent_rows": error("ghost.png"),
}


def eval_csv(c: Case, kind: str) -> Path:
    path = c.tmp / "given.csv"
    if kind == "missing":
        return path
    if kind == "folder":
        path.mkdir()
    elif kind == "empty_file":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    else:
        write_csv(path, ["image_name", "label"], [["a.png", "1"], ["b.png", "2"], ["c.png", "3"]])
        edit_csv(path, kind, "label")
    return path


@pytest.mark.parametrize("kind", EVAL_KINDS)
@pytest.mark.parametrize("slot", ["pred_csv", "gt_csv"])
def test_hw3_eval(tmp_path, slot, kind):
    c = Case(tmp_path, tmp_path)
    given = eval_csv(c, kind)
    good = tmp_path / "good.csv"
    write_csv(good, ["image_name", "label"], [["a.png", "1"], ["b.png", "2"], ["c.png", "0"]])
    args = (given, good) if slot == "pred_csv" else (good, given)
    r = run_main(hw3_eval.main, *map(str, args))
    check(r, EVAL_KINDS[kind])
    if EVAL_KINDS[kind].ok:
        assert "accuracy: 0.6667 (3 images)" in r.stdout


# ----------------------------------------------------------------------------- 7. domain names

DOMAIN_CLIS = {
    "p3_dann.py train --target": lambda c, dom: run_main(p3_dann.main, "train", "--data", str(c.demo), "--source",
                                                         "usps", "--target", dom, "--run-dir", str(c.tmp / "r")),
    "p4_adda.py train --source": lambda c, dom: run_main(p4_adda.main, "train", "--data", str(c.demo), "--source",
                                                         dom, "--target", "usps", "--run-dir", str(c.tmp / "r")),
    "p3_dann.py eval --domain": lambda c, dom: run_main(p3_dann.main, "eval", "--ckpt", str(SHIPPED["p3_dann_usps"]),
                                                        "--data", str(c.demo), "--domain", dom),
    "p4_adda.py eval --domain": lambda c, dom: run_main(p4_adda.main, "eval", "--ckpt", str(SHIPPED["p4_adda_usps"]),
                                                        "--data", str(c.demo), "--domain", dom),
    "tsne.py --target": lambda c, dom: run_main(tsne.main, "--ckpt", str(SHIPPED["p3_dann_usps"]), "--data",
                                                str(c.demo), "--target", dom, "--out-dir", str(c.tmp / "t")),
    "hw3_p3.sh": lambda c, dom: run_cli("hw3_p3.sh", str(c.demo / "digits" / "usps" / "test"), dom,
                                        str(c.tmp / "p.csv")),
    "hw3_p4.sh": lambda c, dom: run_cli("hw3_p4.sh", str(c.demo / "digits" / "usps" / "test"), dom,
                                        str(c.tmp / "p.csv")),
}


@pytest.mark.parametrize("domain", ["mnist-m", "SVHN2", ""])
@pytest.mark.parametrize("cli", DOMAIN_CLIS)
def test_unknown_domain(demo_root, tmp_path, cli, domain):
    r = DOMAIN_CLIS[cli](Case(tmp_path, demo_root), domain)
    assert_clean_error(r, "mnistm")  # the message lists the names that exist
    assert not (tmp_path / "r").exists() and not (tmp_path / "p.csv").exists()
