"""What every command shares: one usage-error type and one exit-status policy.

Exit status: 0 done, 1 failed (network, full disk), 2 bad input (shown as one line, no
traceback), 130 interrupted (Ctrl-C; the message says how to resume). Bad input is a UsageError,
or one of the library's own: ``mrcnn.io.runs.RunError`` (run folders, configs, export targets)
and ``mrcnn.io.weights_io.WeightsError`` (a weights file that does not fit the model).
"""
from __future__ import annotations

import argparse
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

WAYS_OUT = ("use a mirror (--base-url/--images-url, or OPENIMAGES_BASE_URL/OPENIMAGES_IMAGES_URL), "
            "--no-download with data already in --data, or a local weights file (--weights PATH)")


class UsageError(Exception):
    """Bad input from the user: printed as ``error: ...`` without a traceback, exit status 2."""


class Interrupted(Exception):
    """Ctrl-C, already handled: the message says what was kept and how to resume."""


def command(name):
    """How the user runs the ``name`` command: ``python train.py`` from a checkout, else ``mrcnn-train``."""
    script = os.path.basename(sys.argv[0] if sys.argv else "")
    return f"python {name}.py" if script == f"{name}.py" else f"mrcnn-{name}"


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_source_args(parser):
    """The Open Images mirror flags (``--base-url``, ``--images-url``) of the commands that download."""
    parser.add_argument("--base-url", default=None,
                        help="Open Images annotations/masks mirror (or $OPENIMAGES_BASE_URL)")
    parser.add_argument("--images-url", default=None,
                        help="Open Images images mirror (or $OPENIMAGES_IMAGES_URL)")


def usage_errors():
    """The exception types shown as ``error: ...`` with exit status 2."""
    from mrcnn.io.runs import RunError
    from mrcnn.io.weights_io import WeightsError

    return UsageError, RunError, WeightsError


def offline_message(url, reason):
    """The one line shown when a host cannot be reached at all."""
    return f"cannot reach {url} ({reason}). To work offline, {WAYS_OUT}."


def run_main(func, args, resume_hint=""):
    """``func(args)`` under the exit-status policy; ``resume_hint`` is shown after a failure
    that the same command can continue (network, full disk, Ctrl-C)."""
    from .download.net import FetchError, Unreachable
    from .download.fsutil import DiskFullError

    hint = f"\nThen continue with: {resume_hint}" if resume_hint else ""
    try:
        return func(args)
    except usage_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Unreachable as exc:
        print(f"error: {offline_message(exc.url, exc.reason)}", file=sys.stderr)
        return EXIT_FAILED
    except FetchError as exc:
        print(f"error: {exc}{hint if exc.resumable else ''}", file=sys.stderr)
        return EXIT_FAILED
    except DiskFullError as exc:  # the message names the folder, the bytes needed and the fix
        print(f"error: {exc.strerror}{hint}", file=sys.stderr)
        return EXIT_FAILED
    except Interrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"\ninterrupted.{hint.replace('Then continue', ' Continue')}", file=sys.stderr)
        return EXIT_INTERRUPTED
