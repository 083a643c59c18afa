"""Attacks on annotations and images (dataset/, Dataset.load_image, evaluate.py --image)."""
from __future__ import annotations

import contextlib
import io
import os

import numpy as np

from tests.attack import CLEAR, SKIPPED, SURVIVED, attack
from tests.attack.builders import (bomb_png, jpeg_with_orientation, png_bytes, scene,
                                   voc_folder)


def _image(root, name="a", h=48, w=80):
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    path = os.path.join(root, "images", name + ".png")
    with open(path, "wb") as f:
        f.write(png_bytes(scene(h, w)[0]))
    return path


def _problems(root, **kw):
    from dataset.check import check_dir
    return check_dir(root, **kw).problems


@attack(4, "python -m dataset check on a 20000x20000 mask PNG", timeout=60)
def check_mask_bomb(tmp):
    img = _image(tmp)
    voc_folder(tmp, "a", img, 80, 48, [("cat", (6, 8, 20, 30), None, bomb_png())])
    from dataset.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["check", tmp])
    text = out.getvalue()
    assert rc == 1 and "400,000,000 pixels" in text and "178,956,970" in text and "a_0.png" in text, text
    return SKIPPED


@attack(4, "evaluate.py --image on a 400-megapixel PNG", timeout=60)
def predict_image_bomb(tmp):
    from mrcnn_keras3 import predict as evaluate  # evaluate.py --image's reader
    path = os.path.join(tmp, "huge.png")
    with open(path, "wb") as f:
        f.write(bomb_png())
    skipped = []
    with contextlib.redirect_stderr(io.StringIO()):
        assert evaluate.read_input_image(path, skipped) is None
    assert skipped and "400,000,000 pixels" in skipped[0]["error"] and "--max-pixels" in skipped[0]["error"]
    return SKIPPED


@attack(4, "the pixel limit is configurable (--max-pixels)")
def pixel_limit_configurable(tmp):
    from dataset.cli import main
    from dataset.pixels import set_max_pixels
    img = _image(tmp)
    voc_folder(tmp, "a", img, 80, 48, [("cat", (6, 8, 20, 30), scene()[1], None)])
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            rc = main(["check", tmp, "--max-pixels", "1000"])
    finally:
        set_max_pixels(None)
    text = out.getvalue()
    assert rc == 1 and "3,840 pixels" in text and "limit of 1,000" in text, text
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["check", tmp]) == 0
    return SURVIVED


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


@attack(7, "EXIF orientation 1..8: check, load_image, converter and --image agree")
def exif_orientations(tmp):
    from mrcnn_keras3 import predict as evaluate  # evaluate.py --image's reader
    from dataset.convert import record_to_masks
    from dataset.openimages import OpenImagesDataset
    displayed, mask = scene()
    h, w = mask.shape
    for v in range(1, 9):
        root = os.path.join(tmp, "o%d" % v)
        os.makedirs(os.path.join(root, "images"))
        img = jpeg_with_orientation(os.path.join(root, "images", "a.jpg"), displayed, v)
        voc_folder(root, "a", img, w, h, [("cat", (6, 8, 20, 30), mask, None)])
        assert [p for p in _problems(root) if p.severity == "error"] == [], (v, _problems(root))
        ds = OpenImagesDataset()
        ds.load_openimages(root, "train", split_ratios=(1, 0, 0))
        ds.prepare()
        pixels = ds.load_image(0)
        assert pixels.shape == (h, w, 3), (v, pixels.shape)
        bright = pixels.mean(axis=-1) > 128
        assert _iou(bright, mask) > 0.9, (v, _iou(bright, mask))
        masks, _ = ds.load_mask(0)
        assert _iou(masks[..., 0], bright) > 0.9, v
        rec_masks = record_to_masks(ds.image_info[0]["record"])[0]
        assert np.array_equal(rec_masks[..., 0], masks[..., 0]), v
        with contextlib.redirect_stderr(io.StringIO()):
            assert np.array_equal(evaluate.read_input_image(img, []), pixels), v
    return SURVIVED


