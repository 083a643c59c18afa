"""tqdm bars that switch themselves off when progress is not wanted or stderr is not a terminal."""
from __future__ import annotations

import sys


class _NullBar:
    total = None

    def update(self, n=1):
        pass

    def reset(self, total=None):
        pass

    def close(self):
        pass


def bar(progress: bool, **kwargs):
    """A tqdm bar (``kwargs`` passed through) or a do-nothing stand-in."""
    if not progress or not sys.stderr.isatty():
        return _NullBar()
    from tqdm import tqdm
    return tqdm(file=sys.stderr, leave=False, dynamic_ncols=True, **kwargs)
