"""OpenImagesDataset: downloader layout, merging, class filtering, splits, every format through load_mask."""
import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dataset import OpenImagesDataset, load_openimages
from dataset.splits import assign_split, hash_fraction, normalize_ratios
from tests.dataset.test_dataset_fixtures import (make_downloader_class, make_jpeg, make_mask_png,
                                         write_openimages001_xml)
from tests.dataset.test_dataset_formats import CVAT, LABELME


def _check_masks(ds, i):
    masks, ids = ds.load_mask(i)
    info = ds.image_info[i]
    assert masks.dtype == bool and ids.dtype == np.int32
    assert masks.shape == (info["height"], info["width"], len(ids))
    assert ds.load_image(i).shape == (info["height"], info["width"], 3)
    return masks, ids


def test_downloader_layout_class_folder(tmp_path):
    recs = make_downloader_class(tmp_path, "Cat", "/m/01yrx", "train", ["a1", "a2", "a3"], size=(40, 30),
                                 mask_size=(80, 60), n_objects=2)
    make_downloader_class(tmp_path, "Cat", "/m/01yrx", "validation", ["v1"], size=(40, 30))
    ds = OpenImagesDataset()
    ds.load_openimages(str(tmp_path / "cat"), "train")
    ds.prepare()
    assert ds.layout == "downloader" and ds.num_images == 3
    assert ds.class_names == ["BG", "Cat"] and ds.class_info[1] == {"source": "openimages", "id": 1, "name": "Cat"}
    masks, ids = _check_masks(ds, 0)
    assert list(ids) == [1, 1]
    # full-resolution mask equals the downsampled 80x60 PNG rectangle
    y1, x1, y2, x2 = (int(v) for v in recs[0].objects[0].box)
    expect = np.zeros((30, 40), bool)
    expect[y1:y2, x1:x2] = True
    assert np.array_equal(masks[..., 0], expect)
    assert ds.image_reference(0) == "https://example.test/train/a1.jpg"
    assert ds.image_info[0]["record"].objects[0].extra["box_id"] == "b0C"
    assert ds.problems == []
    val = load_openimages(str(tmp_path / "cat"), "val")
    assert val.num_images == 1 and val.image_info[0]["split"] == "validation"


def test_folder_of_class_folders_merges_and_filters(tmp_path):
    make_downloader_class(tmp_path, "Cat", "/m/01yrx", "train", ["x", "c1"], size=(40, 30))
    make_downloader_class(tmp_path, "Teddy bear", "/m/0kmg4", "train", ["x", "t1"], size=(40, 30))
    ds = load_openimages(str(tmp_path), "train")
    assert ds.class_names == ["BG", "Cat", "Teddy bear"]
    assert sorted(i["id"] for i in ds.image_info) == ["c1", "t1", "x"]
    x = [i for i, info in enumerate(ds.image_info) if info["id"] == "x"][0]
    masks, ids = _check_masks(ds, x)
    assert sorted(ids.tolist()) == [1, 2]                       # merged: both classes' objects
    # case-insensitive filter with the user's odd spelling; ids stay sorted and deterministic
    only = load_openimages(str(tmp_path), "train", class_names=["TEDDY_BEAR"])
    assert only.class_names == ["BG", "Teddy bear"]
    assert sorted(i["id"] for i in only.image_info) == ["t1", "x"]
    xi = [i for i, info in enumerate(only.image_info) if info["id"] == "x"][0]
    assert only.load_mask(xi)[1].tolist() == [1]
    both = load_openimages(str(tmp_path), "train", class_names=["teddy bear", "CAT"])
    assert both.class_names == ["BG", "Cat", "Teddy bear"]


def test_image_without_objects(tmp_path):
    from dataset.records import ImageRecord
    from dataset.voc import write_voc
    make_downloader_class(tmp_path, "Cat", "/m/01yrx", "train", ["a"], size=(40, 30))
    sdir = tmp_path / "cat" / "train"
    img = make_jpeg(str(sdir / "images" / "empty.jpg"), 24, 16)
    write_voc(ImageRecord("empty", img, 24, 16, []), str(sdir / "annotations" / "empty.xml"), str(sdir))
    ds = load_openimages(str(tmp_path / "cat"), "train")
    i = [k for k, info in enumerate(ds.image_info) if info["id"] == "empty"][0]
    masks, ids = ds.load_mask(i)
    assert masks.shape == (16, 24, 0) and masks.dtype == bool
    assert ids.shape == (0,) and ids.dtype == np.int32
    assert load_openimages(str(tmp_path / "cat"), "train", keep_empty=False).num_images == 1


