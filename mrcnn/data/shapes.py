"""Synthetic "shapes" dataset (squares, circles, triangles) for tests and benchmarks.

Each image is fully determined by (seed, index): background colour, and a
list of shapes (class name, RGB colour, centre y, centre x, size s). Later
shapes occlude earlier ones; shapes left with fewer than ``MIN_PIXELS``
visible pixels are removed from the spec before anything is drawn, so the
drawn image and the masks always agree: every pixel is either background or
exactly one instance's colour.
"""
import math

import numpy as np

from mrcnn.utils import Dataset

CLASSES = ("square", "circle", "triangle")  # ids 1..3
MIN_PIXELS = 20
_TRIANGLE_HALF_BASE = 1 / math.sin(math.radians(60))  # half base = s / sin(60)


def shape_pixels(name, y, x, s, height, width):
    """(rows, cols) of a shape drawn in an image of (height, width)."""
    from skimage import draw
    if name == "square":
        return draw.rectangle((y - s, x - s), (y + s, x + s), shape=(height, width))
    if name == "circle":
        return draw.disk((y, x), s, shape=(height, width))
    if name == "triangle":
        half = s * _TRIANGLE_HALF_BASE
        return draw.polygon([y - s, y + s, y + s], [x, x - half, x + half], shape=(height, width))
    raise ValueError("Unknown shape %r; expected one of %s" % (name, ", ".join(CLASSES)))


def _random_spec(rng, height, width, count):
    """Background colour and ``count`` random shapes, all colours distinct."""
    m = min(height, width)
    s_min = 5  # smallest shape is a 10x10 square / r=5 disk / ~57 px triangle
    s_max = max(s_min, m // 4)
    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    used = {bg}
    shapes = []
    for _ in range(count):
        name = CLASSES[int(rng.integers(0, len(CLASSES)))]
        color = bg
        while color in used:
            color = tuple(int(v) for v in rng.integers(0, 256, 3))
        used.add(color)
        s = int(rng.integers(s_min, s_max + 1))
        margin = math.ceil(s * _TRIANGLE_HALF_BASE) + 1  # keep the whole shape inside
        y = int(rng.integers(margin, height - margin))
        x = int(rng.integers(margin, width - margin))
        shapes.append((name, color, (y, x, s)))
    return bg, shapes


def _drop_hidden(shapes, height, width, min_pixels=MIN_PIXELS):
    """Remove shapes with < min_pixels visible pixels. Visibility only depends
    on later shapes, so one back-to-front pass is exact."""
    covered = np.zeros((height, width), bool)
    kept = []
    for name, color, (y, x, s) in reversed(shapes):
        own = np.zeros((height, width), bool)
        own[shape_pixels(name, y, x, s, height, width)] = True
        if (own & ~covered).sum() >= min_pixels:
            kept.append((name, color, (y, x, s)))
            covered |= own
    return kept[::-1]


class ShapesDataset(Dataset):
    """Synthetic dataset: source "shapes", classes square=1, circle=2, triangle=3."""

    def load_shapes(self, count, height, width, seed=0, max_instances=4, empty_fraction=0.0):
        """Register ``count`` images of (height, width).

        round(count * empty_fraction) images (chosen by ``seed``) have no
        shapes; the others have 1..max_instances shapes before occlusion
        culling (at least one always survives).
        """
        if min(height, width) < 32:
            raise ValueError("Shapes images must be at least 32x32, got %dx%d" % (height, width))
        if not 0.0 <= empty_fraction <= 1.0:
            raise ValueError("empty_fraction=%r must be in [0, 1]" % (empty_fraction,))
        if max_instances < 1:
            raise ValueError("max_instances=%r must be >= 1" % (max_instances,))
        for class_id, name in enumerate(CLASSES, start=1):
            self.add_class("shapes", class_id, name)
        n_empty = int(round(count * empty_fraction))
        empty = set(np.random.default_rng([seed, count]).permutation(count)[:n_empty].tolist())
        for i in range(count):
            rng = np.random.default_rng([seed, i])
            n = 0 if i in empty else int(rng.integers(1, max_instances + 1))
            bg, shapes = _random_spec(rng, height, width, n)
            self.add_image("shapes", image_id=i, path=None, height=height, width=width,
                           bg_color=bg, shapes=_drop_hidden(shapes, height, width))

    def image_reference(self, image_id):
        info = self.image_info[image_id]
        return info["shapes"] if info["source"] == "shapes" else super().image_reference(image_id)

    def load_image(self, image_id):
        """RGB uint8 [H, W, 3]: background, then shapes painted in order."""
        info = self.image_info[image_id]
        h, w = info["height"], info["width"]
        image = np.empty((h, w, 3), np.uint8)
        image[:] = info["bg_color"]
        for name, color, (y, x, s) in info["shapes"]:
            image[shape_pixels(name, y, x, s, h, w)] = color
        return image

    def load_mask(self, image_id):
        """Visible-pixel masks bool [H, W, N] and int32 class ids [N]."""
        info = self.image_info[image_id]
        h, w = info["height"], info["width"]
        shapes = info["shapes"]
        mask = np.zeros((h, w, len(shapes)), bool)
        covered = np.zeros((h, w), bool)
        for i in range(len(shapes) - 1, -1, -1):  # later shapes occlude earlier ones
            name, _, (y, x, s) = shapes[i]
            mask[(*shape_pixels(name, y, x, s, h, w), i)] = True
            mask[..., i] &= ~covered
            covered |= mask[..., i]
        class_ids = np.array([CLASSES.index(name) + 1 for name, _, _ in shapes], np.int32)
        return mask, class_ids.reshape(-1)
