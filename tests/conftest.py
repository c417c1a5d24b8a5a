"""Shared fixtures: a small synthetic data set in the course layout, a private decode cache, a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Two threads per test process; one under pytest-xdist (`-n 2`), whose workers already fill the cores.
THREADS = 1 if "PYTEST_XDIST_WORKER" in os.environ else 2
torch.set_num_threads(THREADS)
SHARED_RUNS = {"shipped", "dann_run", "adapted", "u2m_run"}  # module fixtures that train a model for several tests


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`--dist loadgroup`), the tests sharing one trained run go to one worker, which trains it
    once."""
    for item in items:
        for name in SHARED_RUNS.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group(name))


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Keep the decode cache of the tests out of the user's ~/.cache."""
    os.environ["HW3_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """Demo data for every domain (300 train / 100 test digits each) and 96 / 32 faces."""
    from hw3.synthetic import write_demo

    return write_demo(tmp_path_factory.mktemp("demo"), n_digits=(300, 100), n_faces=(96, 32))


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 600,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a script of the project (python file or bash wrapper) in a subprocess, capturing its output."""
    cmd = list(args)
    if cmd[0].endswith(".py"):
        cmd = [sys.executable, str(ROOT / cmd[0]), *cmd[1:]]
    elif cmd[0].endswith(".sh"):
        cmd = ["bash", str(ROOT / cmd[0]), *cmd[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONWARNINGS": "ignore", **(extra_env or {})}
    r = subprocess.run(cmd, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def run_main(main, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Call a script's main(argv) in this process the way cli_main would; stdout/stderr captured. Cheaper than
    run_cli (no Python start, no torch import): for everything that does not test the process itself."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            from hw3.cli import cli_main

            cli_main(lambda _: main(list(args)))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    if check and code != 0:
        raise AssertionError(f"{args} failed ({code}):\n{out.getvalue()}\n{err.getvalue()}")
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def assert_clean_error(r: subprocess.CompletedProcess, *words: str) -> None:
    """A bad input: non-zero exit, no traceback, and a stderr line mentioning each of `words`."""
    assert r.returncode != 0, f"expected failure, got success:\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    err = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert err.startswith("error:"), r.stderr
    for w in words:
        assert w.lower() in err.lower(), f"{w!r} not in {err!r}"