def test_openimages001_folder_hash_split(tmp_path):
    cls = tmp_path / "dest" / "cat"
    ids = ["img%02d" % k for k in range(12)]
    for k, iid in enumerate(ids):
        make_jpeg(str(cls / "images" / (iid + ".jpg")), 50, 40, seed=k)
        write_openimages001_xml(str(cls / "pascal" / (iid + ".xml")), str(cls / "images"), iid, 50, 40,
                                [(0.1, 0.5, 0.2, 0.9)])
    splits = {s: load_openimages(str(tmp_path / "dest"), s, class_names=["cat"]) for s in
              ("train", "validation", "test")}
    got = {s: sorted(i["id"] for i in d.image_info) for s, d in splits.items()}
    assert sorted(sum(got.values(), [])) == ids
    for s, members in got.items():
        assert all(assign_split(i) == s for i in members)
    ds = splits["train"]
    assert ds.layout == "hash" and ds.class_names == ["BG", "Cat"]
    masks, ids_ = _check_masks(ds, 0)
    assert masks.shape[2] == 1 and ids_.tolist() == [1]
    # box-only objects fall back to the filled box: xmin=5, xmax=25, ymin=8, ymax=36 -> (8, 5, 37, 26)
    assert masks[..., 0].sum() == (37 - 8) * (26 - 5)


def test_hash_split_is_stable_when_the_folder_grows():
    ids = ["%016x" % (k * 2654435761) for k in range(2000)]
    before = {i: assign_split(i, salt="s") for i in ids[:1000]}
    after = {i: assign_split(i, salt="s") for i in ids}
    assert all(after[i] == before[i] for i in before)
    counts = {s: sum(v == s for v in after.values()) for s in ("train", "validation", "test")}
    assert 1500 < counts["train"] < 1700 and 130 < counts["validation"] < 270 and 130 < counts["test"] < 270
    assert assign_split(ids[0], ratios=(1, 0, 0)) == "train"
    assert normalize_ratios({"train": 8, "val": 1, "test": 1}) == pytest.approx((0.8, 0.1, 0.1))
    assert 0 <= hash_fraction("x") < 1 and hash_fraction("x") != hash_fraction("x", salt="y")


def test_hash_split_dataset_stable_when_images_added(tmp_path):
    from dataset.records import ImageRecord, ObjectRecord
    from dataset.voc import write_voc
    root = tmp_path / "voc"

    def add(iid):
        img = make_jpeg(str(root / "images" / (iid + ".jpg")), 16, 16)
        write_voc(ImageRecord(iid, img, 16, 16, [ObjectRecord("dog", (1, 1, 9, 9))]),
                  str(root / "annotations" / (iid + ".xml")), str(root))

    for k in range(20):
        add("a%d" % k)
    before = {s: {i["id"] for i in load_openimages(str(root), s).image_info} for s in ("train", "validation", "test")}
    for k in range(20):
        add("b%d" % k)
    after = {s: {i["id"] for i in load_openimages(str(root), s).image_info} for s in ("train", "validation", "test")}
    for s in before:
        assert before[s] <= after[s]


def test_every_format_through_load_mask(tmp_path):
    # VOC tree with SegmentationObject
    voc = tmp_path / "voc"
    make_jpeg(str(voc / "JPEGImages" / "v.jpg"), 30, 20)
    seg = np.zeros((20, 30), np.uint8)
    seg[2:8, 2:12] = 1
    (voc / "SegmentationObject").mkdir()
    Image.fromarray(seg, mode="P").save(voc / "SegmentationObject" / "v.png")
    (voc / "Annotations").mkdir()
    (voc / "Annotations" / "v.xml").write_text(
        "<annotation><filename>v.jpg</filename><size><width>30</width><height>20</height></size>"
        "<object><name>Plane</name><bndbox><xmin>3</xmin><ymin>3</ymin><xmax>12</xmax><ymax>8</ymax></bndbox>"
        "</object></annotation>")
    cvat = tmp_path / "cvat"
    for n in ("one", "two"):
        make_jpeg(str(cvat / "images" / (n + ".jpg")), 60, 40)
    (cvat / "annotations.xml").write_text(CVAT)
    lm = tmp_path / "labelme"
    make_jpeg(str(lm / "street.jpg"), 60, 40)
    (lm / "street.xml").write_text(LABELME)
    expected = {"voc": ({"v": (20, 30, 1)}, ["Plane"]),
                "cvat": ({"one": (40, 60, 3), "two": (40, 60, 0)}, ["Cat", "Dog"]),
                "labelme": ({"street": (40, 60, 2)}, ["car", "person"])}
    for name, (shapes, classes) in expected.items():
        ds = load_openimages(str(tmp_path / name), "all")
        assert ds.class_names == ["BG"] + classes, name
        got = {}
        for i, info in enumerate(ds.image_info):
            masks, ids = _check_masks(ds, i)
            got[info["id"]] = masks.shape
            assert all(1 <= c < ds.num_classes for c in ids)
        assert got == shapes, name
    ds = load_openimages(str(voc), "all")
    assert np.array_equal(ds.load_mask(0)[0][..., 0], seg == 1)


