"""Faults injected by a local server and into the mirror's data: retried, detected, skipped, reported."""
import io
import logging
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from dataset.voc import read_voc
from download import download_class
from download.mirror import build_mirror, load_ground_truth
from download.mirror import faults
from download.mirror.testing import running, tree_files
from download.net import FetchError
from download.split import binary_png

CAT = "/m/01yrx"
CSV = "/openimages/v5/validation-annotations-object-segmentation.csv"


@pytest.fixture
def mirror(tmp_path):
    d = str(tmp_path / "mirror")
    build_mirror(d, images_per_split=4, splits=("validation",), seed=11)
    gt = load_ground_truth(d)["splits"]["validation"]
    cats = {i: e for i, e in gt.items() if any(o["mid"] == CAT for o in e["objects"])}
    return d, cats


def run(srv, out, **kw):
    args = dict(out=str(out), splits="validation", base_url=srv.base_url, images_url=srv.images_url,
                progress=False, timeout=1.0, retries=3, backoff=0.01, workers=4)
    args.update(kw)
    return download_class(kw.pop("cls", "Cat"), **{k: v for k, v in args.items() if k != "cls"})


def png_pixels(data):
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"))


def shard_member(d, name):
    with zipfile.ZipFile(faults.shard_path(d, "validation", name[0])) as zf:
        return zf.read(name)


def assert_complete(d, cats, out, m):
    r = m["splits"]["validation"]
    assert r["failed"] == [] and r["images"] == len(cats)
    files = tree_files(str(out / "cat" / "validation"))
    for iid in cats:
        assert files["images/%s.jpg" % iid] == open(os.path.join(d, "images", "validation", iid + ".jpg"), "rb").read()
        for o in cats[iid]["objects"]:
            if o["mid"] == CAT:
                # Masks are stored as 1-bit PNGs: the same pixels after the > 127 threshold.
                stored, source = files["masks/" + o["mask_path"]], shard_member(d, o["mask_path"])
                assert stored == binary_png(source)
                assert np.array_equal(png_pixels(stored) > 127, png_pixels(source) > 127)


def test_500s_and_hangs_are_retried(mirror, tmp_path):
    d, cats = mirror
    with running(d) as srv:
        srv.add_fault("/openimages/v5/class-descriptions-boxable.csv", "status", times=1, arg=503)
        srv.add_fault(CSV, "status", times=2, arg=500)
        srv.add_fault("*/validation-masks-*.zip", "status", times=3, arg=502)
        srv.add_fault("/images/validation/*", "status", times=3, arg=500)
        srv.add_fault("/images/validation/%s.jpg" % sorted(cats)[0], "hang", times=1, arg=1.5)
        m = run(srv, tmp_path / "out")
        assert all(f.times == 0 for f in srv.faults)
    assert m["last_run"]["retries"] >= 10
    assert_complete(d, cats, tmp_path / "out", m)


def pad_csv(d, n=3000):
    """Append rows of a class nobody downloads so the CSV spans several read chunks."""
    with open(faults.csv_path(d, "validation"), "a") as f:
        for i in range(n):
            f.write("%016x_m0zzzz_%08x.png,%016x,/m/0zzzz,%08x,0.1,0.2,0.3,0.4,0.5,0.1 0.2 1;0.3 0.3 0\n"
                    % (i, i, i, i))


def test_cut_bodies_are_detected_and_refetched(mirror, tmp_path):
    d, cats = mirror
    pad_csv(d)
    victim = "/images/validation/%s.jpg" % sorted(cats)[-1]
    with running(d) as srv:
        srv.add_fault(CSV, "truncate", times=1)
        srv.add_fault(victim, "truncate", times=2)
        srv.add_fault("*/validation-masks-*.zip", "truncate", times=2)
        m = run(srv, tmp_path / "out")
        csv_requests = [e for e in srv.log if e[1] == CSV]
        assert len(csv_requests) == 2 and csv_requests[1][2].startswith("bytes=")   # resumed with Range
        assert srv.requests_per_path()[victim] == 3
    assert_complete(d, cats, tmp_path / "out", m)


def test_cut_csv_on_a_server_without_range_restarts(mirror, tmp_path):
    d, cats = mirror
    with running(d, no_range=True) as srv:
        srv.add_fault(CSV, "truncate", times=1)
        m = run(srv, tmp_path / "out")
        assert srv.requests_per_path()[CSV] == 2
    assert_complete(d, cats, tmp_path / "out", m)


def test_a_csv_always_cut_short_fails_clearly_and_is_not_cached(mirror, tmp_path):
    d, _ = mirror
    with running(d) as srv:
        srv.add_fault(CSV, "truncate", times=-1)
        with pytest.raises(FetchError, match="could not be read completely"):
            run(srv, tmp_path / "out", retries=2)
    assert not os.listdir(tmp_path / "out" / ".cache" / "annotations")


