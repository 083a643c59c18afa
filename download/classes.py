"""Class lists (display names, MIDs, which classes have masks) and name resolution.

``class-descriptions-boxable.csv`` has no header: ``LabelName,DisplayName`` per line (MID first).
``classes-segmentation.txt`` has one MID per line. Both are small and cached under ``{out}/.cache/``.
Users type names in any case (``cat``, ``CAT``, ``Teddy bear``) or a MID (``/m/01yrx``).
"""
from __future__ import annotations

import csv
import difflib
import io
import os
import re
from dataclasses import dataclass

from .fsutil import atomic_write_bytes, url_key

DESCRIPTIONS = "v5/class-descriptions-boxable.csv"
SEGMENTATION = "v5/classes-segmentation.txt"


class ClassResolutionError(ValueError):
    """The requested class is unknown, ambiguous or has no masks (or a class list is not one)."""


@dataclass(frozen=True)
class ClassInfo:
    """A resolved class: ``mid`` like "/m/01yrx", ``name`` the official display name, ``has_masks``."""
    mid: str
    name: str
    has_masks: bool


_MID = re.compile(r"^/[mg]/[0-9a-z_]+$")


class ClassListError(ValueError):
    """A class list whose content is not one (an HTML error page served with status 200...)."""


def cache_file(cache_dir: str, base_url: str, rel: str) -> str:
    """Where ``base_url + rel`` is cached: keyed by the URL, so mirrors never share a copy."""
    return os.path.join(cache_dir, "%s_%s" % (url_key(base_url + rel), rel.replace("/", "_")))


def validate_class_list(rel: str, text: str, where: str) -> None:
    """Raise ClassListError unless ``text`` looks like the class list ``rel`` (rows of MIDs)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if rel == SEGMENTATION:
        bad = next((ln for ln in lines if not _MID.match(ln.strip())), None)
    else:
        rows = list(csv.reader(lines))
        bad = next((",".join(r) for r in rows if len(r) < 2 or not _MID.match(r[0].strip())), None)
    if bad is not None or not lines:
        raise ClassListError("%s is not an Open Images class list: %s %r (an error page served as a "
                             "file?)" % (where, "line" if lines else "it is empty", (bad or "")[:80]))


def cached_text(net, base_url: str, rel: str, cache_dir: str, refresh: bool = False) -> str:
    """Text of ``base_url + rel``, from ``cache_dir`` if a complete, valid copy of that URL is there.

    A copy without a final newline is a cut body, and one that is not a class list (e.g. an HTML
    page) is poisoned: both are refetched, never trusted. A fetched body is validated before it
    is cached. ``refresh`` ignores the cached copy.
    """
    path = cache_file(cache_dir, base_url, rel)
    if os.path.isfile(path) and not refresh:
        with open(path, "rb") as f:
            data = f.read()
        try:
            if data.endswith(b"\n"):
                validate_class_list(rel, data.decode("utf-8"), path)
                return data.decode("utf-8")
        except (ClassListError, UnicodeDecodeError):
            pass  # refetched below; the good copy replaces it
    from .net import FetchError, Truncated
    url = base_url + rel
    data = None
    for attempt in range(net.retries + 1):
        data = net.get_bytes(url, "class_lists")
        if data.endswith(b"\n") or not data:
            break
        if attempt < net.retries:  # Content-Length agreed but the last line is cut: retry
            net.sleep_before_retry(attempt)
    else:
        raise FetchError(url, "body ends mid-line after %d attempts; the file looks cut short"
                         % (net.retries + 1)) from Truncated(url)
    if not data.strip():
        raise FetchError(url, "empty file")
    try:
        validate_class_list(rel, data.decode("utf-8"), url)
    except UnicodeDecodeError:
        raise ClassListError("%s is not an Open Images class list (not UTF-8 text)" % url) from None
    atomic_write_bytes(path, data)
    return data.decode("utf-8")


def parse_descriptions(text: str) -> list[tuple[str, str]]:
    """[(mid, display name)] from the header-less ``LabelName,DisplayName`` CSV."""
    rows = []
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[0].strip():
            rows.append((row[0].strip(), row[1].strip()))
    return rows


def parse_segmentation(text: str) -> set[str]:
    """Set of MIDs that have masks."""
    return {line.strip() for line in text.splitlines() if line.strip()}


def resolve(query: str, descriptions: list[tuple[str, str]], with_masks: set[str]) -> ClassInfo:
    """Resolve a display name (any case, extra spaces ignored) or a MID to a class that has masks.

    Raises ClassResolutionError naming close matches for an unknown name, or saying the class has
    no masks (and listing mask classes with similar names).
    """
    q = " ".join(query.split())
    if not q:
        raise ClassResolutionError("Empty class name; pass e.g. --class Cat")
    by_mid = {mid: name for mid, name in descriptions}
    if q in by_mid or q.lower() in {m.lower() for m in by_mid}:
        mid = q if q in by_mid else next(m for m in by_mid if m.lower() == q.lower())
        candidates = [(mid, by_mid[mid])]
    else:
        candidates = [(m, n) for m, n in descriptions if n.lower() == q.lower()]
    if not candidates:
        names = sorted({n for _, n in descriptions})
        lower = {n.lower(): n for n in names}
        close = [lower[c] for c in difflib.get_close_matches(q.lower(), list(lower), n=5, cutoff=0.6)]
        mask_close = [n for n in close if any(m in with_masks for m, nn in descriptions if nn == n)]
        hint = ("did you mean %s?" % " or ".join(mask_close or close)) if close else \
            "see %s for the names (%d classes with masks)" % (SEGMENTATION, len(with_masks))
        raise ClassResolutionError("Unknown class %r; %s" % (query, hint))
    masked = [(m, n) for m, n in candidates if m in with_masks]
    if not masked:
        mid, name = candidates[0]
        raise ClassResolutionError(
            "Class %r (%s) has boxes but no segmentation masks in Open Images, so it cannot be "
            "downloaded with masks; pick a class listed in %s" % (name, mid, SEGMENTATION))
    if len(masked) > 1:
        raise ClassResolutionError("Class name %r is ambiguous: %s; pass the MID instead"
                                   % (query, ", ".join("%s (%s)" % (n, m) for m, n in masked)))
    mid, name = masked[0]
    return ClassInfo(mid=mid, name=name, has_masks=True)


def load_and_resolve(net, base_url: str, query: str, cache_dir: str, refresh: bool = False) -> ClassInfo:
    """Fetch (or read cached) class lists from ``base_url`` and resolve ``query``. An unknown
    class names the cached lists and the ``--refresh`` that re-reads them."""
    try:
        desc = parse_descriptions(cached_text(net, base_url, DESCRIPTIONS, cache_dir, refresh))
        seg = parse_segmentation(cached_text(net, base_url, SEGMENTATION, cache_dir, refresh))
    except ClassListError as e:
        raise ClassResolutionError(str(e)) from None
    try:
        return resolve(query, desc, seg)
    except ClassResolutionError as e:
        raise ClassResolutionError("%s (class lists cached in %s and %s; if they are stale, rerun "
                                   "with --refresh)" % (e, cache_file(cache_dir, base_url, DESCRIPTIONS),
                                                        cache_file(cache_dir, base_url, SEGMENTATION))) from None
