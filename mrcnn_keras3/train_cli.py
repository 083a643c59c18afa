"""Train Mask R-CNN on Open Images classes: download, check, fine-tune, evaluate.

    mrcnn-train --class Cat --epochs 20                 # or: python train.py ... from a checkout
    mrcnn-train --resume                                # continue the newest run in logs/
    tensorboard --logdir logs

Steps: check the config, --set, --weights and the class names (before any download); fetch the
COCO weights once; download what is missing; build the train / validation / test datasets from
the official splits; check the data; build the model; load weights, swapping the class-specific
heads when the class count differs; run the staged schedule with validation AP each epoch
(best.h5 / last.h5); evaluate the best checkpoint on the test split.
"""
from __future__ import annotations

import argparse
import logging
import sys

from .cli import add_source_args, command, positive_int, run_main


def build_parser():
    p = argparse.ArgumentParser(prog=command("train"), description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--class", dest="classes", action="append", metavar="NAME",
                   help="Open Images class (display name in any case, or MID); repeatable")
    p.add_argument("--epochs", type=positive_int, help="total epochs (cumulative across stages)")
    p.add_argument("--config", default=None,
                   help="TOML config: a path, or a shipped one by name (default.toml, cat.toml, "
                        "cpu-small.toml, demo.toml); default default.toml; not with --resume")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set IMAGE_MAX_DIM=512; repeatable")
    p.add_argument("--data", default="data", help="data folder (downloader layout; default data/)")
    p.add_argument("--limit", type=int, default=None, help="images per split to download and use")
    p.add_argument("--weights", default="coco",
                   help="coco | imagenet | last | none | PATH to .h5 (default coco)")
    p.add_argument("--resume", action="store_true", help="continue the newest run in --logs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logs", default="logs", help="where run folders go (default logs/)")
    add_source_args(p)
    p.add_argument("--eval-limit", type=int, default=None, help="validation images scored per epoch")
    p.add_argument("--strategy", default="auto", choices=["auto", "one", "mirrored", "multiworker"])
    p.add_argument("--mixed-precision", nargs="?", const="float16", default="auto",
                   choices=["auto", "float16", "bfloat16", "off"],
                   help="float16 (the value when the flag has none: loss scaling, GPUs), bfloat16 "
                        "(CPUs with AMX or AVX-512 BF16, TPUs) or off (float32); weights stay "
                        "float32. auto (default): the config's MIXED_PRECISION if set, else bfloat16 "
                        "on a CPU host with AMX and float32 elsewhere")
    p.add_argument("--no-download", action="store_true", help="use --data as it is")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return p


def main(argv=None):
    from mrcnn.io.cli_logging import quiet_tensorflow_startup

    quiet_tensorflow_startup()   # before anything imports TensorFlow
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from .train_run import run

    return run_main(run, args, resume_hint=f"{command('train')} --resume --logs {args.logs}")


if __name__ == "__main__":
    sys.exit(main())
