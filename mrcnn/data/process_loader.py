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
import itertools
import multiprocessing as mp
import threading

import tensorflow as tf

_PIPE = None   # the InputPipeline a forked worker serves (set before the fork)
# Set at interpreter exit. multiprocessing's own atexit hook terminates the pools, so a result
# waited for then never comes, while TensorFlow's iterator destructor (run later, as modules are
# cleared) waits for that very call: without this flag a script that exits with a stream still
# open (an uncaught error, a global iterator) hangs at exit.
_EXITING = threading.Event()
atexit.register(_EXITING.set)


def _result(pending):
    """The next in-order (sample, failures) of a worker; None once the interpreter is exiting."""
    while not pending.ready():
        if _EXITING.is_set():
            return None
        pending.wait(0.1)
    return pending.get()


def _work(args):
    image_id, epoch, position = args
    known = set(_PIPE.failures)
    sample = _PIPE.load_sample(image_id, epoch, position)
    new = {k: v for k, v in _PIPE.failures.items() if k not in known}
    return sample, new


def _generate(pipe, order, positions, epoch, workers):
    """Yields load_sample's tuples for (order, positions) in order, from ``workers`` processes."""
    global _PIPE
    _PIPE = pipe
    ctx = mp.get_context("fork")
    jobs = iter([(int(i), int(epoch), int(p)) for i, p in zip(order, positions)])
    with ctx.Pool(workers) as pool:
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
