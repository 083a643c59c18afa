"""Validation of records and folders: ``validate_record`` and ``check_dir``.

Severity "error" means the image is unusable for training (``OpenImagesDataset`` skips it and
``python -m dataset check`` exits non-zero); "warning" means it is usable as is.

Rules: images must exist, pass ``PIL.Image.verify`` and decode fully (JPEGs decode at 1/8 scale,
which still reads every byte, so truncation shows), and match the annotated size. Boxes must
not be inverted or empty (error) nor lie wholly outside the image (error); sticking out by more than
1 px is a warning (they get clipped). Polygons need >= 3 points and a non-zero area. Mask PNGs must
exist, decode and be non-empty. Open Images mask PNGs legitimately come at another resolution than
the JPEG and are resized: only an aspect ratio that differs from the image's by more than 2 % is an
error (a pure rescale is not). Classes outside ``known_classes`` (case-insensitive) are errors.
Duplicate image ids are errors, except the same image in two class folders of one split of the
downloader layout (those are merged); the same id in two splits is a leak and an error.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field

from ._xml import AnnotationError, PathEscapeError
from .factcache import NoCache
from .records import ImageRecord, MaskPNG, Polygon

ASPECT_TOLERANCE = 0.02
BOX_TOLERANCE = 1.0
# No image coordinate is this far out: beyond it a value is a typo or an attack (1e400 is inf).
MAX_COORDINATE = 1e7


def _bad_number(v) -> bool:
    return not math.isfinite(v) or abs(v) > MAX_COORDINATE


def coordinate_problems(record: ImageRecord, where: str) -> list[Problem]:
    """Errors for a size over the pixel limit and for non-finite or absurd (> 1e7) box or polygon
    coordinates: such an image cannot be rasterised, so every reader skips it with this reason."""
    from mrcnn.structures.pixels import max_pixels
    out, iid = [], record.image_id
    if record.width > 0 and record.height > 0 and record.width * record.height > max_pixels():
        out.append(Problem(where, iid, "size_too_large", "<size> %dx%d = %s pixels is over the limit of "
                           "%s pixels" % (record.width, record.height, format(record.width * record.height, ","),
                                          format(max_pixels(), ",")),
                           "fix <size> in the annotation, or raise --max-pixels if the image is that large"))
    for k, obj in enumerate(record.objects):
        values = list(obj.box) + [c for pt in (obj.mask.points if isinstance(obj.mask, Polygon) else [])
                                  for c in pt]
        bad = [v for v in values if _bad_number(float(v))]
        if bad:
            out.append(Problem(where, iid, "coordinate_invalid", "object %d (%s): coordinate %r is not a "
                               "finite number within +-%g pixels" % (k + 1, obj.class_name, bad[0], MAX_COORDINATE),
                               "fix the object's coordinates in the annotation or delete the object"))
    return out


@dataclass
class Problem:
    """One finding: ``file`` is the file at fault (annotation, image or mask)."""
    file: str
    image_id: str | None
    code: str
    message: str
    fix: str
    severity: str = "error"   # "error": image unusable; "warning": usable

    def __str__(self) -> str:
        who = " (image %s)" % self.image_id if self.image_id else ""
        return "%s: %s%s [%s]: %s. Fix: %s" % (self.severity.upper(), self.file, who, self.code,
                                              self.message, self.fix)


@dataclass
class Report:
    """Result of ``check_dir``: counts plus every Problem."""
    root: str
    images: int = 0
    annotation_files: int = 0
    instances: Counter = field(default_factory=Counter)
    problems: list = field(default_factory=list)

    @property
    def errors(self) -> list:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        """Human-readable summary: counts, instances per class, problems grouped by file."""
        lines = ["%s: %d images in %d annotation files, %d instances"
                 % (self.root, self.images, self.annotation_files, sum(self.instances.values()))]
        for name, count in sorted(self.instances.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append("  %-30s %d" % (name, count))
        by_file = {}
        for p in self.problems:
            by_file.setdefault(p.file, []).append(p)
        for f in sorted(by_file):
            for p in by_file[f]:
                lines.append(str(p))
        bad = len({(p.file, p.image_id) for p in self.errors})
        lines.append("%d errors (%d unusable images/files), %d warnings: %s"
                     % (len(self.errors), bad, len(self.problems) - len(self.errors),
                        "OK" if self.ok else "NOT OK"))
        return "\n".join(lines)


def image_facts(path: str) -> dict:
    """{"size": [w, h] as displayed, "orientation": EXIF tag} after PIL verify + a full decode,
    or {"error": message} (an image over the pixel limit is not decoded at all)."""
    from mrcnn.structures.pixels import ImageTooLarge, displayed_size, open_image, orientation
    try:
        with open_image(path) as im:
            im.verify()
        with open_image(path) as im:
            size, turn = displayed_size(im), orientation(im)
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            im.load()
    except ImageTooLarge as e:
        return {"error": str(e), "too_large": True}
    except Exception as e:  # PIL raises many types for corrupt data
        return {"error": str(e)}
    return {"size": [int(size[0]), int(size[1])], "orientation": turn}


def mask_facts(path: str, instance_value) -> dict:
    """{"shape": [h, w], "nonempty": bool} of a mask PNG, or {"error": message}."""
    from .convert import read_mask_png
    try:
        arr = read_mask_png(path, instance_value)
    except OSError as e:
        return {"error": str(e)}
    return {"shape": [int(arr.shape[0]), int(arr.shape[1])], "nonempty": bool(arr.any())}


def check_image(path: str, width: int, height: int, image_id: str | None = None,
                cache=None) -> list[Problem]:
    """Problems of the image file: missing, unreadable/truncated, or a size other than width x height."""
    if not os.path.isfile(path):
        return [Problem(path, image_id, "image_missing", "image file not found",
                        "download the image again or delete its annotation")]
    facts = (cache or NoCache()).get("image", path, "", lambda: image_facts(path))
    if facts.get("too_large"):
        return [Problem(path, image_id, "image_too_large", facts["error"],
                        "raise --max-pixels if the image is genuine, else delete it and its annotation")]
    if "error" in facts:
        return [Problem(path, image_id, "image_unreadable", "image cannot be decoded (%s)" % facts["error"],
                        "re-download the image or delete it and its annotation")]
    size = tuple(facts["size"])
    if width > 0 and height > 0 and size != (width, height):
        turn = facts.get("orientation", 1)
        if turn >= 5 and size == (height, width):  # annotated on the stored, not the displayed, pixels
            return [Problem(path, image_id, "image_size",
                            "image is %dx%d as displayed (EXIF orientation %d turns the stored %dx%d "
                            "pixels) but the annotation says %dx%d: it was made on the unrotated pixels"
                            % (size[0], size[1], turn, width, height, width, height),
                            "re-annotate the image as displayed (as CVAT, LabelMe and LabelImg show it), "
                            "or save the image with its rotation applied and the tag removed")]
        return [Problem(path, image_id, "image_size", "image is %dx%d but the annotation says %dx%d"
                        % (size[0], size[1], width, height),
                        "fix <size> in the annotation (or re-download the image)")]
    return []


def _check_mask(obj, k: int, record: ImageRecord, where: str, cache=None) -> list[Problem]:
    m = obj.mask
    label = "object %d (%s)" % (k + 1, obj.class_name)
    if not os.path.isfile(m.path):
        return [Problem(m.path, record.image_id, "mask_missing", "%s: mask PNG not found" % label,
                        "re-download the mask or remove the <mask> element from %s" % where)]
    facts = (cache or NoCache()).get("mask", m.path, m.instance_value,
                                     lambda: mask_facts(m.path, m.instance_value))
    if "error" in facts:
        return [Problem(m.path, record.image_id, "mask_unreadable", "%s: %s" % (label, facts["error"]),
                        "re-download the mask PNG")]
    out = []
    if not facts["nonempty"]:
        what = "no pixel >= 128" if m.instance_value is None else "no pixel with index %d" % m.instance_value
        out.append(Problem(m.path, record.image_id, "mask_empty", "%s: mask is empty (%s)" % (label, what),
                           "re-draw the mask or delete the object from %s" % where))
    mh, mw = facts["shape"]
    if record.width > 0 and record.height > 0 and (mh, mw) != (record.height, record.width):
        ratio = (mw / mh) / (record.width / record.height)
        if abs(ratio - 1.0) > ASPECT_TOLERANCE:
            out.append(Problem(m.path, record.image_id, "mask_size",
                               "%s: mask is %dx%d, image is %dx%d: aspect ratios differ by %.1f%% (> %d%%),"
                               " so it is not a rescale of this image"
                               % (label, mw, mh, record.width, record.height, abs(ratio - 1) * 100,
                                  ASPECT_TOLERANCE * 100),
                               "check the mask belongs to this image; re-download it"))
    return out


def validate_record(record: ImageRecord, known_classes=None, check_files: bool = True,
                    cache=None) -> list[Problem]:
    """Problems of one record (see the module docstring for the rules).

    ``known_classes``: iterable of allowed class names (case-insensitive), or None for any.
    ``check_files``: also open the image and mask PNGs (False: annotation-only checks).
    ``cache``: a dataset.factcache.FactCache reusing decode results of unchanged files.
    """
    where = record.annotation or record.path
    iid = record.image_id
    out = []
    known = {c.lower() for c in known_classes} if known_classes is not None else None
    for note in record.extra.get("_notes", []) or []:
        out.append(Problem(where, iid, "skipped_shape", note, "convert the shape to a polygon or box",
                           "warning"))
    if record.width <= 0 or record.height <= 0:
        out.append(Problem(where, iid, "no_size", "image size unknown (%sx%s)" % (record.width, record.height),
                           "add <size><width>/<height> or make sure the image file is readable"))
    coords = coordinate_problems(record, where)
    if coords:  # nothing below can reason about infinite or absurd numbers
        return out + coords
    if check_files:
        out += check_image(record.path, record.width, record.height, iid, cache)
    W, H = record.width, record.height
    for k, obj in enumerate(record.objects):
        label = "object %d (%s)" % (k + 1, obj.class_name)
        if known is not None and obj.class_name.lower() not in known:
            out.append(Problem(where, iid, "unknown_class", "%s: class %r is not one of %s"
                               % (label, obj.class_name, sorted(known_classes)),
                               "rename the object or add the class to the class list"))
        y1, x1, y2, x2 = obj.box
        if not (y2 > y1 and x2 > x1):
            out.append(Problem(where, iid, "box_degenerate", "%s: box (y1,x1,y2,x2)=%s is inverted or empty"
                               % (label, tuple(obj.box)),
                               "fix the <bndbox> so xmin < xmax and ymin < ymax"))
        elif W > 0 and H > 0:
            if y1 >= H or x1 >= W or y2 <= 0 or x2 <= 0:
                out.append(Problem(where, iid, "box_outside", "%s: box %s lies wholly outside the %dx%d image"
                                   % (label, tuple(obj.box), W, H),
                                   "fix the coordinates or delete the object"))
            elif min(y1, x1) < -BOX_TOLERANCE or y2 > H + BOX_TOLERANCE or x2 > W + BOX_TOLERANCE:
                out.append(Problem(where, iid, "box_outside", "%s: box %s sticks out of the %dx%d image; "
                                   "it will be clipped" % (label, tuple(obj.box), W, H),
                                   "clip the box to the image", "warning"))
        if isinstance(obj.mask, Polygon):
            pts = obj.mask.points
            area = 0.5 * abs(sum(pts[i][0] * pts[i - 1][1] - pts[i - 1][0] * pts[i][1]
                                 for i in range(len(pts)))) if len(pts) >= 3 else 0.0
            if len(pts) >= 3 and area == 0:
                # The signed area of a self-crossing polygon can cancel (a symmetric bow tie is
                # 0) while it still covers pixels: count what the converter would draw.
                area = float(_polygon_pixels(pts, H, W))
            if len(pts) < 3 or area == 0:
                out.append(Problem(where, iid, "polygon_points", "%s: polygon has %d points and area %g"
                                   % (label, len(pts), area),
                                   "re-draw the polygon with at least 3 distinct points"))
        elif isinstance(obj.mask, MaskPNG) and check_files:
            out += _check_mask(obj, k, record, where, cache)
    return out


def _polygon_pixels(points, height: int, width: int) -> int:
    """Pixels the converter's rasterisation gives the polygon (inside the image, or inside its
    own extent when the image size is unknown)."""
    import numpy as np

    from .convert import rasterize_polygon
    if height <= 0 or width <= 0:
        height = int(math.ceil(max(y for _, y in points))) + 1
        width = int(math.ceil(max(x for x, _ in points))) + 1
    out = np.zeros((max(1, height), max(1, width)), bool)
    rasterize_polygon(points, out.shape[0], out.shape[1], out)
    return int(out.sum())


def _layout_key(record: ImageRecord):
    """(split, class folder) for downloader-layout annotations, else None."""
    if not record.annotation:
        return None
    parts = os.path.abspath(record.annotation).split(os.sep)
    if len(parts) >= 4 and parts[-2] == "annotations" and parts[-3] in ("train", "validation", "test"):
        return parts[-3], os.sep.join(parts[:-3])
    return None


def duplicate_problems(records) -> list[Problem]:
    """Duplicate-id problems across ``records`` (see module docstring for what is allowed)."""
    out, seen = [], {}
    for r in records:
        for prev in seen.get(r.image_id, []):
            a, b = _layout_key(prev), _layout_key(r)
            if a and b and a[0] == b[0] and a[1] != b[1]:
                continue  # same image listed by two class folders of one split: merged
            if a and b and a[0] != b[0]:
                msg = "image id %s is in split %s (%s) and in split %s: a train/test leak" % (
                    r.image_id, a[0], prev.annotation, b[0])
            else:
                msg = "image id %s also comes from %s" % (r.image_id, prev.annotation or prev.path)
            out.append(Problem(r.annotation or r.path, r.image_id, "duplicate_id", msg,
                               "delete one of the two annotations (or rename the image)"))
            break
        seen.setdefault(r.image_id, []).append(r)
    return out


def error_problem(err: AnnotationError) -> Problem:
    """Problem for a file a reader rejected."""
    code = "path_escape" if isinstance(err, PathEscapeError) else "xml"
    fix = ("make the path relative to the dataset folder and keep it inside" if code == "path_escape"
           else "fix or re-export the annotation file, or delete it")
    return Problem(err.path, None, code, str(err).split(": ", 1)[-1], fix)


def check_dir(root: str, format: str | None = None, known_classes=None) -> Report:
    """Read and validate every annotation under ``root`` (any supported format); returns a Report."""
    from .formats import find_annotation_files, read_file
    report = Report(root=os.path.abspath(root))
    if not os.path.isdir(root):
        raise FileNotFoundError("%s is not a folder" % root)
    records = []
    for path in find_annotation_files(root):
        report.annotation_files += 1
        try:
            records.extend(read_file(path, format=format, root=root))
        except AnnotationError as e:
            report.problems.append(error_problem(e))
    # An image listed by two class folders of one split is one image (the loader merges it).
    report.images = len({(_layout_key(r)[0] if _layout_key(r) else r.annotation, r.image_id)
                         for r in records})
    for r in records:
        report.instances.update(o.class_name for o in r.objects)
        report.problems += validate_record(r, known_classes)
    report.problems += duplicate_problems(records)
    return report
