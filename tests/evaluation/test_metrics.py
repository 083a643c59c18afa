"""mrcnn.evaluation.metrics: hand-worked values and an independent plain-Python reference."""
import warnings

import numpy as np
import pytest

from mrcnn.evaluation import metrics


def _rect_masks(h, w, boxes):
    """bool [h, w, N] with box i filled; boxes (y1, x1, y2, x2) exclusive."""
    m = np.zeros((h, w, len(boxes)), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        m[y1:y2, x1:x2, i] = True
    return m


def _inst(boxes, class_ids, h=32, w=32, scores=None):
    boxes = np.asarray(boxes, dtype=np.int32).reshape(-1, 4)
    out = [boxes, np.asarray(class_ids, dtype=np.int32), _rect_masks(h, w, boxes)]
    if scores is not None:
        out.insert(2, np.asarray(scores, dtype=np.float32))
    return out


# ----------------------------------------------------------- plain reference
def _ref_iou(a, b):
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return inter / union if union else 0.0


def _ref_ap(gb, gc, gm, pb, pc, ps, pm, thr):
    """Straightforward matterport AP: loops, no vectorisation."""
    n_gt, n_pred = len(gc), len(pc)
    order = sorted(range(n_pred), key=lambda i: -float(ps[i]))
    used = [False] * n_gt
    tp = []
    for i in order:
        ious = [_ref_iou(pm[..., i], gm[..., j]) for j in range(n_gt)]
        hit = False
        for j in sorted(range(n_gt), key=lambda j: -ious[j]):
            if ious[j] < thr:
                break
            if used[j]:
                continue
            if pc[i] == gc[j]:
                used[j], hit = True, True
                break
        tp.append(hit)
    prec, rec, hits = [0.0], [0.0], 0
    for k, t in enumerate(tp):
        hits += t
        prec.append(hits / (k + 1))
        rec.append(hits / n_gt if n_gt else float("nan"))
    prec.append(0.0)
    rec.append(1.0)
    for k in range(len(prec) - 2, -1, -1):
        prec[k] = max(prec[k], prec[k + 1])
    ap = 0.0
    for k in range(1, len(rec)):
        if rec[k] != rec[k - 1]:
            ap += (rec[k] - rec[k - 1]) * prec[k]
    return ap


def _random_image(rng, h=40, w=40):
    def boxes(n):
        y1 = rng.integers(0, h - 6, n)
        x1 = rng.integers(0, w - 6, n)
        return np.stack([y1, x1, y1 + rng.integers(3, 16, n), x1 + rng.integers(3, 16, n)], 1).clip(0, h)

    gb = boxes(rng.integers(0, 6))
    gt_masks = _rect_masks(h, w, gb)
    # Predictions: jittered copies of some GT plus random boxes; float scores, no ties.
    keep = gb[rng.random(len(gb)) < 0.8]
    jitter = keep + rng.integers(-3, 4, keep.shape)
    pb = np.concatenate([jitter, boxes(rng.integers(0, 4))]).clip(0, h)
    pb = pb[(pb[:, 2] > pb[:, 0]) & (pb[:, 3] > pb[:, 1])]
    gc = rng.integers(1, 3, len(gb)).astype(np.int32)
    pc = rng.integers(1, 3, len(pb)).astype(np.int32)
    ps = rng.permutation(len(pb)).astype(np.float32) / 10 + 0.05
    return gb, gc, gt_masks, pb, pc, ps, _rect_masks(h, w, pb)


# ----------------------------------------------------------------- tests
def test_trim_zeros():
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(metrics.trim_zeros(x), [[1, 2, 3, 4], [0, 0, 1, 0]])
    with pytest.raises(ValueError):
        metrics.trim_zeros(np.zeros(3))


def test_overlaps_masks_hand_values_and_empty():
    m1 = _rect_masks(10, 10, [[0, 0, 4, 4], [5, 5, 7, 7]])  # areas 16, 4
    m2 = _rect_masks(10, 10, [[2, 2, 4, 4], [0, 0, 2, 8], [9, 9, 9, 9]])  # 4, 16, empty
    o = metrics.compute_overlaps_masks(m1, m2)
    np.testing.assert_allclose(o, [[4 / 16, 8 / 24, 0], [0, 0, 0]])
    assert metrics.compute_overlaps_masks(m1, m2[..., :0]).shape == (2, 0)
    assert metrics.compute_overlaps_masks(m1[..., :0], m2).shape == (0, 3)
    # Two empty masks: IoU 0, not nan.
    assert metrics.compute_overlaps_masks(m2[..., 2:], m2[..., 2:])[0, 0] == 0.0


def test_perfect_predictions_ap_one():
    gb, gc, gm = _inst([[1, 1, 10, 10], [12, 12, 20, 25]], [1, 2])
    ap, p, r, o = metrics.compute_ap(gb, gc, gm, gb, gc, np.array([0.9, 0.8]), gm)
    assert ap == 1.0
    np.testing.assert_allclose(r, [0, 0.5, 1, 1])
    np.testing.assert_allclose(np.diag(o), [1, 1])
    assert metrics.compute_ap_range(gb, gc, gm, gb, gc, np.array([0.9, 0.8]), gm, verbose=0) == 1.0


def test_false_positive_above_true_positive():
    gb, gc, gm = _inst([[1, 1, 10, 10]], [1])
    pb, pc, ps, pm = _inst([[20, 20, 30, 30], [1, 1, 10, 10]], [1, 1], scores=[0.9, 0.8])
    ap, precisions, recalls, _ = metrics.compute_ap(gb, gc, gm, pb, pc, ps, pm)
    # Ranked: FP then TP -> precisions 0, 1/2; envelope 1/2 over recall 0..1.
    assert ap == pytest.approx(0.5)
    np.testing.assert_allclose(precisions, [0.5, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(recalls, [0, 0, 1, 1])
    gt_match, pred_match, _ = metrics.compute_matches(gb, gc, gm, pb, pc, ps, pm)
    np.testing.assert_array_equal(gt_match, [1])
    np.testing.assert_array_equal(pred_match, [-1, 0])


def test_class_mismatch_and_skip_quirk():
    gb, gc, gm = _inst([[1, 1, 10, 10]], [1])
    pb, pc, ps, pm = _inst([[1, 1, 10, 10]], [2], scores=[0.9])
    assert metrics.compute_ap(gb, gc, gm, pb, pc, ps, pm)[0] == 0.0
    # A wrong-class GT with higher IoU is skipped, not a stop: the prediction
    # still matches the right-class GT at IoU 80/100 >= 0.5.
    gb, gc, gm = _inst([[0, 0, 10, 10], [0, 0, 10, 8]], [2, 1])
    pb, pc, ps, pm = _inst([[0, 0, 10, 10]], [1], scores=[0.9])
    gt_match, pred_match, o = metrics.compute_matches(gb, gc, gm, pb, pc, ps, pm)
    np.testing.assert_array_equal(pred_match, [1])
    np.testing.assert_allclose(o, [[1.0, 0.8]])
    assert metrics.compute_ap(gb, gc, gm, pb, pc, ps, pm)[0] == pytest.approx(0.5)
    assert metrics.compute_ap(gb, gc, gm, pb, pc, ps, pm, iou_threshold=0.85)[0] == 0.0


def test_empty_inputs_documented_values():
    gb, gc, gm = _inst([[1, 1, 10, 10]], [1])
    nb, nc, ns, nm = _inst(np.zeros((0, 4)), [], scores=[])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.compute_ap(gb, gc, gm, nb, nc, ns, nm)[0] == 0.0  # GT, no preds
        assert metrics.compute_ap(nb, nc, nm, nb, nc, ns, nm)[0] == 0.0  # neither
        pb, pc, ps, pm = _inst([[1, 1, 10, 10]], [1], scores=[0.5])
        assert np.isnan(metrics.compute_ap(nb, nc, nm, pb, pc, ps, pm)[0])  # preds, no GT
        assert metrics.compute_ap_range(gb, gc, gm, nb, nc, ns, nm, verbose=0) == 0.0


def test_zero_padding_rows_dropped():
    gb, gc, gm = _inst([[1, 1, 10, 10], [0, 0, 0, 0]], [1, 0])
    pb, pc, ps, pm = _inst([[0, 0, 0, 0], [1, 1, 10, 10]], [0, 1], scores=[0.99, 0.5])
    ap, _, _, overlaps = metrics.compute_ap(gb, gc, gm, pb, pc, ps, pm)
    assert ap == 1.0 and overlaps.shape == (1, 1)


@pytest.mark.parametrize("thr", [0.5, 0.75])
def test_matches_independent_reference_on_random_images(thr):
    rng = np.random.default_rng(7)
    for _ in range(60):
        gb, gc, gm, pb, pc, ps, pm = _random_image(rng)
        ap = metrics.compute_ap(gb, gc, gm, pb, pc, ps, pm, iou_threshold=thr)[0]
        ref = _ref_ap(gb, gc, gm, pb, pc, ps, pm, thr)
        if len(gc) == 0 and len(pc) > 0:
            assert np.isnan(ap) and np.isnan(ref)
        else:
            assert ap == pytest.approx(ref, abs=1e-12)
        overlaps = np.array([[_ref_iou(pm[..., i], gm[..., j]) for j in range(len(gc))]
                             for i in range(len(pc))]).reshape(len(pc), len(gc))
        np.testing.assert_allclose(metrics.compute_overlaps_masks(pm, gm), overlaps)
        ap2 = metrics.compute_ap_from_overlaps(overlaps, gc, pc, ps, thr)[0]
        assert (np.isnan(ap) and np.isnan(ap2)) or ap2 == ap


def test_ap_range_is_mean_over_thresholds(capsys):
    rng = np.random.default_rng(3)
    for _ in range(10):
        args = _random_image(rng)
        if len(args[1]) == 0:
            continue
        want = np.mean([metrics.compute_ap(*args, iou_threshold=t)[0]
                        for t in np.arange(0.5, 1.0, 0.05)])
        assert metrics.compute_ap_range(*args, verbose=0) == pytest.approx(want)
    metrics.compute_ap_range(*args, iou_thresholds=[0.5, 0.7], verbose=1)
    assert "AP @0.50-0.70" in capsys.readouterr().out


def test_compute_recall_hand_values():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    pred = np.array([[0, 0, 10, 10],      # IoU 1 with gt0
                     [0, 0, 10, 5],       # IoU 0.5 with gt0 (same GT again)
                     [20, 20, 30, 26],    # IoU 0.6 with gt1
                     [60, 60, 70, 70]])   # nothing
    recall, ids = metrics.compute_recall(pred, gt, 0.5)
    assert recall == pytest.approx(2 / 3)
    np.testing.assert_array_equal(ids, [0, 1, 2])
    recall, ids = metrics.compute_recall(pred, gt, 0.7)
    assert recall == pytest.approx(1 / 3) and list(ids) == [0]
    assert metrics.compute_recall(np.zeros((0, 4)), gt, 0.5)[0] == 0.0
    r, ids = metrics.compute_recall(pred, np.zeros((0, 4)), 0.5)
    assert np.isnan(r) and ids.size == 0


# ----------------------------------------------------------- matterport's tie order
def _matterport_ap(gt_class_ids, pred_class_ids, pred_scores, overlaps, iou_threshold=0.5):
    """NumPy transcription of matterport's compute_matches + compute_ap (3deaec5) from IoUs
    [N_pred, N_gt] in input order, with its argsort()[::-1] orders."""
    idx = np.argsort(pred_scores)[::-1]
    pred_class_ids, overlaps = np.asarray(pred_class_ids)[idx], np.asarray(overlaps)[idx]
    pred_match, gt_match = -np.ones(len(idx)), -np.ones(len(gt_class_ids))
    for i in range(len(idx)):
        for j in np.argsort(overlaps[i])[::-1]:
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j], pred_match[i] = i, j
                break
    precisions = np.cumsum(pred_match > -1) / (np.arange(len(pred_match)) + 1)
    recalls = np.cumsum(pred_match > -1).astype(np.float32) / len(gt_match)
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    steps = np.where(recalls[:-1] != recalls[1:])[0] + 1
    return float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))


