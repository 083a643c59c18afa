#!/usr/bin/env python
"""Evaluate a trained run, or predict on your own images: ``python evaluate.py --help``.

A thin entry point from a checkout; the code is ``mrcnn_keras3.evaluate_cli`` (installed as the
``mrcnn-evaluate`` command).
"""
import sys

from mrcnn_keras3.evaluate_cli import main, parse_args  # noqa: F401
from mrcnn_keras3.evaluation import ClassFilter, select_classes  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
