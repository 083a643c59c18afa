"""Fetch JPEGs, check they decode, write them atomically.

``fetch_image`` retries transient HTTP failures (via Net) and bodies that do not decode once more
(a corrupt body can be a transfer fault); a JPEG that still does not decode is reported, never written.
"""
from __future__ import annotations

import io
import os

from .fsutil import atomic_write_bytes


class CorruptImage(ValueError):
    """Bytes that PIL cannot fully decode."""


def decode_check(data: bytes, what: str) -> tuple[int, int]:
    """(width, height) if ``data`` is an image PIL can verify and fully load, else CorruptImage."""
    from PIL import Image, UnidentifiedImageError

    from mrcnn.structures.pixels import ImageTooLarge, displayed_size, open_image
    try:
        with open_image(io.BytesIO(data), what) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                raise CorruptImage("%s: empty image" % what)
            w, h = displayed_size(im)  # boxes are scaled to the image as displayed
            return int(w), int(h)
    except ImageTooLarge as e:
        raise CorruptImage(str(e)) from None
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise CorruptImage("%s does not decode (%s)" % (what, e)) from None


def image_size(path: str) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied) from a local image's header."""
    from mrcnn.structures.pixels import displayed_size, open_image
    with open_image(path) as im:
        w, h = displayed_size(im)
        return int(w), int(h)


def fetch_image(net, url: str, dest: str, decode_retries: int = 1) -> tuple[int, int]:
    """Download ``url`` to ``dest`` if it decodes; returns (width, height).

    Raises FetchError (HTTP) or CorruptImage (decoding still fails after ``decode_retries`` refetches).
    """
    err = None
    for attempt in range(decode_retries + 1):
        data = net.get_bytes(url, "images")
        try:
            size = decode_check(data, url)
        except CorruptImage as e:
            err = e
            net.stats.event("image_decode_failed")
            continue
        atomic_write_bytes(dest, data, durable=False)
        return size
    raise err


def have_image(path: str) -> tuple[int, int] | None:
    """Size of an already-downloaded image, or None if absent/unreadable (then it is refetched)."""
    if not os.path.isfile(path):
        return None
    try:
        return image_size(path)
    except (OSError, ValueError):
        return None
