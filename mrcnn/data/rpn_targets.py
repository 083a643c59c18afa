"""RPN training targets (matterport's ``build_rpn_targets`` semantics), NumPy only.

This runs in the input pipeline for every image, so it must not import
TensorFlow and must be fast: ~262k anchors x 100 GT boxes. Instead of a dense
[A, N] IoU matrix it builds a spatial index of the anchors (``AnchorIndex``)
and computes IoU only for (anchor, GT) pairs whose boxes can intersect; every
other pair has IoU exactly 0, so the result equals the dense computation.

Box format: (y1, x1, y2, x2) in pixels, y2/x2 exclusive; area = h * w (no +1).
"""
import threading

import numpy as np

from mrcnn.structures.boxes import box_area, box_refinement, compute_overlaps, iou_from_corners

# Matterport's thresholds (the released weights were trained with them).
RPN_NEGATIVE_IOU = 0.3   # max IoU below this (and no crowd overlap): negative
RPN_POSITIVE_IOU = 0.7   # max IoU at or above this: positive
CROWD_IOU = 0.001        # anchors overlapping a crowd box this much are never negative
# Anchors whose IoU with a GT is within this relative tolerance of that GT's
# best IoU count as tied: anchor coordinates such as cy - 32/sqrt(0.5)/2 are
# rounded, so mathematically equal IoUs can differ in the last bits.
TIE_RTOL = 1e-5


