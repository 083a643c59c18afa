"""Evaluation time: COCOEvaluator (add + summarize, segm + bbox) vs plain pycocotools.

Both sides get the same generated images (masks bool [H, W, N], boxes (y1, x1, y2, x2)
exclusive). pycocotools does the whole job by hand: encode the masks, build the GT
dataset, loadRes, COCOeval evaluate/accumulate/summarize for segm and bbox. Image
generation is not timed. The per-image work alternates which side runs first so
neither gets the other's warm cache. The numbers are asserted equal to 1e-6.

    .venv/bin/python -m bench.bench_eval [--images 5000] [--repeats 5] [--size 256]

Prints a table and writes bench/results/eval.json.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import time

import numpy as np

from bench.env import env_info
from mrcnn.evaluation.coco import COCOEvaluator

CLASSES = ["BG", "person", "car", "dog", "cat", "bicycle"]
KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def _ellipses(rng, size, n):
    """n random ellipses as bool [size, size, n]; each drawn only inside its window."""
    masks = np.zeros((size, size, n), dtype=bool)
    for i in range(n):
        ry, rx = rng.uniform(4, size / 4, 2)
        cy, cx = rng.uniform(0, size, 2)
        y1, y2 = int(max(cy - ry, 0)), int(min(cy + ry + 1, size))
        x1, x2 = int(max(cx - rx, 0)), int(min(cx + rx + 1, size))
        yy, xx = np.ogrid[y1:y2, x1:x2]
        masks[y1:y2, x1:x2, i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return masks


def _boxes(masks):
    """Tight (y1, x1, y2, x2) exclusive int32 boxes of bool [H, W, N] masks."""
    rows, cols = masks.any(axis=1), masks.any(axis=0)  # [H, N], [W, N]
    out = np.zeros((masks.shape[-1], 4), dtype=np.int32)
    for i in range(masks.shape[-1]):
        ys, xs = np.flatnonzero(rows[:, i]), np.flatnonzero(cols[:, i])
        if ys.size:
            out[i] = ys[0], xs[0], ys[-1] + 1, xs[-1] + 1
    return out


def make_image(seed, index, size):
    """(image_id str, gt dict, pred dict): ~10% no GT, ~5% no predictions, 5-10 predictions."""
    rng = np.random.default_rng([seed, index])
    n_gt = 0 if rng.random() < 0.1 else int(rng.integers(1, 5))
    gm = _ellipses(rng, size, n_gt)
    gc = rng.integers(1, len(CLASSES), n_gt).astype(np.int32)
    n_fp = 0
    if rng.random() < 0.05:
        pm, pc = np.zeros((size, size, 0), bool), np.zeros(0, np.int32)
    else:
        hit = [i for i in range(n_gt) if rng.random() < 0.8]
        shifted = [np.roll(gm[..., i], tuple(rng.integers(-3, 4, 2)), axis=(0, 1)) for i in hit]
        n_fp = int(rng.integers(max(0, 5 - len(hit)), 11 - len(hit)))
        pm = np.concatenate([np.stack(shifted, -1) if shifted else gm[..., :0],
                             _ellipses(rng, size, n_fp)], axis=-1)
        pc = np.concatenate([gc[hit], rng.integers(1, len(CLASSES), n_fp)]).astype(np.int32)
        flip = rng.random(len(pc)) < 0.1
        pc[flip] = rng.integers(1, len(CLASSES), int(flip.sum()))
    gt = {"boxes": _boxes(gm), "class_ids": gc, "masks": gm}
    # Matches tend to score higher than false positives, as from a trained model.
    scores = np.concatenate([rng.uniform(0.6, 1.0, len(pc) - n_fp), rng.uniform(0.3, 0.9, n_fp)])
    pred = {"rois": _boxes(pm), "class_ids": pc, "scores": scores.astype(np.float32), "masks": pm}
    return f"{rng.integers(16 ** 15):016x}", gt, pred


class _Pycocotools:
    """The job done with pycocotools alone, as a user would write it."""

    def __init__(self):
        from pycocotools import mask
        self.mask = mask
        self.images, self.gt, self.segm, self.bbox = [], [], [], []

    def add(self, gt, pred):
        img = len(self.images) + 1
        h, w = gt["masks"].shape[:2]
        self.images.append({"id": img, "height": h, "width": w})
        g_rle = self.mask.encode(np.asfortranarray(gt["masks"].astype(np.uint8)))
        p_rle = self.mask.encode(np.asfortranarray(pred["masks"].astype(np.uint8)))
        for (y1, x1, y2, x2), c, rle in zip(gt["boxes"].tolist(), gt["class_ids"].tolist(), g_rle):
            self.gt.append({"id": len(self.gt) + 1, "image_id": img, "category_id": c,
                            "iscrowd": 0, "area": float(self.mask.area(rle)),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "segmentation": rle})
        for (y1, x1, y2, x2), c, s, rle in zip(pred["rois"].tolist(), pred["class_ids"].tolist(),
                                                pred["scores"].tolist(), p_rle):
            self.segm.append({"image_id": img, "category_id": c, "score": s, "segmentation": rle})
            self.bbox.append({"image_id": img, "category_id": c, "score": s,
                              "bbox": [x1, y1, x2 - x1, y2 - y1]})

    def summarize(self):
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        stats = {}
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = {"images": self.images, "annotations": self.gt,
                            "categories": [{"id": i, "name": n} for i, n in enumerate(CLASSES) if i]}
            coco.createIndex()
            for t, res in (("segm", self.segm), ("bbox", self.bbox)):
                ev = COCOeval(coco, coco.loadRes(res), t)
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
                stats[t] = ev.stats[:12].tolist()
        return stats


def run_once(n_images, size, seed):
    """One full evaluation by both sides; returns timings (s) and both sets of numbers."""
    ours, ref = COCOEvaluator(CLASSES, backend="auto"), _Pycocotools()
    t = {k: 0.0 for k in ("ours_add", "ours_summarize", "ref_add", "ref_summarize",
                          "ours_cpu", "ref_cpu")}

    def timed(key, fn, *args):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args)
        t[key] += time.perf_counter() - w0
        t[key.split("_")[0] + "_cpu"] += time.process_time() - c0
        return out

    for i in range(n_images):
        image_id, gt, pred = make_image(seed, i, size)
        order = [("ours_add", ours.add, image_id, gt, pred), ("ref_add", ref.add, gt, pred)]
        for key, fn, *args in (order if i % 2 == 0 else order[::-1]):
            timed(key, fn, *args)
    ours_m = timed("ours_summarize", ours.summarize, False)
    ref_m = timed("ref_summarize", ref.summarize)
    t["ours"] = t["ours_add"] + t["ours_summarize"]
    t["ref"] = t["ref_add"] + t["ref_summarize"]
    return t, ours_m, ref_m


def _check_equal(ours_m, ref_m):
    worst = 0.0
    for iou_type, stats in ref_m.items():
        got = [ours_m[iou_type][k] for k in KEYS]
        worst = max(worst, float(np.max(np.abs(np.subtract(got, stats)))))
    assert worst <= 1e-6, f"COCOEvaluator differs from pycocotools by {worst:.3g}"
    return worst


def main(argv=None):
    from mrcnn.io.fsio import atomic_open

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=600.0,
                    help="seconds; fewer repeats are run if the estimate exceeds it")
    ap.add_argument("--out", default=os.path.join("bench", "results", "eval.json"))
    args = ap.parse_args(argv)

    start = time.perf_counter()
    run_once(min(args.images, 100), args.size, args.seed + 1)  # warm-up: imports, caches
    runs, repeats = [], args.repeats
    while len(runs) < repeats:
        w0 = time.perf_counter()
        t, ours_m, ref_m = run_once(args.images, args.size, args.seed)
        t["max_abs_diff"] = _check_equal(ours_m, ref_m)
        runs.append(t)
        per_run = time.perf_counter() - w0
        print(f"run {len(runs)}: ours {t['ours']:.2f} s, pycocotools {t['ref']:.2f} s, "
              f"ratio {t['ours'] / t['ref']:.3f} (CPU {t['ours_cpu'] / t['ref_cpu']:.3f}), "
              f"max |diff| {t['max_abs_diff']:.1e}", flush=True)
        if len(runs) == 1:
            fits = int(max(1, (args.budget - (time.perf_counter() - start)) // per_run + 1))
            if fits < repeats:
                print(f"note: a run takes {per_run:.0f} s; running {fits} instead of {repeats} "
                      f"repeats to stay within {args.budget:.0f} s", flush=True)
                repeats = fits

    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    ratio = float(np.median([r["ours"] / r["ref"] for r in runs]))
    cpu_ratio = float(np.median([r["ours_cpu"] / r["ref_cpu"] for r in runs]))
    rows = [("COCOEvaluator add (encode + matterport AP)", med["ours_add"]),
            ("COCOEvaluator summarize (segm + bbox)", med["ours_summarize"]),
            ("COCOEvaluator total", med["ours"]), ("COCOEvaluator total, CPU time", med["ours_cpu"]),
            ("pycocotools encode + dicts", med["ref_add"]),
            ("pycocotools loadRes + COCOeval (segm + bbox)", med["ref_summarize"]),
            ("pycocotools total", med["ref"]), ("pycocotools total, CPU time", med["ref_cpu"])]
    print(f"\n{args.images} images {args.size}x{args.size}, backend {ours_m['backend']}, "
          f"median of {len(runs)} run(s) after 1 warm-up; gt {ours_m['num_gt']}, "
          f"predictions {ours_m['num_predictions']}")
    for name, sec in rows:
        print(f"  {name:<46} {sec:8.2f} s")
    print(f"  {'ratio ours / pycocotools (wall)':<46} {ratio:8.3f}  (target <= 0.3)")
    print(f"  {'ratio ours / pycocotools (CPU time)':<46} {cpu_ratio:8.3f}")
    print(f"  numbers equal to pycocotools: max |diff| {max(r['max_abs_diff'] for r in runs):.1e}; "
          f"segm AP {ours_m['segm']['AP']:.4f}, bbox AP {ours_m['bbox']['AP']:.4f}")

    record = {"command": "python -m bench.bench_eval " + " ".join(argv if argv is not None
                                                                  else sys.argv[1:]),
              "images": args.images, "size": args.size, "repeats_requested": args.repeats,
              "repeats_run": len(runs), "backend": ours_m["backend"], "median_seconds": med,
              "ratio_ours_over_pycocotools": ratio,
              "cpu_ratio_ours_over_pycocotools": cpu_ratio, "runs": runs,
              "num_gt": ours_m["num_gt"], "num_predictions": ours_m["num_predictions"],
              "segm": ours_m["segm"], "bbox": ours_m["bbox"], "env": env_info(("numpy", "tensorflow", "pycocotools", "faster-coco-eval"))}
    with atomic_open(args.out, "w") as f:   # makes the folder; never a half-written file
        json.dump(record, f, indent=2)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
