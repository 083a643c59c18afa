"""The training command's data side: config, class names, download, splits.

Everything here runs before TensorFlow is imported, so bad input fails in well under a second.
"""
from __future__ import annotations

import os
import sys

from .cli import UsageError

SPLITS = ("train", "validation", "test")


def resolve_config_path(path):
    """``path`` if it exists, else the shipped config of that name (``cat.toml`` or
    ``configs/cat.toml`` work from any folder once installed)."""
    from . import config_dir

    if os.path.isfile(path):
        return path
    shipped = os.path.join(config_dir(), os.path.basename(path))
    if os.path.isfile(shipped) and os.path.basename(os.path.dirname(path)) in ("", "configs"):
        return shipped
    names = sorted(n for n in os.listdir(config_dir()) if n.endswith(".toml"))
    raise UsageError(f"Config file not found: {path}. Pass a TOML file, or one of the shipped configs: "
                     f"{', '.join(names)}.")


def make_config(path, overrides, classes, seed):
    """The validated Config of ``path`` + ``--set`` overrides for ``classes``."""
    from mrcnn.config import Config, ConfigError

    try:
        config = Config.from_toml(resolve_config_path(path))
        config.apply_overrides(list(overrides))
        name = "_".join(c.lower().replace(" ", "_").replace("/", "") for c in classes)
        config.update({"NAME": name, "NUM_CLASSES": 1 + len(classes), "SEED": seed})
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return config


def resolve_classes(args):
    """Open Images display names of ``args.classes``, from the class lists (cached in
    ``{data}/.cache`` per source, else fetched: an unreachable host fails here, before anything)."""
    from .download.classes import ClassResolutionError, load_and_resolve
    from .download.core import resolve_urls
    from .download.net import Net

    base, _ = resolve_urls(args.base_url, args.images_url)
    net = Net(workers=1, timeout=15, retries=2)
    try:
        return [load_and_resolve(net, base, name, os.path.join(args.data, ".cache")).name
                for name in args.classes]
    except ClassResolutionError as exc:
        raise UsageError(str(exc)) from None
    finally:
        net.close()


def download_data(args, classes):
    from .download import download_class
    from .download.classes import ClassResolutionError
    from .download.core import SourceMismatch

    for name in classes:
        try:
            download_class(name, out=args.data, splits=SPLITS, limit=args.limit, seed=args.seed,
                           base_url=args.base_url, images_url=args.images_url, progress=not args.quiet)
        except (ClassResolutionError, SourceMismatch) as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            from .cli import Interrupted
            raise Interrupted(f"Download stopped; what was fetched is kept. Run the same command again to "
                              f"resume (complete files are skipped).") from None


def check_sources(args, classes):
    """With --no-download and an explicit source: refuse data downloaded from another one."""
    from .download.core import SourceMismatch, check_source, resolve_urls
    from .download.fsutil import class_dir_name

    if not (args.base_url or args.images_url or os.environ.get("OPENIMAGES_BASE_URL")
            or os.environ.get("OPENIMAGES_IMAGES_URL")):
        return
    base, imgs = resolve_urls(args.base_url, args.images_url)
    for name in classes:
        try:
            check_source(os.path.join(args.data, class_dir_name(name)), base, imgs)
        except SourceMismatch as exc:
            raise UsageError(str(exc)) from None


def load_splits(data, classes, limit=None, seed=0):
    """{split: prepared OpenImagesDataset}; at most ``limit`` images per split (a seeded sample)."""
    from .dataset import OpenImagesDataset

    out = {}
    for split in SPLITS:
        ds = OpenImagesDataset()
        ds.load_openimages(data, split, class_names=classes)
        if limit is not None and len(ds.image_info) > limit:
            import random
            keep = sorted(random.Random(f"{seed}-{split}").sample(range(len(ds.image_info)), limit))
            ds.image_info = [ds.image_info[i] for i in keep]
        ds.prepare()
        out[split] = ds
        if ds.num_images == 0 and split != "test":
            raise UsageError(
                f"The {split} split has no usable images of {', '.join(classes)} in {os.path.abspath(data)}: "
                f"the download found none, --limit is 0, or every image failed the checks "
                f"(run: python -m dataset check {data}).")
        missing = [c for c in classes if c.lower() not in {n.lower() for n in ds.class_names}]
        if missing and split == "train":
            raise UsageError(f"No training images of {missing} in {os.path.abspath(data)}.")
    return out


def report_data(datasets):
    import numpy as np

    print("\nData")
    for split, ds in datasets.items():
        counts = np.zeros(ds.num_classes, int)
        ids = {c["name"].lower(): i for i, c in enumerate(ds.class_info)}  # class id = index after prepare()
        for i in ds.image_ids:
            rec = ds.image_info[i].get("record")
            for obj in (rec.objects if rec else []):
                counts[ids[obj.class_name.lower()]] += 1
        per_class = ", ".join(f"{n}: {c}" for n, c in zip(ds.class_names[1:], counts[1:]))
        errors = [p for p in getattr(ds, "problems", []) if getattr(p, "severity", "error") == "error"]
        print(f"  {split:<10} {ds.num_images:>6} images  instances {per_class}"
              + (f"  ({len(errors)} problems skipped)" if errors else ""))
    sys.stdout.flush()
