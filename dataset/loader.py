"""Find and read the records of one subset of a dataset folder (no mrcnn dependency).

Layouts, tried in this order:

1. Downloader layout: ``root`` is a class folder holding ``manifest.json`` (or a folder of such class
   folders); ``{class}/{split}/annotations/*.xml`` are read for the requested split as they come.
   The same image id in two class folders of one split becomes one image with all objects.
2. Split folders: ``root/{train,validation|val,test}/`` each holding annotations in any format.
3. Anything else (plain VOC such as openimages 0.0.1's ``dest/cat/{images,pascal}``, a VOC tree,
   CVAT, LabelMe): every annotation under ``root`` is read and split by ``dataset.splits``.
"""
from __future__ import annotations

import json
import os

from ._xml import AnnotationError
from .splits import SPLITS, assign_split, normalize_subset

_SPLIT_DIR_NAMES = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


def _norm(name: str) -> str:
    return " ".join(str(name).replace("_", " ").lower().split())


def manifest_class(class_dir: str) -> str:
    """Class display name of a downloader class folder (manifest "class", else the folder name)."""
    path = os.path.join(class_dir, "manifest.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict):
            for key in ("class", "class_name", "display_name", "name"):
                if isinstance(data.get(key), str) and data[key].strip():
                    return data[key].strip()
    except (OSError, ValueError):
        pass
    return os.path.basename(os.path.normpath(class_dir)).replace("_", " ")


def class_dirs(root: str) -> list[str]:
    """Downloader class folders: ``root`` itself if it has manifest.json, else its children that do."""
    if os.path.isfile(os.path.join(root, "manifest.json")):
        return [os.path.abspath(root)]
    out = []
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not name.startswith(".") and os.path.isfile(os.path.join(d, "manifest.json")):
            out.append(os.path.abspath(d))
    return out


def split_dirs(root: str) -> dict:
    """{split: folder} of plain split folders under ``root`` (empty when there are none)."""
    out = {}
    for split, names in _SPLIT_DIR_NAMES.items():
        for n in names:
            if os.path.isdir(os.path.join(root, n)):
                out[split] = os.path.join(root, n)
                break
    return out


def merge_records(records) -> list:
    """One record per image id (first seen wins for path/size); objects concatenated, exact
    duplicates (same class, box and box_id) dropped. Order: first appearance."""
    merged, order = {}, []
    for r in records:
        if r.image_id not in merged:
            merged[r.image_id] = r
            order.append(r.image_id)
            continue
        base = merged[r.image_id]
        seen = {(o.class_name, tuple(o.box), o.extra.get("box_id")) for o in base.objects}
        for o in r.objects:
            key = (o.class_name, tuple(o.box), o.extra.get("box_id"))
            if key not in seen:
                base.objects.append(o)
                seen.add(key)
    return [merged[i] for i in order]


def read_subset(root: str, subset: str, class_names=None, split_ratios=None, salt: str = "",
                format: str | None = None):
    """Records of one subset of ``root`` plus the reader errors and the layout used.

    Returns (records, errors, layout, all_class_names): ``errors`` are AnnotationErrors of files
    that could not be read; ``layout`` is "downloader", "splits" or "hash";
    ``all_class_names`` are the class names seen in the whole dataset (manifests for the downloader
    layout), so train and validation datasets get the same class ids. ``subset`` "all" reads every split.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError("dataset folder %s does not exist; download data first or fix the "
                                "path" % root)
    subsets = list(SPLITS) if str(subset).lower() == "all" else [normalize_subset(subset)]
    if isinstance(class_names, str):
        class_names = [class_names]
    wanted = {_norm(c) for c in class_names} if class_names else None
    cdirs = class_dirs(root)
    if cdirs:
        layout = "downloader"
        records, errors, names = _read_downloader(cdirs, subsets, wanted, format)
    elif split_dirs(root):
        layout = "splits"
        records, errors, names = _read_split_dirs(split_dirs(root), subsets, format)
    else:
        layout = "hash"
        records, errors, names = _read_hashed(root, subsets, split_ratios, salt, format)
    return merge_records(records), errors, layout, names


def _read_downloader(cdirs, subsets, wanted, format):
    """(records, errors, names) of the downloader layout ``<class>/<split>/annotations/``: the
    class folders whose manifest class or folder name is in ``wanted`` (None: all); ``names`` are
    those manifest classes, then every object's class."""
    from .formats import find_annotation_files, read_file
    records, errors, names = [], [], []
    for cdir in cdirs:
        cname = manifest_class(cdir)
        if wanted is not None and _norm(cname) not in wanted \
                and _norm(os.path.basename(cdir)) not in wanted:
            continue
        names.append(cname)
        for split in subsets:
            split_dir = os.path.join(cdir, split)
            ann_dir = os.path.join(split_dir, "annotations")
            if not os.path.isdir(ann_dir):
                continue
            for path in find_annotation_files(ann_dir):
                try:
                    recs = read_file(path, format=format, root=split_dir, split_dir=split_dir)
                except AnnotationError as e:
                    errors.append(e)
                    continue
                for r in recs:
                    r.extra.setdefault("split", split)
                records.extend(recs)
    names.extend(o.class_name for r in records for o in r.objects)
    return records, errors, names


def _read_split_dirs(sdirs: dict, subsets, format):
    """(records, errors, names) of a ``train/``, ``validation/``, ... layout: records and errors
    of the wanted subsets, class names of every split (so ids match across subsets)."""
    from .formats import read_dir
    records, errors, names = [], [], []
    for split, sdir in sdirs.items():
        recs, errs = read_dir(sdir, format=format)
        if split in subsets:
            for r in recs:
                r.extra.setdefault("split", split)
            records.extend(recs)
            errors.extend(errs)
        names.extend(o.class_name for r in recs for o in r.objects)
    return records, errors, names


def _read_hashed(root: str, subsets, split_ratios, salt: str, format):
    """(records, errors, names) of a flat folder split by ``assign_split``'s stable hash of the
    image id; errors and names cover the whole folder."""
    from .formats import read_dir
    recs, errors = read_dir(root, format=format)
    names = [o.class_name for r in recs for o in r.objects]
    records = []
    for r in recs:
        split = assign_split(r.image_id, split_ratios, salt)
        if split in subsets:
            r.extra["split"] = split
            records.append(r)
    return records, errors, names


def resolve_classes(class_names, seen_names) -> list[str]:
    """Sorted, de-duplicated class names (case-insensitive; data spelling preferred).

    With ``class_names`` given, exactly those classes (in the data's spelling when found there);
    otherwise every name in ``seen_names``. Sorted by lower-cased name, so ids are deterministic.
    """
    spelling = {}
    for n in seen_names:
        spelling.setdefault(_norm(n), n)
    if class_names:
        if isinstance(class_names, str):
            class_names = [class_names]
        keys = [_norm(c) for c in class_names]
        chosen = {k: spelling.get(k, c) for k, c in zip(keys, class_names)}
    else:
        chosen = spelling
    return [chosen[k] for k in sorted(chosen)]


def filter_objects(records, classes) -> None:
    """Drop (in place) the objects whose class is not in ``classes`` and rename the rest to the
    canonical spelling in ``classes`` (matching is case-insensitive)."""
    canon = {_norm(c): c for c in classes}
    for r in records:
        kept = []
        for o in r.objects:
            c = canon.get(_norm(o.class_name))
            if c is not None:
                o.class_name = c
                kept.append(o)
        r.objects = kept
