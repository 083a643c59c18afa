"""Annotation format detection and directory discovery.

Formats: "voc" (ours, standard VOC, openimages 0.0.1 auto-detected per box), "voc-openimages"
(VOC with the openimages 0.0.1 box rule forced), "cvat" (CVAT for images 1.1), "labelme".
Detection looks at the root tag and structure: ``<annotations>`` is CVAT; ``<annotation>`` with
``<imagesize>`` (or LabelMe ``<polygon><pt>`` objects and no ``<size>``) is LabelMe; other
``<annotation>`` is VOC.
"""
from __future__ import annotations

import os

from ._xml import AnnotationError, parse_xml

FORMATS = ("voc", "voc-openimages", "cvat", "labelme")
# Folders that never hold annotation XML: skipped while walking (saves stat calls on big trees).
_SKIP_DIRS = {"images", "jpegimages", "masks", "segmentationobject", "segmentationclass", "imagesets"}


def detect_element_format(root_el) -> str | None:
    """Format name of a parsed document, or None when it is none of ours."""
    if root_el.tag == "annotations":
        return "cvat"
    if root_el.tag != "annotation":
        return None
    if root_el.find("imagesize") is not None:
        return "labelme"
    if root_el.find("size") is None and root_el.find("object/polygon/pt") is not None \
            and root_el.find("object/bndbox") is None:
        return "labelme"
    return "voc"


def detect_format(xml_path: str) -> str:
    """Format of one XML file; AnnotationError when unknown or unparsable."""
    fmt = detect_element_format(parse_xml(xml_path))
    if fmt is None:
        raise AnnotationError(xml_path, "unrecognised annotation XML; supported: %s (force one "
                              "with --format)" % ", ".join(FORMATS))
    return fmt


def read_file(xml_path: str, format: str | None = None, root: str | None = None,
              split_dir: str | None = None) -> list:
    """All ImageRecords of one annotation file (CVAT files hold many images).

    ``format`` forces a reader (one of FORMATS); ``root`` bounds every path in the file;
    ``split_dir`` (VOC only) is the folder relative paths start from.
    """
    from .cvat import cvat_from_element
    from .labelme import labelme_from_element
    from .voc import voc_from_element
    if format is not None and format not in FORMATS:
        raise ValueError("unknown format %r; choose one of %s" % (format, ", ".join(FORMATS)))
    xml_path = os.path.abspath(xml_path)
    root_el = parse_xml(xml_path)
    fmt = format or detect_element_format(root_el)
    if fmt is None:
        raise AnnotationError(xml_path, "unrecognised annotation XML (root <%s>); supported: %s "
                              "(force one with --format)" % (root_el.tag, ", ".join(FORMATS)))
    if fmt == "cvat":
        return cvat_from_element(root_el, xml_path, root=root)
    if fmt == "labelme":
        return [labelme_from_element(root_el, xml_path, root=root)]
    convention = "openimages" if fmt == "voc-openimages" else None
    return [voc_from_element(root_el, xml_path, split_dir=split_dir, convention=convention, root=root)]


def find_annotation_files(root: str) -> list[str]:
    """Sorted absolute paths of ``*.xml`` under ``root`` (hidden and image/mask folders skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.abspath(root)):
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith(".") and d.lower() not in _SKIP_DIRS)
        out.extend(os.path.join(dirpath, f) for f in filenames
                   if f.lower().endswith(".xml") and not f.startswith("."))
    return sorted(out)


def read_dir(root: str, format: str | None = None, split_dir: str | None = None):
    """Read every annotation file under ``root``.

    Returns (records, errors): errors is a list of AnnotationError, one per unusable file, so a
    caller can skip and report instead of crashing. Paths must stay inside ``root``.
    """
    records, errors = [], []
    for path in find_annotation_files(root):
        try:
            records.extend(read_file(path, format=format, root=root, split_dir=split_dir))
        except AnnotationError as e:
            errors.append(e)
    return records, errors