@attack(7, "EXIF-rotated JPEG annotated on its stored pixels: the message says so")
def exif_wrong_annotation(tmp):
    displayed, mask = scene()
    os.makedirs(os.path.join(tmp, "images"))
    img = jpeg_with_orientation(os.path.join(tmp, "images", "a.jpg"), displayed, 6)
    voc_folder(tmp, "a", img, 48, 80, [("cat", (6, 8, 20, 30), mask.T.copy(), None)])
    msgs = [str(p) for p in _problems(tmp) if p.code == "image_size"]
    assert msgs and "EXIF orientation 6" in msgs[0] and "as displayed" in msgs[0], msgs
    return CLEAR


@attack(15, "a palette-mode (VOC-coloured) binary mask is not 'empty'")
def palette_mask(tmp):
    from PIL import Image
    img = _image(tmp)
    m = scene()[1].astype(np.uint8)
    pim = Image.fromarray(m, "P")
    pim.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # VOC's palette: index 1 is dark red
    buf = io.BytesIO()
    pim.save(buf, format="PNG")
    voc_folder(tmp, "a", img, 80, 48, [("cat", (6, 8, 20, 30), None, buf.getvalue())])
    assert _problems(tmp) == [], _problems(tmp)
    from dataset.convert import read_mask_png
    assert np.array_equal(read_mask_png(os.path.join(tmp, "masks", "a_0.png")), scene()[1])
    return SURVIVED


