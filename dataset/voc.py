"""Pascal VOC XML: our per-image writer and a reader for VOC and its common variants.

Box convention (``record.box`` is (y1, x1, y2, x2) float pixels, y2/x2 exclusive):

* Standard VOC (and our own files): corners are 1-based and inclusive, so
  ``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2``. Values are written as integers when
  integral and otherwise as the exact decimal of the float's shortest repr; the +1/-1 is done in
  decimal arithmetic, so write-then-read returns the identical float.
* The ``openimages`` 0.0.1 PyPI package writes ``<bndbox>`` children in the order xmin, xmax, ymin,
  ymax with 0-based values ``int(frac * W)`` clipped to [0, W-1]. Such a box (recognised by that child
  order, or forced with ``convention="openimages"``) maps to ``(ymin, xmin, ymax + 1, xmax + 1)``:
  the pixel holding each edge counts as covered. Values are always read by tag name.

Masks: our ``<mask>`` element holds a whole-image PNG path relative to the split folder (binary,
value >= 128 is the object; ``value="k"`` attribute for an indexed PNG). A LabelMe-style
``<polygon><pt><x/><y/></pt>...</polygon>`` is also read and written. In a VOC tree
(``Annotations/``, ``JPEGImages/``, ``SegmentationObject/``) an object without its own mask gets
``SegmentationObject/<stem>.png`` with palette index = 1-based object position (255 = void).

Paths: the image is found from ``<filename>`` only (``<folder>`` and ``<path>`` are informational:
LabelImg and openimages 0.0.1 write absolute paths of the annotator's machine there). ``<filename>``
and ``<mask>`` must be relative and resolve inside the dataset root, else PathEscapeError.
"""
from __future__ import annotations

import os
import re

from ._xml import (AnnotationError, atomic_write_bytes, exact_add, fmt_number, number,
                          parse_xml, relative_inside, resolve_inside, text, to_decimal)
from .records import ImageRecord, MaskPNG, ObjectRecord, Polygon

_TAG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_SOURCE_SKIP = {"database", "image_id", "annotation", "image", "flickrid"}
_OBJECT_STD = {"name", "pose", "truncated", "difficult", "occluded", "bndbox", "mask", "polygon",
               "part", "attributes", "actions", "point", "deleted", "label_name", "box_id"}
_IMAGE_DIR_NAMES = ("images", "JPEGImages", "Images", "")


def _extra_items(extra: dict, reserved: set, what: str):
    for key, value in extra.items():
        if value is None or key in reserved or (isinstance(key, str) and key.startswith("_")):
            continue
        if not isinstance(key, str) or not _TAG_RE.match(key) or key.lower().startswith("xml"):
            raise ValueError("%s extra key %r is not a valid XML tag name" % (what, key))
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError("%s extra %r has type %s; only str/int/float/bool are written"
                             % (what, key, type(value).__name__))
        yield key, str(value)


def _flag(value) -> str:
    return "1" if value in (1, True, "1", "true", "True") else "0"


