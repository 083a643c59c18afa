"""``python -m download --class Cat [--class Dog] [--splits ...] [--limit N] [--out data/] ...``"""
from __future__ import annotations

import argparse
import os
import logging
import sys


def _prog() -> str:
    """``mrcnn-download`` when run as the installed command, else ``python -m download``."""
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    return script if script.startswith("mrcnn-") else "python -m download"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_prog(),
        description="Download Open Images classes with their segmentation masks (streams the CSVs, "
                    "reads only the needed mask PNGs from the zip shards with HTTP Range requests, "
                    "fetches images concurrently, resumes).")
    p.add_argument("--class", dest="classes", action="append", required=True, metavar="NAME",
                   help="class display name (any case, e.g. cat, 'Teddy bear') or MID (/m/01yrx); repeatable")
    p.add_argument("--splits", default="train,validation,test",
                   help="comma-separated splits (default: train,validation,test)")
    p.add_argument("--limit", type=int, default=None,
                   help="images per split: a seeded random sample (default: all)")
    p.add_argument("--out", default="data", help="output root (default: data/)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    p.add_argument("--base-url", default=None,
                   help="annotations/masks base URL (default $OPENIMAGES_BASE_URL or "
                        "https://storage.googleapis.com/openimages/)")
    p.add_argument("--images-url", default=None,
                   help="images base URL (default $OPENIMAGES_IMAGES_URL or "
                        "https://s3.amazonaws.com/open-images-dataset/)")
    p.add_argument("--workers", type=int, default=16, help="concurrent downloads (default 16)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per connect/read (default 30)")
    p.add_argument("--retries", type=int, default=5, help="retries of transient HTTP failures (default 5)")
    p.add_argument("--zip-mode", choices=("auto", "full", "search"), default="auto",
                   help="how zip directories are read: search when cheaper (auto), always whole (full)")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="skip images and masks over N pixels (decompression-bomb guard; default "
                        "178956970 or $MRCNN_MAX_PIXELS)")
    p.add_argument("--min-rate", type=float, default=1024.0, metavar="BYTES_PER_S",
                   help="abandon and retry a file arriving slower than this after --timeout seconds "
                        "(default 1024)")
    p.add_argument("--refresh", action="store_true",
                   help="fetch the class lists and annotation CSVs again instead of using {out}/.cache")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.max_pixels is not None:
        from mrcnn.structures.pixels import set_max_pixels
        set_max_pixels(args.max_pixels)
    from .classes import ClassResolutionError
    from .core import download_class
    from .net import FetchError, Unreachable
    status = 0
    for name in args.classes:
        try:
            m = download_class(name, out=args.out, splits=args.splits, limit=args.limit, seed=args.seed,
                               base_url=args.base_url, images_url=args.images_url, workers=args.workers,
                               progress=not args.quiet, timeout=args.timeout, retries=args.retries,
                               zip_mode=args.zip_mode, refresh=args.refresh, min_rate=args.min_rate)
        except (ClassResolutionError, ValueError) as e:
            print("error: %s" % e, file=sys.stderr)
            status = 2
            continue
        except KeyboardInterrupt:
            print("\ninterrupted: what was fetched is kept (complete files only); run the same command "
                  "again to resume", file=sys.stderr)
            return 130
        except Unreachable as e:
            print("error: cannot reach %s (%s); use a mirror: --base-url/--images-url, or "
                  "OPENIMAGES_BASE_URL/OPENIMAGES_IMAGES_URL" % (e.url, e.reason), file=sys.stderr)
            return 1
        except FetchError as e:
            print("error: %s%s" % (e, "\n(rerun the same command to resume)" if e.resumable else ""),
                  file=sys.stderr)
            status = 1
            continue
        if m["totals"]["failed"]:
            print("%s: %d image(s) failed; see %s/manifest.json (rerun to retry)"
                  % (m["class"], m["totals"]["failed"], m["class_dir"]), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
