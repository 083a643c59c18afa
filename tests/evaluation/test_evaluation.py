"""COCOEvaluator against pycocotools' own COCOeval run directly on the same arrays."""
import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from mrcnn.evaluation import metrics
from mrcnn.evaluation.coco import COCOEvaluator, encode_masks, format_table

CLASSES = ["BG", "cat", "dog", "person"]
KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def _ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _boxes_from_masks(masks):
    """(y1, x1, y2, x2) exclusive int32 [N, 4] from bool [H, W, N]."""
    out = np.zeros((masks.shape[-1], 4), dtype=np.int32)
    for i in range(masks.shape[-1]):
        ys, xs = np.nonzero(masks[..., i])
        if ys.size:
            out[i] = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
    return out


def _make_images(n=30, seed=0):
    """Small images with string ids; several with no GT and several with no predictions."""
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n):
        h = w = 160 if k % 10 == 9 else 64  # a few larger images give "large" objects
        n_gt = 0 if k % 7 == 3 else int(rng.integers(1, 5))
        lo, hi = (8, h - 8) if h == 64 else (60, 100)  # big images: central, large objects
        r_lo, r_hi = (3, 25) if h == 64 else (50, 75)
        gm = np.stack([_ellipse(h, w, *rng.uniform(lo, hi, 2), *rng.uniform(r_lo, r_hi, 2))
                       for _ in range(n_gt)], -1) if n_gt else np.zeros((h, w, 0), bool)
        gc = rng.integers(1, len(CLASSES), n_gt).astype(np.int32)
        pm, pc = [], []
        if k % 6 != 2:  # k % 6 == 2: no predictions at all
            for i in range(n_gt):
                if rng.random() < 0.85:
                    pm.append(np.roll(gm[..., i], tuple(rng.integers(-2, 3, 2)), axis=(0, 1)))
                    pc.append(gc[i] if rng.random() < 0.8 else rng.integers(1, len(CLASSES)))
            for _ in range(int(rng.integers(0, 3))):
                pm.append(_ellipse(h, w, *rng.uniform(8, h - 8, 2), *rng.uniform(3, 15, 2)))
                pc.append(rng.integers(1, len(CLASSES)))
        pm = np.stack(pm, -1) if pm else np.zeros((h, w, 0), bool)
        gt = {"boxes": _boxes_from_masks(gm), "class_ids": gc, "masks": gm}
        pred = {"rois": _boxes_from_masks(pm), "class_ids": np.array(pc, np.int32),
                "scores": rng.uniform(0.05, 1.0, len(pc)).astype(np.float32), "masks": pm}
        images.append((f"{rng.integers(16 ** 15):016x}", gt, pred))
    return images


@pytest.fixture(scope="module")
def images():
    return _make_images()


