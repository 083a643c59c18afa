"""``download_class``: one Open Images class with masks, all requested splits, into the data layout.

Steps per split: stream + filter the segmentation CSV (cached), pick a seeded sample of images,
read the needed mask PNGs out of the remote zip shards with Range requests, fetch the JPEGs
concurrently, write one VOC XML per complete image, then ``manifest.json`` for the class.
"""
from __future__ import annotations

import logging
import os
import sys
import time

from .fsutil import atomic_write_json, class_dir_name

log = logging.getLogger("download")
DEFAULT_BASE_URL = "https://storage.googleapis.com/openimages/"
DEFAULT_IMAGES_URL = "https://s3.amazonaws.com/open-images-dataset/"
SPLITS = ("train", "validation", "test")


def resolve_urls(base_url: str | None, images_url: str | None) -> tuple[str, str]:
    """Explicit argument, else $OPENIMAGES_BASE_URL / $OPENIMAGES_IMAGES_URL, else the public
    defaults; always with a trailing slash."""
    base = base_url or os.environ.get("OPENIMAGES_BASE_URL") or DEFAULT_BASE_URL
    imgs = images_url or os.environ.get("OPENIMAGES_IMAGES_URL") or DEFAULT_IMAGES_URL
    return base.rstrip("/") + "/", imgs.rstrip("/") + "/"


class SourceMismatch(ValueError):
    """A data folder downloaded from another source than the one asked for."""


def same_source(a: str, b: str) -> bool:
    """Two source URLs name the same data. A mirror on this machine (127.0.0.1, localhost) is
    known by its path, not its port: local servers get a new port each time they start."""
    from urllib.parse import urlsplit
    ua, ub = urlsplit(a.rstrip("/") + "/"), urlsplit(b.rstrip("/") + "/")
    local = {"127.0.0.1", "localhost", "::1"}
    if ua.hostname in local and ub.hostname in local:
        return ua.path == ub.path
    return (ua.scheme, ua.netloc.lower(), ua.path) == (ub.scheme, ub.netloc.lower(), ub.path)


def check_source(class_dir: str, base: str, imgs: str) -> None:
    """Raise SourceMismatch if ``class_dir``'s manifest records another source than base/imgs."""
    import json
    try:
        with open(os.path.join(class_dir, "manifest.json"), encoding="utf-8") as f:
            sources = json.load(f).get("sources") or {}
    except (OSError, ValueError, AttributeError):
        return  # no manifest yet (or a damaged one, rewritten by this download)
    for key, asked in (("base_url", base), ("images_url", imgs)):
        had = sources.get(key)
        if had and not same_source(had, asked):
            raise SourceMismatch(
                "%s was downloaded from %s, not from %s (the %s asked for). Use another data folder "
                "(--data / --out) for this source, or pass the source it came from." % (
                    class_dir, had, asked, "--base-url" if key == "base_url" else "--images-url"))


def normalize_splits(splits) -> tuple[str, ...]:
    """Accept ("train", ...) or "train,validation"; reject unknown names."""
    if isinstance(splits, str):
        splits = [s for s in splits.split(",")]
    out = []
    for s in splits:
        s = s.strip().lower()
        if s == "val":
            s = "validation"
        if s not in SPLITS:
            raise ValueError("unknown split %r; choose from %s" % (s, ", ".join(SPLITS)))
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError("no splits given; use e.g. --splits train,validation")
    return tuple(out)


def download_class(class_name: str, out: str = "data", splits=SPLITS, limit: int | None = None,
                   seed: int = 0, base_url: str | None = None, images_url: str | None = None,
                   workers: int = 16, progress: bool = True, *, timeout: float = 30.0, retries: int = 5,
                   backoff: float = 0.5, zip_mode: str = "auto", refresh: bool = False,
                   min_rate: float = 1024.0) -> dict:
    """Download ``class_name`` (display name in any case, or MID) with its masks; return the manifest.

    Writes ``{out}/{class_dir}/{split}/{images,masks,annotations}/`` and ``{out}/{class_dir}/manifest.json``
    (see dataset/records.py). ``limit`` is per split (a seeded random sample of images; all of each
    chosen image's masks). Rerunning skips complete images and fetches only what is missing.
    ``timeout`` (s, per connect/read), ``retries`` and ``backoff`` (s, doubled per retry) tune HTTP;
    ``zip_mode`` is "auto", "full" (always read whole zip directories) or "search".
    ``refresh`` re-reads the cached class lists and filtered CSV rows from the server.
    ``min_rate`` (bytes/s): a body slower than that on average after ``timeout`` seconds is
    abandoned and retried (a trickling server cannot hang the run).
    Raises ClassResolutionError for an unknown class or one without masks; SourceMismatch when
    ``out`` holds this class from another source; FetchError when a CSV
    cannot be fetched. Per-image problems are reported in the manifest, not raised.
    """
    from .classes import load_and_resolve
    from .net import Net

    t0 = time.monotonic()
    base, imgs = resolve_urls(base_url, images_url)
    splits = normalize_splits(splits)
    if limit is not None and int(limit) < 0:
        raise ValueError("limit must be >= 0, got %r" % (limit,))
    out = os.path.abspath(out)
    cache = os.path.join(out, ".cache")
    net = Net(workers=workers, timeout=timeout, retries=retries, backoff=backoff, min_rate=min_rate)
    try:
        info = load_and_resolve(net, base, class_name, cache, refresh=refresh)
        cdir = os.path.join(out, class_dir_name(info.name))
        check_source(cdir, base, imgs)  # never mix, or relabel, data from two sources
        reports, run = {}, {"fetched": {}, "skipped": {}, "failures": {}, "zip_strategy": {}}
        for split in splits:
            reports[split] = _download_split(net, info, split, cdir, cache, base, imgs, run, limit=limit,
                                             seed=seed, workers=workers, progress=progress,
                                             zip_mode=zip_mode, refresh=refresh)
        stats = net.stats.as_dict()
        run.update(bytes_fetched=stats["bytes_total"], bytes_by_kind=stats["bytes"], requests=stats["requests"],
                   retries=stats["events"].get("retries", 0), seconds=round(time.monotonic() - t0, 3))
        manifest = _manifest(info, cdir, reports, run, limit, seed, source_urls(base, imgs, splits))
        atomic_write_json(os.path.join(cdir, "manifest.json"), manifest)
        if progress:
            print(summary(manifest), file=sys.stderr)
        return manifest
    finally:
        net.close()


