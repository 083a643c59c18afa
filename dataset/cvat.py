"""CVAT for images 1.1 XML: one ``annotations.xml`` describing many images.

``<annotations><image id name width height><box label xtl ytl xbr ybr/>
<polygon label points="x,y;x,y;..."/></image>...</annotations>``

Coordinates are continuous pixel coordinates (pixel (r, c) covers [c, c+1) x [r, r+1)), so a box maps
directly to (y1, x1, y2, x2) = (ytl, xtl, ybr, xbr). A box and a polygon sharing a non-zero
``group_id`` and label are merged into one object (box from the box, mask from the polygon).
Images are looked up as ``images/<name>`` then ``<name>`` next to the XML. Shapes we cannot use
(``<polyline>``, ``<points>``, ``<mask>``, ``<ellipse>``, ``<cuboid>``) are skipped and listed in
``record.extra["_notes"]``.
"""
from __future__ import annotations

import os

from ._xml import AnnotationError, number, parse_xml
from .records import ImageRecord, ObjectRecord, Polygon
from .voc import find_image, image_size, polygon_box

_SKIPPED_SHAPES = ("polyline", "points", "mask", "ellipse", "cuboid", "skeleton", "tag")


def _points(value: str | None, xml_path: str, what: str) -> list[tuple[float, float]]:
    if not value:
        return []
    pts = []
    for pair in value.strip().split(";"):
        if not pair.strip():
            continue
        xy = pair.split(",")
        if len(xy) != 2:
            raise AnnotationError(xml_path, "%s has a malformed point %r in points=; expected 'x,y;x,y'"
                                  % (what, pair))
        pts.append((float(number(xy[0], xml_path, what + " x")),
                    float(number(xy[1], xml_path, what + " y"))))
    return pts


def _image_record(img, xml_path: str, base: str, root: str) -> ImageRecord:
    name = img.get("name")
    if not name:
        raise AnnotationError(xml_path, "<image id=%r> has no name attribute" % img.get("id"))
    what = "image %r" % name
    dirs = [os.path.join(base, "images"), base]
    path = find_image(name, root, dirs, xml_path)
    width = img.get("width")
    height = img.get("height")
    width = int(number(width, xml_path, what + " width")) if width else 0
    height = int(number(height, xml_path, what + " height")) if height else 0
    if (width == 0 or height == 0) and os.path.isfile(path):
        width, height = image_size(path)
    objects, notes, groups = [], [], {}
    for k, shape in enumerate(img):
        tag = shape.tag if isinstance(shape.tag, str) else None
        if tag is None:
            continue
        label = shape.get("label")
        swhat = "%s shape %d <%s>" % (what, k + 1, tag)
        if tag in _SKIPPED_SHAPES:
            notes.append("%s (%s) skipped: only <box> and <polygon> are used" % (swhat, label))
            continue
        if tag not in ("box", "polygon"):
            continue
        if not label:
            raise AnnotationError(xml_path, "%s has no label" % swhat)
        extra = {}
        if shape.get("occluded") == "1":
            extra["occluded"] = "1"
        group = shape.get("group_id")
        if tag == "box":
            box = tuple(float(number(shape.get(a), xml_path, "%s %s" % (swhat, a)))
                        for a in ("ytl", "xtl", "ybr", "xbr"))
            obj = ObjectRecord(class_name=label, box=box, mask=None, extra=extra)
        else:
            pts = _points(shape.get("points"), xml_path, swhat)
            obj = ObjectRecord(class_name=label, box=polygon_box(pts), mask=Polygon(points=pts),
                               extra=extra)
        if group and group != "0":
            prev = groups.get((group, label))
            if prev is not None and (prev.mask is None) != (obj.mask is None):
                # One object drawn as a box plus a polygon: keep the box, take the polygon.
                if obj.mask is not None:
                    prev.mask = obj.mask
                else:
                    prev.box = obj.box
                continue
            groups[(group, label)] = obj
        objects.append(obj)
    image_id = os.path.splitext(os.path.basename(name))[0]
    extra = {"cvat_id": img.get("id")} if img.get("id") is not None else {}
    if notes:
        extra["_notes"] = notes
    return ImageRecord(image_id=image_id, path=path, width=width, height=height, objects=objects,
                       annotation=xml_path, extra=extra)


def cvat_from_element(root_el, xml_path: str, root: str | None = None) -> list[ImageRecord]:
    """Records of every ``<image>`` in a parsed CVAT 1.1 document."""
    if root_el.tag != "annotations":
        raise AnnotationError(xml_path, "root element is <%s>, not <annotations>; is this a CVAT "
                              "for images 1.1 export?" % root_el.tag)
    if root_el.find("track") is not None and root_el.find("image") is None:
        raise AnnotationError(xml_path, "this is a CVAT for video export (<track>); export the task "
                              "as 'CVAT for images 1.1' instead")
    base = os.path.dirname(os.path.abspath(xml_path))
    root = os.path.abspath(root) if root is not None else base
    return [_image_record(img, xml_path, base, root) for img in root_el.findall("image")]


def read_cvat(xml_path: str, root: str | None = None) -> list[ImageRecord]:
    """Read a CVAT for images 1.1 XML; ``root`` bounds every image path (default: the XML's folder)."""
    xml_path = os.path.abspath(xml_path)
    return cvat_from_element(parse_xml(xml_path), xml_path, root)
