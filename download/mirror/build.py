"""Build a small Open Images-shaped mirror from generated scenes (see shapes.py).

Layout under ``dir`` (served by server.py; base URL = ``/openimages/``, images URL = ``/images/``)::

    openimages/v5/class-descriptions-boxable.csv        # no header: MID,DisplayName
    openimages/v5/classes-segmentation.txt              # MIDs with masks
    openimages/v5/{split}-annotations-object-segmentation.csv   # the real header
    openimages/v5/{split}-masks/{split}-masks-{0..f}.zip        # {ImageID}_{mid w/o /}_{BoxID}.png at the root
    images/{split}/{ImageID}.jpg
    ground_truth.json                                   # per image: size, objects, boxes, RLE masks

Masks are 0/255 greyscale PNGs; for every third image the PNG is twice the JPEG's resolution
(each pixel repeated 2x2, so a nearest-neighbour resize back is exact), as real masks often
differ in size from their JPEG. ``members_per_shard`` pads each zip with filler members of
~1.7 KB under real-length names, to give shards the real shape (many small members).
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import time
import zipfile

import numpy as np

from ..annotations import HEADER
from .shapes import scene, texture_bank

# (MID, display name, has masks): Cat/Dog/Teddy bear as in Open Images; Tree has boxes only.
CLASSES = [("/m/01yrx", "Cat", True), ("/m/0bt9lr", "Dog", True), ("/m/0kmg4", "Teddy bear", True),
           ("/m/03k3r", "Horse", True), ("/m/015p6", "Bird", True), ("/m/07j7r", "Tree", False),
           ("/m/0k4j", "Car", False)]
SPLITS = ("train", "validation", "test")
SHARDS = "0123456789abcdef"
DATE = (2019, 1, 1, 0, 0, 0)


def mask_name(image_id: str, mid: str, box_id: str) -> str:
    """``{ImageID}_{mid without '/'}_{BoxID}.png``, as in the real shards."""
    return "%s_%s_%s.png" % (image_id, mid.replace("/", ""), box_id)


def rle_encode(mask: np.ndarray) -> list[int]:
    """Row-major run lengths of a bool [H, W] mask, starting with a run of False (may be 0)."""
    flat = np.concatenate([[False], mask.ravel(), [not mask.ravel()[-1]] if mask.size else [True]])
    changes = np.flatnonzero(flat[1:] != flat[:-1])
    return np.diff(np.concatenate([[0], changes])).astype(int).tolist()


def rle_decode(counts: list[int], h: int, w: int) -> np.ndarray:
    """Inverse of ``rle_encode``: bool [h, w]."""
    vals = np.zeros(len(counts), dtype=bool)
    vals[1::2] = True
    return np.repeat(vals, counts)[:h * w].reshape(h, w)


def _png(mask: np.ndarray, scale: int) -> bytes:
    from PIL import Image
    arr = mask.astype(np.uint8) * 255
    if scale > 1:
        arr = np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_zip(path: str, members: list[tuple[str, bytes, int]], shuffle: random.Random | None = None) -> None:
    """Zip of (name, data, compress_type) members, sorted by name unless ``shuffle`` (an RNG) is given."""
    members = sorted(members, key=lambda m: m[0])
    if shuffle is not None:
        shuffle.shuffle(members)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, ctype in members:
            info = zipfile.ZipInfo(name, date_time=DATE)
            info.compress_type = ctype
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)


def filler_members(rng: random.Random, shard: str, n: int) -> list[tuple[str, bytes, int]]:
    """``n`` random mask-like (name, bytes, ZIP_STORED) members of ``shard`` that pad a zip to its real size."""
    out = []
    alnum = "0123456789abcdefghijklmnopqrstuvwxyz"
    for _ in range(n):
        iid = shard + "%015x" % rng.getrandbits(60)
        mid = "m0" + "".join(rng.choice(alnum) for _ in range(rng.choice((3, 4, 5))))
        size = min(4000, max(600, int(rng.gauss(1700, 250))))
        out.append(("%s_%s_%08x.png" % (iid, mid, rng.getrandbits(32)), rng.randbytes(size), zipfile.ZIP_STORED))
    return out


def build_split(root: str, split: str, n_per_class: int, rng: np.random.Generator, pyrng: random.Random,
                members_per_shard: int = 0, shuffle_members: bool = False, image_classes=None) -> dict:
    """Generate one split's images, masks, CSV and shards; returns its ground truth {image_id: {...}}."""
    masked = [(m, n) for m, n, has in CLASSES if has]
    base = os.path.join(root, "openimages", "v5")
    gt, rows, shards, seen = {}, [], {s: [] for s in SHARDS}, set()
    bank = texture_bank(rng)
    k = 0
    for ci, (mid, name) in enumerate(masked):
        if image_classes is not None and name not in image_classes:
            continue
        for _ in range(n_per_class):
            iid = "%016x" % pyrng.getrandbits(64)
            while iid in seen:
                iid = "%016x" % pyrng.getrandbits(64)
            seen.add(iid)
            objs = [(mid, name)] * (2 if pyrng.random() < 0.3 else 1)
            if pyrng.random() < 0.3:
                objs.append(masked[(ci + 1 + pyrng.randrange(len(masked) - 1)) % len(masked)])
            h, w = pyrng.randrange(128, 225, 8), pyrng.randrange(128, 225, 8)
            img, masks = scene(rng, [n for _, n in objs], (h, w), bank)
            scale = 2 if k % 3 == 0 else 1
            k += 1
            _write(os.path.join(root, "images", split, iid + ".jpg"), _jpeg(img))
            entry = {"width": w, "height": h, "mask_scale": scale, "objects": []}
            for (omid, oname), m in zip(objs, masks):
                box_id = "%08x" % pyrng.getrandbits(32)
                mp = mask_name(iid, omid, box_id)
                ys, xs = np.nonzero(m)
                y1, x1, y2, x2 = int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
                clicks = ";".join("%.5f %.5f %d" % (pyrng.uniform(x1, x2) / w, pyrng.uniform(y1, y2) / h,
                                                    pyrng.randrange(2)) for _ in range(pyrng.randrange(3, 8)))
                rows.append([mp, iid, omid, box_id, "%.6f" % (x1 / w), "%.6f" % (x2 / w), "%.6f" % (y1 / h),
                             "%.6f" % (y2 / h), "%.5f" % pyrng.uniform(0.6, 0.95), clicks])
                shards[iid[0]].append((mp, _png(m, scale), zipfile.ZIP_DEFLATED))
                entry["objects"].append({"class": oname, "mid": omid, "box_id": box_id, "mask_path": mp,
                                         "box": [y1, x1, y2, x2], "area": int(m.sum()), "mask_rle": rle_encode(m)})
            gt[iid] = entry
    rows.sort()
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(HEADER)
    wr.writerows(rows)
    _write(os.path.join(base, "%s-annotations-object-segmentation.csv" % split), buf.getvalue().encode())
    for s in SHARDS:
        members = shards[s] + filler_members(pyrng, s, max(0, members_per_shard - len(shards[s])))
        write_zip(os.path.join(base, "%s-masks" % split, "%s-masks-%s.zip" % (split, s)), members,
                  shuffle=pyrng if shuffle_members else None)
    return gt