def write_voc(record: ImageRecord, xml_path: str, split_dir: str) -> None:
    """Write ``record`` as our VOC XML at ``xml_path``, atomically (through ``mrcnn.io.fsio``).

    ``record.path`` and every ``MaskPNG.path`` are absolute and must lie inside ``split_dir``; they
    are written relative to it ("images/x.jpg", "masks/x.png"). ``record.extra`` (url, split, ...)
    goes under ``<source>``; ``object.extra`` (label_name, box_id, ...) under ``<object>``. Extra
    values come back from ``read_voc`` as strings. Boxes follow the module's 1-based VOC rule.
    """
    from lxml import etree
    img_rel = relative_inside(record.path, split_dir, "image %s" % record.image_id)
    E = etree.SubElement
    ann = etree.Element("annotation")
    E(ann, "folder").text = os.path.dirname(img_rel) or "."
    E(ann, "filename").text = os.path.basename(img_rel)
    E(ann, "path").text = img_rel
    src = E(ann, "source")
    E(src, "database").text = "Open Images"
    E(src, "image_id").text = str(record.image_id)
    extra = dict(record.extra)
    if extra.get("url") is not None:   # url first, as documented
        E(src, "url").text = str(extra.pop("url"))
    for key, value in _extra_items(extra, {"database", "image_id"}, "image %s" % record.image_id):
        E(src, key).text = value
    size = E(ann, "size")
    E(size, "width").text = str(int(record.width))
    E(size, "height").text = str(int(record.height))
    E(size, "depth").text = "3"
    segmented = any(o.mask is not None for o in record.objects)
    E(ann, "segmented").text = "1" if segmented else "0"
    for obj in record.objects:
        o = E(ann, "object")
        E(o, "name").text = obj.class_name
        E(o, "pose").text = str(obj.extra.get("pose", "Unspecified"))
        E(o, "truncated").text = _flag(obj.extra.get("truncated"))
        E(o, "difficult").text = _flag(obj.extra.get("difficult"))
        y1, x1, y2, x2 = (to_decimal(v) for v in obj.box)
        bb = E(o, "bndbox")
        E(bb, "xmin").text = fmt_number(exact_add(x1, 1))
        E(bb, "ymin").text = fmt_number(exact_add(y1, 1))
        E(bb, "xmax").text = fmt_number(x2)
        E(bb, "ymax").text = fmt_number(y2)
        if isinstance(obj.mask, MaskPNG):
            m = E(o, "mask")
            m.text = relative_inside(obj.mask.path, split_dir, "mask of image %s" % record.image_id)
            if obj.mask.instance_value is not None:
                m.set("value", str(int(obj.mask.instance_value)))
        elif isinstance(obj.mask, Polygon):
            poly = E(o, "polygon")
            for x, y in obj.mask.points:
                pt = E(poly, "pt")
                E(pt, "x").text = fmt_number(to_decimal(x))
                E(pt, "y").text = fmt_number(to_decimal(y))
        for key in ("label_name", "box_id"):
            if obj.extra.get(key) is not None:
                E(o, key).text = str(obj.extra[key])
        for key, value in _extra_items(obj.extra, _OBJECT_STD, "object of image %s" % record.image_id):
            E(o, key).text = value
    data = etree.tostring(ann, pretty_print=True, xml_declaration=True, encoding="utf-8")
    atomic_write_bytes(xml_path, data)


def voc_layout(xml_path: str, split_dir: str | None = None) -> tuple[str, list[str]]:
    """(base folder, candidate image folders) for an annotation file.

    ``split_dir`` wins. Else an XML inside ``annotations/`` (ours), ``pascal/`` (openimages 0.0.1) or
    anywhere under an ``Annotations/`` folder (VOC, LabelMe ``Annotations/<collection>/``) has the
    parent of that folder as base, and images are looked up in ``images/``, ``JPEGImages/``,
    ``Images/`` (plus the same sub-folder) and the base itself; otherwise the XML's own folder.
    """
    xml_dir = os.path.dirname(os.path.abspath(xml_path))
    sub = ""
    if split_dir is not None:
        base = os.path.abspath(split_dir)
    else:
        base = xml_dir
        parts = xml_dir.split(os.sep)
        lowered = [p.lower() for p in parts]
        if lowered[-1] in ("annotations", "pascal", "xml", "labels"):
            base = os.path.dirname(xml_dir)
        elif "annotations" in lowered[1:]:
            k = len(lowered) - 1 - lowered[::-1].index("annotations")
            base = os.sep.join(parts[:k]) or os.sep
            sub = os.sep.join(parts[k + 1:])
    dirs = []
    for d in _IMAGE_DIR_NAMES:
        for s in ((sub, "") if sub else ("",)):
            cand = os.path.normpath(os.path.join(base, d, s))
            if cand not in dirs:
                dirs.append(cand)
    if xml_dir not in dirs:
        dirs.append(xml_dir)
    return base, dirs


