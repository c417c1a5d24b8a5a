"""Speed of the explorer (app.py): start-up (process start to the page answering, and to a first /faces answer: the
models warm up in the background meanwhile), one /faces (32-face grid),
/smile (one face) and /digit request through gradio_client, and the same work called in-process (no HTTP).

  python benchmarks/app_speed.py [--starts 3] [--requests 20] [--device cpu] [--threads 1]

Targets (issue 40): start-up under 15 s, a face under 1 s, a digit under 0.2 s. Needs requirements-app.txt.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(device: str, threads: int) -> tuple[subprocess.Popen, str, float]:
    """Start app.py; (process, url, seconds from the process's start until the page answered)."""
    url = f"http://127.0.0.1:{free_port()}/"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", url.rsplit(":", 1)[1][:-1],
                             "--device", device, "--threads", str(threads)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while time.perf_counter() - t0 < 120:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}")
        try:
            if urllib.request.urlopen(url, timeout=5).status == 200:
                return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("app.py did not answer in 120 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Seconds of n calls of fn, after one untimed call."""
    fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def line(what: str, times: list[float], target: float) -> str:
    med, worst = statistics.median(times), max(times)
    return (f"{what:<40} median {med * 1000:7.1f} ms  max {worst * 1000:7.1f} ms  ({len(times)} calls; "
            f"target < {target * 1000:.0f} ms: {'ok' if med < target else 'MISSED'})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--starts", type=int, default=3, help="start-ups to time")
    p.add_argument("--requests", type=int, default=20, help="timed calls per request kind")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, the app's and the in-process calls'")
    args = p.parse_args()
    from gradio_client import Client, handle_file

    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start")
    starts, firsts = [], []
    for _ in range(args.starts):
        t0 = time.perf_counter()
        proc, url, seconds = start(args.device, args.threads)
        Client(url, verbose=False).predict(seed=0, truncation=0.9, api_name="/faces")
        starts.append(seconds)
        firsts.append(time.perf_counter() - t0)
        stop(proc)
    print(f"{'start-up (process start -> page answers)':<40} " + ", ".join(f"{s:.1f} s" for s in starts)
          + f"  (target < 15 s: {'ok' if max(starts) < 15 else 'MISSED'})")
    print(f"{'process start -> first /faces answered':<40} " + ", ".join(f"{s:.1f} s" for s in firsts))

    proc, url, _ = start(args.device, args.threads)
    try:
        client = Client(url, verbose=False)
        digits = Path(tempfile.mkdtemp())
        zipfile.ZipFile(ROOT / "examples" / "digits.zip").extractall(digits)
        image = sorted((digits / "usps" / "images").glob("*.png"))[0]
        print(line("/faces through gradio_client (32 faces)", timed(
            lambda: client.predict(seed=1, truncation=0.9, api_name="/faces"), args.requests), 1.0))
        print(line("/smile through gradio_client (1 face)", timed(
            lambda: client.predict(seed=1, smiling=0.5, api_name="/smile"), args.requests), 1.0))
        print(line("/digit through gradio_client", timed(
            lambda: client.predict(image=handle_file(image), target="usps", api_name="/digit"), args.requests), 0.2))
    finally:
        stop(proc)

    import torch

    import app
    from hw3 import distributed

    torch.set_num_threads(args.threads)
    models = app.Models(distributed.setup(args.device).device)
    print(f"in-process, torch threads {torch.get_num_threads()}:")
    print(line("  faces() (32 faces)", timed(lambda: app.faces(models, 1, 0.9), args.requests), 1.0))
    print(line("  smile() (1 face)", timed(lambda: app.smile(models, 1, 0.5), args.requests), 1.0))
    print(line("  digit()", timed(lambda: app.digit(models, image, "usps"), args.requests), 0.2))


if __name__ == "__main__":
    main()
