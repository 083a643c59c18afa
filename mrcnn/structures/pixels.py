"""Opening images and masks safely: one pixel-count limit (decompression bombs) and one
orientation policy (EXIF), shared by the downloader, ``python -m dataset check``, the converter,
``Dataset.load_image`` and ``evaluate.py --image``.

* Pixel limit: an image or mask whose header announces more than ``max_pixels()`` pixels is
  refused with ``ImageTooLarge`` (pixel count, limit, how to raise it) before it is decoded; a
  20000x20000 PNG of a few hundred KB would otherwise take 400 MB and minutes. The limit is
  178,956,970 pixels (PIL's own), set with ``--max-pixels N`` or ``$MRCNN_MAX_PIXELS``.
* Orientation: annotation tools (CVAT, LabelMe, LabelImg/VOC) show and annotate a JPEG as a
  viewer displays it, i.e. after its EXIF orientation tag. So every reader here applies
  ``PIL.ImageOps.exif_transpose``: sizes, masks and predictions are in displayed coordinates.
"""
from __future__ import annotations

import os
import re

DEFAULT_MAX_PIXELS = 178_956_970  # PIL's DecompressionBombError threshold (2 x MAX_IMAGE_PIXELS)
_limit = None


class ImageTooLarge(ValueError):
    """An image whose pixel count is over the limit (a likely decompression bomb)."""


def max_pixels() -> int:
    """The pixel limit: set_max_pixels(), else $MRCNN_MAX_PIXELS, else DEFAULT_MAX_PIXELS."""
    if _limit is not None:
        return _limit
    env = os.environ.get("MRCNN_MAX_PIXELS", "").replace("_", "").replace(",", "")
    return int(env) if env.isdigit() and int(env) > 0 else DEFAULT_MAX_PIXELS


def set_max_pixels(n: int | None) -> None:
    """Set the limit for this process (None: back to $MRCNN_MAX_PIXELS or the default)."""
    global _limit
    if n is not None and int(n) < 1:
        raise ValueError("--max-pixels must be a positive number of pixels, got %r" % n)
    _limit = None if n is None else int(n)


def too_large_message(what, width: int, height: int, limit: int) -> str:
    return ("%s is %dx%d = %s pixels, over the limit of %s pixels (a decompression-bomb guard); "
            "skipped. If the file is genuine, raise the limit with --max-pixels N or "
            "MRCNN_MAX_PIXELS=N." % (what, width, height, format(width * height, ","), format(limit, ",")))


def open_image(src, what=None):
    """``PIL.Image.open(src)`` (path or file object) after the pixel-count check of its header.

    Raises ImageTooLarge naming ``what`` (default: the path) with the pixel count and the limit.
    """
    import warnings

    from PIL import Image

    what = what or str(src)
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit  # PIL refuses at twice this: never below our limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(src)
        except Image.DecompressionBombError as e:  # over twice the limit: PIL stops at the header
            n = re.search(r"\((\d+) pixels\)", str(e))
            raise ImageTooLarge("%s is %s pixels, over the limit of %s pixels (a decompression-bomb "
                                "guard); skipped. If the file is genuine, raise the limit with "
                                "--max-pixels N or MRCNN_MAX_PIXELS=N."
                                % (what, format(int(n.group(1)), ",") if n else "too many",
                                   format(limit, ","))) from None
    if im.width * im.height > limit:
        w, h = im.width, im.height
        im.close()
        raise ImageTooLarge(too_large_message(what, w, h, limit))
    return im


def orientation(im) -> int:
    """The EXIF orientation tag (1..8; 1 when absent or invalid)."""
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is no orientation, not an unreadable image
        return 1
    return value if 1 <= value <= 8 else 1


def displayed_size(im) -> tuple[int, int]:
    """(width, height) as a viewer shows the image: swapped for orientations 5-8 (a 90° turn)."""
    w, h = im.size
    return (h, w) if orientation(im) >= 5 else (w, h)


def upright(im):
    """The image as displayed (``ImageOps.exif_transpose``); ``im`` itself when there is no turn."""
    from PIL import ImageOps
    return ImageOps.exif_transpose(im) if orientation(im) != 1 else im


def read_rgb(src, what=None):
    """(RGB uint8 [H, W, 3] as displayed, notes): pixel-limit check, EXIF orientation applied,
    grey made RGB, alpha dropped, 16-bit scaled to 8 bits (a note says so; PIL's own
    ``convert`` would saturate everything above 255 to white)."""
    import numpy as np
    what = what or str(src)
    notes = []
    with open_image(src, what) as im:
        im.load()
        im = upright(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.int64)
            top = 65535 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
            notes.append("%s is a %d-bit image: scaled to 8 bits (value * 255 / %d)"
                         % (what, 16 if top == 65535 else 32, top))
            grey = (arr * 255 // top).clip(0, 255).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=-1), notes
        return np.asarray(im.convert("RGB")), notes