def find_image(filename: str, root: str, dirs: list[str], xml_path: str) -> str:
    """Absolute path of ``filename`` in the first of ``dirs`` where it exists (else in dirs[0]).

    Raises PathEscapeError when ``filename`` is absolute or leaves ``root`` from any candidate.
    """
    candidates = [resolve_inside(root, filename, xml_path, "image", base=d) for d in dirs]
    for c in candidates:
        if os.path.isfile(c):
            return c
    return candidates[0]


def image_size(path: str) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied, see dataset.pixels) from the
    image header, or (0, 0) when the file cannot be opened or is over the pixel limit."""
    from mrcnn.structures.pixels import displayed_size, open_image
    try:
        with open_image(path) as im:
            w, h = displayed_size(im)
            return int(w), int(h)
    except (OSError, ValueError):
        return 0, 0


def _int_size(value: str | None, xml_path: str, what: str) -> int:
    if value is None:
        return 0
    d = number(value, xml_path, what)
    if d != d.to_integral_value() or d < 0:
        raise AnnotationError(xml_path, "%s must be a non-negative integer, got %r" % (what, value))
    return int(d)


def _read_box(bb, xml_path: str, convention: str | None, what: str):
    tags = [c.tag for c in bb if isinstance(c.tag, str)]
    if convention is None:
        convention = "openimages" if tags[:4] == ["xmin", "xmax", "ymin", "ymax"] else "voc"
    v = {k: number(text(bb, k), xml_path, "%s %s" % (what, k)) for k in ("xmin", "ymin", "xmax", "ymax")}
    if convention == "openimages":
        box = (v["ymin"], v["xmin"], exact_add(v["ymax"], 1), exact_add(v["xmax"], 1))
    elif convention == "voc":
        box = (exact_add(v["ymin"], -1), exact_add(v["xmin"], -1), v["ymax"], v["xmax"])
    else:
        raise ValueError("unknown box convention %r (use 'voc' or 'openimages')" % (convention,))
    return tuple(float(b) for b in box)


def read_polygon(poly, xml_path: str, what: str) -> Polygon:
    """LabelMe-style ``<polygon><pt><x/><y/></pt>...`` -> Polygon of (x, y) floats."""
    pts = []
    for pt in poly.findall("pt"):
        x = float(number(text(pt, "x"), xml_path, what + " polygon x"))
        y = float(number(text(pt, "y"), xml_path, what + " polygon y"))
        pts.append((x, y))
    return Polygon(points=pts)


def polygon_box(points) -> tuple[float, float, float, float]:
    """(y1, x1, y2, x2) of polygon points; vertices are continuous pixel coordinates."""
    if not points:
        return (0.0, 0.0, 0.0, 0.0)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (float(min(ys)), float(min(xs)), float(max(ys)), float(max(xs)))


def read_voc(xml_path: str, split_dir: str | None = None, convention: str | None = None,
             root: str | None = None) -> ImageRecord:
    """Read a VOC XML (ours, standard VOC, openimages 0.0.1) into an ImageRecord.

    ``split_dir`` is the folder paths are relative to (default: inferred by ``voc_layout``);
    ``root`` is the folder every path must stay inside (default: that same folder).
    ``convention`` forces the box rule: "voc" (1-based inclusive) or "openimages" (0.0.1 package);
    default: "openimages" when ``<bndbox>`` children come as xmin, xmax, ymin, ymax, else "voc".
    Raises AnnotationError (or its PathEscapeError) naming the file.
    """
    xml_path = os.path.abspath(xml_path)
    return voc_from_element(parse_xml(xml_path), xml_path, split_dir, convention, root)


def voc_from_element(root_el, xml_path: str, split_dir: str | None = None,
                     convention: str | None = None, root: str | None = None) -> ImageRecord:
    """``read_voc`` on an already parsed root element."""
    if root_el.tag != "annotation":
        raise AnnotationError(xml_path, "root element is <%s>, not <annotation>; is this a VOC file?"
                              % root_el.tag)
    base, dirs = voc_layout(xml_path, split_dir)
    root = os.path.abspath(root) if root is not None else base
    filename = text(root_el, "filename")
    if filename is None:
        raise AnnotationError(xml_path, "missing <filename>; add the image file name")
    image_path = find_image(filename, root, dirs, xml_path)
    src = root_el.find("source")
    image_id = text(src, "image_id") or os.path.splitext(os.path.basename(filename))[0]
    size = root_el.find("size")
    width = _int_size(text(size, "width"), xml_path, "<size><width>")
    height = _int_size(text(size, "height"), xml_path, "<size><height>")
    if (width == 0 or height == 0) and os.path.isfile(image_path):
        width, height = image_size(image_path)
    segobj = os.path.join(base, "SegmentationObject",
                          os.path.splitext(os.path.basename(xml_path))[0] + ".png")
    if not os.path.isfile(segobj):
        segobj = None
    objects = [_read_object(o, i, xml_path, root, base, segobj, convention)
               for i, o in enumerate(root_el.findall("object"))]
    return ImageRecord(image_id=image_id, path=image_path, width=width, height=height,
                       objects=objects, annotation=xml_path, extra=_source_extra(src))


def _source_extra(src) -> dict:
    """``<source>`` children other than the standard ones, as strings (None: no ``<source>``)."""
    extra = {}
    if src is not None:
        for child in src:
            if isinstance(child.tag, str) and child.tag not in _SOURCE_SKIP:
                value = text(src, child.tag)
                if value is not None:
                    extra[child.tag] = value
    return extra


def _read_object(o, i: int, xml_path: str, root: str, base: str, segobj: str | None,
                 convention: str | None) -> ObjectRecord:
    """The ``i``-th (0-based) ``<object>`` element ``o``. Its mask: ``<mask>``, else a
    ``<polygon>``, else palette index ``i + 1`` of the VOC ``segobj`` PNG (None: there is none).
    Its box: ``<bndbox>`` by ``convention``, else the polygon's bounds."""
    what = "object %d" % (i + 1)
    name = text(o, "name")
    if name is None:
        raise AnnotationError(xml_path, "%s has no <name>; add the class name" % what)
    mask = None
    if text(o, "mask") is not None:
        value = o.find("mask").get("value")
        if value is not None and not (value.strip().isdigit() and int(value) <= 255):
            raise AnnotationError(xml_path, "%s: <mask value=%r> must be a palette index 0-255; "
                                  "fix it or drop the attribute for a binary mask" % (what, value))
        mask = MaskPNG(path=resolve_inside(root, text(o, "mask"), xml_path, "mask", base=base),
                       instance_value=int(value) if value is not None else None)
    elif o.find("polygon") is not None:
        mask = read_polygon(o.find("polygon"), xml_path, what)
    elif segobj is not None:
        mask = MaskPNG(path=segobj, instance_value=i + 1)
    bb = o.find("bndbox")
    if bb is not None:
        box = _read_box(bb, xml_path, convention, what)
    elif isinstance(mask, Polygon):
        box = polygon_box(mask.points)
    else:
        raise AnnotationError(xml_path, "%s (%s) has neither <bndbox> nor a polygon" % (what, name))
    return ObjectRecord(class_name=name, box=box, mask=mask, extra=_object_extra(o))


def _object_extra(o) -> dict:
    """An ``<object>``'s extra fields as strings: label_name, box_id, truncated/difficult when
    "1", a pose other than "Unspecified", and any other leaf child not in the VOC standard set."""
    oextra = {}
    for key in ("label_name", "box_id"):
        if text(o, key) is not None:
            oextra[key] = text(o, key)
    for key in ("truncated", "difficult"):
        if text(o, key) == "1":
            oextra[key] = "1"
    pose = text(o, "pose")
    if pose not in (None, "Unspecified"):
        oextra["pose"] = pose
    for child in o:
        if isinstance(child.tag, str) and child.tag not in _OBJECT_STD and len(child) == 0:
            value = text(o, child.tag)
            if value is not None:
                oextra[child.tag] = value
    return oextra


__all__ = ["write_voc", "read_voc", "voc_from_element", "voc_layout", "find_image", "read_polygon", "polygon_box"]
