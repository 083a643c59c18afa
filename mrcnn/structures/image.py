"""Image resizing, molding and the ``image_meta`` vector, with matterport's semantics (NumPy;
scikit-image imported when a function runs). ``mrcnn.utils`` re-exports these names."""
import numpy as np


def resize(image, output_shape, order=1, mode="constant", cval=0, clip=True,
           preserve_range=False, anti_aliasing=False, anti_aliasing_sigma=None):
    """skimage.transform.resize with matterport's defaults (no anti-aliasing)."""
    from skimage.transform import resize as _resize
    return _resize(image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
                   preserve_range=preserve_range, anti_aliasing=anti_aliasing,
                   anti_aliasing_sigma=anti_aliasing_sigma)


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", rng=None):
    """Resize an image [H, W, C] keeping its aspect ratio (matterport modes).

    mode: "none" (unchanged), "square" (scale so the short side is min_dim,
    capped so the long side is <= max_dim, then zero-pad to max_dim x max_dim),
    "pad64" (scale up to min_dim/min_scale, pad each side to a multiple of 64),
    "crop" (scale up to min_dim, then a random min_dim x min_dim crop;
    ``rng`` is an optional np.random.Generator, else Python's ``random``).
    Returns (image with the input dtype, window (y1, x1, y2, x2) of the image
    inside the output, scale, padding [(top, bottom), (left, right), (0, 0)],
    crop (y, x, h, w) or None).
    """
    dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode == "none":
        return image, window, scale, padding, crop
    if mode not in ("square", "pad64", "crop"):
        raise ValueError("Mode %r not supported; use 'none', 'square', 'pad64' or 'crop'" % (mode,))
    if min_dim:
        scale = max(1, min_dim / min(h, w))  # never downscale here
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    if scale != 1:
        image = resize(image, (round(h * scale), round(w * scale)), preserve_range=True)
    h, w = image.shape[:2]
    if mode == "square":
        top, left = (max_dim - h) // 2, (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
    elif mode == "pad64":
        assert min_dim % 64 == 0, "Minimum dimension must be a multiple of 64"
        pad_h, pad_w = (-h) % 64, (-w) % 64
        top, left = pad_h // 2, pad_w // 2
        padding = [(top, pad_h - top), (left, pad_w - left), (0, 0)]
    else:  # crop
        if rng is None:
            import random
            y, x = random.randint(0, h - min_dim), random.randint(0, w - min_dim)
        else:
            y, x = int(rng.integers(0, h - min_dim + 1)), int(rng.integers(0, w - min_dim + 1))
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        return image.astype(dtype), (0, 0, min_dim, min_dim), scale, padding, crop
    image = np.pad(image, padding[:image.ndim], mode="constant", constant_values=0)
    window = (top, left, h + top, w + left)
    return image.astype(dtype), window, scale, padding, crop


def mold_image(images, config):
    """RGB images (any numeric dtype) -> float32 with config.MEAN_PIXEL subtracted."""
    return np.asarray(images).astype(np.float32) - np.asarray(config.MEAN_PIXEL, np.float32)


def unmold_image(normalized_images, config):
    """Inverse of mold_image: uint8 images (clipped to 0..255)."""
    images = np.asarray(normalized_images, np.float32) + np.asarray(config.MEAN_PIXEL, np.float32)
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Pack image attributes into float64 [12 + num_classes]:
    id(1), original (H, W, C)(3), resized (H, W, C)(3), window (y1, x1, y2, x2)
    in resized pixels (4), scale(1), active_class_ids(num_classes)."""
    return np.array([image_id] + list(original_image_shape) + list(image_shape)
                    + list(window) + [scale] + list(active_class_ids), dtype=np.float64)


def parse_image_meta(meta):
    """Unpack compose_image_meta arrays: [batch, L] (or one [L]) -> dict of
    image_id, original_image_shape, image_shape, window (int32), scale
    (float32), active_class_ids (int32)."""
    meta = np.asarray(meta)
    return {
        "image_id": meta[..., 0].astype(np.int32),
        "original_image_shape": meta[..., 1:4].astype(np.int32),
        "image_shape": meta[..., 4:7].astype(np.int32),
        "window": meta[..., 7:11].astype(np.int32),
        "scale": meta[..., 11].astype(np.float32),
        "active_class_ids": meta[..., 12:].astype(np.int32),
    }