def test_invalid_images_are_skipped_and_reported(tmp_path, caplog):
    make_downloader_class(tmp_path, "Cat", "/m/01yrx", "train", ["good", "trunc", "nomask"], size=(40, 30))
    sdir = tmp_path / "cat" / "train"
    data = open(sdir / "images" / "trunc.jpg", "rb").read()
    open(sdir / "images" / "trunc.jpg", "wb").write(data[: len(data) // 2])
    for f in os.listdir(sdir / "masks"):
        if f.startswith("nomask"):
            os.remove(sdir / "masks" / f)
    with caplog.at_level(logging.WARNING, logger="dataset.openimages"):
        ds = load_openimages(str(tmp_path / "cat"), "train")
    assert [i["id"] for i in ds.image_info] == ["good"]
    codes = {(os.path.basename(p.file), p.code) for p in ds.problems}
    assert ("trunc.jpg", "image_unreadable") in codes
    assert any(c == "mask_missing" and f.startswith("nomask") for f, c in codes)
    assert "trunc.jpg" in caplog.text and "Skipped 2" in caplog.text
    with pytest.raises(ValueError, match="trunc.jpg"):
        load_openimages(str(tmp_path / "cat"), "train", skip_invalid=False)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_openimages(str(tmp_path / "nope"), "train")
    with pytest.raises(ValueError, match="unknown subset"):
        load_openimages(str(tmp_path), "training-set")


def test_validation_cache_reuses_unchanged_files_and_rechecks_changed_ones(tmp_path):
    make_downloader_class(tmp_path, "Cat", "/m/01yrx", "train", ["a", "b"], size=(40, 30))
    root = str(tmp_path / "cat")
    assert load_openimages(root, "train").num_images == 2
    cache = tmp_path / "cat" / ".cache" / "dataset-checks.json"
    assert cache.is_file()
    img = tmp_path / "cat" / "train" / "images" / "a.jpg"
    st = os.stat(img)
    # Same size and mtime: the cached "decodes fine" is trusted (that is what makes reloads cheap).
    data = bytearray(img.read_bytes())
    data[2:] = b"\0" * (len(data) - 2)
    img.write_bytes(bytes(data))
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert load_openimages(root, "train").num_images == 2
    assert load_openimages(root, "train", cache=False).num_images == 1      # a fresh check sees it
    # A changed file (size / mtime) is checked again.
    img.write_bytes(bytes(data[: len(data) // 2]))
    ds = load_openimages(root, "train")
    assert [i["id"] for i in ds.image_info] == ["b"]
    assert [p.code for p in ds.problems] == ["image_unreadable"]


def test_two_roots_in_one_dataset_keep_ids(tmp_path):
    make_downloader_class(tmp_path / "a", "Dog", "/m/0bt9lr", "train", ["d1"], size=(20, 20))
    make_downloader_class(tmp_path / "b", "Cat", "/m/01yrx", "train", ["c1"], size=(20, 20))
    make_downloader_class(tmp_path / "b", "Dog", "/m/0bt9lr", "train", ["d2"], size=(20, 20))
    ds = OpenImagesDataset()
    ds.load_openimages(str(tmp_path / "a"), "train")
    ds.load_openimages(str(tmp_path / "b"), "train")
    ds.prepare()
    assert ds.class_names == ["BG", "Dog", "Cat"]
    got = {info["id"]: ds.load_mask(i)[1].tolist() for i, info in enumerate(ds.image_info)}
    assert got == {"d1": [1], "c1": [2], "d2": [1]}
    with pytest.raises(RuntimeError, match="prepare"):
        fresh = OpenImagesDataset()
        fresh.load_openimages(str(tmp_path / "a"), "train")
        fresh.load_mask(0)