def build_mirror(dir: str, images_per_split: int = 45, members_per_shard: int = 0, seed: int = 0,
                 splits=SPLITS, shuffle_members: bool = False, image_classes=None) -> dict:
    """Build the mirror in ``dir``; returns a summary (image/mask counts, bytes, seconds).

    ``images_per_split`` images per split for *each* class with masks (Cat, Dog, Teddy bear, Horse,
    Bird), each showing 1-2 objects of its class and sometimes one of another class (default 45:
    ~60 images per split show a Cat).
    ``shuffle_members`` writes zip members in random order (an unsorted central directory).
    ``image_classes`` (display names) limits which classes get images of their own (default: all).
    """
    t0 = time.monotonic()
    pyrng = random.Random(seed)
    rng = np.random.default_rng(seed)
    base = os.path.join(dir, "openimages", "v5")
    _write(os.path.join(base, "class-descriptions-boxable.csv"),
           "".join("%s,%s\n" % (m, n) for m, n, _ in CLASSES).encode())
    _write(os.path.join(base, "classes-segmentation.txt"),
           "".join("%s\n" % m for m, _, has in CLASSES if has).encode())
    gt = {"classes": [{"mid": m, "name": n, "has_masks": h} for m, n, h in CLASSES], "splits": {}}
    for split in splits:
        gt["splits"][split] = build_split(dir, split, images_per_split, rng, pyrng, members_per_shard,
                                          shuffle_members, image_classes)
    with open(os.path.join(dir, "ground_truth.json"), "w") as f:
        json.dump(gt, f, separators=(",", ":"))
    n_img = sum(len(v) for v in gt["splits"].values())
    n_mask = sum(len(e["objects"]) for v in gt["splits"].values() for e in v.values())
    return {"dir": dir, "images": n_img, "masks": n_mask, "seconds": round(time.monotonic() - t0, 2)}


def load_ground_truth(dir: str) -> dict:
    with open(os.path.join(dir, "ground_truth.json")) as f:
        return json.load(f)
