"""Image opening policy (EXIF orientation, 16-bit, decompression-bomb guard): it lives in
``mrcnn.structures.pixels``, shared with the downloader and the model's ``Dataset.load_image``."""
from mrcnn.structures.pixels import (DEFAULT_MAX_PIXELS, ImageTooLarge, displayed_size, max_pixels,  # noqa: F401
                          open_image, orientation, read_rgb, set_max_pixels, too_large_message, upright)