def test_a_csv_without_its_final_newline_is_never_trusted(mirror, tmp_path):
    d, _ = mirror
    path = faults.csv_path(d, "validation")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-1])   # a cut that even Content-Length agrees with
    with running(d) as srv:
        with pytest.raises(FetchError, match="ends mid-line"):
            run(srv, tmp_path / "out", retries=1)
    assert not os.listdir(tmp_path / "out" / ".cache" / "annotations")


def test_server_without_range_falls_back_to_whole_shards_once(mirror, tmp_path, caplog):
    d, cats = mirror
    with running(d, no_range=True) as srv:
        with caplog.at_level(logging.WARNING, logger="download"):
            m = run(srv, tmp_path / "out")
        assert "ignores HTTP Range" in caplog.text
        first = {p for p in srv.requests_per_path() if p.endswith(".zip")}
        srv.reset_log()
        run(srv, tmp_path / "out", cls="Dog")
        second = {p for p in srv.requests_per_path() if p.endswith(".zip")}
    assert first and not first & second    # a shard downloaded for Cat is not fetched again for Dog
    assert_complete(d, cats, tmp_path / "out", m)
    assert sorted(os.listdir(tmp_path / "out" / ".cache" / "zips"))[0].endswith(".zip")


def test_unsafe_names_are_rejected_and_nothing_is_written_outside_out(mirror, tmp_path):
    d, cats = mirror
    iid = sorted(cats)[0]
    abs_target = str(tmp_path / "abs_evil.png")
    png = shard_member(d, next(o["mask_path"] for o in cats[iid]["objects"] if o["mid"] == CAT))
    row = ["", iid, CAT, "0badbad0", "0.1", "0.5", "0.1", "0.5", "0.9", ""]
    # Two boxes (distinct BoxIDs: a repeated (ImageID, LabelName, BoxID) is a duplicate row, dropped)
    for name, box_id in (("../../evil.png", "0badbad0"), (abs_target, "0badbad2")):
        faults.add_member(d, "validation", iid[0], name, png, csv_row=[name, iid, CAT, box_id] + row[4:])
    faults.add_member(d, "validation", "0", "../evil2.png", png,
                      csv_row=["../evil2.png", "../../x", CAT, "0badbad1", "0.1", "0.5", "0.1", "0.5", "0.9", ""])
    out = tmp_path / "deep" / "out"
    with running(d) as srv:
        m = run(srv, out)
    rejected = {(r["image_id"], r["mask"]) for r in m["splits"]["validation"]["rejected"]}
    assert rejected == {(iid, "../../evil.png"), (iid, abs_target), ("../../x", "../evil2.png")}
    for p in (tmp_path / "evil.png", tmp_path / "deep" / "evil.png", tmp_path / "deep" / "evil2.png",
              tmp_path / "abs_evil.png"):
        assert not p.exists()
    outside = [f for f in tree_files(str(tmp_path), skip_cache=False) if not f.startswith(("deep/out/", "mirror/"))]
    assert outside == []
    rec = read_voc(str(out / "cat" / "validation" / "annotations" / (iid + ".xml")))
    unsafe = [o for o in rec.objects if o.extra["box_id"] in ("0badbad0", "0badbad2")]
    assert len(unsafe) == 2 and all(o.mask is None for o in unsafe)   # kept, box only


def test_corrupt_jpegs_are_skipped_and_reported(mirror, tmp_path):
    d, cats = mirror
    a, b = sorted(cats)[:2]
    faults.corrupt_image(d, "validation", a)   # cut file (served with a matching length)
    with running(d) as srv:
        srv.add_fault("/images/validation/%s.jpg" % b, "corrupt", times=-1)   # zeroed bytes
        m = run(srv, tmp_path / "out")
    r = m["splits"]["validation"]
    assert {f["image_id"] for f in r["failed"]} == {a, b}
    assert all("corrupt JPEG" in f["reason"] for f in r["failed"])
    assert r["images"] == len(cats) - 2
    for iid in (a, b):
        assert not (tmp_path / "out" / "cat" / "validation" / "images" / (iid + ".jpg")).exists()
        assert not (tmp_path / "out" / "cat" / "validation" / "annotations" / (iid + ".xml")).exists()


def test_a_mask_missing_from_its_shard_is_reported_and_the_image_kept(mirror, tmp_path):
    d, cats = mirror
    iid = sorted(cats)[1]
    gone = next(o["mask_path"] for o in cats[iid]["objects"] if o["mid"] == CAT)
    faults.remove_member(d, "validation", gone)
    with running(d) as srv:
        m = run(srv, tmp_path / "out")
    r = m["splits"]["validation"]
    assert r["missing_masks"] == [{"image_id": iid, "mask": gone}]
    assert r["images"] == len(cats) and r["failed"] == []
    assert "missing from shard" in m["last_run"]["failures"]["validation"]["masks"][gone]
    rec = read_voc(str(tmp_path / "out" / "cat" / "validation" / "annotations" / (iid + ".xml")))
    by_box = {o.extra["box_id"]: o for o in rec.objects}
    for o in cats[iid]["objects"]:
        if o["mid"] == CAT:
            assert (by_box[o["box_id"]].mask is None) == (o["mask_path"] == gone)
