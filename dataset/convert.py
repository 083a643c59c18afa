"""Records to instance bitmaps: ``record_to_masks`` is what ``load_mask`` runs.

Conventions (masks are bool [H, W, N] at the record's width x height):

* Polygons: vertices are continuous pixel coordinates, pixel (r, c) covering [c, c+1) x [r, r+1)
  (CVAT / COCO / LabelMe). A pixel is in the mask when its centre (c + 0.5, r + 0.5) is inside the
  polygon; we rasterise with ``skimage.draw.polygon`` on the vertices shifted by -0.5, because skimage
  tests integer coordinates. A 40 x 30 axis-aligned rectangle therefore covers exactly 1200 pixels.
  A centre lying exactly on an edge follows skimage's rule (it may count as inside).
* Binary mask PNGs (Open Images): decoded with PIL, object where value >= 128, then resized to the
  image with nearest-neighbour by integer index arrays: output pixel i samples source pixel
  floor((i + 0.5) * src / dst), the same pixels ``skimage.transform.resize(order=0)`` picks (verified
  by tests) at a fraction of the cost. Thresholding before resizing is equivalent (nearest-neighbour
  only selects pixels).
* SegmentationObject PNGs (VOC): palette index == ``instance_value`` (255 is void, never an object).
* Objects with only a box are filled as rectangles (pixels whose centre lies in [y1, y2) x [x1, x2))
  and reported: their ``sources`` entry is "box" so callers can say "falling back to the filled box".
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from ._xml import AnnotationError
from .records import ImageRecord, MaskPNG, Polygon

_POOL = None
_POOL_WORKERS = 0


def _pool(workers: int) -> ThreadPoolExecutor:
    # Pillow releases the GIL while inflating PNG data, so threads overlap decodes.
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS != workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataset-png")
        _POOL_WORKERS = workers
    return _POOL


@lru_cache(maxsize=64)
def nearest_indices(src: int, dst: int) -> np.ndarray:
    """int64 [dst] source index of each output pixel for a nearest-neighbour resize src -> dst."""
    i = np.arange(dst, dtype=np.int64)
    # Exact integer form of floor((i + 0.5) * src / dst): no float rounding at ties.
    idx = np.minimum(((2 * i + 1) * src) // (2 * dst), src - 1)
    idx.setflags(write=False)   # shared by the cache
    return idx


def paste_resized(mask: np.ndarray, out: np.ndarray) -> None:
    """Nearest-resize bool ``mask`` [h, w] into the zeroed bool ``out`` [H, W].

    Same pixels as ``resize_nearest``, but only the output block covering the object's extent is
    computed (an object rarely fills the image), which is what makes resized masks cheap.
    """
    (h, w), (H, W) = mask.shape, out.shape
    if (h, w) == (H, W):
        out[...] = mask
        return
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    ri, ci = nearest_indices(h, H), nearest_indices(w, W)
    # ri/ci are non-decreasing: the output pixels sampling [first, last] form one block.
    o0, o1 = np.searchsorted(ri, rows[0], "left"), np.searchsorted(ri, rows[-1], "right")
    p0, p1 = np.searchsorted(ci, cols[0], "left"), np.searchsorted(ci, cols[-1], "right")
    out[o0:o1, p0:p1] = np.take(np.take(mask, ri[o0:o1], axis=0), ci[p0:p1], axis=1)


def resize_nearest(mask: np.ndarray, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array to [height, width] (skimage order=0 equivalent)."""
    h, w = mask.shape[:2]
    if (h, w) == (height, width):
        if out is None:
            return mask.copy()
        out[...] = mask
        return out
    rows = mask if h == height else np.take(mask, nearest_indices(h, height), axis=0)
    if w == width:
        if out is None:
            return np.ascontiguousarray(rows)
        out[...] = rows
        return out
    return np.take(rows, nearest_indices(w, width), axis=1, out=out)


