#!/usr/bin/env python
"""Train Mask R-CNN on Open Images classes: ``python train.py --help``.

A thin entry point from a checkout; the code is ``mrcnn_keras3.train_cli`` (installed as the
``mrcnn-train`` command).
"""
import sys

from mrcnn_keras3.train_cli import build_parser, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
