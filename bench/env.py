"""The machine a benchmark ran on, recorded beside its figures in every ``bench/results`` JSON.

Package versions come from the installed metadata, so recording them imports nothing (the
download and dataset benches never import TensorFlow).
"""
from __future__ import annotations

import importlib.metadata
import os
import platform

DEFAULT_PACKAGES = ("numpy", "tensorflow", "keras")


def version(package: str) -> str | None:
    """The installed version of ``package`` (a distribution name), or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def processor() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, where ``platform.processor()`` is often empty)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def env_info(packages=DEFAULT_PACKAGES, **extra) -> dict:
    """Python, the versions of ``packages``, CPU count, platform, processor and load average now,
    plus ``extra`` (a bench's own settings, such as its thread count)."""
    out = {"python": platform.python_version()}
    out.update({name.replace("-", "_"): version(name) for name in packages})
    out.update({"cpu_count": os.cpu_count(), "platform": platform.platform(),
                "processor": processor(), "loadavg": loadavg()})
    out.update(extra)
    return out