@attack(15, "a 16-bit PNG in --image is scaled with a warning, not saturated")
def sixteen_bit_png(tmp):
    from mrcnn_keras3 import predict as evaluate  # evaluate.py --image's reader
    path = os.path.join(tmp, "deep.png")
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    with open(path, "wb") as f:
        f.write(png_bytes(ramp))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        image = evaluate.read_input_image(path, [])
    assert "16-bit" in err.getvalue() and "deep.png" in err.getvalue(), err.getvalue()
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert np.array_equal(image[..., 0], (ramp.astype(np.int64) * 255 // 65535).astype(np.uint8))
    return SURVIVED


def _convert(tmp, *extra):
    from dataset.cli import main
    out = os.path.join(tmp, "converted")
    with contextlib.redirect_stdout(io.StringIO()) as text:
        rc = main(["convert", os.path.join(tmp, "in"), out, *extra])
    return rc, text.getvalue(), out


@attack(9, "a box coordinate of 1e400 (infinite): check, convert, loader")
def infinite_coordinate(tmp):
    from dataset.openimages import OpenImagesDataset
    root = os.path.join(tmp, "in")
    img_a, img_b = _image(root, "a"), _image(root, "b")
    xml = voc_folder(root, "a", img_a, 80, 48, [("cat", (6, 8, 20, 30), None, None)])
    voc_folder(root, "b", img_b, 80, 48, [("cat", (6, 8, 20, 30), None, None)])
    with open(xml) as f:
        text = f.read()
    with open(xml, "w") as f:
        f.write(text.replace("<xmax>30</xmax>", "<xmax>1e400</xmax>"))
    errors = [p for p in _problems(root) if p.severity == "error"]
    assert [(p.image_id, p.code) for p in errors] == [("a", "coordinate_invalid")], errors
    assert "a.xml" in str(errors[0]) and "inf" in str(errors[0]), errors
    rc, text, out = _convert(tmp, "--coco")
    assert rc == 1 and "coordinate_invalid" in text, text
    import json
    doc = json.load(open(os.path.join(out, "annotations.json")))
    assert [i["image_id"] for i in doc["images"]] == ["b"], doc["images"]
    with contextlib.redirect_stderr(io.StringIO()):
        ds = OpenImagesDataset()
        ds.load_openimages(root, "train", split_ratios=(1, 0, 0))
    ds.prepare()
    assert [i["id"] for i in ds.image_info] == ["b"] and any(p.code == "coordinate_invalid" for p in ds.problems)
    return SKIPPED


@attack(10, "converter: ids a.b and a_b get distinct mask files")
def converter_name_collision(tmp):
    import csv
    root = os.path.join(tmp, "in")
    for iid in ("a.b", "a_b"):
        voc_folder(root, iid, _image(root, iid), 80, 48, [("cat", (6, 8, 20, 30), scene()[1], None)])
    rc, text, out = _convert(tmp)
    assert rc == 0, text
    rows = list(csv.DictReader(open(os.path.join(out, "instances.csv"))))
    pngs = {r["image_id"]: r["png"] for r in rows}
    assert set(pngs) == {"a.b", "a_b"} and len(set(pngs.values())) == 2, pngs
    assert all(os.path.isfile(os.path.join(out, p)) for p in pngs.values())
    return SURVIVED


@attack(10, "converter --coco: inverted box and a <size> of 100000x100000")
def converter_bad_boxes_and_size(tmp):
    import json
    root = os.path.join(tmp, "in")
    voc_folder(root, "inv", _image(root, "inv"), 80, 48, [("cat", (20, 30, 6, 8), None, None)])
    voc_folder(root, "big", _image(root, "big"), 100000, 100000, [("cat", (6, 8, 20, 30), None, None)])
    voc_folder(root, "ok", _image(root, "ok"), 80, 48, [("cat", (6, 8, 20, 30), None, None)])
    rc, text, out = _convert(tmp, "--coco")
    assert rc == 1 and "box_degenerate" in text and "size_too_large" in text and "big.xml" in text, text
    raw = open(os.path.join(out, "annotations.json")).read()
    doc = json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert [i["image_id"] for i in doc["images"]] == ["ok"]
    assert all(a["bbox"][2] > 0 and a["bbox"][3] > 0 for a in doc["annotations"])
    return SKIPPED


@attack(14, "<mask value=\"abc\"> in a VOC file")
def mask_value_not_a_number(tmp):
    img = _image(tmp)
    xml = voc_folder(tmp, "a", img, 80, 48, [("cat", (6, 8, 20, 30), scene()[1], None)])
    with open(xml) as f:
        text = f.read()
    with open(xml, "w") as f:
        f.write(text.replace("<mask>", '<mask value="abc">'))
    problems = _problems(tmp)
    assert len(problems) == 1 and problems[0].file == xml and "abc" in problems[0].message, problems
    assert "palette index" in str(problems[0]), problems
    return CLEAR


@attack(14, "detect() on a 0x0 image", timeout=60)
def detect_empty_image(tmp):
    import types

    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN
    # The check runs before any layer is used: a light ``self`` (no 20 s model build) suffices.
    holder = types.SimpleNamespace(mode="inference", config=Config())
    try:
        MaskRCNN.detect(holder, [np.zeros((0, 0, 3), np.uint8)])
    except ValueError as e:
        assert "image 0" in str(e) and "(0, 0, 3)" in str(e), e
        return CLEAR
    raise AssertionError("detect() accepted a 0x0 image")


@attack(15, "a symmetric bow-tie polygon (signed area 0)")
def bow_tie_polygon(tmp):
    from dataset.check import validate_record
    from dataset.convert import record_to_masks
    from dataset.records import ImageRecord, ObjectRecord, Polygon
    tie = Polygon(points=[(10, 10), (30, 30), (30, 10), (10, 30)])
    rec = ImageRecord(image_id="tie", path=_image(tmp), width=80, height=48,
                      objects=[ObjectRecord("cat", (10, 10, 30, 30), tie)])
    assert [p for p in validate_record(rec) if p.severity == "error"] == [], validate_record(rec)
    assert record_to_masks(rec)[0].sum() > 150
    return SURVIVED


@attack(15, "files are written with the umask's mode (0o644 / 0o600), not always 0o600")
def umask_modes(tmp):
    from download.fsutil import atomic_write_bytes
    from mrcnn.io import runs
    old = os.umask(0o022)
    try:
        for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
            os.umask(mask)
            a, b = os.path.join(tmp, "a%o" % mask), os.path.join(tmp, "run%o" % mask)
            atomic_write_bytes(a, b"x")
            runs.write_state(b, {"classes": ["Cat"]})
            got = (os.stat(a).st_mode & 0o777, os.stat(os.path.join(b, "state.json")).st_mode & 0o777)
            assert got == (mode, mode), (oct(mask), [oct(g) for g in got])
    finally:
        os.umask(old)
    return SURVIVED
