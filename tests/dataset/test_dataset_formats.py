"""CVAT for images 1.1 and LabelMe readers, format detection and forcing."""
import os

import numpy as np
import pytest

from dataset._xml import AnnotationError, PathEscapeError
from dataset.convert import record_to_masks
from dataset.cvat import read_cvat
from dataset.formats import detect_format, read_dir, read_file
from dataset.labelme import read_labelme
from dataset.records import Polygon
from tests.dataset.test_dataset_fixtures import make_jpeg

CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>cats</name></task></meta>
  <image id="0" name="one.jpg" width="60" height="40">
    <box label="Cat" occluded="0" source="manual" xtl="10.5" ytl="5" xbr="30" ybr="25.25" z_order="0"></box>
    <polygon label="Dog" occluded="1" source="manual" points="10.00,5.00;50.00,5.00;50.00,35.00;10.00,35.00" z_order="0"></polygon>
    <box label="Cat" group_id="3" xtl="0" ytl="0" xbr="20" ybr="10"></box>
    <polygon label="Cat" group_id="3" points="1,1;19,1;19,9"></polygon>
    <polyline label="Cat" points="1,1;2,2"></polyline>
  </image>
  <image id="1" name="two.jpg" width="60" height="40"></image>
</annotations>
"""

LABELME = """<annotation><filename>street.jpg</filename><folder>collection1</folder>
<source><sourceImage>The MIT-CSAIL database</sourceImage></source>
<object><name>car</name><deleted>0</deleted><verified>0</verified><occluded>no</occluded><date>01-Jan-2010</date>
<id>0</id><polygon><username>anon</username><pt><x>10</x><y>5</y></pt><pt><x>50</x><y>5</y></pt>
<pt><x>50</x><y>35</y></pt><pt><x>10</x><y>35</y></pt></polygon></object>
<object><name>tree</name><deleted>1</deleted><polygon><pt><x>0</x><y>0</y></pt><pt><x>5</x><y>0</y></pt>
<pt><x>5</x><y>5</y></pt></polygon></object>
<object><name>person</name><deleted>0</deleted><polygon><pt><x>0</x><y>0</y></pt><pt><x>40</x><y>0</y></pt>
<pt><x>0</x><y>30</y></pt></polygon></object>
<imagesize><nrows>40</nrows><ncols>60</ncols></imagesize></annotation>
"""


def test_cvat_boxes_polygons_groups(tmp_path):
    make_jpeg(str(tmp_path / "images" / "one.jpg"), 60, 40)
    make_jpeg(str(tmp_path / "images" / "two.jpg"), 60, 40)
    xml = tmp_path / "annotations.xml"
    xml.write_text(CVAT)
    assert detect_format(str(xml)) == "cvat"
    recs = read_cvat(str(xml))
    assert [r.image_id for r in recs] == ["one", "two"]
    one, two = recs
    assert one.path == str(tmp_path / "images" / "one.jpg") and (one.width, one.height) == (60, 40)
    assert [o.class_name for o in one.objects] == ["Cat", "Dog", "Cat"]
    assert one.objects[0].box == (5.0, 10.5, 25.25, 30.0) and one.objects[0].mask is None
    assert one.objects[1].box == (5.0, 10.0, 35.0, 50.0)
    assert one.objects[1].extra == {"occluded": "1"}
    # group 3: the box's box with the polygon's mask, one object
    assert one.objects[2].box == (0.0, 0.0, 10.0, 20.0)
    assert isinstance(one.objects[2].mask, Polygon) and len(one.objects[2].mask.points) == 3
    assert any("polyline" in n for n in one.extra["_notes"])
    assert two.objects == []
    masks, names, sources = record_to_masks(one)
    assert masks.shape == (40, 60, 3) and sources == ["box", "polygon", "polygon"]
    assert masks[..., 1].sum() == 40 * 30
    masks2, _, _ = record_to_masks(two)
    assert masks2.shape == (40, 60, 0) and masks2.dtype == bool


def test_cvat_video_export_is_refused(tmp_path):
    xml = tmp_path / "annotations.xml"
    xml.write_text('<annotations><version>1.1</version><track id="0" label="Cat"></track></annotations>')
    with pytest.raises(AnnotationError, match="CVAT for images 1.1"):
        read_cvat(str(xml))


def test_cvat_path_escape(tmp_path):
    xml = tmp_path / "sub" / "annotations.xml"
    os.makedirs(xml.parent)
    xml.write_text('<annotations><image id="0" name="../../x.jpg" width="5" height="5"/></annotations>')
    with pytest.raises(PathEscapeError, match=r"annotations.xml.*\.\./\.\./x\.jpg"):
        read_cvat(str(xml))


def test_labelme(tmp_path):
    # LabelMe tree: Annotations/<collection>/x.xml -> Images/<collection>/x.jpg
    make_jpeg(str(tmp_path / "Images" / "collection1" / "street.jpg"), 60, 40)
    xml = tmp_path / "Annotations" / "collection1" / "street.xml"
    os.makedirs(xml.parent)
    xml.write_text(LABELME)
    assert detect_format(str(xml)) == "labelme"
    rec = read_labelme(str(xml))
    assert rec.path == str(tmp_path / "Images" / "collection1" / "street.jpg")
    assert (rec.width, rec.height) == (60, 40)
    assert [o.class_name for o in rec.objects] == ["car", "person"]     # deleted tree dropped
    assert rec.objects[0].box == (5.0, 10.0, 35.0, 50.0)
    masks, _, sources = record_to_masks(rec)
    assert sources == ["polygon", "polygon"]
    assert masks[..., 0].sum() == 1200                                  # 40 x 30 rectangle
    assert abs(masks[..., 1].sum() - 600) <= 6                          # right triangle 40*30/2, 1 %


def test_detection_and_forcing(tmp_path):
    (tmp_path / "v.xml").write_text("<annotation><filename>v.jpg</filename><size><width>4</width>"
                                    "<height>4</height></size></annotation>")
    (tmp_path / "l.xml").write_text(LABELME)
    (tmp_path / "c.xml").write_text(CVAT)
    (tmp_path / "x.xml").write_text("<svg></svg>")
    assert detect_format(str(tmp_path / "v.xml")) == "voc"
    assert detect_format(str(tmp_path / "l.xml")) == "labelme"
    with pytest.raises(AnnotationError, match="unrecognised"):
        detect_format(str(tmp_path / "x.xml"))
    # forcing a wrong reader gives a clear error, forcing the right one works
    with pytest.raises(AnnotationError, match="not <annotations>"):
        read_file(str(tmp_path / "v.xml"), format="cvat")
    assert read_file(str(tmp_path / "l.xml"), format="labelme")[0].objects[0].class_name == "car"
    with pytest.raises(ValueError, match="unknown format"):
        read_file(str(tmp_path / "v.xml"), format="yolo")
    recs, errors = read_dir(str(tmp_path))
    assert sorted(r.image_id for r in recs) == ["one", "street", "two", "v"]
    assert len(errors) == 1 and errors[0].path.endswith("x.xml")


def test_polygon_pixel_centre_convention():
    from dataset.records import ImageRecord, ObjectRecord
    # x in [10.2, 20.2) holds the pixel centres 10.5 .. 19.5 -> columns 10..19;
    # y in [2.7, 12.7) holds 3.5 .. 12.5 -> rows 3..12.
    rec = ImageRecord("p", "/nowhere.jpg", 30, 30, [
        ObjectRecord("a", (0, 0, 0, 0), Polygon([(10.2, 2.7), (20.2, 2.7), (20.2, 12.7), (10.2, 12.7)]))])
    m = record_to_masks(rec)[0][..., 0]
    cols = np.nonzero(m.any(axis=0))[0]
    rows = np.nonzero(m.any(axis=1))[0]
    assert (cols.min(), cols.max()) == (10, 19) and (rows.min(), rows.max()) == (3, 12)
    assert m.sum() == 100
