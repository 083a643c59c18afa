"""InputPipeline(workers=N): samples prepared in forked processes give the same stream as the
threaded map, bit for bit (randomness from (seed, epoch, position)), with augmentation too, and
images that fail to load are replaced and reported in the parent's ``failures``."""
import numpy as np
import pytest

from mrcnn.data.augment import Augmenter
from mrcnn.data.data_pipeline import InputPipeline
from tests.train_helpers import faulty_shapes, shapes, train_config


def batches(pipe, epoch, steps):
    return [{k: v.numpy() for k, v in b.items()} for b in pipe.stream(epoch, steps)]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize("augment", [False, True])
def test_process_stream_equals_threaded_stream(augment):
    config = train_config()
    ds = shapes(6, seed=13, empty_fraction=0.2)
    aug = Augmenter() if augment else None
    threaded = batches(InputPipeline(ds, config, ds.image_ids, aug, seed=7), 1, 4)
    processes = batches(InputPipeline(ds, config, ds.image_ids, aug, seed=7, workers=2), 1, 4)
    assert_same(threaded, processes)


def test_process_workers_replace_and_report_failed_images():
    config = train_config()
    ds = faulty_shapes(5, {1: "nan_image", 3: "raise"}, seed=2)
    pipe = InputPipeline(ds, config, ds.image_ids, shuffle=False, seed=1, workers=2)
    ids = np.concatenate([b["image_id"] for b in batches(pipe, 0, 3)]).tolist()
    # As the threaded path (tests/data/test_data_pipeline.py): 1 -> 2 and 3 -> 4.
    assert ids == [0, 2, 2, 4, 4, 0]
    assert sorted(pipe.failures) == [1, 3]
    assert "NaN or infinite" in pipe.failures[1] and "unreadable" in pipe.failures[3]


def test_process_workers_skip_bad_annotations_as_the_threaded_path():
    """Samples failing the load-time checks (empty mask, size, class id) are replaced the same
    way in worker processes, and the parent learns why."""
    config = train_config()
    ds = faulty_shapes(8, {2: "empty_mask", 3: "size", 4: "class"}, seed=5)
    threaded = InputPipeline(ds, config, ds.image_ids, shuffle=False, seed=1)
    processes = InputPipeline(ds, config, ds.image_ids, shuffle=False, seed=1, workers=2)
    assert_same(batches(threaded, 0, 4), batches(processes, 0, 4))
    assert sorted(processes.failures) == [2, 3, 4] == sorted(threaded.failures)
    assert "empty mask" in processes.failures[2] and "outside" in processes.failures[4]


def test_exit_with_an_open_process_stream_does_not_hang(tmp_path):
    """A script that ends while a worker-process stream is still open (a global iterator, or an
    uncaught error keeping the frame alive) exits: multiprocessing's exit hook ends the pool
    before TensorFlow's iterator destructor waits for the call that is reading from it."""
    import os
    import subprocess
    import sys

    script = tmp_path / "open_stream.py"
    script.write_text(
        "from mrcnn.data.data_pipeline import InputPipeline\n"
        "from tests.train_helpers import shapes, train_config\n"
        "ds = shapes(6, seed=13)\n"
        "pipe = InputPipeline(ds, train_config(), ds.image_ids, seed=7, workers=2)\n"
        "it = iter(pipe.stream(0, 50))\n"
        "next(it)\n"
        "print('one batch', flush=True)\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, str(script)], cwd=root, env=env, capture_output=True,
                         text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "one batch" in out.stdout
