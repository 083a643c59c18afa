"""``python -m dataset convert``: annotations to one PNG per instance, or to COCO JSON.

PNG output (``OUT/``): ``masks/{image_id}_{k:03d}_{class}.png`` (0/255, image size) and
``instances.csv`` (image_id, index, class, source, png, y1, x1, y2, x2, image). ``source`` "box" marks
a filled-box fallback. COCO output (``OUT/annotations.json``): images, categories (sorted names, ids
1..K) and annotations with ``bbox`` [x, y, w, h], ``area`` (mask pixels) and ``segmentation``:
polygons as COCO polygons (same continuous-coordinate convention), everything else as RLE
(pycocotools, ``counts`` as a string). Files are written atomically.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re

import numpy as np

from ._xml import atomic_write_bytes
from .check import error_problem, validate_record
from .convert import record_to_masks
from .records import Polygon


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "object"


def _file_stem(image_id: str) -> str:
    """A file-name stem for ``image_id`` that no other id shares: the slug, plus a short hash of
    the id when the slug changed it ("a.b" and "a_b" would both give "a_b")."""
    import hashlib
    slug = _slug(image_id)
    return slug if slug == image_id else "%s-%s" % (slug, hashlib.sha1(image_id.encode()).hexdigest()[:8])


def _png_bytes(mask: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def convert_dir(in_dir: str, out_dir: str, format: str | None = None, coco: bool = False,
                progress: bool = False) -> dict:
    """Convert every annotation under ``in_dir``; returns counts and the problems (skip-and-report).

    Returns {"images", "instances", "box_fallbacks", "problems": [Problem], "output": path}.
    """
    from ._xml import AnnotationError
    os.makedirs(out_dir, exist_ok=True)
    records, problems = _read_records(in_dir, out_dir, format)
    if progress:
        from tqdm import tqdm
        records = tqdm(records, desc="convert", unit="img")
    rows, coco_images, coco_anns, categories = [], [], [], {}
    n_inst = n_box = 0
    for rec in records:
        bad = [p for p in validate_record(rec, check_files=False) if p.severity == "error"]
        if bad:  # e.g. inverted boxes (negative sizes), infinite coordinates, a huge <size>
            problems += bad
            continue
        try:
            masks, names, sources = record_to_masks(rec)
        except (OSError, AnnotationError) as e:
            problems.append(error_problem(e) if isinstance(e, AnnotationError) else
                            _os_problem(rec, e))
            continue
        image_index = len(coco_images) + 1
        rel_image = os.path.relpath(rec.path, in_dir).replace(os.sep, "/")
        coco_images.append({"id": image_index, "file_name": rel_image, "width": masks.shape[1],
                            "height": masks.shape[0], "image_id": rec.image_id})
        for k, (name, source, obj) in enumerate(zip(names, sources, rec.objects)):
            m = masks[:, :, k]
            n_inst += 1
            n_box += source == "box"
            if coco:
                categories.setdefault(name, None)
                coco_anns.append(_coco_ann(len(coco_anns) + 1, image_index, name, m, obj, source))
            else:
                png = "masks/%s_%03d_%s.png" % (_file_stem(rec.image_id), k, _slug(name))
                atomic_write_bytes(os.path.join(out_dir, png), _png_bytes(m))
                rows.append([rec.image_id, k, name, source, png, *obj.box, rel_image])
    if coco:
        output = _write_coco(out_dir, in_dir, coco_images, coco_anns, categories)
    else:
        output = _write_instances_csv(out_dir, rows)
    return {"images": len(coco_images), "instances": n_inst, "box_fallbacks": n_box,
            "problems": problems, "output": output}


def _read_records(in_dir: str, out_dir: str, format: str | None) -> tuple[list, list]:
    """(records, problems) of every annotation file under ``in_dir``, merged per image; files
    inside ``out_dir`` are skipped (a previous conversion is not an input)."""
    from ._xml import AnnotationError
    from .formats import find_annotation_files, read_file
    from .loader import merge_records
    records, problems = [], []
    for path in find_annotation_files(in_dir):
        if os.path.abspath(path).startswith(os.path.abspath(out_dir) + os.sep):
            continue
        try:
            records.extend(read_file(path, format=format, root=in_dir))
        except AnnotationError as e:
            problems.append(error_problem(e))
    return merge_records(records), problems   # one image listed by two class folders -> one entry


def _write_coco(out_dir: str, in_dir: str, images: list, anns: list, categories: dict) -> str:
    """Write ``annotations.json``: category ids 1..K over the sorted names; returns its path."""
    names = sorted(categories, key=lambda s: (s.lower(), s))
    cat_ids = {n: i + 1 for i, n in enumerate(names)}
    for a in anns:
        a["category_id"] = cat_ids[a.pop("category_name")]
    doc = {"info": {"description": "converted by python -m dataset convert from %s" % in_dir},
           "images": images, "annotations": anns,
           "categories": [{"id": cat_ids[n], "name": n, "supercategory": ""} for n in names]}
    output = os.path.join(out_dir, "annotations.json")
    # allow_nan=False: Infinity/NaN are not JSON; validation keeps them out.
    atomic_write_bytes(output, json.dumps(doc, allow_nan=False).encode("utf-8"))
    return output


def _write_instances_csv(out_dir: str, rows: list) -> str:
    """Write ``instances.csv`` (one row per instance PNG); returns its path."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image_id", "index", "class", "source", "png", "y1", "x1", "y2", "x2", "image"])
    w.writerows(rows)
    output = os.path.join(out_dir, "instances.csv")
    atomic_write_bytes(output, buf.getvalue().encode("utf-8"))
    return output


def _os_problem(rec, err):
    from .check import Problem
    return Problem(rec.annotation or rec.path, rec.image_id, "mask_unreadable", str(err),
                   "re-download the mask PNG or remove the object")


def _coco_ann(ann_id: int, image_index: int, name: str, mask: np.ndarray, obj, source: str) -> dict:
    y1, x1, y2, x2 = (float(v) for v in obj.box)
    ann = {"id": ann_id, "image_id": image_index, "category_name": name, "iscrowd": 0,
           "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(mask.sum()), "source": source}
    if source == "polygon" and isinstance(obj.mask, Polygon):
        ann["segmentation"] = [[float(c) for xy in obj.mask.points for c in xy]]
    else:
        from pycocotools import mask as mask_utils
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        ann["segmentation"] = rle
    return ann