def _reference(images, iou_type, cat_ids=None):
    """Plain pycocotools: GT dataset + loadRes + COCOeval; returns (stats[:12], precision)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = {"images": [], "annotations": [],
          "categories": [{"id": i, "name": n} for i, n in enumerate(CLASSES) if i]}
    results = []
    for img_id, (_, gt, pred) in enumerate(images, start=101):  # ids unrelated to the evaluator's
        h, w = gt["masks"].shape[:2]
        ds["images"].append({"id": img_id, "height": h, "width": w})
        for i, (y1, x1, y2, x2) in enumerate(gt["boxes"].tolist()):
            m = gt["masks"][..., i]
            ds["annotations"].append({
                "id": len(ds["annotations"]) + 1, "image_id": img_id, "iscrowd": 0,
                "category_id": int(gt["class_ids"][i]), "area": float(m.sum()),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "segmentation": mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))})
        for i, (y1, x1, y2, x2) in enumerate(pred["rois"].tolist()):
            r = {"image_id": img_id, "category_id": int(pred["class_ids"][i]),
                 "score": float(pred["scores"][i])}
            if iou_type == "bbox":
                r["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                r["segmentation"] = mask_utils.encode(
                    np.asfortranarray(pred["masks"][..., i].astype(np.uint8)))
            results.append(r)
    with contextlib.redirect_stdout(io.StringIO()):
        gt_coco = COCO()
        gt_coco.dataset = ds
        gt_coco.createIndex()
        ev = COCOeval(gt_coco, gt_coco.loadRes(results), iou_type)
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:12], ev.eval["precision"]


@pytest.fixture(scope="module")
def reference(images):
    return {t: _reference(images, t) for t in ("segm", "bbox")}


@pytest.fixture(scope="module", params=["faster", "pycocotools"])
def evaluated(request, images):
    ev = COCOEvaluator(CLASSES, backend=request.param)
    for image_id, gt, pred in images:
        ev.add(image_id, gt, pred)
    return ev, ev.summarize(verbose=False)


def test_encode_masks_equals_pycocotools_encode(images):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(5)
    cases = [g["masks"] for _, g, _ in images] + [p["masks"] for _, _, p in images]
    # W*N divisible by 8 takes the word-wise path; the others the plain one.
    for shape in [(1, 1, 3), (1, 6, 2), (6, 1, 2), (7, 9, 4), (3, 3, 1), (5, 4, 0),
                  (9, 4, 2), (12, 16, 3), (5, 8, 1)]:
        for density in (0.0, 0.1, 0.5, 0.9, 1.0):
            cases.append(rng.random(shape) < density)
    cases.append(np.asfortranarray(cases[-1]))             # any memory layout
    cases.append((rng.random((8, 6, 3)) < 0.5).astype(np.uint8) * 255)  # non-bool 0/255
    for m in cases:
        want = mask_utils.encode(np.asfortranarray((m > 0).astype(np.uint8)))
        assert encode_masks(m) == want


def test_images_cover_the_edge_cases(images):
    assert sum(len(g["class_ids"]) == 0 for _, g, _ in images) >= 3
    assert sum(len(p["class_ids"]) == 0 for _, _, p in images) >= 4
    assert sum(len(g["class_ids"]) == 0 and len(p["class_ids"]) == 0 for _, g, p in images) >= 1


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_coco_numbers_equal_pycocotools(evaluated, reference, iou_type):
    ev, m = evaluated
    stats, precision = reference[iou_type]
    assert m["backend"] == ev.backend
    np.testing.assert_allclose([m[iou_type][k] for k in KEYS], stats, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ev.precision[iou_type], precision, rtol=0, atol=1e-6)
    # A non-trivial set: not all-correct or all-wrong, and every area range populated.
    assert 0 < m[iou_type]["AP"] < 1
    assert min(m[iou_type][k] for k in ("APs", "APm", "APl")) > -1
    assert m["num_images"] == 30


def test_per_class_ap_equals_pycocotools_per_category(evaluated, images):
    ev, m = evaluated
    assert set(m["per_class"]) == set(CLASSES[1:])
    for cat, name in enumerate(CLASSES[1:], start=1):
        stats, _ = _reference(images, "segm", cat_ids=[cat])
        assert m["per_class"][name]["segm_AP"] == pytest.approx(stats[0], abs=1e-6)
        assert m["per_class"][name]["segm_AP50"] == pytest.approx(stats[1], abs=1e-6)
        assert -1 <= m["per_class"][name]["bbox_AP"] <= 1
        assert m["per_class"][name]["num_gt"] == sum(
            int((g["class_ids"] == cat).sum()) for _, g, _ in images)


def test_matterport_map50_is_mean_of_compute_ap(evaluated, images):
    ev, m = evaluated
    aps = []
    for image_id, gt, pred in images:
        ap = metrics.compute_ap(gt["boxes"], gt["class_ids"], gt["masks"], pred["rois"],
                                pred["class_ids"], pred["scores"], pred["masks"])[0]
        got = ev.per_image_ap50[image_id]
        assert (np.isnan(ap) and np.isnan(got)) or got == pytest.approx(ap, abs=1e-12)
        if len(gt["class_ids"]):
            aps.append(ap)
    assert m["matterport_mAP50"] == pytest.approx(np.mean(aps), abs=1e-12)
    assert m["matterport_mAP50_images"] == len(aps)


def test_string_ids_mapped_to_unique_ints(evaluated, images):
    ev, _ = evaluated
    assert list(ev.image_id_map) == [i for i, _, _ in images]
    assert sorted(ev.image_id_map.values()) == list(range(1, 31))


def test_results_and_ground_truth_json_round_trip(evaluated, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ev, m = evaluated
    ev.write_results(tmp_path / "results.json")
    ev.write_ground_truth(tmp_path / "gt.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.json", "results.json"]  # no temp left
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == m["num_predictions"]
    assert isinstance(results[0]["segmentation"]["counts"], str)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        assert len(gt.getImgIds()) == 30 and len(gt.getAnnIds()) == m["num_gt"]
        for iou_type, drop in (("bbox", "segmentation"), ("segm", "bbox")):
            dets = gt.loadRes([{k: v for k, v in r.items() if k != drop} for r in results])
            e = COCOeval(gt, dets, iou_type)
            e.evaluate()
            e.accumulate()
            e.summarize()
            np.testing.assert_allclose(e.stats[:12], [m[iou_type][k] for k in KEYS], atol=1e-6)
        dets = gt.loadRes(str(tmp_path / "results.json"))  # the file as written loads as-is
    assert len(dets.getAnnIds()) == m["num_predictions"]


def test_pr_curve_png_decodes(evaluated, tmp_path):
    from PIL import Image

    ev, _ = evaluated
    path = tmp_path / "pr.png"
    ev.plot_pr_curves(path)
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and im.size[0] > 500 and im.size[1] > 300


def test_format_table_and_verbose_print(evaluated, capsys):
    ev, m = evaluated
    table = format_table(m)
    assert "segm" in table and "bbox" in table and "dog" in table and "matterport" in table
    assert f"{m['segm']['AP']:6.3f}".strip() in table
    assert "n/a" in format_table({**m, "segm": {**m["segm"], "APl": -1.0}})
    ev.summarize(verbose=True)
    assert capsys.readouterr().out.strip() == table


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_no_predictions_at_all_and_no_gt_at_all(backend, images):
    empty_pred = {"rois": np.zeros((0, 4), np.int32), "class_ids": np.zeros(0, np.int32),
                  "scores": np.zeros(0, np.float32), "masks": np.zeros((64, 64, 0), bool)}
    ev = COCOEvaluator(CLASSES, backend=backend)
    for image_id, gt, pred in images[:5]:
        ev.add(image_id, gt, {**empty_pred, "masks": np.zeros(gt["masks"].shape[:2] + (0,), bool)})
    m = ev.summarize(verbose=False)
    assert m["segm"]["AP"] == 0.0 and m["bbox"]["AR100"] == 0.0 and m["num_predictions"] == 0
    ev.reset()
    empty_gt = {"boxes": np.zeros((0, 4)), "class_ids": np.zeros(0, int),
                "masks": np.zeros((64, 64, 0), bool)}
    ev.add("a", empty_gt, images[0][2])
    m = ev.summarize(verbose=False)
    assert m["segm"]["AP"] == -1.0 and m["matterport_mAP50"] == -1.0 and m["num_images"] == 1
    # "Nothing" given as flat empty arrays: the size comes from height/width.
    ev.add("c", empty_gt, {k: np.zeros(0) for k in ("rois", "class_ids", "scores", "masks")},
           height=64, width=64)
    ev.add("b", images[1][1], images[1][2])  # adding after summarize invalidates the cache
    m = ev.summarize(verbose=False)
    assert m["num_images"] == 3 and m["segm"]["AP"] > -1 and m["matterport_mAP50_images"] == 1
    assert ev.per_image_ap50["c"] == 0.0


def test_bad_input_errors_name_the_image(images):
    ev = COCOEvaluator(CLASSES, iou_types=("segm",))
    image_id, gt, pred = images[0]
    ev.add(image_id, gt, pred)
    with pytest.raises(ValueError, match="already added"):
        ev.add(image_id, gt, pred)
    with pytest.raises(ValueError, match="img-x"):
        ev.add("img-x", gt, {**pred, "scores": pred["scores"][:-1]})
    with pytest.raises(ValueError, match="class id out of range"):
        ev.add("img-y", gt, {**pred, "class_ids": np.full_like(pred["class_ids"], 9)})
    with pytest.raises(ValueError, match="disagree"):
        ev.add("img-z", gt, pred, height=10)
    assert list(ev.image_id_map) == [image_id]
    with pytest.raises(ValueError, match="no images"):
        COCOEvaluator(CLASSES).summarize()
    with pytest.raises(ValueError):
        COCOEvaluator(CLASSES, backend="nope")


def test_modules_import_no_heavy_libraries():
    code = ("import sys, mrcnn.evaluation.coco, mrcnn.evaluation.metrics; "
            "bad = [m for m in ('tensorflow', 'keras', 'pycocotools', 'faster_coco_eval', "
            "'matplotlib') if m in sys.modules]; print(bad); assert not bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
