"""``python -m tests.attack.catalogue [-k WORD]``: run every attack, print one row per attack and
the table (tried / clear error / skipped / survived / crash / hang / silent). Exit 1 if any
attack crashed, hung or was silently wrong."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import traceback

from tests.attack import ATTACKS, COLUMNS, CRASH, HANG, SILENT, load_all


class _Deadline(Exception):
    pass


def _alarm(signum, frame):
    raise _Deadline()


def run_one(a, tmp_root):
    """(outcome, detail) of one attack, run in a fresh folder under ``tmp_root`` with a deadline."""
    d = tempfile.mkdtemp(prefix=f"item{a.item:02d}-", dir=tmp_root)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, a.timeout)
    try:
        return a.fn(d), ""
    except _Deadline:
        return HANG, f"still running after {a.timeout:g} s"
    except AssertionError as e:
        return SILENT, str(e)[:200]
    except BaseException as e:  # noqa: BLE001 - a crash is what is being measured
        return CRASH, "".join(traceback.format_exception_only(type(e), e)).strip()[:200]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-k", default="", help="only attacks whose name contains this")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_all()
    counts = dict.fromkeys(COLUMNS, 0)
    with tempfile.TemporaryDirectory() as root:
        for a in sorted(ATTACKS, key=lambda a: a.item):
            if args.k not in a.name:
                continue
            t = time.time()
            outcome, detail = run_one(a, root)
            counts[outcome] += 1
            print(f"{a.item:>3} {a.name:<58} {outcome:<12} {time.time() - t:5.1f}s {detail}", flush=True)
    print("\n| tried | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    print(f"| {sum(counts.values())} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |")
    return 1 if counts[CRASH] + counts[HANG] + counts[SILENT] else 0


if __name__ == "__main__":
    sys.exit(main())
