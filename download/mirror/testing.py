"""Helpers for tests and benchmarks that run the downloader against a local mirror."""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager


@contextmanager
def running(dir: str, **kwargs):
    """``with running(mirror_dir) as srv:`` serve it for the block (``srv.base_url``, ``srv.images_url``)."""
    from .server import serve
    srv, _ = serve(dir, **kwargs)
    try:
        yield srv
    finally:
        srv.stop()


def tree_files(root: str, skip_cache: bool = True) -> dict[str, bytes]:
    """{relative path: bytes} of every file under ``root`` (``.cache`` skipped by default)."""
    out = {}
    for d, dirs, files in os.walk(root):
        if skip_cache:
            dirs[:] = [x for x in dirs if x != ".cache"]
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def comparable_tree(root: str) -> dict[str, str]:
    """{relative path: sha256} with each manifest's run-specific ``last_run`` section removed."""
    out = {}
    for rel, data in tree_files(root).items():
        if os.path.basename(rel) == "manifest.json":
            m = json.loads(data)
            m.pop("last_run", None)
            data = json.dumps(m, sort_keys=True).encode()
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def zip_member_spans(path: str) -> dict[str, tuple[int, int]]:
    """{member name: (first byte, end byte)} of a local zip: local header through data."""
    import zipfile
    with zipfile.ZipFile(path) as zf:
        infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
        ends = [i.header_offset for i in infos[1:]] + [zf.start_dir]
        return {i.filename: (i.header_offset, e) for i, e in zip(infos, ends)}


def range_of(header: str | None, size: int) -> tuple[int, int]:
    """(first, end) bytes covered by a request's Range header (whole file if None)."""
    from .server import parse_range
    r = parse_range(header, size) if header else None
    if r is None or r == "bad":
        return 0, size
    return r[0], r[1] + 1
