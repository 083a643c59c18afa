"""record_to_masks: polygon areas, PNG thresholds and nearest resizing, box fallback; convert CLI."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dataset.convert import (nearest_indices, paste_resized, read_mask_png, record_to_masks,
                             resize_nearest)
from dataset.records import ImageRecord, MaskPNG, ObjectRecord, Polygon
from tests.dataset.test_dataset_fixtures import make_downloader_class, make_jpeg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_polygon_areas_match_hand_computed():
    rec = ImageRecord("a", "/x.jpg", 100, 80, [
        ObjectRecord("rect", (5, 10, 35, 50), Polygon([(10, 5), (50, 5), (50, 35), (10, 35)])),
        ObjectRecord("tri", (0, 0, 40, 60), Polygon([(0, 0), (60, 0), (0, 40)])),
        ObjectRecord("tri2", (2.2, 3.7, 33.3, 41.9), Polygon([(3.7, 2.2), (41.9, 7.5), (12.4, 33.3)]))])
    masks, names, sources = record_to_masks(rec)
    assert masks.shape == (80, 100, 3) and masks.dtype == bool
    assert names == ["rect", "tri", "tri2"] and sources == ["polygon"] * 3
    assert masks[..., 0].sum() == 40 * 30
    ys, xs = np.nonzero(masks[..., 0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (5, 34, 10, 49)
    # shoelace area of tri2: 570.955
    for k, area in ((1, 60 * 40 / 2), (2, 570.955)):
        assert abs(masks[..., k].sum() - area) <= 0.01 * area


def test_box_fallback_and_short_polygon_are_reported():
    rec = ImageRecord("a", "/x.jpg", 20, 10, [
        ObjectRecord("b", (2, 3, 6, 9)),
        ObjectRecord("p", (1.0, 1.0, 4.0, 4.0), Polygon([(1, 1), (4, 4)])),
        ObjectRecord("clip", (-5, 15, 50, 40))])
    masks, _, sources = record_to_masks(rec)
    assert sources == ["box", "box", "box"]
    expect = np.zeros((10, 20), bool)
    expect[2:6, 3:9] = True
    assert np.array_equal(masks[..., 0], expect)
    assert masks[..., 1].sum() == 9
    assert masks[..., 2].sum() == 10 * 5      # clipped to the image


@pytest.mark.parametrize("src,dst", [(512, 1024), (1024, 683), (333, 1000), (7, 3), (4, 6), (10, 4),
                                     (480, 479), (5, 5)])
def test_nearest_resize_matches_skimage_order0(src, dst):
    from skimage.transform import resize
    rng = np.random.default_rng(src * 7 + dst)
    a = rng.integers(0, 255, (src, src + 3), dtype=np.uint8)
    ref = resize(a, (dst, dst + 1), order=0, preserve_range=True, anti_aliasing=False).astype(np.uint8)
    assert np.array_equal(resize_nearest(a, dst, dst + 1), ref)
    assert nearest_indices(src, dst).max() <= src - 1
    # the block-wise paste used by load_mask picks the same pixels, for blobs, noise and nothing
    blob = np.zeros_like(a, dtype=bool)
    blob[src // 4: src // 2 + 1, 1: src // 3 + 2] = True
    for m in (blob, a >= 200, np.zeros_like(blob)):
        out = np.zeros((dst, dst + 1), bool)
        paste_resized(m, out)
        assert np.array_equal(out, resize_nearest(m, dst, dst + 1))


def test_png_modes_and_threshold(tmp_path):
    v = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(v).save(tmp_path / "l.png")
    assert read_mask_png(str(tmp_path / "l.png")).tolist() == [[False, False, True, True]]
    Image.fromarray(v >= 128).save(tmp_path / "one.png")            # mode "1"
    assert Image.open(tmp_path / "one.png").mode == "1"
    assert read_mask_png(str(tmp_path / "one.png")).tolist() == [[False, False, True, True]]
    Image.fromarray(np.stack([v] * 3, -1)).save(tmp_path / "rgb.png")
    assert read_mask_png(str(tmp_path / "rgb.png")).tolist() == [[False, False, True, True]]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(OSError, match="broken.png"):
        read_mask_png(str(tmp_path / "broken.png"))


def test_mask_png_at_other_resolution_is_resized(tmp_path):
    # Open Images: the mask PNG may be 2x (or 0.5x) the JPEG's size.
    big = np.zeros((60, 80), np.uint8)
    big[8:28, 20:60] = 255
    small = np.zeros((15, 20), np.uint8)
    small[2:7, 5:15] = 255
    Image.fromarray(big).save(tmp_path / "big.png")
    Image.fromarray(small).save(tmp_path / "small.png")
    rec = ImageRecord("a", "/x.jpg", 40, 30, [ObjectRecord("c", (5, 10, 15, 30), MaskPNG(str(tmp_path / "big.png"))),
                                              ObjectRecord("c", (5, 10, 15, 30), MaskPNG(str(tmp_path / "small.png")))])
    masks, _, sources = record_to_masks(rec, workers=1)
    expect = np.zeros((30, 40), bool)
    expect[4:14, 10:30] = True
    assert sources == ["png", "png"]
    assert np.array_equal(masks[..., 0], expect) and np.array_equal(masks[..., 1], expect)
    assert np.array_equal(record_to_masks(rec, workers=4)[0], masks)   # threaded decode: same result


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # pycocotools' decode on NumPy 2
def test_convert_cli_png_and_coco(tmp_path):
    data = tmp_path / "data"
    recs = make_downloader_class(data, "Cat", "/m/01yrx", "train", ["i1", "i2"], size=(40, 30),
                                 mask_size=(80, 60), n_objects=2)
    # plus a CVAT file with a polygon and a box-only object
    make_jpeg(str(data / "cvat" / "images" / "p.jpg"), 20, 10)
    (data / "cvat" / "annotations.xml").write_text(
        '<annotations><image id="0" name="p.jpg" width="20" height="10">'
        '<polygon label="Dog" points="2,2;12,2;12,8;2,8"/><box label="Dog" xtl="1" ytl="1" xbr="3" ybr="4"/>'
        '</image></annotations>')
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "dataset", "convert", str(data), str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 images, 6 instances (1 filled-box fallbacks" in res.stdout
    rows = list(csv.DictReader(open(out / "instances.csv")))
    assert len(rows) == 6
    cat = [r for r in rows if r["image_id"] == "i1"][0]
    png = np.asarray(Image.open(out / cat["png"]))
    expect = record_to_masks(recs[0])[0][..., 0]
    assert png.shape == (30, 40) and np.array_equal(png > 127, expect)
    assert sorted(r["source"] for r in rows) == ["box", "png", "png", "png", "png", "polygon"]

    coco_dir = tmp_path / "coco"
    res = subprocess.run([sys.executable, "-m", "dataset", "convert", str(data), str(coco_dir), "--coco"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.load(open(coco_dir / "annotations.json"))
    assert [c["name"] for c in doc["categories"]] == ["Cat", "Dog"]
    assert len(doc["images"]) == 3 and len(doc["annotations"]) == 6
    from pycocotools import mask as mask_utils
    for ann in doc["annotations"]:
        img = next(i for i in doc["images"] if i["id"] == ann["image_id"])
        if isinstance(ann["segmentation"], dict):
            m = mask_utils.decode({"size": ann["segmentation"]["size"],
                                   "counts": ann["segmentation"]["counts"].encode()})
            assert m.shape == (img["height"], img["width"]) and m.sum() == ann["area"] > 0
        else:
            assert ann["segmentation"] == [[2.0, 2.0, 12.0, 2.0, 12.0, 8.0, 2.0, 8.0]]
            assert ann["area"] == 60 and ann["bbox"] == [2.0, 2.0, 10.0, 6.0]
