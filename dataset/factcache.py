"""Cache of expensive file facts (image decodes, mask PNG decodes) keyed by path, size and mtime.

``OpenImagesDataset`` validates every image and mask when it loads. Decoding them costs ~10-40 ms
per image, so the facts (image size or decode error; mask shape and emptiness) are kept in
``{root}/.cache/dataset-checks.json``. An entry is reused only while the file's size and
modification time are unchanged, so a re-downloaded or repaired file is checked again.
Problems are always re-derived from the facts and the current annotation.
"""
from __future__ import annotations

import json
import os

from ._xml import atomic_write_bytes

VERSION = 1


class FactCache:
    """``get(kind, path, key, compute)``: cached ``compute()`` for an existing file."""

    def __init__(self, path: str | None = None):
        self.path = path
        self.entries = {}
        self.dirty = False
        if path and os.path.isfile(path):
            try:
                with open(path, "r", encoding="utf-8") as f:
                    data = json.load(f)
                if isinstance(data, dict) and data.get("version") == VERSION:
                    self.entries = data.get("entries", {})
            except (OSError, ValueError):
                self.entries = {}   # a damaged cache is only a cache: start over

    def get(self, kind: str, path: str, key, compute):
        try:
            st = os.stat(path)
        except OSError:
            return compute()       # missing files are not cached
        k = "%s|%s|%s" % (kind, os.path.abspath(path), key)
        hit = self.entries.get(k)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        facts = compute()
        self.entries[k] = [st.st_size, st.st_mtime_ns, facts]
        self.dirty = True
        return facts

    def save(self) -> None:
        """Write the cache atomically; a read-only dataset folder just means no cache."""
        if not (self.path and self.dirty):
            return
        try:
            atomic_write_bytes(self.path, json.dumps({"version": VERSION, "entries": self.entries},
                                                     separators=(",", ":")).encode("utf-8"))
            self.dirty = False
        except OSError:
            pass


class NoCache:
    """Stand-in that always computes."""

    def get(self, kind, path, key, compute):
        return compute()

    def save(self) -> None:
        pass
