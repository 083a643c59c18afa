"""Ctrl-C that stops training at a safe point.

Python raises ``KeyboardInterrupt`` at whatever bytecode the main thread is running. During
training that can be inside h5py writing a checkpoint, inside a C++ evaluator, or while
tf.data's threads are mid-sample; a run stopped there has ended in ``double free or
corruption`` (SIGABRT) instead of saving ``interrupted.h5``. While ``deferred_sigint()`` is
active, the first Ctrl-C only sets a flag; ``check()``, called between steps, epochs and
evaluated images, raises ``KeyboardInterrupt`` there. A second Ctrl-C raises at once, as usual.

TensorFlow-free, so the CLIs and ``mrcnn.engine.training`` can both use it.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading

_requested = threading.Event()


def requested():
    """True once Ctrl-C was pressed inside ``deferred_sigint()`` and not yet acted on."""
    return _requested.is_set()


def check():
    """Raise ``KeyboardInterrupt`` if a deferred Ctrl-C is pending (a safe point)."""
    if _requested.is_set():
        _requested.clear()
        raise KeyboardInterrupt


def _handler(signum, frame):
    if _requested.is_set():
        raise KeyboardInterrupt   # the second Ctrl-C: stop now
    _requested.set()
    print("\nCtrl-C: stopping after this step (or this epoch's checkpoint and evaluation); "
          "press again to stop at once.", file=sys.stderr,
          flush=True)


@contextlib.contextmanager
def deferred_sigint():
    """Defer SIGINT to the next ``check()`` while inside. Nests; a no-op outside the main
    thread or when SIGINT is ignored (e.g. a background job started with ``nohup``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, _handler):
        yield
        return
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested.clear()
