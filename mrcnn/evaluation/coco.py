"""COCO-style evaluation of instance masks and boxes: the one evaluator used by
``evaluate.py`` and the training callback.

Numbers come from faster-coco-eval (C++) or pycocotools, evaluated on RLEs that
are encoded (``mrcnn.evaluation.rle``) as each image is added, so memory holds only RLEs and boxes.

Inputs per image (matterport conventions, boxes (y1, x1, y2, x2) pixels, y2/x2
exclusive):
  gt   = {"boxes": [N, 4], "class_ids": int [N], "masks": bool [H, W, N]}
  pred = {"rois": int32 [M, 4], "class_ids": int32 [M], "scores": float32 [M],
          "masks": bool [H, W, M]}   (what ``MaskRCNN.detect`` returns per image)

COCO conventions used: category id = class id (index 0 "BG" is skipped),
iscrowd 0, GT area = mask pixel count (used for the small/medium/large ranges of
both segm and bbox, as in the COCO dataset), bbox [x, y, w, h] with w = x2 - x1.
Detections get area = mask area for segm and w*h for bbox (what pycocotools'
``loadRes`` gives when a result carries only that field).
"""
import contextlib
import gc
import io
import json
import math
import os

import numpy as np

from mrcnn.evaluation import metrics
from mrcnn.io.fsio import atomic_open
from mrcnn.evaluation.rle import encode_masks, mask_areas

IOU_TYPES = ("segm", "bbox")
_SUMMARY = [  # key, ap(1)/ar(0), iou threshold, area label, max dets (None = largest)
    ("AP", 1, None, "all", None), ("AP50", 1, 0.5, "all", None), ("AP75", 1, 0.75, "all", None),
    ("APs", 1, None, "small", None), ("APm", 1, None, "medium", None),
    ("APl", 1, None, "large", None), ("AR1", 0, None, "all", 1), ("AR10", 0, None, "all", 10),
    ("AR100", 0, None, "all", None), ("ARs", 0, None, "small", None),
    ("ARm", 0, None, "medium", None), ("ARl", 0, None, "large", None),
]


def _backend_modules(backend):
    """Return (COCO, COCOeval, mask module, name) for "faster", "pycocotools" or "auto"."""
    if backend not in ("auto", "faster", "pycocotools"):
        raise ValueError(f"backend must be 'auto', 'faster' or 'pycocotools', got {backend!r}")
    if backend in ("auto", "faster"):
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            if backend == "faster":
                raise ImportError("backend='faster' needs faster-coco-eval: "
                                  "pip install faster-coco-eval (or use backend='pycocotools')")
        else:
            from pycocotools import mask
            return COCO, COCOeval_faster, mask, "faster"
    from pycocotools import mask
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    return COCO, COCOeval, mask, "pycocotools"


def format_table(metrics_dict):
    """Compact text table of a ``COCOEvaluator.summarize`` result."""
    def cell(v):
        undefined = v is None or v < 0 or (isinstance(v, float) and math.isnan(v))
        return "   n/a" if undefined else f"{v:6.3f}"

    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"]
    lines = ["type  " + "".join(f"{k:>7}" for k in keys)]
    for t in IOU_TYPES:
        if t in metrics_dict:
            lines.append(f"{t:<6}" + "".join(" " + cell(metrics_dict[t][k]) for k in keys))
    per_class = metrics_dict.get("per_class", {})
    cols = [c for t in IOU_TYPES if t in metrics_dict for c in (f"{t}_AP", f"{t}_AP50")]
    if per_class:
        width = max(10, max(len(n) for n in per_class) + 1)
        lines.append("")
        lines.append(f"{'class':<{width}}" + "".join(f"{c:>10}" for c in cols) + f"{'num_gt':>8}")
        for name, row in per_class.items():
            lines.append(f"{name:<{width}}" + "".join(f"    {cell(row[c])}" for c in cols)
                         + f"{row['num_gt']:>8d}")
    lines.append("")
    lines.append(f"matterport per-image mAP@0.5 (mean of compute_ap over "
                 f"{metrics_dict['matterport_mAP50_images']} images with GT; not COCO): "
                 f"{cell(metrics_dict['matterport_mAP50']).strip()}")
    lines.append(f"images {metrics_dict['num_images']}  gt {metrics_dict['num_gt']}  "
                 f"predictions {metrics_dict['num_predictions']}  backend {metrics_dict['backend']}")
    return "\n".join(lines)


