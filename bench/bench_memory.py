"""Memory growth with dataset size: 1k versus 10k records in the training input pipeline.

Each size runs in a fresh process: build a ShapesDataset of N records, validate it up front (as
``train()`` does), build the ``InputPipeline`` and pull ``--steps`` batches of an epoch through
tf.data. Reports peak RSS (VmHWM) and the RSS after each phase, and the growth per record.

    python -m bench.bench_memory                 # 1000 and 10000 records, 64 px, 30 batches
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0  # MiB
    return float("nan")


def child(n, steps, size):
    """Runs in the subprocess: returns a dict of RSS readings (MiB)."""
    out = {"records": n}
    import numpy as np  # noqa: F401
    import tensorflow as tf  # noqa: F401

    from mrcnn.config import Config
    from mrcnn.data.data_pipeline import InputPipeline
    from mrcnn.data.inputs import validate_dataset
    from mrcnn.data.shapes import ShapesDataset

    class C(Config):
        NAME = "mem"
        BACKBONE = "small"
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = size
        NUM_CLASSES = 4
        IMAGES_PER_GPU = 2
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        MAX_GT_INSTANCES = 8
        MINI_MASK_SHAPE = (28, 28)
        RPN_TRAIN_ANCHORS_PER_IMAGE = 64

    out["rss_after_import"] = _status("VmRSS")
    ds = ShapesDataset()
    ds.load_shapes(n, size, size, seed=0)
    ds.prepare()
    out["rss_after_records"] = _status("VmRSS")
    t = time.time()
    good, bad = validate_dataset(ds)
    out["validate_seconds"] = round(time.time() - t, 2)
    out["rss_after_validate"] = _status("VmRSS")
    pipe = InputPipeline(ds, C(), good, seed=0)
    t = time.time()
    for _ in pipe.stream(0, steps):
        pass
    out["pipeline_seconds"] = round(time.time() - t, 2)
    out["rss_after_pipeline"] = _status("VmRSS")
    out["peak_rss"] = _status("VmHWM")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--image", type=int, default=64)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.steps, args.image)))
        return 0
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        res = subprocess.run([sys.executable, "-m", "bench.bench_memory", "--child", str(n), "--steps",
                              str(args.steps), "--image", str(args.image)], capture_output=True, text=True,
                             env=env, cwd=os.path.dirname(HERE))
        if res.returncode:
            print(res.stderr[-3000:], file=sys.stderr)
            return res.returncode
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"{'records':>8} {'import':>8} {'+records':>9} {'+validate':>10} {'+pipeline':>10} {'peak':>8} "
          f"{'validate s':>10} {'pipeline s':>10}   (RSS MiB)")
    for r in rows:
        print(f"{r['records']:>8} {r['rss_after_import']:>8.0f} {r['rss_after_records']:>9.0f} "
              f"{r['rss_after_validate']:>10.0f} {r['rss_after_pipeline']:>10.0f} {r['peak_rss']:>8.0f} "
              f"{r['validate_seconds']:>10} {r['pipeline_seconds']:>10}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        per = (b["peak_rss"] - a["peak_rss"]) * 1024 / max(b["records"] - a["records"], 1)
        print(f"growth: {b['peak_rss'] - a['peak_rss']:.1f} MiB peak for {b['records'] - a['records']} more "
              f"records ({per:.2f} KiB per record)")
    import numpy as np
    import tensorflow as tf

    result = {"rows": rows, "command": "python -m bench.bench_memory " + " ".join(argv or sys.argv[1:]),
              "env": {"python": platform.python_version(), "numpy": np.__version__, "tensorflow": tf.__version__,
                      "cpus": os.cpu_count(), "platform": platform.platform()}}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "memory.json"), "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
