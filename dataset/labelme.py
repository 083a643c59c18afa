"""LabelMe XML (the MIT LabelMe tool's per-image annotation).

``<annotation><filename/><folder/><imagesize><nrows/><ncols/></imagesize>
<object><name/><deleted>0</deleted><polygon><pt><x/><y/></pt>...</polygon></object></annotation>``

Deleted objects (``<deleted>1``) are dropped. Polygon points are continuous pixel coordinates (the
same convention as CVAT/COCO); the box is the polygon's extent. Objects without a polygon (e.g.
LabelMe ``<segm>`` scribble masks) are skipped and listed in ``record.extra["_notes"]``. Images are
looked up like VOC (``Annotations/<folder>/x.xml`` -> ``Images/<folder>/<filename>``, or next to the XML).
"""
from __future__ import annotations

import os

from ._xml import AnnotationError, number, parse_xml, text
from .records import ImageRecord, ObjectRecord
from .voc import find_image, image_size, polygon_box, read_polygon, voc_layout


def labelme_from_element(root_el, xml_path: str, root: str | None = None) -> ImageRecord:
    """``read_labelme`` on an already parsed root element."""
    if root_el.tag != "annotation":
        raise AnnotationError(xml_path, "root element is <%s>, not <annotation>" % root_el.tag)
    base, dirs = voc_layout(xml_path)
    root = os.path.abspath(root) if root is not None else base
    filename = text(root_el, "filename")
    if filename is None:
        raise AnnotationError(xml_path, "missing <filename>; add the image file name")
    path = find_image(filename, root, dirs, xml_path)
    size = root_el.find("imagesize")
    nrows, ncols = text(size, "nrows"), text(size, "ncols")
    height = int(number(nrows, xml_path, "<imagesize><nrows>")) if nrows else 0
    width = int(number(ncols, xml_path, "<imagesize><ncols>")) if ncols else 0
    if (width == 0 or height == 0) and os.path.isfile(path):
        width, height = image_size(path)
    objects, notes = [], []
    for i, o in enumerate(root_el.findall("object")):
        what = "object %d" % (i + 1)
        if text(o, "deleted", "0") == "1":
            continue
        name = text(o, "name")
        if name is None:
            raise AnnotationError(xml_path, "%s has no <name>; add the class name" % what)
        poly = o.find("polygon")
        if poly is None:
            notes.append("%s (%s) has no <polygon> and was skipped" % (what, name))
            continue
        mask = read_polygon(poly, xml_path, what)
        extra = {}
        if text(o, "occluded") in ("yes", "1"):
            extra["occluded"] = "1"
        objects.append(ObjectRecord(class_name=name, box=polygon_box(mask.points), mask=mask,
                                    extra=extra))
    extra = {"_notes": notes} if notes else {}
    return ImageRecord(image_id=os.path.splitext(os.path.basename(filename))[0], path=path,
                       width=width, height=height, objects=objects, annotation=xml_path, extra=extra)


def read_labelme(xml_path: str, root: str | None = None) -> ImageRecord:
    """Read a LabelMe XML; ``root`` bounds every path (default: inferred like VOC)."""
    xml_path = os.path.abspath(xml_path)
    return labelme_from_element(parse_xml(xml_path), xml_path, root)
