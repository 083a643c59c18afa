"""Validator and ``python -m dataset check``: every fault reported against its file; CLI basics."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from dataset.check import check_dir, validate_record
from dataset.records import ImageRecord, MaskPNG, ObjectRecord, Polygon
from dataset.voc import write_voc
from tests.dataset.test_dataset_fixtures import make_downloader_class, make_jpeg, make_mask_png

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
    return subprocess.run([sys.executable, "-m", "dataset", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _image(root, iid, objects, size=(40, 30), image=True):
    w, h = size
    img = os.path.join(root, "images", iid + ".jpg")
    if image:
        make_jpeg(img, w, h)
    write_voc(ImageRecord(iid, img, w, h, objects), os.path.join(root, "annotations", iid + ".xml"), root)
    return img


def _seed_faults(root):
    """One image per fault; returns {(file basename, code)} expected in the report."""
    root = str(root)
    m = lambda name: os.path.join(root, "masks", name)
    box = (2.0, 2.0, 20.0, 20.0)
    _image(root, "good", [ObjectRecord("Cat", box, MaskPNG(make_mask_png(m("good.png"), 40, 30, (2, 2, 20, 20))))])
    # a pure 2x rescale of the mask is fine
    _image(root, "rescaled", [ObjectRecord("Cat", box, MaskPNG(make_mask_png(m("rescaled.png"), 80, 60, (4, 4, 40, 40))))])
    img = _image(root, "garbage", [ObjectRecord("Cat", box)])
    open(img, "wb").write(b"this is not a jpeg")
    img = _image(root, "truncated", [ObjectRecord("Cat", box)], size=(64, 64))
    data = open(img, "rb").read()
    open(img, "wb").write(data[: len(data) // 2])
    _image(root, "outside", [ObjectRecord("Cat", (40.0, 50.0, 60.0, 70.0))])
    _image(root, "inverted", [ObjectRecord("Cat", (20.0, 2.0, 10.0, 20.0))])
    _image(root, "polygon", [ObjectRecord("Cat", box, Polygon([(1.0, 1.0), (5.0, 5.0)]))])
    _image(root, "emptymask", [ObjectRecord("Cat", box, MaskPNG(make_mask_png(m("empty.png"), 40, 30, (0, 0, 0, 0))))])
    _image(root, "aspect", [ObjectRecord("Cat", box, MaskPNG(make_mask_png(m("aspect.png"), 40, 40, (2, 2, 20, 20))))])
    _image(root, "unknown", [ObjectRecord("Unicorn", box)])
    _image(root, "sizemismatch", [ObjectRecord("Cat", box)])
    make_jpeg(os.path.join(root, "images", "sizemismatch.jpg"), 50, 30)
    _image(root, "nomaskfile", [ObjectRecord("Cat", box, MaskPNG(m("missing.png")))])
    _image(root, "missingimage", [ObjectRecord("Cat", box)], image=False)
    # duplicate id: a second annotation file for image "good"
    write_voc(ImageRecord("good", os.path.join(root, "images", "good.jpg"), 40, 30, []),
              os.path.join(root, "annotations", "good_copy.xml"), root)
    ann = os.path.join(root, "annotations")
    open(os.path.join(ann, "broken.xml"), "w").write("<annotation><filename>x.jpg</filename>")
    open(os.path.join(ann, "escape.xml"), "w").write(
        "<annotation><filename>../../../etc/passwd</filename><size><width>4</width><height>4</height></size>"
        "</annotation>")
    return {("garbage.jpg", "image_unreadable"), ("truncated.jpg", "image_unreadable"),
            ("outside.xml", "box_outside"), ("inverted.xml", "box_degenerate"),
            ("polygon.xml", "polygon_points"), ("empty.png", "mask_empty"), ("aspect.png", "mask_size"),
            ("unknown.xml", "unknown_class"), ("sizemismatch.jpg", "image_size"),
            ("missing.png", "mask_missing"), ("missingimage.jpg", "image_missing"),
            ("good_copy.xml", "duplicate_id"), ("broken.xml", "xml"), ("escape.xml", "path_escape")}


def test_check_cli_reports_each_fault(tmp_path):
    expected = _seed_faults(tmp_path / "ds")
    res = _run("check", str(tmp_path / "ds"), "--classes", "cat")
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    for fname, code in sorted(expected):
        hits = [l for l in lines if "[%s]" % code in l and (os.sep + fname) in l and "Fix:" in l]
        assert hits, "no %s reported for %s in:\n%s" % (code, fname, res.stdout)
    # nothing reported against the clean and the rescaled images
    blamed = {os.path.basename(l.split(" ", 2)[1]) for l in lines if l.startswith(("ERROR:", "WARNING:"))}
    assert not blamed & {"good.xml", "good.jpg", "good.png", "rescaled.xml", "rescaled.jpg", "rescaled.png"}
    assert "NOT OK" in lines[-1]
    report = check_dir(str(tmp_path / "ds"), known_classes=["cat"])
    assert {(os.path.basename(p.file), p.code) for p in report.errors} == expected
    assert report.images == 14 and report.annotation_files == 16


def test_check_cli_clean_folder_exits_zero(tmp_path):
    make_downloader_class(tmp_path, "Cat", "/m/01yrx", "train", ["a", "b"], size=(40, 30), mask_size=(80, 60))
    make_downloader_class(tmp_path, "Dog", "/m/0bt9lr", "train", ["a", "c"], size=(40, 30))  # merged id "a"
    make_downloader_class(tmp_path, "Cat", "/m/01yrx", "validation", ["v"], size=(40, 30))
    res = _run("check", str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 images in 5 annotation files" in res.stdout and "OK" in res.stdout.splitlines()[-1]
    assert "Cat" in res.stdout and "Dog" in res.stdout


def test_same_image_in_two_splits_is_a_leak(tmp_path):
    make_downloader_class(tmp_path, "Cat", "/m/01yrx", "train", ["a"], size=(40, 30))
    make_downloader_class(tmp_path, "Cat", "/m/01yrx", "test", ["a"], size=(40, 30))
    report = check_dir(str(tmp_path))
    assert [p.code for p in report.errors] == ["duplicate_id"]
    assert "leak" in report.errors[0].message


def test_validate_record_warnings_are_not_errors(tmp_path):
    img = make_jpeg(str(tmp_path / "a.jpg"), 40, 30)
    rec = ImageRecord("a", img, 40, 30, [ObjectRecord("Cat", (-3.0, 0.0, 20.0, 45.0))])
    probs = validate_record(rec)
    assert [(p.code, p.severity) for p in probs] == [("box_outside", "warning")]
    assert validate_record(rec, known_classes=["CAT"]) == probs       # case-insensitive classes
    assert validate_record(ImageRecord("a", img, 40, 30, []), check_files=True) == []


def test_cli_usage_errors(tmp_path):
    res = _run("check", str(tmp_path / "nope"))
    assert res.returncode == 2 and "is not a folder" in res.stderr
    res = _run("frobnicate")
    assert res.returncode == 2 and "invalid choice" in res.stderr
    res = _run("split", str(tmp_path), "--ratios", "0.8,0.2")
    assert res.returncode == 2 and "three" in res.stderr


def test_stats_and_split_commands(tmp_path):
    root = tmp_path / "plain"
    for k in range(10):
        _image(str(root), "i%d" % k, [ObjectRecord("Cat", (1.0, 1.0, 9.0, 9.0))], size=(16, 16))
    res = _run("split", str(root), "--list", str(tmp_path / "split.csv"))
    assert res.returncode == 0, res.stderr
    from dataset.splits import assign_split
    rows = open(tmp_path / "split.csv").read().splitlines()[1:]
    assert len(rows) == 10
    assert all(r.split(",")[1] == assign_split(r.split(",")[0]) for r in rows)
    res = _run("stats", str(root))
    assert res.returncode == 0 and "[layout: hash]" in res.stdout


def test_help_starts_fast():
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "dataset", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    elapsed = time.perf_counter() - t
    assert res.returncode == 0 and "check" in res.stdout
    assert elapsed < 3.0
    heavy = ("tensorflow", "keras", "skimage", "PIL", "lxml", "mrcnn", "numpy")
    imported = {l.split("|")[-1].strip().split(".")[0] for l in res.stderr.splitlines() if "|" in l}
    assert not imported & set(heavy), imported & set(heavy)


def test_dataset_never_imports_tensorflow():
    code = ("import sys, dataset, dataset.openimages, dataset.check, dataset.export, dataset.cli; "
            "dataset.OpenImagesDataset; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
