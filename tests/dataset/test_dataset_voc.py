"""VOC reader/writer: round trip, openimages 0.0.1 variant, SegmentationObject, XXE and path escapes."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dataset._xml import AnnotationError, PathEscapeError
from dataset.convert import record_to_masks
from dataset.formats import read_file
from dataset.records import ImageRecord, MaskPNG, ObjectRecord, Polygon
from dataset.voc import read_voc, write_voc
from tests.dataset.test_dataset_fixtures import make_jpeg, write_openimages001_xml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _record(split_dir):
    return ImageRecord(
        image_id="0a1b2c3d4e5f6789",
        path=os.path.join(split_dir, "images", "0a1b2c3d4e5f6789.jpg"),
        width=640, height=480,
        objects=[
            ObjectRecord("Cat", (0.0, 1.5, 30.1, 40.0),
                         MaskPNG(os.path.join(split_dir, "masks", "0a1b2c3d4e5f6789_m01yrx_b1.png")),
                         {"label_name": "/m/01yrx", "box_id": "b1"}),
            ObjectRecord("Cat", (1e-20, 0.1, 3.0000000000000004, 479.99999),
                         Polygon([(1.0, 2.5), (3.25, 4.0), (5.0, 6.0)]),
                         {"label_name": "/m/01yrx", "box_id": "b2", "difficult": "1"}),
            ObjectRecord("Teddy bear", (10.0, 20.0, 30.0, 40.0)),
        ],
        extra={"url": "https://s3.amazonaws.com/open-images-dataset/train/0a1b2c3d4e5f6789.jpg",
               "split": "train"})


def test_round_trip_identical(tmp_path):
    split = str(tmp_path / "cat" / "train")
    rec = _record(split)
    xml = os.path.join(split, "annotations", rec.image_id + ".xml")
    write_voc(rec, xml, split)
    got = read_voc(xml, split)
    assert got == dataclasses.replace(rec, annotation=xml)
    # Split folder inferred from the annotations/ folder gives the same record.
    assert read_voc(xml) == got
    # No temp file left behind.
    assert os.listdir(os.path.dirname(xml)) == [rec.image_id + ".xml"]


def test_written_xml_is_plain_voc(tmp_path):
    from lxml import etree
    split = str(tmp_path)
    rec = _record(split)
    xml = os.path.join(split, "annotations", "a.xml")
    write_voc(rec, xml, split)
    root = etree.parse(xml).getroot()
    assert root.findtext("folder") == "images"
    assert root.findtext("filename") == rec.image_id + ".jpg"
    assert root.findtext("path") == "images/%s.jpg" % rec.image_id
    assert root.findtext("source/database") == "Open Images"
    assert root.findtext("source/image_id") == rec.image_id
    assert root.findtext("size/depth") == "3" and root.findtext("segmented") == "1"
    o = root.findall("object")[0]
    assert [c.tag for c in o.find("bndbox")] == ["xmin", "ymin", "xmax", "ymax"]
    # 1-based inclusive: x1=1.5 -> xmin 2.5, y1=0 -> ymin 1, x2=40 -> xmax 40.
    assert [o.findtext("bndbox/" + t) for t in ("xmin", "ymin", "xmax", "ymax")] == ["2.5", "1", "40", "30.1"]
    assert o.findtext("mask") == "masks/%s_m01yrx_b1.png" % rec.image_id
    assert o.findtext("label_name") == "/m/01yrx" and o.findtext("box_id") == "b1"


def test_writer_refuses_paths_outside_split(tmp_path):
    rec = _record(str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="not inside the split folder"):
        write_voc(rec, str(tmp_path / "s" / "annotations" / "a.xml"), str(tmp_path / "s"))
    assert not (tmp_path / "s" / "annotations" / "a.xml").exists()


def test_openimages001_order(tmp_path):
    cls = tmp_path / "dest" / "cat"
    make_jpeg(str(cls / "images" / "abc.jpg"), 200, 100)
    xml = write_openimages001_xml(str(cls / "pascal" / "abc.xml"), str(cls / "images"), "abc", 200, 100,
                                  [(0.25, 0.755, 0.1, 1.0), (0.0, 0.3, 0.42, 0.6)])
    rec = read_voc(xml)
    assert rec.path == str(cls / "images" / "abc.jpg")
    assert (rec.width, rec.height) == (200, 100)
    # xmin=50, xmax=151, ymin=10, ymax=99 (clipped) -> (ymin, xmin, ymax+1, xmax+1)
    assert rec.objects[0].box == (10.0, 50.0, 100.0, 152.0)
    assert rec.objects[1].box == (42.0, 0.0, 61.0, 61.0)   # ymax=int(0.6*100)=60, xmax=60
    assert [o.class_name for o in rec.objects] == ["Cat", "Cat"]
    # Forcing standard VOC reads the same tags by name with the 1-based rule instead.
    rec2 = read_file(xml, format="voc")[0]
    assert rec2.objects[0].box == (10.0, 50.0, 100.0, 152.0)  # auto-detected per box
    rec3 = read_voc(xml, convention="voc")
    assert rec3.objects[0].box == (9.0, 49.0, 99.0, 151.0)


def test_standard_voc_tree_with_segmentation_object(tmp_path):
    root = tmp_path / "VOC2012"
    make_jpeg(str(root / "JPEGImages" / "2007_000032.jpg"), 40, 30)
    seg = np.zeros((30, 40), np.uint8)
    seg[2:10, 3:20] = 1
    seg[15:28, 10:30] = 2
    seg[1, :] = 255          # void boundary: never part of an object
    seg[14, 10:30] = 255
    im = Image.fromarray(seg, mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192])
    os.makedirs(root / "SegmentationObject")
    im.save(root / "SegmentationObject" / "2007_000032.png")
    os.makedirs(root / "Annotations")
    (root / "Annotations" / "2007_000032.xml").write_text(
        "<annotation><folder>VOC2012</folder><filename>2007_000032.jpg</filename>"
        "<source><database>The VOC2007 Database</database></source>"
        "<size><width>40</width><height>30</height><depth>3</depth></size><segmented>1</segmented>"
        "<object><name>aeroplane</name><pose>Frontal</pose><truncated>0</truncated><difficult>0</difficult>"
        "<bndbox><xmin>4</xmin><ymin>3</ymin><xmax>20</xmax><ymax>10</ymax></bndbox></object>"
        "<object><name>person</name><bndbox><xmin>11</xmin><ymin>16</ymin><xmax>30</xmax><ymax>28</ymax>"
        "</bndbox></object></annotation>")
    rec = read_voc(str(root / "Annotations" / "2007_000032.xml"))
    assert rec.path == str(root / "JPEGImages" / "2007_000032.jpg")
    assert rec.objects[0].box == (2.0, 3.0, 10.0, 20.0)      # 1-based inclusive -> 0-based exclusive
    assert rec.objects[0].extra == {"pose": "Frontal"}
    assert rec.objects[1].mask == MaskPNG(str(root / "SegmentationObject" / "2007_000032.png"), 2)
    masks, names, sources = record_to_masks(rec)
    assert masks.shape == (30, 40, 2) and masks.dtype == bool
    assert sources == ["png_index", "png_index"] and names == ["aeroplane", "person"]
    assert np.array_equal(masks[..., 0], seg == 1)
    assert np.array_equal(masks[..., 1], seg == 2)


def _xxe_xml(secret_path):
    return ('<?xml version="1.0"?>\n<!DOCTYPE annotation [\n'
            '  <!ENTITY xxe SYSTEM "file://%s">\n  <!ENTITY lol "lol">\n'
            '  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n]>\n'
            '<annotation><filename>a.jpg</filename><source><url>&xxe;</url><image_id>a</image_id></source>'
            '<size><width>20</width><height>10</height><depth>3</depth></size>'
            '<object><name>Cat&xxe;&lol2;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>'
            '<ymax>5</ymax></bndbox><note>&xxe;</note></object></annotation>\n' % secret_path)


def test_xxe_never_reads_local_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4711")
    data = tmp_path / "data"
    make_jpeg(str(data / "a.jpg"), 20, 10)
    xml = data / "a.xml"
    xml.write_text(_xxe_xml(secret))
    rec = read_voc(str(xml))
    assert "TOPSECRET" not in repr(rec)
    assert rec.objects[0].class_name == "Cat"
    assert "lol" not in repr(rec)                       # internal entities are not expanded either
    out = tmp_path / "out"
    for cmd in (["check", str(data)], ["convert", str(data), str(out)],
                ["convert", str(data), str(tmp_path / "coco"), "--coco"], ["stats", str(data)]):
        res = subprocess.run([sys.executable, "-m", "dataset", *cmd], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        assert "TOPSECRET" not in res.stdout + res.stderr, cmd
    for folder in (out, tmp_path / "coco"):
        for dirpath, _, files in os.walk(folder):
            for f in files:
                assert b"TOPSECRET" not in open(os.path.join(dirpath, f), "rb").read()


@pytest.mark.parametrize("filename,mask", [
    ("../outside.jpg", None),
    ("/etc/passwd", None),
    ("a.jpg", "../../secret.png"),
    ("a.jpg", "/tmp/x.png"),
    ("sub/../../x.jpg", None),
    ("..\\..\\x.jpg", None),
])
def test_path_escapes_are_refused(tmp_path, filename, mask):
    data = tmp_path / "ds" / "train"
    os.makedirs(data / "annotations")
    mask_el = "<mask>%s</mask>" % mask if mask else ""
    xml = data / "annotations" / "a.xml"
    xml.write_text("<annotation><filename>%s</filename><size><width>10</width><height>10</height></size>"
                   "<object><name>Cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
                   "</bndbox>%s</object></annotation>" % (filename, mask_el))
    with pytest.raises(PathEscapeError) as e:
        read_voc(str(xml))
    msg = str(e.value)
    assert str(xml) in msg and (mask or filename).strip() in msg
    assert isinstance(e.value, AnnotationError)


def test_malformed_xml_names_file(tmp_path):
    xml = tmp_path / "bad.xml"
    xml.write_text("<annotation><filename>a.jpg</filename>")
    with pytest.raises(AnnotationError, match="bad.xml.*does not parse"):
        read_voc(str(xml))


def test_bad_number_names_file_and_field(tmp_path):
    xml = tmp_path / "bad.xml"
    xml.write_text("<annotation><filename>a.jpg</filename><object><name>Cat</name><bndbox>"
                   "<xmin>one</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(AnnotationError, match=r"bad.xml.*xmin is not a number"):
        read_voc(str(xml))
