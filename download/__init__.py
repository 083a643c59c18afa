"""Open Images single-class mask downloader (no TensorFlow/Keras imports anywhere in this package).

    from . import download_class
    manifest = download_class("Cat", out="data", splits=("train", "validation"), limit=200)

CLI: ``python -m download --class Cat --limit 200``. Local test mirror: ``python -m download.mirror``.
"""
from .core import DEFAULT_BASE_URL, DEFAULT_IMAGES_URL, SPLITS, download_class

__all__ = ["download_class", "DEFAULT_BASE_URL", "DEFAULT_IMAGES_URL", "SPLITS"]
