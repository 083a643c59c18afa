"""Metadata lives in pyproject.toml. This file only adds the start-up hook
``mrcnn_keras3_imgaug.pth`` (see ``mrcnn_imgaug_hook.py``) to site-packages, for wheel and
editable installs alike: a .pth file must sit at the top of site-packages, which
``[tool.setuptools]`` options cannot express."""
import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "mrcnn_keras3_imgaug.pth"


class BuildPyWithPth(build_py):
    """build_py that also copies the .pth to the root of the build (= of site-packages)."""

    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        self.copy_file(os.path.join(here, PTH), os.path.join(self.build_lib, PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


class _StrategyWithPth:
    """Wraps setuptools' editable strategy: writes its files, then the .pth."""

    def __init__(self, inner, content):
        self.inner, self.content = inner, content

    def __call__(self, wheel, files, mapping):
        self.inner(wheel, files, mapping)
        wheel.writestr(PTH, self.content)

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


class EditableWheelWithPth(editable_wheel):
    """``pip install -e``: the editable wheel gets the .pth too (build_py's extra file is not
    part of it). ``__editable__*.pth`` sorts first, so the hook module is importable by then."""

    def _select_strategy(self, *args, **kwargs):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, PTH), "rb") as f:
            content = f.read()
        return _StrategyWithPth(super()._select_strategy(*args, **kwargs), content)


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
