"""What ships beside the code, for the explorer (app.py): the shipped models' numbers read from checkpoints/*.json as
Markdown tables, and the example digits of examples/digits.zip."""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from hw3.cli import ROOT, SHIPPED

TARGETS = ("mnistm", "usps")  # the digit domains with a shipped model


def unpack_examples(zip_path: Path = ROOT / "examples" / "digits.zip") -> Path:
    """examples/digits.zip unpacked into a temporary folder (removed at exit): <target>/images/*.png + labels.csv."""
    folder = Path(tempfile.mkdtemp(prefix="hw3-app-examples-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(folder)
    return folder


def example_digits(folder: Path, per_class: int = 1) -> list[tuple[str, str, int]]:
    """(path, target, label) of the first `per_class` examples of each class, per target."""
    out = []
    for target in TARGETS:
        rows = sorted(line.split(",") for line in (folder / target / "labels.csv").read_text().split()[1:])
        for label in range(10):
            names = [name for name, y in rows if int(y) == label][:per_class]
            out += [(str(folder / target / "images" / name), target, label) for name in names]
    return out


def shipped_fid(record: dict) -> float | None:
    """A shipped GAN's dev FID: the mean over its noise seeds (gan_record's `eval_seeds`), else its one `eval`."""
    return record["eval_seeds"]["fid_mean"] if "eval_seeds" in record else record.get("eval", {}).get("fid")


def results_markdown(ckpt_dir: Path = SHIPPED) -> str:
    """The shipped models' numbers, read from checkpoints/*.json, as two Markdown tables."""
    def read(name: str) -> dict:
        path = ckpt_dir / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def num(x: Any, digits: int = 3) -> str:
        return f"{x:.{digits}f}" if isinstance(x, (int, float)) else "–"

    lines = ["| generator | FID (2,000 generated vs 1,000 dev faces, mean over the JSON's noise seeds) "
             "| real-vs-real floor | truncation | Smiling accuracy | flip rate |", "|---|---|---|---|---|---|"]
    for name, title in (("p1_dcgan", "P1 DCGAN"), ("p2_acgan", "P2 ACGAN")):
        record = read(name)
        ev = record.get("eval", {})
        lines.append(f"| {title} | {num(shipped_fid(record), 1)} | {num(ev.get('fid_floor'), 1)} | "
                     f"{num(ev.get('truncation'), 2)} | {num(ev.get('attr_acc'))} | {num(ev.get('flip_rate'))} |")
    lines += ["", "| classifier | source -> target | target dev-test accuracy | chosen by | step |",
              "|---|---|---|---|---|"]
    for name, title in (("p3_dann", "P3 DANN"), ("p4_adda", "P4 ADDA+")):
        for target in TARGETS:
            m = read(f"{name}_{target}").get("metrics", {})
            if m:
                chosen = m.get("selection") or f"{m.get('select', '?')} score on unlabelled target train images"
                lines.append(f"| {title} | {m.get('source', '?')} -> {m.get('target', target)} | "
                             f"{num(m.get('target_test_acc'))} | {chosen} | {m.get('best_step', m.get('step', '–'))} |")
    return "\n".join(lines)
