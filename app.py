"""An interactive explorer of the shipped models: faces from the P1 DCGAN and the P2 ACGAN, digits through the P3 DANN
and P4 improved ADDA classifiers, the t-SNE figure and the results tables (Gradio; docs/app.md).

  python -m pip install --no-deps -r requirements-app.txt     # after requirements.txt
  python app.py [--port 7860] [--host 127.0.0.1] [--device auto]

Named endpoints (gradio_client): /faces(seed, truncation) -> image, /smile(seed, smiling) -> image,
/digit(image, target) -> the shipped P4 model's class probabilities (a Label). Everything below the UI section runs
without gradio installed: the tests check it against the scripts' own outputs.
"""
from __future__ import annotations

import argparse
import functools
import html
import inspect
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import p1_dcgan
import p2_acgan
import p3_dann
import p4_adda
from datasets import DIGIT_SIZE, decode
from hw3 import cli, distributed, evaluation, gan
from hw3.shipped import TARGETS, example_digits, results_markdown, unpack_examples
from models import Z_DIM, truncate

ROOT = Path(__file__).resolve().parent
SEED_MAX = 2**32 - 1
PAIRS = 10  # noise vectors of one fig2_2; the smile face of a seed is the first
GRID = (32, 8)  # fig1_2: faces, columns
INTERPOLATION_STEPS = 8
MAX_FILE_BYTES = 20 * 2**20  # a digit upload; the server refuses bigger files before they reach the model
MAX_PIXELS = 4096 * 4096  # and bigger images before they are decoded (the models see 28 x 28)
PREVIEW_SCALE = 8  # the 28 x 28 image the classifiers see, shown 224 x 224
CSS = ("#grid img, #strip img {width: 1044px !important; max-width: 100%; height: auto !important}"  # faces x2
       " #face img {width: 256px !important; height: 256px !important} #grid img, #strip img, #face img"
       " {object-fit: contain !important}")  # x4


class BadInput(ValueError):
    """An input the app refuses, with a message for the page."""


# ----------------------------------------------------------------------------- the models, loaded once


class Models:
    """The shipped generators and classifiers on one device, in eval mode, fp32."""

    def __init__(self, device: torch.device, ckpt_dir: Path = ROOT / "checkpoints"):
        self.device, self.ckpt_dir = device, ckpt_dir
        self.dcgan, ck = gan.load_generator(ckpt_dir / "p1_dcgan.pt", p1_dcgan.SPEC, device)
        self.dcgan_psi = float(ck["config"].get("truncation", 1.0))  # what `sample` uses when not told
        acgan, ck = gan.load_generator(ckpt_dir / "p2_acgan.pt", p2_acgan.SPEC, device)
        self.acgan = truncate(acgan, ck, None)  # the export's truncation, as in fig2_2
        self.digits = {(p, t): m.classifier(str(ckpt_dir / f"{name}_{t}.pt"), device)
                       for p, m, name in (("P3", p3_dann, "p3_dann"), ("P4", p4_adda, "p4_adda")) for t in TARGETS}

    def warm_up(self) -> None:
        """One pass through every network, so that the first request does not pay for the kernels' setup."""
        with torch.inference_mode():
            faces(self, 0, self.dcgan_psi), smile(self, 0, 0.5)
            for classify in self.digits.values():
                classify(torch.zeros(1, 3, DIGIT_SIZE, DIGIT_SIZE, device=self.device))


# ----------------------------------------------------------------------------- checks


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed: an integer in [0, SEED_MAX]."""
    try:
        ok = seed is not None and float(seed) == int(seed) and 0 <= int(seed) <= SEED_MAX
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise BadInput(f"{name} must be an integer from 0 to {SEED_MAX}, got {seed!r}")
    return int(seed)


def check_fraction(value: Any, name: str, low_open: bool = False) -> float:
    """A number in [0, 1] ((0, 1] with low_open)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not (0 < x <= 1 if low_open else 0 <= x <= 1):
        raise BadInput(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value!r}")
    return x