def _download_split(net, info, split: str, cdir: str, cache: str, base: str, imgs: str, run: dict, *,
                    limit, seed, workers, progress, zip_mode, refresh) -> dict:
    """Fetch one split of the class into ``{cdir}/{split}``; returns its manifest report and records
    what was fetched, skipped and failed (and each shard's zip strategy) in ``run``."""
    from .annotations import class_rows
    from .split import SplitJob, group_rows, select_images
    rows = class_rows(net, base, split, info.mid, cache, progress=progress, refresh=refresh)
    by_image, rejected = group_rows(rows, split)
    selected = select_images(by_image, limit, seed, split, info.mid)
    job = SplitJob(net, info, split, os.path.join(cdir, split), cache, base, imgs, workers, progress,
                   zip_mode=zip_mode)
    r = job.run(by_image, selected)
    report = job.report(by_image, selected, rejected)
    run["fetched"][split] = dict(job.fetched)
    run["skipped"][split] = r["skipped"]
    run["failures"][split] = {"images": dict(sorted(job.image_errors.items())),
                              "masks": dict(sorted(job.mask_errors.items()))}
    run["zip_strategy"][split] = dict(sorted(job.shard_strategy.items()))
    return report


def _manifest(info, cdir: str, reports: dict, run: dict, limit, seed, sources: dict) -> dict:
    """The class's manifest.json content: per-split reports, their totals and the run record."""
    splits = list(reports)
    manifest = {
        "class": info.name, "mid": info.mid, "class_dir": os.path.basename(cdir),
        "splits": reports, "limit": limit, "seed": seed,
        "sources": sources,
        "totals": {k: sum(reports[s][k] for s in splits) for k in ("images", "masks", "objects", "bytes")},
        "last_run": run,   # run-specific (timings, bytes fetched): differs between runs by design
    }
    manifest["totals"]["failed"] = sum(len(reports[s]["failed"]) for s in splits)
    return manifest


def source_urls(base: str, imgs: str, splits) -> dict:
    """The URLs a manifest records (patterns for the per-shard / per-image ones)."""
    from .annotations import csv_rel
    from .classes import DESCRIPTIONS, SEGMENTATION
    return {
        "base_url": base, "images_url": imgs,
        "class_descriptions": base + DESCRIPTIONS, "segmentation_classes": base + SEGMENTATION,
        "annotations": {s: base + csv_rel(s) for s in splits},
        "masks": {s: "%sv5/%s-masks/%s-masks-{0..9,a..f}.zip" % (base, s, s) for s in splits},
        "images": {s: "%s%s/{ImageID}.jpg" % (imgs, s) for s in splits},
    }


def summary(m: dict) -> str:
    """One line per split plus a total: fetched, skipped, failed, bytes."""
    run = m["last_run"]
    lines = ["%s (%s) -> %s" % (m["class"], m["mid"], m["class_dir"])]
    for s, r in m["splits"].items():
        f = run["fetched"][s]
        lines.append("  %-10s %5d images (%d fetched, %d skipped), %d masks (%d fetched), %d failed, "
                     "%d missing masks" % (s, r["images"], f["images"], run["skipped"][s], r["masks"],
                                           f["masks"], len(r["failed"]), len(r["missing_masks"])))
        if r.get("duplicate_rows") or r.get("malformed_rows"):
            lines.append("  %-10s CSV rows skipped: %d duplicate, %d malformed (listed under "
                         "\"rejected\" in the manifest)" % ("", r["duplicate_rows"], r["malformed_rows"]))
    lines.append("  fetched %.2f MB in %d requests, %.1f s" % (run["bytes_fetched"] / 1e6,
                                                                sum(run["requests"].values()), run["seconds"]))
    return "\n".join(lines)
