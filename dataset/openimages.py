"""``OpenImagesDataset``: matterport's ``Dataset`` over what ``download`` writes (and VOC/CVAT/LabelMe).

Usage (as with matterport)::

    train = OpenImagesDataset()
    train.load_openimages("data/cat", "train")
    train.prepare()
    image = train.load_image(0)                 # uint8 [H, W, 3]
    masks, class_ids = train.load_mask(0)       # bool [H, W, N], int32 [N]
"""
from __future__ import annotations

import logging
import os

import numpy as np

from mrcnn.utils import Dataset

from .check import error_problem, validate_record
from .convert import record_to_masks
from .factcache import FactCache, NoCache
from .loader import filter_objects, read_subset, resolve_classes

logger = logging.getLogger(__name__)
SOURCE = "openimages"


class OpenImagesDataset(Dataset):
    """Images and instance masks of one subset of an Open Images (or VOC / CVAT / LabelMe) folder.

    After ``load_openimages``: ``image_info[i]`` holds id, path, width, height, url, annotation and
    the ``record`` (dataset.records.ImageRecord) so training can validate without decoding images;
    ``problems`` lists the dataset.check.Problem of every skipped or suspicious image;
    ``layout`` says how the folder was read ("downloader", "splits" or "hash").
    """

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self.problems = []
        self.layout = None
        self._source_class = {}       # lower-cased class name -> source class id
        self._warned_box = set()
        self.mask_workers = 1          # >1: decode an image's mask PNGs in threads (see dataset.convert)

    def load_openimages(self, root, subset, class_names=None, split_ratios=None, salt="",
                        format=None, skip_invalid=True, check_files=True, keep_empty=True,
                        cache=True, seed=None):
        """Register the classes and the images of ``subset`` of ``root``.

        root: a downloader class folder (with manifest.json), a folder of class folders, a folder with
            train/validation/test sub-folders, or any folder of VOC / CVAT / LabelMe annotations.
        subset: "train", "validation" (or "val"), "test", or "all".
        class_names: keep only these classes (case-insensitive; default: every class found).
            Class ids are 1..K in sorted order of the names: the same for every subset.
        split_ratios, salt: hash split (train, validation, test) for folders without split folders;
            default (0.8, 0.1, 0.1). An image's split depends only on its id and the salt.
            ``seed`` is an alias: salt = str(seed).
        format: force an annotation format ("voc", "voc-openimages", "cvat", "labelme").
        skip_invalid: skip images with errors (dataset.check rules) and warn; False raises ValueError.
        check_files: decode every image and mask PNG while validating (slower, catches corruption).
        keep_empty: keep images left without objects (they train as negatives).
        cache: keep image/mask decode results of unchanged files in {root}/.cache/dataset-checks.json
            (see dataset.factcache), so reloading a large dataset does not decode everything again.
        Returns the list of problems found (also in ``self.problems``).
        """
        if seed is not None:
            salt = str(seed)
        records, errors, layout, seen = read_subset(root, subset, class_names, split_ratios, salt,
                                                    format)
        self.layout = layout
        classes = resolve_classes(class_names, seen)
        if class_names and not records and not errors:
            logger.warning("No images of %s in subset %s of %s", classes, subset, root)
        self._register_classes(classes)
        filter_objects(records, classes)
        problems = [error_problem(e) for e in errors]
        skipped = len(errors)
        facts = FactCache(os.path.join(root, ".cache", "dataset-checks.json")) if cache else NoCache()
        for rec in records:
            found = validate_record(rec, known_classes=classes, check_files=check_files, cache=facts)
            problems += found
            if any(p.severity == "error" for p in found) and skip_invalid:
                skipped += 1
                continue
            if not rec.objects and not keep_empty:
                continue
            self.add_image(SOURCE, image_id=rec.image_id, path=rec.path, width=rec.width,
                           height=rec.height, url=rec.extra.get("url"), annotation=rec.annotation,
                           split=rec.extra.get("split"), record=rec)
        facts.save()
        self.problems.extend(problems)
        _report_errors(problems, skipped, root, subset, skip_invalid)
        return problems

    def _register_classes(self, classes) -> None:
        """Add ``classes`` not registered yet. A second call (another root) keeps the ids given
        so far and numbers new classes after them."""
        for name in classes:
            if name.lower() not in self._source_class:
                self._source_class[name.lower()] = len(self._source_class) + 1
                self.add_class(SOURCE, self._source_class[name.lower()], name)

    def load_mask(self, image_id):
        """Instance masks at the JPEG's size: (bool [H, W, N], int32 [N] class ids).

        An image with no objects gives bool [H, W, 0] and int32 [0]. Objects without a mask are
        filled boxes (a warning names the image once).
        """
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().load_mask(image_id)
        rec = info["record"]
        masks, names, sources = record_to_masks(rec, workers=self.mask_workers)
        if "box" in sources and image_id not in self._warned_box:
            self._warned_box.add(image_id)
            logger.warning("Image %s (%s): %d object(s) without a mask, falling back to the filled box",
                           rec.image_id, rec.annotation, sources.count("box"))
        ids = [self._internal_class_id(n) for n in names]
        return masks, np.asarray(ids, dtype=np.int32).reshape(-1)

    def _internal_class_id(self, name):
        source_id = self._source_class[name.lower()]
        if hasattr(self, "class_from_source_map"):
            return self.map_source_class_id("%s.%d" % (SOURCE, source_id))
        raise RuntimeError("call dataset.prepare() before load_mask()")

    def image_reference(self, image_id):
        """The Open Images URL of the image if known, else its path."""
        info = self.image_info[image_id]
        return info.get("url") or info["path"]

    def source_image_link(self, image_id):
        info = self.image_info[image_id]
        return info.get("url") or info["path"]


def load_openimages(root, subset, class_names=None, split_ratios=None, salt="", format=None,
                    skip_invalid=True, check_files=True, keep_empty=True, cache=True, seed=None,
                    prepare=True):
    """Convenience: a prepared OpenImagesDataset of ``subset`` of ``root`` (see its method)."""
    ds = OpenImagesDataset()
    ds.load_openimages(root, subset, class_names=class_names, split_ratios=split_ratios, salt=salt,
                       format=format, skip_invalid=skip_invalid, check_files=check_files,
                       keep_empty=keep_empty, cache=cache, seed=seed)
    if prepare:
        ds.prepare()
    return ds


def _report_errors(problems, skipped: int, root: str, subset: str, skip_invalid: bool) -> None:
    """Warn about the skipped images (the first 20 error problems listed), or, with
    ``skip_invalid`` False, raise ValueError listing them."""
    errors = [p for p in problems if p.severity == "error"]
    if not errors:
        return
    listing = "\n  ".join(str(p) for p in errors[:20])
    more = "" if len(errors) <= 20 else "\n  ... and %d more" % (len(errors) - 20)
    if not skip_invalid:
        raise ValueError("%d problems in %s (subset %s):\n  %s%s\nRun `python -m dataset check "
                         "%s` for the full report." % (len(errors), root, subset, listing, more, root))
    logger.warning("Skipped %d bad images/annotation files in %s (subset %s):\n  %s%s",
                   skipped, root, subset, listing, more)


__all__ = ["OpenImagesDataset", "load_openimages"]
