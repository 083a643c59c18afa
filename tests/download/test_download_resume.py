"""kill -9 mid-run, rerun: the tree equals an uninterrupted run's, and nothing complete is fetched twice."""
import os
import signal
import subprocess
import sys
import time

import pytest

from download import download_class
from download.mirror import build_mirror
from download.mirror.faults import shard_path
from download.mirror.testing import comparable_tree, range_of, running, zip_member_spans

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPLITS = ("validation", "test")


def complete_files(out):
    """Relative paths of the finished (non-temp) files under out/cat and the cached CSVs."""
    done = set()
    for d, _, files in os.walk(out):
        for f in files:
            if not f.startswith(".tmp-"):
                done.add(os.path.relpath(os.path.join(d, f), out))
    return done


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("mirror"))
    build_mirror(d, images_per_split=10, splits=SPLITS, seed=21)
    return d


def test_kill_9_then_rerun_gives_the_same_tree_without_refetching(mirror, tmp_path):
    kw = dict(splits=SPLITS, progress=False, timeout=5, retries=3, backoff=0.01)
    with running(mirror, latency_ms=40) as srv:
        clean = tmp_path / "clean"
        download_class("Cat", out=str(clean), base_url=srv.base_url, images_url=srv.images_url, workers=4, **kw)

        killed = tmp_path / "killed"
        env = dict(os.environ, OPENIMAGES_BASE_URL=srv.base_url, OPENIMAGES_IMAGES_URL=srv.images_url)
        proc = subprocess.Popen([sys.executable, "-m", "download", "--class", "Cat", "--splits", ",".join(SPLITS),
                                 "--out", str(killed), "--workers", "2", "--quiet"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ann = killed / "cat" / "validation" / "annotations"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if ann.is_dir() and len([f for f in os.listdir(ann) if f.endswith(".xml")]) >= 3:
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        assert not (killed / "cat" / "manifest.json").exists()
        done = complete_files(str(killed))

        srv.reset_log()
        download_class("Cat", out=str(killed), base_url=srv.base_url, images_url=srv.images_url, workers=4, **kw)
        log = list(srv.log)

    assert comparable_tree(str(killed)) == comparable_tree(str(clean))

    # No file that was complete at the kill is fetched again.
    fetched = {e[1] for e in log}
    images = {f for f in done if "/images/" in f and f.startswith("cat/")}
    assert images, "the killed run should have finished some images"
    for f in images:
        _, split, _, name = f.split("/")
        assert "/images/%s/%s" % (split, name) not in fetched
    for f in done:
        if f.startswith(".cache/annotations/"):
            split = os.path.basename(f).split("-")[0]
            assert "/openimages/v5/%s-annotations-object-segmentation.csv" % split not in fetched
    masks = [f for f in done if "/masks/" in f and f.startswith("cat/")]
    assert masks
    for f in masks:
        _, split, _, name = f.split("/")
        zpath = shard_path(mirror, split, name[0])
        lo, hi = zip_member_spans(zpath)[name]
        url_path = "/openimages/v5/%s-masks/%s" % (split, os.path.basename(zpath))
        for e in log:
            if e[1] == url_path:
                a, b = range_of(e[2], os.path.getsize(zpath))
                assert b <= lo or a >= hi, "%s fetched again by %s" % (name, e[2])


def test_stale_temp_files_are_removed_and_never_trusted(mirror, tmp_path):
    with running(mirror) as srv:
        kw = dict(splits="validation", base_url=srv.base_url, images_url=srv.images_url, progress=False)
        download_class("Cat", out=str(tmp_path), **kw)
        img_dir = tmp_path / "cat" / "validation" / "images"
        victim = sorted(os.listdir(img_dir))[0]
        os.unlink(img_dir / victim)                       # as if killed before the rename ...
        os.unlink(tmp_path / "cat" / "validation" / "annotations" / (victim[:-4] + ".xml"))
        (img_dir / ".tmp-abc123").write_bytes(b"\xff\xd8 half a jpeg")   # ... leaving its temp file
        ann_tmp = tmp_path / "cat" / "validation" / "annotations" / (".%s.xml.x1y2.tmp" % victim[:-4])
        ann_tmp.write_bytes(b"<annotation>")   # and dataset.voc's temp name for a cut XML
        srv.reset_log()
        download_class("Cat", out=str(tmp_path), **kw)
        assert [e[1] for e in srv.log] == ["/images/validation/" + victim]
    assert not (img_dir / ".tmp-abc123").exists() and not ann_tmp.exists()
    assert (tmp_path / "cat" / "validation" / "annotations" / (victim[:-4] + ".xml")).exists()
