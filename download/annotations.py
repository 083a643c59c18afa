"""Stream a split's segmentation CSV over HTTP and keep only one class's rows (flat memory).

The body is read in 1 MB chunks; each chunk is searched with ``bytes.find`` for ``,{MID},`` so
Python touches only the matching lines, and kept rows go straight to a temp file. Memory is one
chunk plus one partial line, whatever the CSV's size (train is ~807 MB).

A body is trusted only if its length equals Content-Length (when sent) and it ends with a newline.
Rows are matched on the bare MID, so fully quoted CSVs work; malformed rows of the class are kept
for ``split.group_rows`` to skip and report.
A body cut short is resumed with a Range request from the last byte received (the filter state is
exact at any byte boundary), or restarted from zero when the server ignores Range. The filtered
rows are cached at ``{out}/.cache/annotations/{split}-{mid}.csv`` (atomic: temp file + rename).
"""
from __future__ import annotations

import csv
import io
import os

from .fsutil import atomic_open, url_key

HEADER = ["MaskPath", "ImageID", "LabelName", "BoxID", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax",
          "PredictedIoU", "Clicks"]
MAX_LINE = 1 << 20   # a "line" longer than this means the file is not the CSV we expect


class CsvFormatError(ValueError):
    """The CSV does not look like an Open Images segmentation CSV."""


def csv_rel(split: str) -> str:
    """Path of a split's segmentation CSV under the base URL."""
    return "v5/%s-annotations-object-segmentation.csv" % split


