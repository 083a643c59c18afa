"""load_mask time for an Open Images-like image: 10 instances from whole-image mask PNGs.

Builds (untimed) a downloader-layout folder with one 1024 x 768 JPEG and 10 mask PNGs (0/255
ellipses, the way Open Images ships them), at the image's resolution or at another one (Open
Images masks may differ from the JPEG's size and are resized with nearest-neighbour). Times
``OpenImagesDataset.load_mask`` (PIL decode + integer-index nearest resize; serial, and with 2 decode threads), the PNG
decode alone
against the slow path it replaces (PIL decode + ``skimage.transform.resize(order=0)`` per mask),
and ``python -m dataset --help`` start-up.

    .venv/bin/python -m bench.bench_load_mask [--repeats 15] [--instances 10]

Prints a table and writes bench/results/load_mask.json (median of the repeats after one warm-up).
"""
import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def build(root, image_size, mask_size, n, mode):
    """One downloader-layout image with ``n`` mask PNGs at ``mask_size`` (w, h)."""
    from PIL import Image
    from dataset.records import ImageRecord, MaskPNG, ObjectRecord
    from dataset.voc import write_voc
    w, h = image_size
    mw, mh = mask_size
    sdir = os.path.join(root, "cat", "train")
    os.makedirs(os.path.join(sdir, "images"), exist_ok=True)
    os.makedirs(os.path.join(sdir, "masks"), exist_ok=True)
    with open(os.path.join(root, "cat", "manifest.json"), "w") as f:
        json.dump({"class": "Cat", "mid": "/m/01yrx"}, f)
    rng = np.random.default_rng(0)
    img = os.path.join(sdir, "images", "0001.jpg")
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img, quality=90)
    yy, xx = np.mgrid[0:mh, 0:mw]
    objs = []
    for k in range(n):
        cy, cx = rng.uniform(0.2, 0.8) * mh, rng.uniform(0.2, 0.8) * mw
        ry, rx = rng.uniform(0.08, 0.3) * mh, rng.uniform(0.08, 0.3) * mw
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        p = os.path.join(sdir, "masks", "0001_m01yrx_%08d.png" % k)
        Image.fromarray(m.astype(np.uint8) * 255).convert(mode).save(p)
        box = ((cy - ry) * h / mh, (cx - rx) * w / mw, (cy + ry) * h / mh, (cx + rx) * w / mw)
        objs.append(ObjectRecord("Cat", box, MaskPNG(p), {"label_name": "/m/01yrx", "box_id": "%08d" % k}))
    write_voc(ImageRecord("0001", img, w, h, objs), os.path.join(sdir, "annotations", "0001.xml"), sdir)
    return os.path.join(root, "cat")


def timed(fn, repeats):
    """Wall and process-CPU time in ms (CPU time is the honest figure on a busy shared machine)."""
    fn()  # warm-up (page cache, imports, thread pool)
    ts, cs = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
        cs.append((time.process_time() - c) * 1000)
    return {"median_ms": float(np.median(ts)), "min_ms": float(np.min(ts)), "max_ms": float(np.max(ts)),
            "cpu_median_ms": float(np.median(cs)), "repeats": repeats}


def slow_path(record):
    """The path we avoid: PIL decode, then skimage resize order=0 per mask into [H, W, N]."""
    from skimage.transform import resize
    from dataset.convert import read_mask_png
    out = np.zeros((record.height, record.width, len(record.objects)), bool)
    for k, o in enumerate(record.objects):
        m = read_mask_png(o.mask.path)
        out[:, :, k] = resize(m, (record.height, record.width), order=0, preserve_range=True,
                              anti_aliasing=False).astype(bool)
    return out


def main(argv=None):
    from mrcnn.io.fsio import atomic_open

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--instances", type=int, default=10)
    args = ap.parse_args(argv)
    import dataset.convert as conv
    from dataset import load_openimages
    cases = [("1024x768 image, 1024x768 masks (L)", (1024, 768), (1024, 768), "L"),
             ("1024x768 image, 512x384 masks (L)", (1024, 768), (512, 384), "L"),
             ("1024x768 image, 2048x1536 masks (L)", (1024, 768), (2048, 1536), "L"),
             ("1024x768 image, 1024x768 masks (1-bit)", (1024, 768), (1024, 768), "1")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, isz, msz, mode) in enumerate(cases):
            root = build(os.path.join(tmp, str(i)), isz, msz, args.instances, mode)
            ds = load_openimages(root, "train")
            rec = ds.image_info[0]["record"]
            masks, ids = ds.load_mask(0)
            assert masks.shape == (isz[1], isz[0], args.instances) and ids.dtype == np.int32
            assert np.array_equal(masks, slow_path(rec)), "fast path differs from skimage order=0"
            row = {"case": name, "instances": args.instances}
            ds.mask_workers = 1
            row["load_mask"] = timed(lambda: ds.load_mask(0), args.repeats)
            ds.mask_workers = 2
            row["load_mask_2_threads"] = timed(lambda: ds.load_mask(0), args.repeats)
            ds.mask_workers = 1
            row["decode_only"] = timed(lambda: [conv.read_mask_png(o.mask.path) for o in rec.objects],
                                       args.repeats)
            row["skimage_path"] = timed(lambda: slow_path(rec), max(5, args.repeats // 3))
            rows.append(row)
    t_help = timed(lambda: subprocess.run([sys.executable, "-m", "dataset", "--help"], cwd=ROOT,
                                          capture_output=True, check=True), 5)
    print("median wall ms (process CPU ms)")
    print("%-40s %15s %15s %15s %15s" % ("case (%d instances)" % args.instances, "load_mask",
                                         "2 threads", "PNG decode", "skimage path"))
    for r in rows:
        print("%-40s %s %s %s %s" % (r["case"], *("%6.1f (%6.1f)" % (r[k]["median_ms"], r[k]["cpu_median_ms"])
                                                 for k in ("load_mask", "load_mask_2_threads", "decode_only",
                                                           "skimage_path"))))
    print("python -m dataset --help: %.0f ms (median of 5); load average %s" % (t_help["median_ms"],
                                                                             os.getloadavg()))
    env = {"python": platform.python_version(), "numpy": np.__version__, "pillow": _version("pillow"),
           "scikit-image": _version("scikit-image"), "tensorflow": _version("tensorflow"),
           "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "loadavg": list(os.getloadavg())}
    out = {"command": "python -m bench.bench_load_mask --repeats %d --instances %d" % (args.repeats, args.instances),
           "env": env, "cases": rows, "help_startup": t_help}
    path = os.path.join(ROOT, "bench", "results", "load_mask.json")
    with atomic_open(path, "w") as f:
        json.dump(out, f, indent=2)
    print("wrote %s" % path)


if __name__ == "__main__":
    main()
