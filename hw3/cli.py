"""The bottom of the stack: user errors as one line, one-line warnings, Ctrl-C, and output-path checks."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # the repository: the scripts, checkpoints/
SHIPPED = ROOT / "checkpoints"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
OUTPUT_MARK = ".hw3_output"  # written into every folder of outputs a command fills (samples, t-SNE figures)


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
    """Write atomically (a temporary file, then os.replace); an OS error names `path`, not the temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


# ----------------------------------------------------------------------------- the command line


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and every option's default in its help line (unless the help says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == argparse.SUPPRESS
                or not action.option_strings
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: {shown(default)})".strip()


def shown(default: Any) -> str:
    """A default as --help shows it: a list as its items, anything else through argparse's %(default)s."""
    return " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give `parser` and all its sub-commands the HelpFormatter, and no abbreviated options (so `parse` can tell
    which options were given)."""
    parser.formatter_class = HelpFormatter
    parser.allow_abbrev = False
    for action in parser._actions:
        if action.help is None and action.option_strings and action.default is not None and action.default is not False:
            action.help = "default: " + shown(action.default)  # argparse prints no line for an option without help
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """parse_args, plus `args.given`: the destinations of the options written on the command line (so a script can
    tell an explicit value from a default, and refuse options that contradict each other)."""
    show_defaults(parser)
    args = parser.parse_args(argv)
    tokens = [t.split("=", 1)[0] for t in (sys.argv[1:] if argv is None else argv) if t.startswith("-")]
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            parsers.append(action.choices[getattr(args, action.dest)])
    args.given = frozenset(a.dest for p in parsers for a in p._actions if set(a.option_strings) & set(tokens))
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a run records as the command that trains it
    return args


def command_line(args: argparse.Namespace, script: str) -> str | None:
    """`python SCRIPT ...` with the words that `parse` read, less the run-folder controls (--stop-at N, --overwrite):
    the one command that trains a run from scratch (None when `args` did not come from `parse`)."""
    if not hasattr(args, "argv"):
        return None
    argv = args.argv
    drop = {i for i, w in enumerate(argv) if w in ("--stop-at", "--overwrite") or w.startswith("--stop-at=")}
    drop |= {i + 1 for i in drop if argv[i] == "--stop-at"}
    return shlex.join(["python", script, *(w for i, w in enumerate(argv) if i not in drop)])


def given_options(args: argparse.Namespace) -> frozenset[str]:
    """The options written on the command line (empty when `args` did not come from `parse`)."""
    return getattr(args, "given", frozenset())


def check_range(args: argparse.Namespace, **rules: str) -> None:
    """Numeric options checked up front, one line for the first that fails: rules name an attribute of `args` and
    one of '>0', '>=0', '>=1', '[0,1)', '(0,1]', '[0,1]'. Unset (None) options are skipped."""
    tests = {">0": lambda v: v > 0, ">=0": lambda v: v >= 0, ">=1": lambda v: v >= 1,
             "[0,1)": lambda v: 0 <= v < 1, "(0,1]": lambda v: 0 < v <= 1, "[0,1]": lambda v: 0 <= v <= 1}
    words = {">0": "> 0", ">=0": ">= 0", ">=1": ">= 1", "[0,1)": "in [0, 1)", "(0,1]": "in (0, 1]",
             "[0,1]": "in [0, 1]"}
    for name, rule in rules.items():
        value = getattr(args, name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is not None and not tests[rule](v):
                raise UserError(f"--{name.replace('_', '-')} must be {words[rule]}, got {v}")


def add_domains(parser: argparse.ArgumentParser) -> None:
    """--data, --source and --target of a digits `train` (P3, P4): a resumed run's own when not given."""
    parser.add_argument("--data", help="root of the course layout (default: hw3_data, or the run's own with --resume)")
    for side in ("source", "target"):
        parser.add_argument(f"--{side}",
                            help=f"{side} domain (default: the run's own with --resume; required otherwise)")


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="overwrite what this command otherwise refuses to: shipped checkpoints, a label CSV "
                             "beside its images, a folder of files this project did not write")


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


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == Path(b).resolve()


def _is_shipped(path: Path) -> bool:
    return path.resolve().parent == SHIPPED.resolve()


def _holds_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def check_output_file(path: str | Path, suffixes: tuple[str, ...], reads: tuple[str | Path, ...] = (),
                      force: bool = False) -> Path:
    """An output file path: suffix checked, never a folder, parent created and writable, and the one overwrite
    rule: never a file this call reads, the course layout's label CSV beside its images folder (X.csv beside X/),
    or a shipped checkpoint (checkpoints/), unless `force`. An earlier output of the same kind is overwritten."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"output {path} should end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UserError(f"output {path} is a folder")
    for src in reads:
        if src is not None and Path(src).exists() and _same(path, Path(src)):
            raise UserError(f"output {path} is the file this command reads; write elsewhere")
    if not force and path.exists():
        if path.suffix.lower() == ".csv" and _holds_images(path.with_suffix("")):
            raise UserError(f"{path} is the label CSV of the images in {path.with_suffix('')}/; write elsewhere, "
                            "or pass --force")
        if _is_shipped(path):
            raise UserError(f"{path} is a shipped file; write elsewhere, or pass --force to replace it")
    make_folder(path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write {path}: permission denied")
    try:  # a folder that takes no new file (a read-only mount, /proc): say so now, not after the slow part
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def output_folder(path: str | Path, force: bool = False, what: str = "output folder") -> Path:
    """A folder a command fills with files of its own (samples, figures): created, or reused when it is empty or
    holds an earlier output (its OUTPUT_MARK); a folder of other files is refused unless `force`."""
    path = Path(path)
    if path.is_dir() and not force and not (path / OUTPUT_MARK).is_file() and any(path.iterdir()):
        raise UserError(f"{what} {path} holds files this project did not write; choose an empty or new folder, "
                        "or pass --force")
    make_folder(path, what)
    try:
        (path / OUTPUT_MARK).write_text("written by hw3; a later command may overwrite the files here\n")
    except OSError as e:
        raise UserError(f"cannot write into {what} {path}: {e.strerror}") from None
    return path