def read_mask_png(path: str, instance_value: int | None = None) -> np.ndarray:
    """bool [h, w] at the PNG's own resolution.

    ``instance_value`` None: binary mask, value >= 128 is the object (mode "1": set pixels; mode
    "P": any palette index but 0 and 255);
    otherwise the pixels whose palette index (mode "P"/"L") equals ``instance_value``.
    Raises OSError naming the file when it cannot be decoded.
    """
    from mrcnn.structures.pixels import ImageTooLarge, open_image
    try:
        with open_image(path, "mask PNG %s" % path) as im:
            mode = im.mode
            if instance_value is not None:
                arr = np.asarray(im if mode in ("P", "L", "I", "I;16") else im.convert("L"))
                return arr == instance_value
            if mode == "1":
                return np.asarray(im, dtype=bool)
            if mode == "P":
                # A palette mask's colours say nothing about "object": VOC's index 1 is dark red
                # (grey 38). Object = any index but the background (0) and VOC's void (255).
                arr = np.asarray(im)
                return (arr != 0) & (arr != 255)
            if mode not in ("L", "I", "I;16", "I;16B", "F"):
                im = im.convert("L")  # RGB(A), LA: judge by grey level
            return np.asarray(im) >= 128
    except ImageTooLarge as e:
        raise OSError(str(e)) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise OSError("cannot decode mask PNG %s (%s); re-download it or remove the object"
                      % (path, e)) from e


def fill_box(box, height: int, width: int, out: np.ndarray) -> None:
    """Set in ``out`` (bool [height, width]) the pixels whose centre lies inside box (y1, x1, y2, x2)."""
    y1, x1, y2, x2 = box
    r0, r1 = max(0, int(np.ceil(y1 - 0.5))), min(height, int(np.ceil(y2 - 0.5)))
    c0, c1 = max(0, int(np.ceil(x1 - 0.5))), min(width, int(np.ceil(x2 - 0.5)))
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = True


def rasterize_polygon(points, height: int, width: int, out: np.ndarray) -> None:
    """Set in ``out`` the pixels whose centre is inside the polygon of (x, y) continuous points."""
    from skimage.draw import polygon
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    rr, cc = polygon(pts[:, 1] - 0.5, pts[:, 0] - 0.5, shape=(height, width))
    out[rr, cc] = True


def record_size(record: ImageRecord) -> tuple[int, int]:
    """(height, width) of the record, from the image header when the annotation lacks it."""
    h, w = int(record.height), int(record.width)
    if h <= 0 or w <= 0:
        from .voc import image_size
        w, h = image_size(record.path)
    if h <= 0 or w <= 0:
        raise AnnotationError(record.annotation or record.path,
                              "image %s has no size in the annotation and %s cannot be read"
                              % (record.image_id, record.path))
    from mrcnn.structures.pixels import max_pixels
    if h * w > max_pixels():  # [N, H, W] bool buffers of this size would exhaust memory
        raise AnnotationError(record.annotation or record.path,
                              "image %s: <size> %dx%d is over the limit of %s pixels; fix <size> or "
                              "raise --max-pixels" % (record.image_id, w, h, format(max_pixels(), ",")))
    return h, w


def record_to_masks(record: ImageRecord, workers: int = 1):
    """Instance masks of ``record``: (masks bool [H, W, N], class_names list[str], sources list[str]).

    H, W are the record's height and width (the JPEG's size). ``sources[k]`` is "polygon", "png"
    (binary mask PNG), "png_index" (SegmentationObject index) or "box" (filled box fallback: no mask,
    or a polygon with fewer than 3 points). ``masks`` is a [H, W, N] view of an [N, H, W] C-order
    buffer (writing each instance contiguously is ~5x faster); index it as usual.
    ``workers`` > 1 decodes mask PNGs in that many threads. Raises OSError naming an unreadable PNG.
    """
    height, width = record_size(record)
    n = len(record.objects)
    buf = np.zeros((n, height, width), dtype=bool)
    names = [o.class_name for o in record.objects]
    sources = []
    png_jobs = {}   # (path, instance_value) -> object indices; a VOC PNG serves many objects
    for k, obj in enumerate(record.objects):
        m = obj.mask
        if isinstance(m, Polygon) and len(m.points) >= 3:
            rasterize_polygon(m.points, height, width, buf[k])
            sources.append("polygon")
        elif isinstance(m, MaskPNG):
            png_jobs.setdefault((m.path, m.instance_value), []).append(k)
            sources.append("png" if m.instance_value is None else "png_index")
        else:
            fill_box(obj.box, height, width, buf[k])
            sources.append("box")
    if png_jobs:
        keys = list(png_jobs)

        def job(key):
            src = read_mask_png(*key)
            first = png_jobs[key][0]
            paste_resized(src, buf[first])
            for other in png_jobs[key][1:]:
                buf[other] = buf[first]

        if workers > 1 and len(keys) > 2:
            for _ in _pool(min(workers, os.cpu_count() or 1, len(keys))).map(job, keys):
                pass
        else:
            for key in keys:
                job(key)
    return np.moveaxis(buf, 0, -1), names, sources