class AnchorIndex:
    """Spatial index over anchors [A, (y1, x1, y2, x2)] for sparse IoU.

    Anchors are binned by (height, width) in quarter-octaves, and inside a bin
    sorted by (row of y1 on a grid whose cell is the bin's height, x1). For a
    query box the anchors of a bin that can intersect it form a few contiguous
    runs of that order, found with ``searchsorted``. Per bin an upper bound of
    the IoU (from the size extremes) lets callers skip bins that cannot reach a
    threshold. Build it once for a fixed anchor set and pass it to
    ``build_rpn_targets`` instead of the array to skip the build cost (~60 ms
    for 262k anchors; a content-checked cache also avoids rebuilding).
    """

    def __init__(self, anchors):
        a = np.ascontiguousarray(anchors, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 4:
            raise ValueError(f"anchors must be [A, 4] (y1, x1, y2, x2), got shape {a.shape}")
        self.anchors = a
        self.num = len(a)
        if self.num == 0:
            return
        h = np.maximum(a[:, 2] - a[:, 0], 1e-6)
        w = np.maximum(a[:, 3] - a[:, 1], 1e-6)
        hb = np.floor(np.log2(h) * 4).astype(np.int64)
        wb = np.floor(np.log2(w) * 4).astype(np.int64)
        _, bin_of = np.unique(hb * 4096 + wb, return_inverse=True)
        bin_of = bin_of.reshape(-1)
        nb = int(bin_of.max()) + 1
        self.hmax = np.zeros(nb)
        self.wmax = np.zeros(nb)
        self.amin = np.full(nb, np.inf)
        np.maximum.at(self.hmax, bin_of, h)
        np.maximum.at(self.wmax, bin_of, w)
        np.minimum.at(self.amin, bin_of, h * w)
        # Row cell ~ anchor height keeps the candidate superset tight.
        self.cell = np.maximum(self.hmax, 1.0)
        self.ymin = float(a[:, 0].min())
        self.xmin = float(a[:, 1].min())
        rows = np.floor((a[:, 0] - self.ymin) / self.cell[bin_of])
        self.K = float(a[:, 1].max() - self.xmin) + 1.0     # x span: key stride of one row
        self.R = float(rows.max()) + 1.0                   # rows per bin
        key = (bin_of * self.R + rows) * self.K + (a[:, 1] - self.xmin)
        self.order = np.argsort(key, kind="stable")
        self.key = key[self.order]
        # Structure of arrays in sorted order: 1-D gathers are much faster than row gathers.
        s = a[self.order]
        self.y1, self.x1, self.y2, self.x2 = (np.ascontiguousarray(s[:, i]) for i in range(4))
        self.area = (self.y2 - self.y1) * (self.x2 - self.x1)

    def candidate_pairs(self, boxes, min_iou=0.0):
        """Pairs (sorted position, box index) that may overlap with IoU >= min_iou.

        boxes: float64 [N, 4]; min_iou: scalar or [N]. Returns int64 [M] arrays,
        grouped by box. A superset: callers still test the exact overlap.
        """
        n = len(boxes)
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        if self.num == 0 or n == 0:
            return empty
        nb = len(self.hmax)
        by1, bx1, by2, bx2 = (boxes[:, i][:, None] for i in range(4))   # [N, 1]
        # IoU <= min(h) * min(w) / max(area) for any anchor of the bin.
        garea = (by2 - by1) * (bx2 - bx1)
        inter_ub = np.minimum(self.hmax, by2 - by1) * np.minimum(self.wmax, bx2 - bx1)
        ub = np.where(inter_ub > 0, inter_ub / np.maximum(np.maximum(self.amin, garea), 1e-12), 0.0)
        # Anchor y1 must lie in (by1 - hmax, by2) and x1 in (bx1 - wmax, bx2).
        r_lo = np.clip(np.floor((by1 - self.hmax - self.ymin) / self.cell), 0, self.R - 1)
        r_hi = np.clip(np.floor((by2 - self.ymin) / self.cell), -1, self.R - 1)
        nrows = np.maximum(r_hi - r_lo + 1, 0).astype(np.int64)          # [N, nb]
        min_iou = np.broadcast_to(np.asarray(min_iou, np.float64).reshape(-1, 1), (n, 1))
        nrows[(ub <= 0) | (ub < min_iou)] = 0
        flat = nrows.ravel()
        tot = int(flat.sum())
        if tot == 0:
            return empty
        # One (box, bin, row) triple per contiguous run of the sorted keys.
        trip = np.repeat(np.arange(flat.size), flat)
        first = np.cumsum(flat) - flat
        row = r_lo.ravel()[trip] + (np.arange(tot) - first[trip])
        box_i = trip // nb
        bin_i = trip % nb
        base = (bin_i * self.R + row) * self.K
        # Clip the x offsets into [0, K) so a run never spills into the next row.
        klo = base + np.maximum(boxes[box_i, 1] - self.wmax[bin_i] - self.xmin, -0.5)
        khi = base + np.minimum(boxes[box_i, 3] - self.xmin, self.K - 0.5)
        lo = np.searchsorted(self.key, klo, side="right")
        hi = np.searchsorted(self.key, khi, side="left")
        ln = np.maximum(hi - lo, 0)
        m = int(ln.sum())
        if m == 0:
            return empty
        seg = np.repeat(np.arange(tot), ln)
        pos = lo[seg] + (np.arange(m) - (np.cumsum(ln) - ln)[seg])
        return pos, box_i[seg]

    def sparse_iou(self, boxes, min_iou=0.0):
        """IoU of the intersecting (anchor, box) pairs; every pair with IoU >= min_iou is listed.

        boxes: float [N, 4]; min_iou: scalar or [N] per box.
        Returns (anchor_idx int64 [M], box_idx int64 [M], iou float64 [M]), iou > 0,
        grouped by box. Unlisted pairs have IoU 0 or below min_iou.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        pos, bi = self.candidate_pairs(boxes, min_iou)
        # Structure-of-arrays gathers: 1-D gathers are much faster than row gathers.
        anchor = (self.y1[pos], self.x1[pos], self.y2[pos], self.x2[pos])
        box = tuple(np.ascontiguousarray(boxes[:, i])[bi] for i in range(4))
        iou = iou_from_corners(anchor, box, self.area[pos], box_area(boxes)[bi])
        keep = np.flatnonzero(iou > 0)
        return self.order[pos[keep]], bi[keep], iou[keep]


# Single-entry cache: training uses one anchor set, so rebuilding the index
# per image would waste the argsort. Keyed on content (array_equal), not id().
_cache_lock = threading.Lock()
_cache = (None, None)


def _get_index(anchors):
    global _cache
    if isinstance(anchors, AnchorIndex):
        return anchors
    anchors = np.asarray(anchors)
    cached_arr, cached_idx = _cache
    if cached_arr is not None and cached_arr.shape == anchors.shape and np.array_equal(cached_arr, anchors):
        return cached_idx
    idx = AnchorIndex(anchors)
    with _cache_lock:
        _cache = (np.array(anchors, copy=True), idx)
    return idx


def _segment_max(seg, values, n):
    """Max of values per segment id in [0, n) (0 where a segment is empty)."""
    out = np.zeros(n)
    if len(seg):
        np.maximum.at(out, seg, values)
    return out


def _tied(ai, gj, iou, gt_max):
    """Anchors whose IoU with GT gj is within TIE_RTOL of that GT's best (> 0)."""
    gm = gt_max[gj]
    return ai[(gm > 0) & (iou >= gm * (1.0 - TIE_RTOL))]


def build_rpn_targets(anchors, gt_class_ids, gt_boxes, anchors_per_image, std_dev, rng=None):
    """RPN match labels and bbox targets for one image.

    anchors: float [A, (y1, x1, y2, x2)] pixels, or an ``AnchorIndex`` built from them.
    gt_class_ids: int [N]; negative ids are crowd boxes (never matched; anchors with
        IoU >= 0.001 to one are never negatives); 0 rows are padding and ignored.
    gt_boxes: float [N, (y1, x1, y2, x2)] pixels. N may be 0.
    anchors_per_image: the anchor budget (config.RPN_TRAIN_ANCHORS_PER_IMAGE).
    std_dev: [4] divisor of the deltas (config.RPN_BBOX_STD_DEV).
    rng: np.random.Generator used for subsampling (default: a fresh one).

    Returns rpn_match int32 [A] (1 positive, -1 negative, 0 neutral) and rpn_bbox
    float32 [anchors_per_image, 4]: deltas of the positive anchors (in anchor order)
    to their best GT, divided by std_dev, zero padded.

    Positives: max IoU >= 0.7, plus for each GT every anchor tied (within TIE_RTOL) for
    that GT's best IoU when it is > 0. Negatives: max IoU < 0.3 and not crowd-adjacent.
    At most half the budget is positive; negatives fill the rest.
    """
    index = _get_index(anchors)
    rng = np.random.default_rng() if rng is None else rng
    total = int(anchors_per_image)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    if len(gt_class_ids) != len(gt_boxes):
        raise ValueError(f"gt_class_ids has {len(gt_class_ids)} rows but gt_boxes has {len(gt_boxes)}")
    boxes = gt_boxes[gt_class_ids > 0]
    rpn_match = _match_labels(index, boxes, gt_boxes[gt_class_ids < 0])
    _subsample(rpn_match, total, rng)
    rpn_bbox = np.zeros((total, 4), np.float32)
    pos = np.flatnonzero(rpn_match == 1)
    if len(pos):
        # Best GT of each kept positive, first on ties like matterport's argmax.
        best_gt = np.argmax(compute_overlaps(index.anchors[pos], boxes), axis=1)
        rpn_bbox[:len(pos)] = box_refinement(index.anchors[pos], boxes[best_gt],
                                             std_dev=std_dev, dtype=np.float64)
    return rpn_match, rpn_bbox


def _match_labels(index, boxes, crowd_boxes):
    """Labels int32 [A] before subsampling: 1 positive, -1 negative, 0 neutral.

    boxes: float64 [N, 4] real GT boxes; crowd_boxes: float64 [K, 4].
    """
    near_crowd = np.zeros(index.num, bool)
    if len(crowd_boxes):
        ai, _, iou = index.sparse_iou(crowd_boxes, CROWD_IOU)
        near_crowd[ai[iou >= CROWD_IOU]] = True

    # Pairs below RPN_NEGATIVE_IOU change neither label thresholds nor (unless a GT's
    # best IoU is that low) the ties, so phase 1 skips anchor bins that cannot reach it.
    floor_iou = RPN_NEGATIVE_IOU * (1.0 - 4 * TIE_RTOL)
    reaches_neg = np.zeros(index.num, bool)
    reaches_pos = np.zeros(index.num, bool)
    tied = [np.zeros(0, np.int64)]
    if len(boxes):
        ai, gj, iou = index.sparse_iou(boxes, floor_iou)
        reaches_neg[ai[iou >= RPN_NEGATIVE_IOU]] = True
        reaches_pos[ai[iou >= RPN_POSITIVE_IOU]] = True
        gt_max = _segment_max(gj, iou, len(boxes))
        final = gt_max >= RPN_NEGATIVE_IOU   # every pair that can tie these was computed
        tied.append(_tied(ai, gj, iou, np.where(final, gt_max, 0.0)))
        # Phase 2: GTs whose best IoU is low; their ties may sit in skipped bins.
        low = np.flatnonzero(~final)
        if len(low):
            ai2, gj2, iou2 = index.sparse_iou(boxes[low], gt_max[low] * (1.0 - 2 * TIE_RTOL))
            tied.append(_tied(ai2, gj2, iou2, _segment_max(gj2, iou2, len(low))))

    rpn_match = np.zeros(index.num, np.int32)
    rpn_match[~reaches_neg & ~near_crowd] = -1
    rpn_match[np.concatenate(tied)] = 1
    rpn_match[reaches_pos] = 1
    return rpn_match


def _subsample(rpn_match, total, rng):
    """In place: at most total // 2 positives, negatives fill the rest of ``total``."""
    pos = np.flatnonzero(rpn_match == 1)
    max_pos = total // 2
    if len(pos) > max_pos:
        keep = rng.choice(pos, max_pos, replace=False)
        rpn_match[pos] = 0
        rpn_match[keep] = 1
    neg = np.flatnonzero(rpn_match == -1)
    n_neg = total - int(np.sum(rpn_match == 1))
    if len(neg) > n_neg:
        keep = rng.choice(neg, n_neg, replace=False)
        rpn_match[neg] = 0
        rpn_match[keep] = -1
