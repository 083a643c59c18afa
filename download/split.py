"""Download one split of one class: select images, fetch masks and images, write the VOC XML.

Output (see dataset/records.py): ``{split_dir}/images/{ImageID}.jpg``, ``masks/{MaskPath}``,
``annotations/{ImageID}.xml``. An image's XML is written only after its JPEG and every mask that
could be fetched are in place, so "XML exists" means "image complete" and a rerun skips it.
Boxes: (y1, x1, y2, x2) float pixels = (YMin*H, XMin*W, YMax*H, XMax*W) from the CSV's normalised
coordinates and the JPEG's size.
"""
from __future__ import annotations

import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor

from .fsutil import UnsafeNameError, atomic_write_bytes, clean_stale_temps, safe_id, safe_png_name

log = logging.getLogger("download")
SHARDS = "0123456789abcdef"


def select_images(image_ids, limit: int | None, seed: int, split: str, mid: str) -> list[str]:
    """Seeded random sample of ``limit`` ids (all if limit is None or large), returned sorted.

    The generator is seeded with a string of (seed, split, MID): the same call gives the same
    sample on any machine and any Python hash seed.
    """
    ids = sorted(image_ids)
    if limit is None or limit >= len(ids):
        return ids
    rng = random.Random("%d:%s:%s" % (seed, split, mid))
    return sorted(rng.sample(ids, max(0, int(limit))))


def group_rows(rows, split: str):
    """({image_id: [row]}, [rejected]) validating ImageIDs and mask names from the CSV.

    Malformed rows (wrong column count) and repeats of an (ImageID, LabelName, BoxID) already seen
    are skipped and listed in ``rejected`` with the reason, never turned into objects."""
    by_image, rejected, seen = {}, [], set()
    for r in rows:
        if None in r or None in r.values():  # csv.DictReader: too many / too few columns
            n = len(r) - (None in r) + len(r.get(None) or []) - sum(v is None for v in r.values())
            rejected.append({"image_id": r.get("ImageID") or "", "mask": r.get("MaskPath") or "",
                             "reason": "malformed row in %s CSV: %d columns, expected 10; skipped"
                                       % (split, n)})
            continue
        key = (r["ImageID"], r["LabelName"], r["BoxID"])
        if key in seen:
            rejected.append({"image_id": r["ImageID"], "mask": r.get("MaskPath", ""),
                             "reason": "duplicate row in %s CSV (same ImageID, LabelName, BoxID); "
                                       "dropped" % split})
            continue
        seen.add(key)
        iid = r.get("ImageID", "")
        try:
            safe_id(iid, "ImageID")
        except UnsafeNameError as e:
            rejected.append({"image_id": iid, "mask": r.get("MaskPath", ""), "reason": str(e)})
            continue
        try:
            for k in ("BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax"):
                v = float(r[k])
                if not 0.0 <= v <= 1.0:
                    raise ValueError("%s=%s outside [0, 1]" % (k, r[k]))
        except (ValueError, KeyError) as e:
            rejected.append({"image_id": iid, "mask": r.get("MaskPath", ""),
                             "reason": "bad box in %s CSV: %s" % (split, e)})
            continue
        by_image.setdefault(iid, []).append(r)
    return by_image, rejected


def mask_name_ok(row) -> bool:
    try:
        safe_png_name(row["MaskPath"], "MaskPath")
        return True
    except UnsafeNameError:
        return False



def binary_png(data: bytes) -> bytes | None:
    """The mask re-encoded as a 1-bit PNG (object where value > 127), or None if it is not a PNG.
    Raises dataset.pixels.ImageTooLarge for a mask over the pixel limit (a decompression bomb).

    Open Images masks are binary; 1-bit PNGs decode about 3x faster than 8-bit ones, which keeps
    ``load_mask`` of a 10-instance 1024 px image under 20 ms. Same size, same pixels after threshold.
    """
    import io

    from mrcnn.structures.pixels import ImageTooLarge, open_image
    try:
        with open_image(io.BytesIO(data), "mask") as im:
            if im.format != "PNG":
                return None
            im.load()
            if im.mode == "1":
                return bytes(data)
            grey = im.convert("L")
    except ImageTooLarge:
        raise  # not a broken file: reported with its pixel count
    except (OSError, SyntaxError, ValueError):
        return None
    out = io.BytesIO()
    grey.point(lambda v: 255 if v > 127 else 0).convert("1").save(out, format="PNG", optimize=False)
    return out.getvalue()


