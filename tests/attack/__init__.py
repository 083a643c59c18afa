"""Attack catalogue: each attack feeds the project a user's worst day and checks what it does.

An attack is a function ``fn(tmp_dir) -> outcome`` registered with ``@attack(item, name)``. It
returns how the project coped, one of ``CLEAR`` (a clear error naming the file and the fix),
``SKIPPED`` (the bad sample skipped and reported, the rest done) or ``SURVIVED`` (a correct
result); it raises AssertionError when the result is wrong ("silent"). The runner classes any
other exception as a crash and a run past its deadline as a hang. ``python -m tests.attack.catalogue``
prints the table; tests/attack/test_attacks.py runs each attack as a test.
"""
from __future__ import annotations

import dataclasses

CLEAR, SKIPPED, SURVIVED = "clear error", "skipped", "survived"
CRASH, HANG, SILENT = "crash", "hang", "silent"
COLUMNS = (CLEAR, SKIPPED, SURVIVED, CRASH, HANG, SILENT)


@dataclasses.dataclass
class Attack:
    item: int
    name: str
    fn: object
    timeout: float


ATTACKS: list[Attack] = []


def attack(item, name, timeout=30.0):
    """Register ``fn`` as an attack of the issue's item ``item``."""
    def deco(fn):
        ATTACKS.append(Attack(item, name, fn, timeout))
        return fn
    return deco


def load_all():
    """Import every ``tests/attack/attacks_*.py`` (each registers its attacks); return ATTACKS."""
    import importlib
    import pkgutil
    for m in pkgutil.iter_modules(__path__):
        if m.name.startswith("attacks_"):
            importlib.import_module(f"{__name__}.{m.name}")
    return ATTACKS


def expect_error(exc_types, fn, *words):
    """Run ``fn``; it must raise one of ``exc_types`` whose message holds every one of ``words``
    (case-insensitive). Returns CLEAR; a missing error or a vague message is an AssertionError."""
    try:
        fn()
    except exc_types as e:
        msg = str(e).lower()
        missing = [w for w in words if str(w).lower() not in msg]
        assert not missing, f"error {e!r} does not mention {missing}"
        return CLEAR
    raise AssertionError(f"{fn} raised no error")