class COCOEvaluator:
    """Accumulates per-image GT and predictions; computes COCO and matterport metrics.

    Args:
        class_names: list of str, index = class id; index 0 ("BG") is skipped.
        iou_types: subset of ("segm", "bbox").
        backend: "faster" (faster-coco-eval), "pycocotools", or "auto" (faster if importable).

    After ``summarize``: ``precision[iou_type]`` is COCO's float64 array
    [T=10 IoUs, R=101 recalls, K classes, A=4 areas, M=3 maxDets] (-1 = undefined),
    with axes ``iou_thresholds``, ``recall_thresholds`` and ``category_ids``.
    ``image_id_map`` maps each added image id (str or int) to its COCO int id;
    ``per_image_ap50`` holds matterport's compute_ap at 0.5 per added image id.
    """

    def __init__(self, class_names, iou_types=IOU_TYPES, backend="auto"):
        self.class_names = [str(n) for n in class_names]
        if len(self.class_names) < 2:
            raise ValueError("class_names needs 'BG' at index 0 and at least one class")
        if isinstance(iou_types, str):
            iou_types = (iou_types,)
        bad = [t for t in iou_types if t not in IOU_TYPES]
        if bad or not iou_types:
            raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {iou_types}")
        self.iou_types = tuple(iou_types)
        self._COCO, self._COCOeval, self._mask, self.backend = _backend_modules(backend)
        self.reset()

    def reset(self):
        """Forget every added image and result."""
        self.image_id_map, self.per_image_ap50 = {}, {}
        # Flat tuples of numbers/bytes only: the garbage collector stops tracking
        # them, so a large evaluation does not slow every later collection.
        self._images, self._gt_per_image = [], []  # (height, width, file_name); id = index+1
        self._gt = []  # (img, class_id, x, y, w, h, mask area, rle counts)
        self._dt = []  # (img, class_id, score, x, y, w, h, mask area, rle counts)
        self.precision, self.recall, self._metrics = {}, {}, None
        self.iou_thresholds = self.recall_thresholds = self.category_ids = None

    # ------------------------------------------------------------------ adding
    def _check(self, image_id, what, boxes, class_ids, masks, scores=None, hw=(None, None)):
        """Validate one side of an image; returns (boxes list, class ids list, masks)."""
        masks = np.asarray(masks)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).tolist()
        class_ids = [int(c) for c in np.asarray(class_ids).reshape(-1).tolist()]
        n = len(boxes)
        if n == 0 and masks.ndim != 3:  # e.g. np.zeros(0) for "nothing": size from height/width
            masks = np.zeros((*(hw if None not in hw else masks.shape[:2]), 0), dtype=bool)
        if masks.ndim != 3 or masks.shape[-1] != n or len(class_ids) != n or (
                scores is not None and len(scores) != n):
            raise ValueError(
                f"image {image_id!r}: {what} has {n} boxes, {len(class_ids)} class_ids, "
                f"{'' if scores is None else f'{len(scores)} scores, '}masks {masks.shape}; "
                "expected boxes [N,4], class_ids [N] and masks [H,W,N] with the same N")
        if n and (min(class_ids) < 1 or max(class_ids) >= len(self.class_names)):
            raise ValueError(f"image {image_id!r}: {what} class id out of range 1.."
                             f"{len(self.class_names) - 1}: {sorted(set(class_ids))}; "
                             "pass the class_names list the model/dataset uses")
        return boxes, class_ids, masks

    def add(self, image_id, gt, pred, height=None, width=None):
        """Add one image's GT dict and prediction dict (see module docstring).

        Images with no GT and/or no predictions are valid and count as images.
        Raises ValueError on a duplicate image_id or inconsistent shapes.
        """
        if image_id in self.image_id_map:
            raise ValueError(f"image {image_id!r} was already added; image ids must be unique")
        hw = (height, width)
        gb, gc, gm = self._check(image_id, "gt", gt["boxes"], gt["class_ids"], gt["masks"], None, hw)
        scores = np.asarray(pred["scores"], dtype=np.float64).reshape(-1).tolist()
        pb, pc, pm = self._check(image_id, "pred", pred["rois"], pred["class_ids"],
                                 pred["masks"], scores, hw)
        h, w = gm.shape[:2]
        if pm.shape[:2] != (h, w) or (height is not None and height != h) or (
                width is not None and width != w):
            raise ValueError(f"image {image_id!r}: gt masks {gm.shape[:2]}, pred masks "
                             f"{pm.shape[:2]}, height/width {(height, width)} disagree; "
                             "resize predictions to the original image size")
        g_rle, p_rle = encode_masks(gm, self._mask), encode_masks(pm, self._mask)
        img = len(self._images) + 1
        self.image_id_map[image_id] = img
        self._images.append((int(h), int(w), str(image_id)))
        g_area, p_area = mask_areas(g_rle, self._mask), mask_areas(p_rle, self._mask)
        self._gt.extend((img, c, x1, y1, x2 - x1, y2 - y1, a, r["counts"])
                        for c, (y1, x1, y2, x2), a, r in zip(gc, gb, g_area, g_rle))
        self._dt.extend((img, c, s, x1, y1, x2 - x1, y2 - y1, a, r["counts"])
                        for c, s, (y1, x1, y2, x2), a, r in zip(pc, scores, pb, p_area, p_rle))
        self._gt_per_image.append(len(gc))
        self.per_image_ap50[image_id] = self._matterport_ap50(gb, gc, g_rle, pb, pc, scores, p_rle)
        self._metrics = None

    def _matterport_ap50(self, gb, gc, g_rle, pb, pc, scores, p_rle):
        """metrics.compute_ap at 0.5 from RLE IoUs (the same numbers as dense masks),
        after dropping all-zero padding rows exactly as compute_ap does."""
        g = [k for k, b in enumerate(gb) if any(b)]
        p = [k for k, b in enumerate(pb) if any(b)]
        if not p:
            return 0.0  # matterport's arithmetic with no predictions, GT or not
        if not g:
            return math.nan  # recall 0/0, as matterport
        # Only same-class pairs can match, and a GT of another class never stops
        # the greedy walk before a match, so other IoUs may stay 0: fewer RLEs to
        # decode, same AP. (Boxes are not used: compute_ap looks at masks only.)
        pairs = [(a, b) for a, i in enumerate(p) for b, j in enumerate(g) if pc[i] == gc[j]]
        ious = np.zeros((len(p), len(g)))
        if pairs:
            pi, gi = sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})
            ious[np.ix_(pi, gi)] = self._mask.iou(
                [p_rle[p[a]] for a in pi], [g_rle[g[b]] for b in gi], [0] * len(gi))
        return metrics.compute_ap_from_overlaps(
            ious, [gc[k] for k in g], [pc[k] for k in p], [scores[k] for k in p], 0.5)[0]

    # --------------------------------------------------------------- datasets
    def _categories(self):
        return [{"id": i, "name": n, "supercategory": ""} for i, n in enumerate(self.class_names)
                if i > 0]

    def _image_dicts(self):
        return [{"id": i, "height": h, "width": w, "file_name": name}
                for i, (h, w, name) in enumerate(self._images, start=1)]

    def _rle(self, img, counts, as_str=False):
        h, w, _ = self._images[img - 1]
        return {"size": [h, w], "counts": counts.decode("ascii") if as_str else counts}

    def _gt_dataset(self, str_counts=False):
        anns = [{"id": i, "image_id": img, "category_id": c, "bbox": [x, y, w, h], "area": a,
                 "iscrowd": 0, "segmentation": self._rle(img, r, str_counts)}
                for i, (img, c, x, y, w, h, a, r) in enumerate(self._gt, start=1)]
        return {"images": self._image_dicts(), "annotations": anns,
                "categories": self._categories()}

    def _results(self, iou_type=None):
        """Detections as COCO result dicts.

        iou_type None: the raw results (bbox and segmentation, for JSON). "segm" /
        "bbox": also the fields pycocotools' loadRes would add (id, iscrowd, area),
        with segm area = mask area and bbox area = w*h.
        """
        if iou_type is None:
            return [{"image_id": img, "category_id": c, "score": s, "bbox": [x, y, w, h],
                     "segmentation": self._rle(img, r, True)}
                    for img, c, s, x, y, w, h, _, r in self._dt]
        if iou_type == "segm":
            return [{"id": i, "image_id": img, "category_id": c, "score": s, "iscrowd": 0,
                     "area": a, "bbox": [x, y, w, h], "segmentation": self._rle(img, r)}
                    for i, (img, c, s, x, y, w, h, a, r) in enumerate(self._dt, start=1)]
        return [{"id": i, "image_id": img, "category_id": c, "score": s, "iscrowd": 0,
                 "area": w * h, "bbox": [x, y, w, h]}
                for i, (img, c, s, x, y, w, h, _, _) in enumerate(self._dt, start=1)]

    def _coco(self, dataset):
        coco = self._COCO()
        coco.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
        return coco

    # -------------------------------------------------------------- evaluation
    def _evaluate(self):
        if not self._images:
            raise ValueError("COCOEvaluator: no images were added; call add() before summarize()")
        # Building ~10 dicts per instance would trigger many full GC passes over
        # them; nothing here makes reference cycles, so pause the collector.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._evaluate_types()
        finally:
            if was_enabled:
                gc.enable()

    def _evaluate_types(self):
        coco_gt = self._coco(self._gt_dataset())
        for t in self.iou_types:
            dt = self._coco({"images": coco_gt.dataset["images"], "annotations": self._results(t),
                             "categories": self._categories()})
            # One IoU thread: per-pair RLE IoUs are tiny, so a pool costs more than it saves.
            kwargs = ({"print_function": lambda *a, **k: None, "rle_iou_max_workers": 1}
                      if self.backend == "faster" else {})
            ev = self._COCOeval(coco_gt, dt, t, **kwargs)
            with contextlib.redirect_stdout(io.StringIO()):
                ev.evaluate()
                ev.accumulate()
            self.precision[t] = np.asarray(ev.eval["precision"], dtype=np.float64)
            self.recall[t] = np.asarray(ev.eval["recall"], dtype=np.float64)
            p = ev.params
            self.iou_thresholds = np.asarray(p.iouThrs)
            self.recall_thresholds = np.asarray(p.recThrs)
            self.category_ids = list(p.catIds)
            self._area_labels, self._max_dets = list(p.areaRngLbl), list(p.maxDets)

    def _stats(self, t, ap, iou, area, max_dets, k=slice(None)):
        a = self._area_labels.index(area)
        m = self._max_dets.index(max_dets if max_dets is not None else self._max_dets[-1])
        s = self.precision[t] if ap else self.recall[t]
        if iou is not None:
            s = s[np.flatnonzero(np.isclose(self.iou_thresholds, iou))]
        s = s[:, :, k, a, m] if ap else s[:, k, a, m]
        s = s[s > -1]  # COCO's rule: mean over defined entries, -1 if there are none
        return float(np.mean(s)) if s.size else -1.0

    def summarize(self, verbose=True):
        """Run COCO evaluation; return the metrics dict (and print a table if verbose).

        Keys: for each iou type a dict with AP, AP50, AP75, APs, APm, APl and AR1,
        AR10, AR100, ARs, ARm, ARl (floats in [0, 1], -1 = undefined, as COCO);
        "per_class": {name: {"<type>_AP", "<type>_AP50", "num_gt"}}; "matterport_mAP50":
        mean of matterport compute_ap@0.5 over images that have GT (per-image mean,
        not COCO; -1 if no image has GT); "matterport_mAP50_images"; "num_images",
        "num_gt", "num_predictions", "backend".
        """
        if self._metrics is None:
            self._evaluate()
            out = {t: {key: self._stats(t, *spec) for key, *spec in _SUMMARY}
                   for t in self.iou_types}
            gt_counts = np.bincount([g[1] for g in self._gt], minlength=len(self.class_names))
            out["per_class"] = {}
            for k, cat in enumerate(self.category_ids):
                row = {}
                for t in self.iou_types:
                    row[f"{t}_AP"] = self._stats(t, 1, None, "all", None, k)
                    row[f"{t}_AP50"] = self._stats(t, 1, 0.5, "all", None, k)
                row["num_gt"] = int(gt_counts[cat])
                out["per_class"][self.class_names[cat]] = row
            with_gt = [ap for ap, n in zip(self.per_image_ap50.values(), self._gt_per_image) if n]
            out["matterport_mAP50"] = float(np.mean(with_gt)) if with_gt else -1.0
            out["matterport_mAP50_images"] = len(with_gt)
            out.update(num_images=len(self._images), num_gt=len(self._gt),
                       num_predictions=len(self._dt), backend=self.backend)
            self._metrics = out
        if verbose:
            print(format_table(self._metrics))
        return self._metrics

    format_table = staticmethod(format_table)

    # ----------------------------------------------------------------- output
    def write_results(self, path):
        """Write raw predictions as a COCO results JSON list (atomic).

        Each entry: image_id (COCO int id, see ``image_id_map``), category_id, score,
        bbox [x, y, w, h], segmentation {"size": [h, w], "counts": str}. To re-run segm
        with pycocotools, drop "bbox" first, or loadRes uses box area for area ranges.
        """
        results = self._results(None)
        with atomic_open(os.fspath(path), "w") as f:
            json.dump(results, f)

    def write_ground_truth(self, path):
        """Write the GT as a COCO dataset JSON (images/annotations/categories; atomic).

        images[i]["file_name"] holds the original image id as a string.
        """
        dataset = self._gt_dataset(str_counts=True)
        with atomic_open(os.fspath(path), "w") as f:
            json.dump(dataset, f)

    def plot_pr_curves(self, path, iou=0.5):
        """PNG of per-class precision-recall curves at IoU ``iou``, one panel per iou type."""
        from matplotlib.figure import Figure

        self.summarize(verbose=False)
        ti = int(np.flatnonzero(np.isclose(self.iou_thresholds, iou))[0])
        fig = Figure(figsize=(6 * len(self.iou_types), 5), dpi=100)
        for i, t in enumerate(self.iou_types):
            ax = fig.add_subplot(1, len(self.iou_types), i + 1)
            curves = self.precision[t][ti, :, :, 0, -1]  # [R, K] at area "all", maxDets 100
            defined = [k for k in range(curves.shape[1]) if np.all(curves[:, k] > -1)]
            for k in defined:
                name = self.class_names[self.category_ids[k]]
                ax.plot(self.recall_thresholds, curves[:, k], lw=1,
                        label=f"{name} {curves[:, k].mean():.3f}")
            if defined:
                mean = curves[:, defined].mean(axis=1)
                ax.plot(self.recall_thresholds, mean, lw=3, color="black",
                        label=f"all classes {mean.mean():.3f}")
            ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
                   title=f"{t} precision-recall @ IoU {iou:.2f}")
            if 0 < len(defined) <= 20:
                ax.legend(loc="lower left", fontsize=7)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_open(os.fspath(path), "wb") as f:
            fig.savefig(f, format="png")
