"""The bottom of the stack: user errors as one line, one-line warnings, Ctrl-C, and output-path checks."""
from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


class UserError(Exception):
    """A problem with the user's input: reported as one line on stderr, exit code 2, no traceback."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty), cut at 200 chars."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


class DataWarning(UserWarning):
    """Something in the user's data was skipped (unreadable image, stray file): always shown, one line."""


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def cli_main(main: Callable[[list[str] | None], Any]) -> None:
    """Run `main`: user errors and OS errors become one clean line, warnings one line each, Ctrl-C exit 130."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        warnings.simplefilter("always", DataWarning)
        try:
            sys.exit(main(None) or 0)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(1)
        except OSError as e:  # disk full, permissions, a path under a file...: the OS's words and the path
            where = f": {e.filename}" if e.filename else ""
            print(f"error: {e.strerror or e}{where}", file=sys.stderr)
            sys.exit(1)


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


class GracefulStop:
    """Turns Ctrl-C into a flag that the training loop checks between steps (so it can checkpoint, exit 130)."""

    def __init__(self):
        self.requested = False

    def __enter__(self) -> GracefulStop:
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._old = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def make_folder(path: str | Path, what: str = "output folder") -> Path:
    """Create a folder (and its parents) to write into, or fail with one line naming what is in the way."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise UserError(f"cannot create {what} {path}: {p} exists and is not a folder")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {what} {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"cannot write into {what} {path}: permission denied")
    return path


def check_output_file(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    """An output file path: suffix checked, never a folder, parent created and writable."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"output {path} should end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UserError(f"output {path} is a folder")
    make_folder(path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write {path}: permission denied")
    return path
