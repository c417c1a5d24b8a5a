"""The explorer (app.py). Its faces and digit labels equal the scripts' own outputs and bad input is refused with a
message (no gradio needed); then the server: the three named endpoints through gradio_client, bad input answered
while the server keeps serving, and the page in a real browser (Playwright driving the system's Chromium). Those skip,
saying why, where gradio, playwright or chromium are missing (`python -m pip install --no-deps -r
requirements-app.txt`; Debian: `apt-get install chromium`). HW3_APP_SHOTS=DIR keeps the browser's screenshots there
(docs/app_faces.png, docs/app_digits.png come from `HW3_APP_SHOTS=docs`)."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, THREADS, run_cli, run_main
from PIL import Image

import app
import p1_dcgan
import p2_acgan
import p3_dann
from hw3.shipped import shipped_fid

pytestmark = pytest.mark.xdist_group("app")  # one worker: one server, the scripts' outputs computed once
CKPT = ROOT / "checkpoints"
GRADIO_MISSING = "gradio is not installed (python -m pip install --no-deps -r requirements-app.txt)"


def chromium() -> str | None:
    """The system's Chromium (HW3_CHROMIUM, else chromium on the PATH), if it is there."""
    path = os.environ.get("HW3_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return path if path and os.access(path, os.X_OK) else None


def pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ----------------------------------------------------------------------------- what the scripts write


@pytest.fixture(scope="module")
def models() -> app.Models:
    return app.Models(torch.device("cpu"))


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict[str, np.ndarray]:
    """fig1_2 and fig2_2 at seed 0, as `sample` writes them (PNG: lossless)."""
    out = tmp_path_factory.mktemp("figures")
    run_main(p1_dcgan.main, "sample", "--ckpt", str(CKPT / "p1_dcgan.pt"), "--out", str(out / "f1.png"), check=True)
    run_main(p2_acgan.main, "sample", "--ckpt", str(CKPT / "p2_acgan.pt"), "--out", str(out / "f2.png"), check=True)
    f2 = pixels(out / "f2.png")  # 2 rows x 10 columns of 64 x 64, 2 px apart: the first pair is column 0
    return {"fig1_2": pixels(out / "f1.png"), "off": f2[2:66, 2:66], "on": f2[68:132, 2:66]}


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("examples")
    zipfile.ZipFile(ROOT / "examples" / "digits.zip").extractall(folder)
    return folder


def read_labels(path: Path) -> dict[str, int]:
    with path.open() as f:
        return {r["image_name"]: int(r["label"]) for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def graded_labels(examples, tmp_path_factory) -> dict[str, dict[str, int]]:
    """`bash hw3_p4.sh <examples>/<target>/images <target> out.csv` per target: image name -> label."""
    out = tmp_path_factory.mktemp("graded")
    labels = {}
    for target in app.TARGETS:
        run_cli("hw3_p4.sh", str(examples / target / "images"), target, str(out / f"{target}.csv"), check=True)
        labels[target] = read_labels(out / f"{target}.csv")
    return labels


def test_faces_are_the_graded_figures(models, figures):
    """Seed 0 at the export's truncation is fig1_2; Smiling 0 and 1 are fig2_2's first pair; 0.5 lies between."""
    assert models.dcgan_psi == 0.9
    assert np.array_equal(app.faces(models, 0, models.dcgan_psi), figures["fig1_2"])
    off, on, half = (app.smile(models, 0, s) for s in (0, 1.0, 0.5))
    assert np.array_equal(off, figures["off"]) and np.array_equal(on, figures["on"])
    assert half.shape == (64, 64, 3) and not np.array_equal(half, off) and not np.array_equal(half, on)
    assert not np.array_equal(app.faces(models, 1, 0.9), figures["fig1_2"])
    strip = app.interpolate(models, 0, 1, 0.9)  # 8 faces in a row; its ends are the seeds' first grid faces
    assert strip.shape == (68, 2 + 8 * 66, 3)
    assert np.array_equal(strip[2:66, 2:66], figures["fig1_2"][2:66, 2:66])
    assert np.array_equal(strip[2:66, -66:-2], app.faces(models, 1, 0.9)[2:66, 2:66])


def test_digit_labels_are_the_graded_predictions(models, examples, graded_labels, tmp_path):
    """Every example's P4 label equals hw3_p4.sh's, and its P3 label equals `p3_dann.py predict`'s."""
    for target in app.TARGETS:
        images = examples / target / "images"
        run_main(p3_dann.main, "predict", "--ckpt", str(CKPT / f"p3_dann_{target}.pt"), "--images", str(images),
                 "--out", str(tmp_path / "p3.csv"), check=True)
        p3 = read_labels(tmp_path / "p3.csv")
        for name, label in graded_labels[target].items():
            p = app.digit(models, images / name, target)
            assert len(p) == 10 and abs(sum(p.values()) - 1) < 1e-4
            assert int(max(p, key=p.get)) == label, (target, name)
            _, p3_probs = app.digit_details(models, images / name, target)
            assert int(max(p3_probs, key=p3_probs.get)) == p3[name], (target, name)
        truth = read_labels(examples / target / "labels.csv")
        assert np.mean([graded_labels[target][n] == y for n, y in truth.items()]) >= 0.95  # the README's 0.98


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Uploads the app refuses: name -> (file, words of its message)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "empty.png").write_bytes(b"")
    Image.new("L", (5000, 4000)).save(folder / "huge.png")  # 20 M pixels in a small file
    good = folder / "good.png"
    Image.new("RGB", (28, 28), (200, 10, 10)).save(good)
    (folder / "truncated.png").write_bytes(good.read_bytes()[:40])
    return {"text": (folder / "notes.txt", "cannot read notes.txt as an image"),
            "empty": (folder / "empty.png", "empty.png is empty"),
            "huge": (folder / "huge.png", "5000 x 4000 pixels"),
            "truncated": (folder / "truncated.png", "cannot read truncated.png")}


def test_bad_input_is_refused_with_a_message(models, tmp_path):
    for seed in (-1, 2**32, 1.5, "x", None, float("nan")):
        with pytest.raises(app.BadInput, match="seed must be an integer from 0 to 4294967295"):
            app.faces(models, seed, 0.9)
    for psi in (0, -0.1, 1.01, "a"):
        with pytest.raises(app.BadInput, match=r"truncation must be in \(0, 1\]"):
            app.faces(models, 0, psi)
    with pytest.raises(app.BadInput, match=r"smiling must be in \[0, 1\]"):
        app.smile(models, 0, 1.5)
    with pytest.raises(app.BadInput, match="second seed"):
        app.interpolate(models, 0, -3, 0.9)
    for path, words in bad_files(tmp_path).values():
        with pytest.raises(app.BadInput, match=words):
            app.digit(models, path, "usps")
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.truncate(app.MAX_FILE_BYTES + 1)
    with pytest.raises(app.BadInput, match="the limit is 20 MB"):
        app.digit(models, big, "usps")
    with pytest.raises(app.BadInput, match="unknown target 'svhn'"):
        app.digit(models, tmp_path / "good.png", "svhn")
    assert app.digit(models, None, "usps") is None  # a cleared upload: nothing to show
    assert app.digit(models, tmp_path / "good.png", "mnistm") is not None


def test_examples_and_results_tables(tmp_path):
    folder = app.unpack_examples()
    picks = app.example_digits(folder)
    assert [(t, y) for _, t, y in picks] == [(t, y) for t in app.TARGETS for y in range(10)]
    assert all(Path(p).is_file() and Path(p).parent.parent.parent == folder for p, _, _ in picks)
    assert not str(folder).startswith(str(ROOT))  # never unpacked into the repository
    table = app.results_markdown()
    p1, p2 = (json.loads((CKPT / f"{name}.json").read_text()) for name in ("p1_dcgan", "p2_acgan"))
    gans = [f"{shipped_fid(p1):.1f}", f"{shipped_fid(p2):.1f}", f"{p2['eval']['attr_acc']:.3f}",
            f"{p2['eval']['flip_rate']:.3f}"]
    for number in gans + ["0.630", "0.898", "0.970", "0.993"]:  # the GANs' from their JSONs; P3 / P4's as shipped
        assert number in table


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py --port P --device cpu` in a subprocess, until the page answers; stopped with SIGTERM."""
    if importlib.util.find_spec("gradio") is None:
        pytest.skip(GRADIO_MISSING)
    tmp = tmp_path_factory.mktemp("server")
    url, log = f"http://127.0.0.1:{free_port()}/", tmp / "app.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", url.rsplit(":", 1)[1][:-1],
                                 "--device", "cpu"], cwd=tmp, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"the app exited ({proc.returncode}):\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the app did not answer in 120 s:\n{log.read_text()}"
            try:
                if urllib.request.urlopen(url, timeout=5).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        yield {"url": url, "proc": proc, "log": log}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_endpoints(server, figures, examples, graded_labels):
    """/faces, /smile and /digit through gradio_client: the graded figures' pixels and hw3_p4.sh's labels."""
    from gradio_client import Client, handle_file

    client = Client(server["url"], verbose=False)
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in api["/digit"]["parameters"]] == ["image", "target"]
    assert np.array_equal(pixels(client.predict(seed=0, truncation=0.9, api_name="/faces")), figures["fig1_2"])
    assert np.array_equal(pixels(client.predict(seed=0, smiling=0.0, api_name="/smile")), figures["off"])
    assert np.array_equal(pixels(client.predict(seed=0, smiling=1.0, api_name="/smile")), figures["on"])
    for target in app.TARGETS:
        name = sorted(graded_labels[target])[7]
        out = client.predict(image=handle_file(examples / target / "images" / name), target=target,
                             api_name="/digit")
        assert int(out["label"]) == graded_labels[target][name]
        assert len(out["confidences"]) == 10 and out["confidences"][0]["label"] == out["label"]


def test_bad_requests_leave_the_server_serving(server, examples, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server["url"], verbose=False)
    calls = [({"seed": -1, "truncation": 0.9, "api_name": "/faces"}, "seed must be an integer"),
             ({"seed": 2**32, "truncation": 0.9, "api_name": "/faces"}, "seed must be an integer"),
             ({"seed": 0, "truncation": 0.0, "api_name": "/faces"}, "minimum"),
             ({"seed": 0, "smiling": 1.5, "api_name": "/smile"}, "maximum"),
             ({"image": handle_file(examples / "usps" / "labels.csv"), "target": "svhn", "api_name": "/digit"},
              "svhn")]
    calls += [({"image": handle_file(path), "target": "usps", "api_name": "/digit"}, words)
              for path, words in bad_files(tmp_path).values()]
    for kwargs, words in calls:
        with pytest.raises(AppError, match=words):
            client.predict(**kwargs)
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.truncate(app.MAX_FILE_BYTES + 1)
    with pytest.raises(Exception):  # noqa: B017 (refused at upload, before the app: the client's own error type)
        client.predict(image=handle_file(big), target="usps", api_name="/digit")
    assert server["proc"].poll() is None
    assert pixels(client.predict(seed=3, smiling=0.5, api_name="/smile")).shape == (64, 64, 3)


# ----------------------------------------------------------------------------- the page in a browser


@pytest.fixture(scope="module")
def browser_path() -> str:
    """The Chromium that Playwright drives; the browser test skips, saying why, before the server starts."""
    if importlib.util.find_spec("gradio") is None:
        pytest.skip(GRADIO_MISSING)
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (python -m pip install --no-deps -r requirements-app.txt)")
    if chromium() is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; or set HW3_CHROMIUM)")
    return chromium()


def test_page_in_a_browser(browser_path, server, figures, examples, graded_labels, tmp_path):
    """Generate faces, move the smile slider, upload an example digit and read its label, click an example, upload a
    text file (a message, then the page works on); a screenshot of each tab."""
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("HW3_APP_SHOTS") or tmp_path)
    usps = sorted(graded_labels["usps"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(server["url"])
            grid = page.locator("#grid img")
            expect(grid).to_have_attribute("src", re.compile(".+"))  # the grid drawn when the page loads
            first = grid.get_attribute("src")
            page.locator("#grid-seed input").fill("7")
            page.locator("#generate").click()
            expect(grid).not_to_have_attribute("src", first)
            face = page.locator("#face img")
            expect(face).to_be_visible()
            before = face.get_attribute("src")
            page.locator("#smiling input[type=range]").fill("1")
            expect(face).not_to_have_attribute("src", before)
            smiling = page.request.get(face.get_attribute("src")).body()  # what the page shows, byte for byte
            (tmp_path / "face.png").write_bytes(smiling)
            assert np.array_equal(pixels(tmp_path / "face.png"), figures["on"])
            page.screenshot(path=str(shots / "app_faces.png"), full_page=True)

            page.get_by_role("tab", name="Digits").click()
            page.locator("#target input").click()
            page.get_by_role("option", name="usps").click()
            label = page.locator("#p4-label h2")
            page.locator("#digit-file input[type=file]").set_input_files(examples / "usps" / "images" / usps[3])
            expect(label).to_have_text(str(graded_labels["usps"][usps[3]]))
            expect(page.locator("#seen img")).to_be_visible()
            expect(page.locator("#p3-label h2")).to_be_visible()
            page.screenshot(path=str(shots / "app_digits.png"), full_page=True)

            page.locator("#digit-file button[aria-label=Clear]").click()  # the upload box comes back
            page.locator("#digit-file input[type=file]").set_input_files(bad_files(tmp_path / "bad")["text"][0])
            expect(page.get_by_text("cannot read notes.txt as an image")).to_be_visible()
            page.get_by_label("Thumbnail 1 of 20").click()  # mnistm's first example: target and label follow
            expect(page.locator("#target input")).to_have_value("mnistm")
            name = Path(app.example_digits(examples)[0][0]).name
            expect(label).to_have_text(str(graded_labels["mnistm"][name]))
        finally:
            browser.close()
    assert server["proc"].poll() is None
