"""Safe names for files named by the remote side, source keys, and (re-exported from
``mrcnn.io.fsio``) atomic writes: nothing half-written is left where a rerun would trust it."""
from __future__ import annotations

import os
import re

# Open Images ImageIDs are 16 hex chars; BoxIDs 8. Accept a little more (mirrors, other versions)
# but never anything that could name a path outside the output folder.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SAFE_PNG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,250}\.png$")


class UnsafeNameError(ValueError):
    """A name from the remote side (CSV cell, zip member) that could escape the output folder."""


def safe_id(value: str, what: str) -> str:
    """Return ``value`` if it is a plain identifier (letters, digits, ``_``, ``-``), else raise."""
    if not _SAFE_ID.match(value or ""):
        raise UnsafeNameError("%s %r is not a plain identifier (letters, digits, '_', '-')" % (what, value))
    return value


def safe_png_name(value: str, what: str) -> str:
    """Return ``value`` if it is a bare ``*.png`` file name (no folder, no ``..``, not absolute)."""
    if ("/" in value or "\\" in value or ".." in value or os.path.isabs(value)
            or not _SAFE_PNG.match(value)):
        raise UnsafeNameError("%s %r is not a bare PNG file name (it has a folder, '..' or an "
                              "absolute path); refusing to write it" % (what, value))
    return value


def inside(root: str, path: str) -> bool:
    """True if ``path`` resolves inside ``root`` (symlinks followed)."""
    root = os.path.realpath(root)
    path = os.path.realpath(path)
    return path == root or path.startswith(root + os.sep)


# The atomic writes live in mrcnn.io.fsio (shared with the model's checkpoints); re-exported here.
from mrcnn.io.fsio import (SPACE_MARGIN, DiskFullError, atomic_open, atomic_path,  # noqa: F401,E402
                        atomic_rename, atomic_write_bytes, atomic_write_json, ensure_free_space,
                        free_bytes, umask)


def url_key(url: str) -> str:
    """A short stable key of a source URL (12 hex of its SHA-1): caches are kept per source, so a
    file cached from one mirror is never served for another."""
    import hashlib
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:12]


def class_dir_name(display_name: str) -> str:
    """Folder name of a class: lower case, runs of anything but [a-z0-9] -> ``_`` ("Teddy bear" -> "teddy_bear")."""
    name = re.sub(r"[^a-z0-9]+", "_", display_name.lower()).strip("_")
    return name or "class"


def clean_stale_temps(folder: str) -> None:
    """Remove temp files a killed run left in ``folder`` (never trusted, just tidied): ours
    (``.tmp-*``, mrcnn.io.fsio's) and the ``.{name}.*.tmp`` files earlier versions of dataset.voc wrote."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for n in names:
        if n.startswith(".tmp-") or (n.startswith(".") and n.endswith(".tmp")):
            try:
                os.unlink(os.path.join(folder, n))
            except OSError:
                pass