def _dataset(module: str):
    """``dataset.<module>``, the sibling package (``mrcnn_keras3.dataset.<module>`` when installed)."""
    import importlib
    parent = __package__.rpartition(".")[0]
    return importlib.import_module("%sdataset.%s" % (parent + "." if parent else "", module))


class SplitJob:
    """State and steps for one (class, split). ``run()`` returns the split's report dict."""

    def __init__(self, net, info, split: str, split_dir: str, cache_dir: str, base_url: str, images_url: str,
                 workers: int, progress: bool, zip_mode: str = "auto"):
        self.net, self.info, self.split = net, info, split
        self.split_dir, self.cache_dir = split_dir, cache_dir
        self.base_url, self.images_url = base_url, images_url
        self.workers, self.progress, self.zip_mode = workers, progress, zip_mode
        self.img_dir = os.path.join(split_dir, "images")
        self.mask_dir = os.path.join(split_dir, "masks")
        self.ann_dir = os.path.join(split_dir, "annotations")
        self.mask_errors = {}      # mask name -> reason (this run)
        self.image_errors = {}     # image id -> reason (this run)
        self.fetched = {"images": 0, "masks": 0}
        self.shard_strategy = {}
        self.failed_shards = set()

    def shard_url(self, shard: str) -> str:
        return "%sv5/%s-masks/%s-masks-%s.zip" % (self.base_url, self.split, self.split, shard)

    def image_url(self, image_id: str) -> str:
        return "%s%s/%s.jpg" % (self.images_url, self.split, image_id)

    def run(self, by_image: dict, selected: list[str]) -> dict:
        for d in (self.img_dir, self.mask_dir, self.ann_dir):
            os.makedirs(d, exist_ok=True)
            clean_stale_temps(d)
        pending = [i for i in selected if not os.path.isfile(os.path.join(self.ann_dir, i + ".xml"))]
        self.fetch_masks(by_image, pending)
        self.fetch_images_and_write(by_image, pending)
        return {"skipped": len(selected) - len(pending), "pending": len(pending)}

    # ---- masks ---------------------------------------------------------------------------------
    def fetch_masks(self, by_image: dict, pending: list[str]) -> None:
        """Fetch and store the missing mask PNGs of the ``pending`` images from their zip shards
        (shard = first hex digit of the image id); failures go to ``mask_errors``."""
        from .progress import bar
        per_shard = self._missing_masks(by_image, pending)
        total = sum(len(v) for v in per_shard.values())
        if not total:
            return
        pbar = bar(self.progress, total=total, desc="%s masks" % self.split, unit="mask")
        # shards in parallel (up to `workers`), each reading its pages/members with a few threads
        outer = max(1, min(len(per_shard), self.workers))
        inner = max(1, min(4, self.workers // 4))

        def one_shard(shard):
            written, errors = self._fetch_shard(shard, sorted(per_shard[shard]), inner)
            if written is not None:
                pbar.update(len(per_shard[shard]))
            return shard, written, errors

        with ThreadPoolExecutor(outer) as pool:
            for shard, written, errors in pool.map(one_shard, sorted(per_shard)):
                if written is None:
                    for n in errors:
                        self.mask_errors[n] = errors[n]
                    self.failed_shards.add(shard)
                else:
                    self.fetched["masks"] += written
                    self.mask_errors.update(errors)
        pbar.close()
        for n, why in sorted(self.mask_errors.items()):
            if not why.startswith("shard "):   # whole-shard failures were logged once above
                log.warning("%s mask %s: %s", self.split, n, why)

    def _missing_masks(self, by_image: dict, pending: list[str]) -> dict:
        """{shard: set of mask file names} of the pending images' masks not on disk yet."""
        per_shard = {}
        for iid in pending:
            for r in by_image[iid]:
                if not mask_name_ok(r):
                    continue
                name = r["MaskPath"]
                if not os.path.isfile(os.path.join(self.mask_dir, name)):
                    per_shard.setdefault(iid[0].lower(), set()).add(name)
        return per_shard

    def _fetch_shard(self, shard: str, names: list[str], inner: int):
        """(masks written, {name: reason}) for one shard's ``names``, read with ``inner`` threads;
        (None, reasons) when the whole shard is unavailable (its images stay pending)."""
        from .remote_zip import ShardReader
        reader = ShardReader(self.net, self.shard_url(shard), self.cache_dir, workers=inner, mode=self.zip_mode)
        try:
            results = reader.read(names)
        except Exception as e:   # whole shard unavailable: its images stay pending for a rerun
            log.warning("%s: %s (%d masks not fetched)", self.shard_url(shard), e, len(names))
            return None, {n: "shard %s unavailable: %s" % (shard, e) for n in names}
        self.shard_strategy[shard] = reader.strategy
        written, errors = 0, {}
        for attempt in range(2):  # a member that fails its CRC or PNG decode is read once more
            retry = []
            for name in names:
                png, why = self._store_mask(name, results.get(name), shard)
                written += png
                if why is None:
                    errors.pop(name, None)
                else:
                    errors[name] = why
                    if not isinstance(results.get(name), KeyError) and "pixels" not in why:
                        retry.append(name)
            if not retry or attempt:
                break
            self.net.stats.event("mask_refetched")
            try:  # a fresh reader: the first one may hold the bad bytes in memory
                reader = ShardReader(self.net, self.shard_url(shard), self.cache_dir, workers=inner,
                                     mode=self.zip_mode)
                results, names = reader.read(retry), retry
            except Exception:  # the shard went away: keep the first errors
                break
        return written, errors

    def _store_mask(self, name: str, val, shard: str):
        """(1, None) when the member ``val`` (bytes or an exception) was written as a 1-bit PNG,
        else (0, reason)."""
        from mrcnn.structures.pixels import ImageTooLarge
        if isinstance(val, (bytes, bytearray)):
            try:
                png = binary_png(bytes(val))
            except ImageTooLarge as e:
                return 0, str(e)
            if png is None:
                return 0, "mask is not a decodable PNG"
            atomic_write_bytes(os.path.join(self.mask_dir, name), png, durable=False)
            return 1, None
        if isinstance(val, KeyError):
            return 0, "mask missing from shard %s" % shard
        return 0, "mask unreadable: %s" % val

    def blocking_mask_error(self, rows: list[dict]) -> str | None:
        """Why an image may not be marked complete: one of its masks was found but could not be
        stored (CRC, decode, pixel limit). A mask absent from its shard does not block."""
        for r in rows:
            why = self.mask_errors.get(r.get("MaskPath"))
            if why and not why.startswith(("mask missing", "shard ")):
                return "mask %s: %s; image not marked complete (a rerun retries it)" % (r["MaskPath"], why)
        return None

    # ---- images + XML --------------------------------------------------------------------------
    def fetch_images_and_write(self, by_image: dict, pending: list[str]) -> None:
        from .images import CorruptImage, fetch_image, have_image
        from .net import FetchError
        from .progress import bar
        failed_shards = self.failed_shards
        pbar = bar(self.progress, total=len(pending), desc="%s images" % self.split, unit="img")

        def one(iid):
            if iid[0].lower() in failed_shards:
                return iid, "masks not available (shard %s could not be read); rerun to retry" % iid[0].lower(), 0
            blocked = self.blocking_mask_error(by_image[iid])
            if blocked:
                return iid, blocked, 0
            dest = os.path.join(self.img_dir, iid + ".jpg")
            size = have_image(dest)
            fetched = 0
            try:
                if size is None:
                    size = fetch_image(self.net, self.image_url(iid), dest)
                    fetched = 1
                self.write_xml(iid, by_image[iid], size)
            except CorruptImage as e:
                return iid, "corrupt JPEG skipped: %s" % e, fetched
            except FetchError as e:
                return iid, "image not downloaded: %s" % e, fetched
            except (OSError, ValueError) as e:   # e.g. disk full, an annotation the writer refuses
                return iid, "%s: %s" % (type(e).__name__, e), fetched
            return iid, None, fetched

        with ThreadPoolExecutor(self.workers) as pool:
            for iid, err, fetched in pool.map(one, pending):
                pbar.update(1)
                self.fetched["images"] += fetched
                if err:
                    self.image_errors[iid] = err
                    if not err.startswith("masks not available"):
                        log.warning("%s image %s: %s", self.split, iid, err)
        pbar.close()
        if failed_shards:
            log.warning("%s: %d image(s) left for a rerun: shard(s) %s could not be read", self.split,
                        sum(1 for e in self.image_errors.values() if e.startswith("masks not available")),
                        ",".join(sorted(failed_shards)))

    def write_xml(self, iid: str, rows: list[dict], size: tuple[int, int]) -> None:
        records, voc = _dataset("records"), _dataset("voc")
        ImageRecord, MaskPNG, ObjectRecord = records.ImageRecord, records.MaskPNG, records.ObjectRecord
        write_voc = voc.write_voc
        w, h = size
        objects = []
        for r in rows:
            box = (float(r["BoxYMin"]) * h, float(r["BoxXMin"]) * w, float(r["BoxYMax"]) * h, float(r["BoxXMax"]) * w)
            mask = None
            if mask_name_ok(r):
                p = os.path.join(self.mask_dir, r["MaskPath"])
                if os.path.isfile(p):
                    mask = MaskPNG(path=p)
            objects.append(ObjectRecord(class_name=self.info.name, box=box, mask=mask,
                                        extra={"label_name": r["LabelName"], "box_id": r["BoxID"]}))
        rec = ImageRecord(image_id=iid, path=os.path.join(self.img_dir, iid + ".jpg"), width=w, height=h,
                          objects=objects, extra={"split": self.split, "url": self.image_url(iid)})
        write_voc(rec, os.path.join(self.ann_dir, iid + ".xml"), self.split_dir)

    # ---- report --------------------------------------------------------------------------------
    def report(self, by_image: dict, selected: list[str], rejected: list[dict]) -> dict:
        """Deterministic per-split counts from what is on disk (identical for a resumed run)."""
        done, failed, missing, n_masks, n_obj, nbytes = [], [], [], 0, 0, 0
        for iid in selected:
            xml = os.path.join(self.ann_dir, iid + ".xml")
            if not os.path.isfile(xml):
                failed.append({"image_id": iid, "reason": self.image_errors.get(iid, "not downloaded")})
                continue
            done.append(iid)
            nbytes += os.path.getsize(xml) + os.path.getsize(os.path.join(self.img_dir, iid + ".jpg"))
            for r in by_image[iid]:
                n_obj += 1
                p = os.path.join(self.mask_dir, r["MaskPath"]) if mask_name_ok(r) else None
                if p and os.path.isfile(p):
                    n_masks += 1
                    nbytes += os.path.getsize(p)
                elif p:
                    missing.append({"image_id": iid, "mask": r["MaskPath"]})
        unsafe = [{"image_id": iid, "mask": r["MaskPath"], "reason": "unsafe mask name (folder, '..' or "
                   "absolute path); object kept without mask"}
                  for iid in done for r in by_image[iid] if not mask_name_ok(r)]
        return {"available_images": len(by_image), "selected": len(selected), "images": len(done),
                "objects": n_obj, "masks": n_masks, "failed": failed, "missing_masks": missing,
                "rejected": sorted(rejected + unsafe, key=lambda d: (d["image_id"], d["mask"])),
                "duplicate_rows": sum(r["reason"].startswith("duplicate row") for r in rejected),
                "malformed_rows": sum(r["reason"].startswith("malformed row") for r in rejected),
                "bytes": nbytes}
