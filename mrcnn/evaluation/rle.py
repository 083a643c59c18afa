"""Fast COCO run-length encoding of instance masks (pycocotools' format).

NumPy plus pycocotools (imported lazily); never imports TensorFlow or Keras.
"""
import numpy as np


def encode_masks(masks, mask_module=None):
    """bool [H, W, N] -> list of N compressed COCO RLE dicts ({"size", "counts" bytes}).

    Same output as ``pycocotools.mask.encode(np.asfortranarray(masks.astype(np.uint8)))``
    but 2-3x faster on C-ordered masks: that transpose-copy costs more than the
    encoding itself. Run boundaries are found with one vectorised comparison in
    the array's own layout, then pycocotools compresses the counts.
    """
    if mask_module is None:
        from pycocotools import mask as mask_module
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [H, W, N], got shape {masks.shape}")
    h, w, n = masks.shape
    if n == 0:
        return []
    m = masks if masks.dtype == bool else masks > 0.5
    hw = h * w
    # Column-major position p = x*h + y of mask i lives at i*hw + p in one global
    # line; a run boundary is where the pixel differs from the previous one.
    y, rest = np.divmod(_row_changes(m), w * n)                       # inside a column
    x, i = np.divmod(rest, n)
    x2, i2 = np.divmod(np.flatnonzero(m[-1, :-1] != m[0, 1:]), n)    # column to column
    i3 = np.flatnonzero(m[0, 0])                                     # masks starting with 1
    starts = np.arange(n + 1, dtype=np.int64) * hw
    g = np.concatenate([i * hw + x * h + y + 1, i2 * hw + (x2 + 1) * h, i3 * hw, starts])
    g.sort()
    # A mask starting with 1 has a duplicate boundary at its start: a leading 0 count.
    cut = np.searchsorted(g, starts, side="left").tolist()
    runs = np.diff(g).astype(np.uint64)  # pycocotools converts uint64 arrays without a loop
    return mask_module.frPyObjects(
        [{"size": [h, w], "counts": runs[cut[k]:cut[k + 1]]} for k in range(n)], h, w)


def mask_areas(rles, mask_module):
    """Pixel count of each RLE, as a list of ints.

    pycocotools' ``area`` allocates its output as ``np.array((n,), dtype=np.uint8)``, which with
    NumPy 2 raises OverflowError for 256 or more masks; calling it on chunks of at most 255 gives
    the same numbers whatever the count.
    """
    out = []
    for i in range(0, len(rles), 255):
        out += [int(a) for a in np.asarray(mask_module.area(rles[i:i + 255])).reshape(-1)]
    return out


def _row_changes(m):
    """Flat C-order indices into [H-1, W, N] where row y+1 differs from row y (bool m)."""
    h, w, n = m.shape
    if (w * n) % 8 or not m.flags.c_contiguous:
        return np.flatnonzero(m[1:] != m[:-1])
    # Same result, compared 8 pixels at a time as uint64 words; only the (few)
    # words that differ are split into bytes.
    q = m.reshape(h, w * n).view(np.uint64)
    below, above = q[1:].reshape(-1), q[:-1].reshape(-1)
    words = np.flatnonzero(below != above)
    diff = (below[words] ^ above[words]).view(np.uint8).reshape(-1, 8)
    k, byte = np.nonzero(diff.view(bool))
    return words[k] * 8 + byte
