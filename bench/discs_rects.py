"""Discs and rectangles with exact masks: the generated set of the same-run learning bench.

NumPy only, so the torchvision child process (its own venv, no TensorFlow) reads the very same
arrays. ``make_split(count, size, seed)`` -> images uint8 [N, S, S, 3], and per image a list of
(class_id, mask bool [S, S]) with class 1 = disc, 2 = rectangle. Objects do not overlap (their
boxes are kept 2 px apart), so every mask is exactly the drawn shape. ``write_data`` stores both
splits in one npz and ``load_split`` reads one back (the parent and the torchvision child).
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES = ["BG", "disc", "rectangle"]


def _draw_one(rng, size, placed):
    """A random non-overlapping disc or rectangle: (class_id, box [y1, x1, y2, x2], mask) or None."""
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(20):
        if rng.random() < 0.5:
            r = rng.uniform(6, 24)
            cy, cx = rng.uniform(r, size - r, 2)
            box = (cy - r, cx - r, cy + r, cx + r)
            mask = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r
            cls = 1
        else:
            h, w = rng.integers(10, 49, 2)
            y1, x1 = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
            box = (y1, x1, y1 + h, x1 + w)
            mask = np.zeros((size, size), bool)
            mask[y1:y1 + h, x1:x1 + w] = True
            cls = 2
        if mask.sum() < 16:
            continue
        if all(box[2] + 2 <= b[0] or b[2] + 2 <= box[0] or box[3] + 2 <= b[1] or b[3] + 2 <= box[1]
               for b in placed):
            return cls, box, mask
    return None


def make_image(seed, index, size=128, max_objects=4):
    """One image uint8 [S, S, 3] and its [(class_id, mask bool [S, S])], from (seed, index)."""
    rng = np.random.default_rng([seed, index])
    background = rng.integers(0, 256, 3)
    image = np.empty((size, size, 3), np.float64)
    image[:] = background
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        found = _draw_one(rng, size, boxes)
        if found is None:
            continue
        cls, box, mask = found
        # A colour far from the background, so every object is visible.
        color = (background + rng.integers(80, 176, 3)) % 256
        image[mask] = color
        boxes.append(box)
        objects.append((cls, mask))
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), objects


def make_split(count, size=128, seed=0):
    """``count`` images from ``seed``: (images uint8 [N, S, S, 3], [[(class_id, mask)], ...])."""
    images, annotations = [], []
    for i in range(count):
        image, objects = make_image(seed, i, size)
        images.append(image)
        annotations.append(objects)
    return np.stack(images), annotations


def boxes_of(masks):
    """Masks bool [K, S, S] -> boxes float [K, (y1, x1, y2, x2)] in pixels, y2/x2 exclusive."""
    out = []
    for m in masks:
        rows, cols = np.where(m.any(1))[0], np.where(m.any(0))[0]
        out.append([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1])
    return np.asarray(out, np.float32).reshape(-1, 4)


def write_data(path, n_train, n_val, size=128, seed=0):
    """Both splits into one npz: images, per-object class ids and bit-packed masks, counts."""
    arrays = {}
    for split, count, s in (("train", n_train, seed), ("val", n_val, seed + 1000)):
        images, annotations = make_split(count, size, s)
        masks = [m for objs in annotations for _, m in objs]
        arrays[f"{split}_images"] = images
        arrays[f"{split}_counts"] = np.array([len(o) for o in annotations], np.int32)
        arrays[f"{split}_classes"] = np.array([c for objs in annotations for c, _ in objs], np.int32)
        arrays[f"{split}_masks"] = np.packbits(np.stack(masks), axis=-1)
    np.savez(path, **arrays)


def load_split(path, split):
    """(images uint8 [N, S, S, 3], [(class_ids [K], masks bool [K, S, S]), ...])."""
    d = np.load(path)
    images, counts = d[f"{split}_images"], d[f"{split}_counts"]
    masks = np.unpackbits(d[f"{split}_masks"], axis=-1, count=images.shape[2]).astype(bool)
    classes, starts = d[f"{split}_classes"], np.concatenate([[0], np.cumsum(counts)])
    return images, [(classes[a:b], masks[a:b]) for a, b in zip(starts[:-1], starts[1:])]
