"""Atomic file writes: nothing half-written is ever left where a rerun would trust it.

Every output goes to a temp file in the destination folder, is fsynced and then ``os.replace``d
into place with the mode ``open()`` would give it, so a killed process or a power loss leaves
either the old state or a ``.tmp-*`` file that no reader looks at. A TensorFlow-free leaf shared
by the model (checkpoints, run files), the downloader and the annotations toolkit.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager


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


def atomic_rename(src: str, dst: str) -> None:
    """Give ``src`` (a finished download) the default mode and move it to ``dst`` durably."""
    _fsync(src)
    os.chmod(src, 0o666 & ~umask())
    os.replace(src, dst)
    _fsync(os.path.dirname(os.path.abspath(dst)), directory=True)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see ``atomic_path``)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` atomically; DiskFullError (folder, bytes) if it cannot fit."""
    with open(src, "rb") as fin, atomic_open(dst, "wb", need=os.path.getsize(src)) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def atomic_link(src: str, dst: str) -> None:
    """``dst`` as a hard link to ``src`` (no extra disk), swapped in atomically; an atomic copy
    where the filesystem has no hard links. Only for files that are never rewritten in place."""
    with atomic_path(dst, durable=False) as tmp:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            atomic_copy(src, tmp)


@contextmanager
def atomic_directory(path: str):
    """Yield a temp folder beside ``path`` to fill; on a clean exit it gets the umask's mode
    (mkdtemp makes 0o700) and replaces ``path``, whose old contents are removed only once the
    new folder is in place. On any error the temp folder goes and ``path`` is left as it was."""
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{base}.tmp-")
    old = None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~umask())
        if os.path.isdir(path) and os.listdir(path):
            # a folder cannot be renamed over a non-empty one: move the old one aside first
            old = tempfile.mkdtemp(dir=parent, prefix=f".{base}.old-")
            os.replace(path, os.path.join(old, base))
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old and not os.path.exists(path):  # put the previous folder back
            os.replace(os.path.join(old, base), path)
        raise
    finally:
        if old:
            shutil.rmtree(old, ignore_errors=True)
