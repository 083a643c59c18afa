"""Data faults written into a built mirror (the server injects the transport faults).

* ``remove_member``: a mask PNG listed in the CSV but absent from its shard.
* ``add_member``: an extra zip member with any name (e.g. ``../../evil.png`` or ``/tmp/x.png``),
  optionally with a CSV row pointing at it.
* ``corrupt_image``: a JPEG cut to its first half (served with a matching Content-Length).
"""
from __future__ import annotations

import os
import zipfile

from .build import write_zip


def shard_path(dir: str, split: str, shard: str) -> str:
    return os.path.join(dir, "openimages", "v5", "%s-masks" % split, "%s-masks-%s.zip" % (split, shard))


def csv_path(dir: str, split: str) -> str:
    return os.path.join(dir, "openimages", "v5", "%s-annotations-object-segmentation.csv" % split)


def _members(path: str) -> list[tuple[str, bytes, int]]:
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i), i.compress_type) for i in zf.infolist()]


def remove_member(dir: str, split: str, name: str) -> None:
    """Rewrite the shard holding ``name`` (chosen by its first character) without it."""
    path = shard_path(dir, split, name[0])
    members = _members(path)
    kept = [m for m in members if m[0] != name]
    if len(kept) == len(members):
        raise KeyError("%s not in %s" % (name, path))
    write_zip(path, kept)


def add_member(dir: str, split: str, shard: str, name: str, data: bytes, csv_row: list[str] | None = None) -> None:
    """Add member ``name`` (taken verbatim) to shard ``shard``; append ``csv_row`` to the split's CSV."""
    path = shard_path(dir, split, shard)
    write_zip(path, _members(path) + [(name, data, zipfile.ZIP_STORED)])
    if csv_row is not None:
        with open(csv_path(dir, split), "a") as f:
            f.write(",".join(csv_row) + "\n")


def corrupt_image(dir: str, split: str, image_id: str) -> None:
    """Keep only the first half of the JPEG's bytes (it no longer decodes fully)."""
    path = os.path.join(dir, "images", split, image_id + ".jpg")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
