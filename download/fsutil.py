"""Atomic file writes and safe names: nothing half-written is ever left where a rerun would trust it.

Every output goes to a temp file in the destination folder, is fsynced and then ``os.replace``d into
place with the mode ``open()`` would give it, so a killed process or a power loss leaves either the
old state or a ``.tmp-*`` file that no reader looks at.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import re
import tempfile
from contextlib import contextmanager

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


class DiskFullError(OSError):
    """Not enough free space to write a file; the message names the folder and the bytes needed."""


# Beyond the data itself: file-format overhead and a margin so the rest of the system keeps working.
SPACE_MARGIN = 1 << 20


def free_bytes(folder: str) -> int:
    """Free bytes for this user in ``folder`` (the free-space probe)."""
    return shutil.disk_usage(folder).free


def _full_message(path: str, need: int | None, free: int) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    needed = "%d bytes" % need if need else "more space"
    return ("Not enough disk space in %s to write %s: it needs %s, %d bytes are free. Nothing was "
            "written there (the previous file, if any, is intact). Free some space or choose "
            "another folder, then run the command again." % (folder, os.path.basename(path), needed, free))


def ensure_free_space(path: str, need: int) -> None:
    """Raise DiskFullError unless ``path``'s folder has ``need`` bytes plus a margin free."""
    folder = os.path.dirname(os.path.abspath(path))
    free = free_bytes(folder)
    if free < need + SPACE_MARGIN:
        raise DiskFullError(errno.ENOSPC, _full_message(path, need + SPACE_MARGIN, free))


def _is_disk_full(exc: BaseException) -> bool:
    # h5py reports ENOSPC as an OSError whose errno is unset and whose text holds "errno = 28".
    return isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "No space left" in str(exc) or "errno = 28" in str(exc))


def umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is a set-and-get)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some filesystems cannot fsync a folder; the file itself must be synced
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str, suffix: str = "", durable: bool = True, need: int | None = None):
    """Yield a temp path beside ``path`` to write; on a clean exit the file is fsynced, given the
    mode ``open()`` would (0o666 minus the umask; mkstemp makes 0o600) and ``os.replace``d into
    place. On any error the temp file is removed and ``path`` is left as it was. This is the one
    atomic-write implementation: everything else builds on it. ``durable=False`` skips the fsyncs
    (safe against a killed process, not a power loss) for bulk small files, where an fsync each
    made downloads several times slower; their completeness is checked on rerun instead. With
    ``need`` (bytes), the free space is checked first; a full disk, then or while writing, raises
    DiskFullError naming the folder and the bytes needed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if need is not None:
        ensure_free_space(path, need)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        if durable:
            _fsync(tmp)  # a power loss after the rename must not leave a renamed, empty file
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
        if durable:
            _fsync(folder, directory=True)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if _is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(errno.ENOSPC, _full_message(path, need, free_bytes(folder))) from exc
        raise


@contextmanager
def atomic_open(path: str, mode: str = "wb", durable: bool = True, need: int | None = None):
    """Open a temp file beside ``path`` for writing; see ``atomic_path``."""
    with atomic_path(path, durable=durable, need=need) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f


def atomic_write_bytes(path: str, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_path``)."""
    with atomic_open(path, "wb", durable) as f:
        f.write(data)


def atomic_write_json(path: str, obj) -> None:
    """Write ``obj`` as deterministic JSON (sorted keys, 2-space indent, trailing newline)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


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
    (``.tmp-*``) and dataset.voc's (``.{name}.*.tmp``)."""
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
