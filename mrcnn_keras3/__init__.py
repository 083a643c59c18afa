"""The applications around the ``mrcnn`` model: the train / evaluate / predict commands.

Installed from a wheel, the downloader and the annotations toolkit live here too, as
``mrcnn_keras3.download`` and ``mrcnn_keras3.dataset``, with the TOML configs as
``mrcnn_keras3/configs/``: the wheel installs no top-level ``download``, ``dataset``,
``train`` or ``evaluate`` that could shadow other distributions of those names.

In a source checkout those folders sit at the repository's top level (``python -m download``,
``python train.py``). There, ``mrcnn_keras3.download`` is an alias of the top-level
``download`` package (one module object under both names, so exceptions and state are shared).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_SIBLINGS = ("download", "dataset")
IN_CHECKOUT = not os.path.isdir(os.path.join(HERE, "download"))


def config_dir() -> str:
    """The folder of the shipped TOML configs (``configs/`` of the checkout or of the wheel)."""
    inside = os.path.join(HERE, "configs")
    return inside if os.path.isdir(inside) else os.path.join(os.path.dirname(HERE), "configs")


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)  # the existing module, not a second copy
        self.spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.spec  # the import system set the alias's spec: keep the real one


class _CheckoutAlias(importlib.abc.MetaPathFinder):
    """``mrcnn_keras3.download[.x]`` -> ``download[.x]`` in a checkout."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, rest = fullname.partition(".")
        if prefix != __name__ or rest.split(".")[0] not in _SIBLINGS:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(rest))


if IN_CHECKOUT and not any(isinstance(f, _CheckoutAlias) for f in sys.meta_path):
    root = os.path.dirname(HERE)
    if root not in sys.path:
        sys.path.append(root)  # the checkout's top-level download/ and dataset/
    sys.meta_path.insert(0, _CheckoutAlias())