class RowFilter:
    """Incremental filter: ``feed(chunk)`` any byte chunks; matching rows go to ``out`` (binary file).

    Header and rows are checked; ``finish()`` requires the body to end with a newline.
    """

    def __init__(self, mid: str, out, url: str = "csv"):
        self.mid = mid
        # The bare MID, not ",MID,": a fully quoted CSV (valid) writes ,"/m/01yrx", instead.
        # Mask names hold the MID without its slashes, so they never match.
        self.needle = mid.encode("utf-8")
        self.out = out
        self.url = url
        self.tail = b""
        self.header_seen = False
        self.kept = 0
        self.lines_bytes = 0

    def _check_header(self, line: bytes) -> None:
        cols = next(csv.reader([line.decode("utf-8-sig").strip()]), [])
        if cols != HEADER:
            raise CsvFormatError("%s: header is %r, expected %s; is this a segmentation CSV?"
                                 % (self.url, line[:200], ",".join(HEADER)))
        self.header_seen = True

    def feed(self, chunk: bytes) -> None:
        buf = self.tail + chunk if self.tail else chunk
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > MAX_LINE:
                raise CsvFormatError("%s: no newline in %d bytes; not a CSV" % (self.url, len(buf)))
            self.tail = buf
            return
        block, self.tail = buf[:cut + 1], buf[cut + 1:]
        start = 0
        if not self.header_seen:
            nl = block.find(b"\n")
            self._check_header(block[:nl])
            start = nl + 1
        find = block.find
        needle = self.needle
        pos = find(needle, start)
        while pos >= 0:
            ls = block.rfind(b"\n", start, pos) + 1
            le = find(b"\n", pos)
            self._keep(block[max(ls, start):le])
            start = le + 1
            pos = find(needle, start)

    def _keep(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        row = next(csv.reader(io.StringIO(line.decode("utf-8", "replace"))), [])
        # A malformed row that names the class is kept as it is: group_rows skips, counts and
        # reports it, so one bad row never costs the whole class.
        if len(row) != len(HEADER) or row[2] == self.mid:
            self.out.write(line + b"\n")
            self.kept += 1

    def finish(self) -> None:
        """Raise Truncated unless the body ended exactly at a line end."""
        from .net import Truncated
        if self.tail:
            raise Truncated("%s: body ends mid-line (%d bytes after the last newline); cut short"
                            % (self.url, len(self.tail)))
        if not self.header_seen:
            raise Truncated("%s: empty body" % self.url)


def stream_filter(net, url: str, mid: str, out, progress: bool = False, desc: str = "csv") -> int:
    """Stream ``url`` through a RowFilter into ``out``; resume cut bodies with Range. Returns rows kept."""
    from .net import FetchError
    from .progress import bar
    out.write((",".join(HEADER) + "\n").encode())
    pbar = bar(progress, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)
    stream = _CsvStream(net, url, mid, out, pbar)
    failures = 0
    try:
        while True:
            try:
                return stream.attempt()
            except FetchError as e:
                if e.status == 416:   # resume offset no longer valid: start over
                    stream.received = 0
                elif e.status is not None and e.status < 500 and e.status not in (408, 429):
                    raise
                err = e
            except net.transient as e:
                err = e
            failures += 1
            if failures > net.retries:
                raise _gave_up(url, failures, stream, err)
            net.sleep_before_retry(failures - 1)
    finally:
        pbar.close()


def _gave_up(url: str, failures: int, stream, err):
    """The FetchError after the last retry; not resumable when every read was complete by length
    yet cut mid-line (the file itself is cut short at the source)."""
    from .net import FetchError
    if stream.midline == failures:
        e = FetchError(url, "the file on the server ends mid-line in all %d complete reads (its "
                       "length matches what the server announces, but the last line has no "
                       "newline): it is cut short at the source, so rerunning will not help. "
                       "Use another mirror (--base-url) or repair the file there" % failures)
        e.resumable = False
        return e
    return FetchError(url, "CSV could not be read completely after %d attempts (%d bytes "
                      "received; last error: %s)" % (failures, stream.received, err))


class _CsvStream:
    """The state of one CSV download across attempts: bytes received, the announced total, the
    ETag a resume must match, and a RowFilter writing into ``out`` after its header."""

    def __init__(self, net, url: str, mid: str, out, pbar):
        self.net, self.url, self.mid, self.out, self.pbar = net, url, mid, out, pbar
        self.start_pos = out.tell()
        self.filt = None
        self.received = 0
        self.total = None
        self.etag = None
        self.midline = 0   # reads that were complete by length yet ended mid-line

    def restart(self) -> None:
        """Drop what was kept so far: the next bytes are the body's first."""
        self.out.seek(self.start_pos)
        self.out.truncate()
        self.pbar.reset()
        self.received = 0
        self.filt = RowFilter(self.mid, self.out, self.url)

    def attempt(self) -> int:
        """One request, resumed from ``received`` (Range, If-Range) when it is not 0; returns the
        rows kept, or raises FetchError / a transient error for the caller to retry."""
        from .net import Truncated, parse_content_range
        headers = {}
        if self.received:
            headers["Range"] = "bytes=%d-" % self.received
            if self.etag:
                headers["If-Range"] = self.etag
        else:
            self.restart()
        resp = self.net.open(self.url, "csv", headers=headers)
        if self.received and resp.status_code != 206:   # cannot resume: the body starts over
            self.restart()
        if resp.status_code == 206:
            _, _, self.total = parse_content_range(resp.headers.get("Content-Range", ""), self.url)
        elif resp.headers.get("Content-Length") is not None:
            self.total = int(resp.headers["Content-Length"])
        self.etag = self.etag or resp.headers.get("ETag")
        if self.total is not None:
            self.pbar.total = self.total
        self.net.read_body(resp, "csv", None, sink=self._sink)
        if self.total is not None and self.received != self.total:
            raise Truncated("%s: got %d bytes of %d" % (self.url, self.received, self.total))
        try:
            self.filt.finish()
        except Truncated:
            self.received = 0   # complete by length yet cut mid-line: nothing to resume, start over
            self.midline += 1
            raise
        return self.filt.kept

    def _sink(self, chunk: bytes) -> None:
        self.filt.feed(chunk)
        self.received += len(chunk)
        self.pbar.update(len(chunk))


def cache_path(cache_dir: str, split: str, mid: str, base_url: str = "") -> str:
    """The filtered rows' cache, keyed by the CSV's URL (two mirrors never share a copy)."""
    return os.path.join(cache_dir, "annotations", "%s-%s-%s.csv" % (
        split, mid.strip("/").replace("/", "_"), url_key(base_url + csv_rel(split))))


def read_rows(path: str) -> list[dict]:
    """Rows of a filtered cache file as dicts keyed by the CSV header."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def class_rows(net, base_url: str, split: str, mid: str, cache_dir: str, progress: bool = False,
               refresh: bool = False) -> list[dict]:
    """The rows of ``mid`` in ``split``'s segmentation CSV, from the cache or streamed and cached
    (``refresh``: streamed again)."""
    path = cache_path(cache_dir, split, mid, base_url)
    if os.path.isfile(path) and not refresh:
        net.stats.event("csv_cached")
        return read_rows(path)
    url = base_url + csv_rel(split)
    with atomic_open(path, "w+b") as f:
        stream_filter(net, url, mid, f, progress=progress, desc="%s csv" % split)
    return read_rows(path)
