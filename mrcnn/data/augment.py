"""Cheap built-in augmentations for an image and its instance masks, NumPy only.

Applied before resizing/molding, where matterport applies imgaug. Geometric
ops move image and masks together; colour ops touch the image only.

image: uint8 [H, W, C]. masks: bool [H, W, N] (N may be 0).
Masks may become empty after an op (e.g. a tiny instance shrunk away by
scale_jitter): they are returned as they are, and dropping empty masks (and
their class ids) is the caller's job, as after imgaug in matterport.
"""
import numpy as np


def horizontal_flip(image, masks):
    """Mirror left-right. Returns (image [H, W, C], masks [H, W, N]) as new arrays."""
    return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(masks[:, ::-1])


def _nearest_index(n_in, n_out):
    """Source index of each output pixel, pixel centres aligned (like skimage order 0)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def _resize_image(image, out_h, out_w):
    """Bilinear resize with pixel centres aligned; PIL per channel (fast on uint8)."""
    from PIL import Image   # lazy: keeps `import mrcnn.data.augment` cheap

    mode = "L" if image.dtype == np.uint8 else "F"
    work = image if mode == "L" else image.astype(np.float32)
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(work[..., c]), mode)
                        .resize((out_w, out_h), Image.BILINEAR))
             for c in range(image.shape[2])]
    return np.stack(chans, axis=-1).astype(image.dtype, copy=False)


def scale_jitter(image, masks, scale_range, rng):
    """Rescale by a factor drawn uniformly from scale_range = (low, high).

    The image is resampled bilinearly, the masks by nearest neighbour on the same
    pixel-centre grid, so they stay aligned. Output size round(H * f) x round(W * f)
    (at least 1 x 1) differs from the input's.
    """
    image = np.asarray(image)
    masks = np.asarray(masks)
    if image.shape[:2] != masks.shape[:2]:
        raise ValueError(f"image {image.shape} and masks {masks.shape} differ in height/width")
    f = float(rng.uniform(scale_range[0], scale_range[1]))
    h, w = image.shape[:2]
    out_h, out_w = max(1, int(round(h * f))), max(1, int(round(w * f)))
    if (out_h, out_w) == (h, w):
        return image.copy(), masks.copy()
    rows, cols = _nearest_index(h, out_h), _nearest_index(w, out_w)
    return _resize_image(image, out_h, out_w), masks[rows][:, cols]


def brightness_contrast(image, rng, brightness=0.2, contrast=0.2):
    """Random contrast then brightness: (x - mean) * a + mean + b, clipped to uint8.

    a ~ U(1 - contrast, 1 + contrast) around the image's mean intensity;
    b ~ U(-brightness, brightness) * 255 (a shift of up to that fraction of the range).
    """
    a = 1.0 + float(rng.uniform(-contrast, contrast))
    b = float(rng.uniform(-brightness, brightness)) * 255.0
    x = image.astype(np.float32)
    mean = float(x.mean()) if x.size else 0.0
    out = (x - mean) * a + mean + b
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class Augmenter:
    """Random horizontal flip, scale jitter and brightness/contrast, in that order.

    hflip_prob: flip probability. scale_range: (low, high) factors, or None to skip.
    brightness, contrast: see ``brightness_contrast`` (0 and 0 skip it).
    ``aug(image, masks, rng) -> (image, masks)``; deterministic for a given rng state.
    Empty masks are returned, not dropped (see the module docstring).
    """

    def __init__(self, hflip_prob=0.5, scale_range=(0.8, 1.2), brightness=0.15, contrast=0.15):
        if not 0.0 <= hflip_prob <= 1.0:
            raise ValueError(f"hflip_prob must be in [0, 1], got {hflip_prob}")
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        self.hflip_prob = float(hflip_prob)
        self.scale_range = None if scale_range is None else (float(scale_range[0]), float(scale_range[1]))
        self.brightness = float(brightness)
        self.contrast = float(contrast)

    def get_config(self):
        return {"hflip_prob": self.hflip_prob, "scale_range": self.scale_range,
                "brightness": self.brightness, "contrast": self.contrast}

    def __repr__(self):
        return "Augmenter(%s)" % ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())

    def __call__(self, image, masks, rng):
        if rng.random() < self.hflip_prob:
            image, masks = horizontal_flip(image, masks)
        if self.scale_range is not None and self.scale_range != (1.0, 1.0):
            image, masks = scale_jitter(image, masks, self.scale_range, rng)
        if self.brightness > 0 or self.contrast > 0:
            image = brightness_contrast(image, rng, self.brightness, self.contrast)
        return image, masks
