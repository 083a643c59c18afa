"""mrcnn.io.fsio: the one write-then-rename. Files and folders appear whole or not at all, with
the umask's mode, and a failure leaves the previous version in place."""
import os

import pytest

from mrcnn.io import fsio


def _leftovers(folder):
    return [n for n in os.listdir(folder) if n.startswith(".")]


def test_write_text_and_copy_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        fsio.atomic_write_text(str(tmp_path / "a.txt"), "héllo\n")
        fsio.atomic_copy(str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))
    finally:
        os.umask(old)
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / "b.txt").st_mode & 0o777 == 0o640
    assert _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "state.json")
    fsio.atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with fsio.atomic_open(path, "w") as f:
            f.write("half")
            raise RuntimeError("killed mid-write")
    assert open(path).read() == "old" and _leftovers(tmp_path) == []


def test_link_replaces_the_target_and_shares_the_bytes(tmp_path):
    src, dst = tmp_path / "epoch_0002.h5", tmp_path / "best.h5"
    src.write_bytes(b"new weights")
    dst.write_bytes(b"old weights")
    fsio.atomic_link(str(src), str(dst))
    assert dst.read_bytes() == b"new weights"
    assert os.stat(dst).st_ino == os.stat(src).st_ino  # a hard link: no second copy on disk
    assert _leftovers(tmp_path) == []


def test_directory_swap_success_and_failure(tmp_path):
    out = tmp_path / "export"
    with fsio.atomic_directory(str(out)) as tmp:
        open(os.path.join(tmp, "v1"), "w").close()
    assert sorted(os.listdir(out)) == ["v1"]
    with pytest.raises(OSError):
        with fsio.atomic_directory(str(out)) as tmp:
            open(os.path.join(tmp, "v2"), "w").close()
            raise OSError("disk full")
    assert sorted(os.listdir(out)) == ["v1"]          # the previous version is untouched
    old = os.umask(0o022)
    try:
        with fsio.atomic_directory(str(out)) as tmp:
            open(os.path.join(tmp, "v3"), "w").close()
    finally:
        os.umask(old)
    assert sorted(os.listdir(out)) == ["v3"]          # replaced whole, not merged
    assert os.stat(out).st_mode & 0o777 == 0o755      # not mkdtemp's 0o700
    assert _leftovers(tmp_path) == []
