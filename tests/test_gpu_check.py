"""The GPU check's short mode: every step of benchmarks/gpu_check.py runs (here with the CPU on both sides)."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_gpu_check_short_mode_runs_every_step(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--short", "--out",
                        str(tmp_path / "check")], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    assert set(results["training"]) == {"p1_dcgan", "p2_acgan", "p3_dann", "p4_adda"}
    assert results["resume_across_devices"] == {"p3_dann": "gpu -> cpu", "p1_dcgan": "cpu -> gpu"}
    # the same device on both sides: the same labels, figures and FID (what a GPU is measured against)
    assert all(v.get("labels_differ", 0) == 0 and v.get("max_pixel_difference", 0) == 0
               for v in results["wrappers"].values())
    assert results["fid"]["difference"] == 0 and "| FID of 8 faces" in r.stdout
