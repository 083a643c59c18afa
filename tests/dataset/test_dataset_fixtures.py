"""Tiny on-disk fixtures for the dataset tests (helpers only, no tests here)."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from dataset.records import ImageRecord, MaskPNG, ObjectRecord
from dataset.voc import write_voc


def make_jpeg(path, width, height, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=90)
    return str(path)


def make_mask_png(path, width, height, box, mode="L"):
    """Binary whole-image mask PNG (0/255) with the (y1, x1, y2, x2) rectangle set."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    m = np.zeros((height, width), np.uint8)
    y1, x1, y2, x2 = box
    m[y1:y2, x1:x2] = 255
    Image.fromarray(m).convert(mode).save(path)
    return str(path)


def write_openimages001_xml(path, images_dir, image_id, width, height, boxes_frac, label="Cat"):
    """An XML exactly as the ``openimages`` 0.0.1 package writes it (bndbox order xmin, xmax, ymin,
    ymax; values int(frac*W) clipped to [0, W-1]; absolute folder/path)."""
    objs = []
    for (xmin, xmax, ymin, ymax) in boxes_frac:
        vals = [min(max(int(xmin * width), 0), width - 1), min(max(int(xmax * width), 0), width - 1),
                min(max(int(ymin * height), 0), height - 1), min(max(int(ymax * height), 0), height - 1)]
        objs.append(
            "  <object>\n    <name>%s</name>\n    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
            "    <difficult>0</difficult>\n    <bndbox>\n      <xmin>%d</xmin>\n      <xmax>%d</xmax>\n"
            "      <ymin>%d</ymin>\n      <ymax>%d</ymax>\n    </bndbox>\n  </object>\n" % (label, *vals))
    xml = ("<annotation>\n  <folder>%s</folder>\n  <filename>%s.jpg</filename>\n  <path>%s/%s.jpg</path>\n"
           "  <source>\n    <database>Unknown</database>\n  </source>\n  <size>\n    <width>%d</width>\n"
           "    <height>%d</height>\n    <depth>3</depth>\n  </size>\n  <segmented>0</segmented>\n%s"
           "</annotation>\n" % (images_dir, image_id, images_dir, image_id, width, height, "".join(objs)))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(xml)
    return str(path)


def make_downloader_class(root, class_name, mid, split, image_ids, size=(64, 48), mask_size=None,
                          n_objects=1, manifest=True):
    """A downloader-layout class folder: {root}/{class}/{split}/{images,masks,annotations}.

    Each image gets ``n_objects`` objects with whole-image mask PNGs (at ``mask_size``, default the
    image size) holding a rectangle. Returns the records written.
    """
    import json
    w, h = size
    mw, mh = mask_size or size
    cdir = os.path.join(str(root), class_name.lower().replace(" ", "_"))
    sdir = os.path.join(cdir, split)
    if manifest:
        os.makedirs(cdir, exist_ok=True)
        with open(os.path.join(cdir, "manifest.json"), "w") as f:
            json.dump({"class": class_name, "mid": mid, "splits": [split]}, f)
    recs = []
    for n, iid in enumerate(image_ids):
        img = make_jpeg(os.path.join(sdir, "images", iid + ".jpg"), w, h, seed=n)
        objs = []
        for k in range(n_objects):
            box_id = "b%d%s" % (k, class_name[:1])
            y1, x1 = 2 + 3 * k, 4 + 2 * k
            y2, x2 = y1 + h // 3, x1 + w // 3
            mbox = (y1 * mh // h, x1 * mw // w, y2 * mh // h, x2 * mw // w)
            mpath = make_mask_png(os.path.join(sdir, "masks", "%s_%s_%s.png" % (iid, mid.replace("/", ""), box_id)),
                                  mw, mh, mbox)
            objs.append(ObjectRecord(class_name, (float(y1), float(x1), float(y2), float(x2)),
                                     MaskPNG(mpath), {"label_name": mid, "box_id": box_id}))
        rec = ImageRecord(iid, img, w, h, objs, extra={"url": "https://example.test/%s/%s.jpg" % (split, iid),
                                                       "split": split})
        write_voc(rec, os.path.join(sdir, "annotations", iid + ".xml"), sdir)
        recs.append(rec)
    return recs
