"""Command line: ``python -m dataset {check,convert,stats,split} ...``.

Only argparse is imported at start-up; each command imports what it needs.
Exit codes: 0 clean, 1 problems found (check) or files skipped (convert), 2 usage errors.
"""
from __future__ import annotations

import argparse
import os
import sys

FORMATS = ("voc", "voc-openimages", "cvat", "labelme")


def _prog() -> str:
    """``mrcnn-dataset`` when run as the installed command, else ``python -m dataset``."""
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    return script if script.startswith("mrcnn-") else "python -m dataset"


def _ratios(text: str):
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("ratios must be three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise argparse.ArgumentTypeError("ratios must be three non-negative numbers like 0.8,0.1,0.1")
    return tuple(parts)


def _classes(text: str):
    return [c.strip() for c in text.split(",") if c.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_prog(),
        description="Check, convert and summarise instance-segmentation datasets: the downloader's "
                    "Open Images folders, Pascal VOC (incl. openimages 0.0.1 and SegmentationObject), "
                    "CVAT for images 1.1 and LabelMe XML.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    fmt = dict(choices=FORMATS, default=None, help="force the annotation format (default: detect per file)")
    pixels = dict(type=int, default=None, metavar="N",
                  help="images and masks over N pixels are errors, never decoded (decompression-bomb "
                       "guard; default 178956970 or $MRCNN_MAX_PIXELS)")

    c = sub.add_parser("check", help="validate a folder; exit 1 if any image is unusable")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("--format", **fmt)
    c.add_argument("--classes", type=_classes, default=None,
                   help="comma-separated allowed classes (case-insensitive); others are errors")
    c.add_argument("--max-pixels", **pixels)

    v = sub.add_parser("convert", help="write one PNG per instance (or COCO JSON with --coco)")
    v.add_argument("in_dir", metavar="IN_DIR")
    v.add_argument("out_dir", metavar="OUT_DIR")
    v.add_argument("--format", **fmt)
    v.add_argument("--coco", action="store_true",
                   help="write OUT_DIR/annotations.json (COCO, polygon or RLE segmentations)")
    v.add_argument("--max-pixels", **pixels)

    s = sub.add_parser("stats", help="images and instances per split and class")
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--format", **fmt)
    s.add_argument("--classes", type=_classes, default=None, help="comma-separated classes to keep")
    s.add_argument("--ratios", type=_ratios, default=None,
                   help="train,validation,test ratios for folders without splits (default 0.8,0.1,0.1)")
    s.add_argument("--salt", default="", help="salt of the hash split (default empty)")

    t = sub.add_parser("split", help="show (or list) the deterministic hash split of a folder")
    t.add_argument("dir", metavar="DIR")
    t.add_argument("--format", **fmt)
    t.add_argument("--ratios", type=_ratios, default=None, help="train,validation,test (default 0.8,0.1,0.1)")
    t.add_argument("--salt", default="", help="salt of the hash split (default empty)")
    t.add_argument("--list", metavar="CSV", default=None, help="write image_id,split,annotation rows here")
    return p


def _cmd_check(args) -> int:
    from .check import check_dir
    report = check_dir(args.dir, format=args.format, known_classes=args.classes)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_convert(args) -> int:
    from .export import convert_dir
    res = convert_dir(args.in_dir, args.out_dir, format=args.format, coco=args.coco,
                      progress=sys.stderr.isatty())
    for p in res["problems"]:
        print(str(p))
    print("%d images, %d instances (%d filled-box fallbacks: objects without a mask) -> %s"
          % (res["images"], res["instances"], res["box_fallbacks"], res["output"]))
    if res["problems"]:
        print("%d files/images skipped; run `python -m dataset check %s` for details"
              % (len(res["problems"]), args.in_dir))
    return 1 if res["problems"] else 0


def _subset_records(args, subset):
    from .loader import filter_objects, read_subset, resolve_classes
    recs, errors, layout, seen = read_subset(args.dir, subset, getattr(args, "classes", None),
                                            args.ratios, args.salt, args.format)
    if getattr(args, "classes", None):
        filter_objects(recs, resolve_classes(args.classes, seen))
    return recs, errors, layout


def _cmd_stats(args) -> int:
    from collections import Counter
    from .records import MaskPNG, Polygon
    total_err = 0
    for subset in ("train", "validation", "test"):
        recs, errors, layout = _subset_records(args, subset)
        total_err += len(errors)
        per_class = Counter(o.class_name for r in recs for o in r.objects)
        masked = sum(isinstance(o.mask, (MaskPNG, Polygon)) for r in recs for o in r.objects)
        empty = sum(not r.objects for r in recs)
        print("%-10s %6d images (%d without objects), %6d instances (%d with masks)  [layout: %s]"
              % (subset, len(recs), empty, sum(per_class.values()), masked, layout))
        for name, n in sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0])):
            print("  %-30s %d" % (name, n))
    if total_err:
        print("%d annotation files could not be read; run `python -m dataset check %s`"
              % (total_err, args.dir))
    return 0


def _cmd_split(args) -> int:
    rows = []
    for subset in ("train", "validation", "test"):
        recs, _, layout = _subset_records(args, subset)
        rows += [(r.image_id, subset, r.annotation or "") for r in recs]
        print("%-10s %6d images  [layout: %s]" % (subset, len(recs), layout))
    if layout != "hash":
        print("(official split folders are used as they are; ratios/salt apply only to folders "
              "without splits)")
    if args.list:
        import csv
        import io
        from ._xml import atomic_write_bytes
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image_id", "split", "annotation"])
        w.writerows(sorted(rows))
        atomic_write_bytes(args.list, buf.getvalue().encode("utf-8"))
        print("wrote %s" % args.list)
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    for attr in ("dir", "in_dir"):
        path = getattr(args, attr, None)
        if path is not None and not os.path.isdir(path):
            parser.error("%s is not a folder" % path)
    if getattr(args, "max_pixels", None) is not None:
        from mrcnn.structures.pixels import set_max_pixels
        set_max_pixels(args.max_pixels)
    handlers = {"check": _cmd_check, "convert": _cmd_convert, "stats": _cmd_stats, "split": _cmd_split}
    try:
        return handlers[args.command](args)
    except (FileNotFoundError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