def test_tied_scores_rank_as_matterport_by_default():
    # One GT; a miss and a hit with the same score. matterport's argsort()[::-1] puts the
    # later prediction (the hit) first: AP 1. A stable order puts the miss first: AP 0.5.
    gt = _inst([[0, 0, 10, 10]], [1])
    pred = _inst([[20, 20, 30, 30], [0, 0, 10, 10]], [1, 1], scores=[0.9, 0.9])
    assert metrics.compute_ap(*gt, *pred)[0] == 1.0
    assert metrics.compute_ap(*gt, *pred, ties="stable")[0] == 0.5
    assert metrics.compute_ap_range(*gt, *pred, iou_thresholds=[0.5, 0.7], verbose=0) == 1.0
    assert metrics.compute_ap_range(*gt, *pred, iou_thresholds=[0.5], verbose=0, ties="stable") == 0.5
    with pytest.raises(ValueError, match="ties"):
        metrics.compute_ap(*gt, *pred, ties="random")


@pytest.mark.parametrize("n_pred", [6, 40])   # up to 16 and beyond NumPy's insertion-sort size
def test_many_ties_equal_matterports_ap(n_pred):
    """Scores on a coarse grid (many ties), tied IoUs (duplicate GTs): equal to matterport."""
    rng = np.random.default_rng(n_pred)
    for _ in range(20):
        n_gt = int(rng.integers(1, 8))
        gt_ids = rng.integers(1, 3, n_gt)
        overlaps = rng.choice([0.0, 0.3, 0.5, 0.6, 0.8], (n_pred, n_gt))
        overlaps[:, -1] = overlaps[:, 0]            # a duplicate GT: tied IoUs
        gt_ids[-1] = gt_ids[0]
        pred_ids = rng.integers(1, 3, n_pred)
        scores = rng.choice([0.5, 0.7, 0.9], n_pred).astype(np.float32)
        want = _matterport_ap(gt_ids, pred_ids, scores, overlaps)
        got = metrics.compute_ap_from_overlaps(overlaps, gt_ids, pred_ids, scores)[0]
        assert got == pytest.approx(want, abs=1e-7)


def test_non_max_suppression_tie_order_option():
    """Three identical boxes with one score: the stable order keeps the first, matterport's
    argsort()[::-1] the last."""
    from mrcnn import utils

    boxes = np.array([[0, 0, 10, 10]] * 3, np.float32)
    scores = np.array([0.5, 0.5, 0.5], np.float32)
    assert utils.non_max_suppression(boxes, scores, 0.5).tolist() == [0]
    assert utils.non_max_suppression(boxes, scores, 0.5, ties="matterport").tolist() == [2]