def check_target(target: Any) -> str:
    if target not in TARGETS:
        raise BadInput(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return target


# ----------------------------------------------------------------------------- faces


def grid_array(images: torch.Tensor, cols: int) -> np.ndarray:
    """Images in [-1, 1] (N, 3, 64, 64) -> the uint8 (H, W, 3) grid that gan.save_grid writes."""
    from torchvision.utils import make_grid

    return make_grid(gan.to_uint8(images), nrow=cols, padding=2).permute(1, 2, 0).numpy()


def noise(seed: int, n: int) -> torch.Tensor:
    """The n noise vectors (n, 100) that `sample --seed seed` draws for a figure of n faces."""
    return torch.randn(n, Z_DIM, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def faces(models: Models, seed: Any, truncation: Any) -> np.ndarray:
    """The DCGAN's 4 x 8 grid: fig1_2 of `p1_dcgan.py sample --seed SEED --truncation PSI`."""
    seed, psi = check_seed(seed), check_fraction(truncation, "truncation", low_open=True)
    return grid_array(models.dcgan(psi * noise(seed, GRID[0]).to(models.device)), GRID[1])


@torch.inference_mode()
def smile(models: Models, seed: Any, smiling: Any) -> np.ndarray:
    """One ACGAN face (64, 64, 3) with the attribute at `smiling`: 0 and 1 give the first pair of fig2_2 at `seed`."""
    seed, s = check_seed(seed), check_fraction(smiling, "smiling")
    z = noise(seed, PAIRS).to(models.device)  # the whole figure's batch: its first column, computed as fig2_2 does
    return gan.to_uint8(models.acgan(z, torch.full((PAIRS,), s, device=models.device))[0]).permute(1, 2, 0).numpy()


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise vectors (100,) at the fractions t (T,) -> (T, 100)."""
    omega = torch.arccos((a / a.norm()).dot(b / b.norm()).clamp(-1, 1))
    if omega.abs() < 1e-6:
        return torch.lerp(a, b, t[:, None])
    return (torch.sin((1 - t) * omega)[:, None] * a + torch.sin(t * omega)[:, None] * b) / torch.sin(omega)


@torch.inference_mode()
def interpolate(models: Models, seed_a: Any, seed_b: Any, truncation: Any) -> np.ndarray:
    """DCGAN faces along the great circle from seed_a's first grid face to seed_b's, in one row."""
    a, b = check_seed(seed_a, "first seed"), check_seed(seed_b, "second seed")
    psi = check_fraction(truncation, "truncation", low_open=True)
    z = slerp(noise(a, GRID[0])[0], noise(b, GRID[0])[0], torch.linspace(0, 1, INTERPOLATION_STEPS))
    return grid_array(models.dcgan(psi * z.to(models.device)), INTERPOLATION_STEPS)


# ----------------------------------------------------------------------------- digits


def read_digit(image: str | Path | None) -> torch.Tensor:
    """An uploaded file -> uint8 (1, 3, 28, 28), decoded exactly as `predict` does (datasets.decode)."""
    if image is None:
        raise BadInput("no image: upload one or pick an example")
    path = Path(image)
    size = path.stat().st_size
    if size == 0:
        raise BadInput(f"{path.name} is empty")
    if size > MAX_FILE_BYTES:
        raise BadInput(f"{path.name} is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB")
    try:
        with Image.open(path) as im:  # reads the header only
            w, h = im.size
        if w * h > MAX_PIXELS:
            raise BadInput(f"{path.name} is {w} x {h} pixels; the limit is {MAX_PIXELS:,} (digits are 28 x 28)")
        return torch.from_numpy(decode(path, DIGIT_SIZE))[None]
    except BadInput:
        raise
    except Exception:  # PIL raises many types for non-image, truncated and oversized files
        raise BadInput(f"cannot read {path.name} as an image") from None


def probabilities(models: Models, problem: str, target: str, images: torch.Tensor) -> dict[str, float]:
    """Class probabilities {"0": p0, ..., "9": p9} of the shipped P3 / P4 model of `target` (evaluation's path)."""
    logits = evaluation.predict_logits(models.digits[problem, check_target(target)], images, models.device)
    return {str(c): float(p) for c, p in enumerate(logits[0].softmax(0).tolist())}


def digit(models: Models, image: str | Path | None, target: Any) -> dict[str, float] | None:
    """The /digit endpoint: the shipped P4 model's class probabilities for one image file (None for no file: a
    cleared upload)."""
    check_target(target)
    return None if image is None else probabilities(models, "P4", target, read_digit(image))


def digit_details(models: Models, image: str | Path | None, target: Any) -> tuple[np.ndarray | None, dict | None]:
    """What the page shows beside /digit's answer: the image the models see and the P3 model's probabilities."""
    if image is None:
        return None, None
    images = read_digit(image)
    return preview(images), probabilities(models, "P3", target, images)


def preview(images: torch.Tensor) -> np.ndarray:
    """The 28 x 28 image the classifiers see, enlarged without smoothing."""
    return images[0].permute(1, 2, 0).numpy().repeat(PREVIEW_SCALE, 0).repeat(PREVIEW_SCALE, 1)


# ----------------------------------------------------------------------------- the page


def ui(fn: Callable[..., Any], models: Models) -> Callable[..., Any]:
    """fn(models, ...) as an event handler: a refused input becomes a message in the page (gr.Error)."""
    import gradio as gr

    @functools.wraps(fn)
    def handler(*args: Any) -> Any:
        try:
            return fn(models, *args)
        except BadInput as e:  # the message is HTML in the page: file names are escaped
            raise gr.Error(html.escape(str(e), quote=False), title="Bad input", print_exception=False) from None

    sig = inspect.signature(fn)  # what gradio reads: fn's own parameters, less `models`
    handler.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
    return handler


def build(models: Models, examples: Path) -> Any:
    """The Blocks app: a Faces tab and a Digits tab, with the named endpoints /faces, /smile and /digit."""
    import gradio as gr

    private = {"api_visibility": "private"}
    with gr.Blocks(title="hw3 explorer", analytics_enabled=False) as app:
        gr.Markdown("# hw3 explorer\nThe shipped generators and digit classifiers (`checkpoints/`), on "
                    f"{models.device.type.upper()}.")
        with gr.Tab("Faces", id="faces"):
            gr.Markdown("### P1 DCGAN: 32 faces\nSeed S at truncation 0.9 is `p1_dcgan.py sample --seed S` "
                        "(fig1_2 at seed 0).")
            with gr.Row():
                seed = gr.Number(0, label="seed", precision=0, elem_id="grid-seed")
                psi = gr.Slider(0.05, 1, models.dcgan_psi, step=0.05, label="truncation (noise std)",
                                elem_id="truncation")
                go = gr.Button("Generate", variant="primary", elem_id="generate")
            grid = gr.Image(label="DCGAN faces", format="png", interactive=False, elem_id="grid")
            gr.Markdown("### P2 ACGAN: one face, Smiling from 0 to 1\nSmiling 0 and 1 give the first pair (column) of "
                        "`p2_acgan.py sample --seed S` (fig2_2 at seed 0); between them the generator's attribute "
                        "input takes the slider's value.")
            with gr.Row():
                smile_seed = gr.Number(0, label="seed", precision=0, elem_id="smile-seed")
                smiling = gr.Slider(0, 1, 0, step=0.05, label="Smiling", elem_id="smiling")
            face = gr.Image(label="ACGAN face", format="png", interactive=False, height=256, elem_id="face")
            gr.Markdown("### DCGAN: from one seed's first face to another's (spherical interpolation)")
            with gr.Row():
                seed_a = gr.Number(0, label="from seed", precision=0)
                seed_b = gr.Number(1, label="to seed", precision=0)
                go_interp = gr.Button("Interpolate", elem_id="interpolate")
            strip = gr.Image(label="interpolation", format="png", interactive=False, elem_id="strip")
        with gr.Tab("Digits", id="digits"):
            with gr.Row():
                with gr.Column():
                    upload = gr.File(label="digit image (any format and size; the model sees it at 28 x 28)",
                                     type="filepath", elem_id="digit-file")
                    target = gr.Dropdown(list(TARGETS), value=TARGETS[0], label="target domain (which model)",
                                         elem_id="target")
                    picks = example_digits(examples)
                    gallery = gr.Gallery([(p, f"{t} {y}") for p, t, y in picks], label="examples (examples/digits.zip)"
                                         ": click one", columns=5, height="auto", allow_preview=False,
                                         elem_id="examples")
                with gr.Column():
                    seen = gr.Image(label="what the classifiers see (28 x 28)", format="png", interactive=False,
                                    height=240, elem_id="seen")
                    with gr.Row():  # every class: /digit answers with all ten probabilities
                        p4 = gr.Label(num_top_classes=10, label="P4 improved ADDA", elem_id="p4-label")
                        p3 = gr.Label(num_top_classes=10, label="P3 DANN", elem_id="p3-label")
            with gr.Accordion("Results and the t-SNE figure", open=True):
                gr.Markdown(results_markdown(models.ckpt_dir))
                tsne = ROOT / "docs" / "tsne_u2m.png"
                if tsne.is_file():
                    gr.Image(str(tsne), label="t-SNE of DANN features, usps -> mnistm (docs/tsne_u2m.png)",
                             interactive=False, height=720)

        def pick(evt: gr.SelectData) -> tuple[str, str]:
            return picks[evt.index][:2]  # the example's file and its target: the upload's change predicts it

        pick.__annotations__["evt"] = gr.SelectData  # a class, not the postponed string: gradio fills it in

        go.click(ui(faces, models), [seed, psi], grid, api_name="faces")
        app.load(ui(faces, models), [seed, psi], grid, **private)
        gr.on([smile_seed.change, smiling.change], ui(smile, models), [smile_seed, smiling], face, api_name="smile",
              trigger_mode="always_last")
        app.load(ui(smile, models), [smile_seed, smiling], face, **private)
        go_interp.click(ui(interpolate, models), [seed_a, seed_b, psi], strip, api_name="interpolate")
        app.load(ui(interpolate, models), [seed_a, seed_b, psi], strip, **private)
        gallery.select(pick, None, [upload, target], **private)
        gr.on([upload.change, target.change], ui(digit, models), [upload, target], p4, api_name="digit",
              trigger_mode="always_last").success(ui(digit_details, models), [upload, target], [seen, p3], **private)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads: one request is small, and one thread "
                   "answers it fastest wherever the cores are shared (docs/app.md)")
    p.add_argument("--ckpt-dir", default=os.environ.get("HW3_CKPT_DIR", str(ROOT / "checkpoints")),
                   help="the shipped checkpoints (default: $HW3_CKPT_DIR, else checkpoints/)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stop, like Ctrl-C, removes the unpacked examples
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise cli.UserError("the app needs gradio: python -m pip install --no-deps -r requirements-app.txt") from None
    if args.threads < 1:
        raise cli.UserError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    models = Models(distributed.setup(args.device).device, Path(args.ckpt_dir))
    threading.Thread(target=models.warm_up, daemon=True).start()  # ~3 s on a busy 2-core CPU: not before serving
    examples = unpack_examples()
    app = build(models, examples)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts offline
    app.queue().launch(server_name=args.host, server_port=args.port, theme=theme, css=CSS, show_error=True,
                       allowed_paths=[str(examples)], max_file_size=MAX_FILE_BYTES, prevent_thread_lock=True,
                       quiet=True)
    print(f"hw3 explorer on http://{args.host}:{args.port} ({models.device}; models and page ready "
          f"{time.perf_counter() - start:.1f} s after the imports); Ctrl-C stops it", flush=True)
    app.block_thread()


if __name__ == "__main__":
    cli.cli_main(main)
