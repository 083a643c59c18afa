"""Per-sample loading in worker processes, for input pipelines that the GIL holds back.

``InputPipeline(..., workers=N)`` prepares samples (``load_image``/``load_mask``, resize,
augmentation, mini-masks, RPN targets) in N forked processes instead of the threads of a
``tf.numpy_function`` map. Every sample still draws its randomness from (seed, epoch, position)
and results come back in order, so the stream is the same as the threaded one, bit for bit.
Workers are forked (Linux): they inherit the dataset and config without pickling, and never
call TensorFlow. Images that fail to load or to pass the sample checks are reported back and merged into the parent's
``failures``, as in the threaded path.
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import multiprocessing as mp
import threading
import time

import tensorflow as tf

_PIPE = None   # the InputPipeline a forked worker serves (set before the fork)
# A script may exit with a stream still open (an iterator in a global, an uncaught error keeping
# the frame alive). TensorFlow's iterator destructor then runs while modules are cleared, and waits
# for the call that is reading from the pool; that call can never finish then, since the pool is
# gone (multiprocessing's exit hook) and the GIL is the finalizing thread's. So at exit, while
# Python still runs other threads, the readers are told to stop, and the hook waits for them and
# for tf.data to wind the generator down (its end-of-sequence and clean-up calls are Python too).
_EXITING = threading.Event()
_STATE = threading.Condition()
_COUNTS = {"open": 0, "waiting": 0}   # generators open; of them, inside _result now
_LAST_ACTIVE = [0.0]                  # monotonic time a generator last entered or left _result
_IDLE_SECONDS = 2.0    # an open generator idle this long is parked at a yield: tf.data's buffer is full
_GRACE_SECONDS = 0.5   # for the call of a generator that just stopped to return through the GIL


def _stop_readers(timeout=20.0):
    """atexit: tell the readers to stop, wait until each has stopped or is parked at a yield
    (tf.data not pulling, so no call will be in flight), then let the last calls return."""
    _EXITING.set()
    deadline = time.monotonic() + timeout
    with _STATE:
        opened = _COUNTS["open"]
        while _COUNTS["open"] and time.monotonic() < deadline:
            if not _COUNTS["waiting"] and time.monotonic() - _LAST_ACTIVE[0] > _IDLE_SECONDS:
                break
            _STATE.wait(0.05)
    if opened:
        time.sleep(_GRACE_SECONDS)


atexit.register(_stop_readers)


@contextlib.contextmanager
def _counted(key):
    with _STATE:
        _COUNTS[key] += 1
        _LAST_ACTIVE[0] = time.monotonic()
    try:
        yield
    finally:
        with _STATE:
            _COUNTS[key] -= 1
            _LAST_ACTIVE[0] = time.monotonic()
            _STATE.notify_all()


def _result(pending):
    """The next in-order (sample, failures) of a worker; None once the interpreter is exiting."""
    with _counted("waiting"):
        while not pending.ready():
            if _EXITING.is_set():
                return None
            pending.wait(0.05)
        return pending.get()


def _work(args):
    image_id, epoch, position = args
    known = set(_PIPE.failures)
    sample = _PIPE.load_sample(image_id, epoch, position)
    new = {k: v for k, v in _PIPE.failures.items() if k not in known}
    return sample, new


def _generate(pipe, order, positions, epoch, workers):
    """Yields load_sample's tuples for (order, positions) in order, from ``workers`` processes;
    at interpreter exit it stops early (see ``_stop_readers``)."""
    global _PIPE
    _PIPE = pipe
    ctx = mp.get_context("fork")
    jobs = iter([(int(i), int(epoch), int(p)) for i, p in zip(order, positions)])
    with _counted("open"), ctx.Pool(workers) as pool:
        # Results are taken in submission order (deterministic); at most 2 samples per worker
        # are in flight, so a slow consumer does not make the workers buffer a whole epoch.
        pending = collections.deque(pool.apply_async(_work, (job,)) for job in itertools.islice(jobs, 2 * workers))
        while pending:
            result = _result(pending.popleft())
            if result is None:
                return
            sample, failures = result
            for job in itertools.islice(jobs, 1):
                pending.append(pool.apply_async(_work, (job,)))
            with pipe._lock:   # the worker logged the failure; record it here for train()
                for image_id, message in failures.items():
                    pipe.failures.setdefault(image_id, message)
            yield sample


def process_dataset(pipe, order, positions, epoch, workers, keys):
    """tf.data.Dataset of sample dicts (``keys`` plus "image_id") prepared by worker processes."""
    signature = tuple(tf.TensorSpec(pipe.specs[k][0], pipe.specs[k][1]) for k in keys)
    signature += (tf.TensorSpec([], tf.int32),)
    ds = tf.data.Dataset.from_generator(lambda: _generate(pipe, order, positions, epoch, workers),
                                        output_signature=signature)
    return ds.map(lambda *t: dict(zip(keys, t[:-1]), image_id=t[-1]))
