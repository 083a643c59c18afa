"""Read chosen members of a remote zip with HTTP Range requests, caching what describes the zip.

Why not ``remotezip``: it always reads the whole central directory (~14 MB for a train shard) on
every open and keeps nothing, and it cannot search the directory. This reader:

* fetches the end record once (suffix range) and caches it in ``{cache}/zips/{shard}/tail.json``;
* finds members either from the whole directory (one range request, cached as ``directory.bin``)
  or, when few members are wanted, by searching the directory sorted by name with small page reads
  (4 KB pages, cached as ``pages/{k}.bin``), interpolating on the hex ImageID at the start of every
  Open Images mask name. Each page is checked to be sorted and consistent with its neighbours; any
  disorder, or a member the search does not find, falls back to the whole directory, so a missing
  member is only ever reported after the full directory confirms it;
* fetches members with coalesced range requests (masks of one image sit side by side), in parallel;
* when the server ignores Range (HTTP 200), downloads the whole shard once into
  ``{cache}/zips/{shard}.zip`` with a warning and reads members from it.

Every cached file is written atomically. A cache whose file size disagrees with the server's
(Content-Range total) is dropped and rebuilt.
"""
from __future__ import annotations

import bisect
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

from . import zipdir
from .fsutil import atomic_open, atomic_write_bytes, atomic_write_json
from .net import FetchError, RangeIgnored

log = logging.getLogger("download")
PAGE = 1024       # small pages: each target costs ~2 page reads, so bytes scale with the page
OVERLAP = 256     # bytes past each page so the entries starting in it are usually complete
GAP = 1024        # merge member ranges closer than this into one request
MAX_MERGED = 4 << 20
TAIL = 4096       # end record (22 B, + 76 B for Zip64) and the directory's last entries


class MissingMember(KeyError):
    """A wanted name is not in the zip's central directory."""


class Unsorted(Exception):
    """The directory is not sorted by name (or looks inconsistent): use the whole directory."""


class StaleCache(Exception):
    """The cached description of the zip does not match the server's file."""


class _Page:
    __slots__ = ("entries", "names", "first_pos")

    def __init__(self, entries):
        self.entries = {e.name: e for e in entries}
        self.names = [e.name for e in entries]
        self.first_pos = entries[0].pos if entries else None


def _hex_key(name: str):
    head = name[:16]
    try:
        return int(head, 16) if len(head) == 16 else None
    except ValueError:
        return None


class ShardReader:
    """Members of the zip at ``url``. ``mode``: "auto" (search when cheaper), "full" or "search"."""

    def __init__(self, net, url: str, cache_dir: str, workers: int = 4, mode: str = "auto"):
        self.net = net
        self.url = url
        shard = os.path.basename(url.split("?")[0])
        shard = shard[:-4] if shard.endswith(".zip") else shard
        self.dir = os.path.join(cache_dir, "zips", shard)
        self.whole_path = os.path.join(cache_dir, "zips", shard + ".zip")
        self.workers = max(1, workers)
        self.mode = mode
        self.size = None
        self.cd = None
        self._index = None
        self._pages = {}
        self._tail = (0, b"")   # (offset, bytes) of the file's end, kept from the first request
        self.strategy = None   # what was used: "whole", "full" or "search" (for reports and tests)

    # ---- public --------------------------------------------------------------------------------
    def read(self, names) -> dict:
        """{name: bytes} for each wanted name, or {name: exception} (MissingMember, ZipFormatError)."""
        names = sorted(set(names))
        if not names:
            return {}
        if os.path.isfile(self.whole_path):
            return self._read_local(names)
        for attempt in range(2):
            try:
                return self._read_remote(names)
            except RangeIgnored as e:
                e.response.close()
                log.warning("%s: the server ignores HTTP Range; downloading the whole shard once "
                            "(cached at %s)", self.url, self.whole_path)
                self.net.stats.event("range_ignored")
                self._download_whole()
                return self._read_local(names)
            except StaleCache:
                if attempt:
                    raise FetchError(self.url, "file size keeps changing between requests")
                log.warning("%s: cached zip directory does not match the server's file; refetching", self.url)
                shutil.rmtree(self.dir, ignore_errors=True)
                self.size = self.cd = self._index = None
                self._pages = {}
        raise AssertionError("unreachable")

    # ---- whole-file fallback -------------------------------------------------------------------
    def _download_whole(self) -> None:
        def attempt():
            resp = self.net.open(self.url, "zip_whole")
            cl = resp.headers.get("Content-Length")
            with atomic_open(self.whole_path, "wb") as f:
                self.net.read_body(resp, "zip_whole", int(cl) if cl is not None else None, sink=f.write)
        self.net.retrying(self.url, attempt)
        self.strategy = "whole"

    def _read_local(self, names) -> dict:
        import zipfile
        self.strategy = "whole"
        out = {}
        try:
            zf = zipfile.ZipFile(self.whole_path)
        except zipfile.BadZipFile as e:
            os.unlink(self.whole_path)   # never trust it again
            raise FetchError(self.url, "downloaded shard is not a valid zip (%s); deleted, rerun" % e)
        with zf:
            for name in names:
                try:
                    info = zf.getinfo(name)
                except KeyError:
                    out[name] = MissingMember(name)
                    continue
                if info.file_size > zipdir.MAX_MEMBER:
                    out[name] = zipdir.ZipFormatError("member %r too large (%d bytes)" % (name, info.file_size))
                    continue
                try:
                    out[name] = zf.read(info)
                except (zipfile.BadZipFile, OSError, NotImplementedError) as e:
                    out[name] = zipdir.ZipFormatError("member %r unreadable: %s" % (name, e))
        return out

    # ---- remote --------------------------------------------------------------------------------
    def _range(self, start: int, end: int, category: str) -> bytes:
        t0, tail = self._tail
        if tail and start >= t0 and end <= t0 + len(tail):   # small zips: already have these bytes
            return tail[start - t0:end - t0]
        data, total = self.net.get_range(self.url, start, end, category)
        if self.size is not None and total != self.size:
            raise StaleCache()
        return data

    def _directory(self) -> None:
        tail_path = os.path.join(self.dir, "tail.json")
        if os.path.isfile(tail_path):
            with open(tail_path) as f:
                t = json.load(f)
            self.size = t["size"]
            self.cd = zipdir.Directory(t["cd_offset"], t["cd_size"], t["count"])
            return
        try:
            tail, total = self.net.get_suffix(self.url, TAIL, "zip_tail")
        except FetchError as e:   # some servers refuse suffix ranges: ask the size, then a plain range
            if e.status not in (400, 416, 501):
                raise
            total = self._head_size()
            tail = self.net.get_range(self.url, max(0, total - TAIL), total, "zip_tail")[0]
        try:
            found = zipdir.find_directory(tail, total - len(tail))
        except zipdir.ZipFormatError:
            if len(tail) >= total:
                raise
            # a zip comment (up to 64 KB) may push the end record further back
            tail, total = self.net.get_suffix(self.url, 65536 + 22 + 20 + 56, "zip_tail")
            found = zipdir.find_directory(tail, total - len(tail))
        if isinstance(found, int):   # zip64 end record before the tail we have
            tail = self.net.get_range(self.url, found, total, "zip_tail")[0]
            found = zipdir.find_directory(tail, found)
        if not isinstance(found, zipdir.Directory) or found.offset + found.size > total:
            raise zipdir.ZipFormatError("%s: end record points outside the file" % self.url)
        self.size, self.cd = total, found
        self._tail = (total - len(tail), tail)
        atomic_write_json(tail_path, {"size": total, "cd_offset": found.offset, "cd_size": found.size,
                                      "count": found.count, "url": self.url})

    def _head_size(self) -> int:
        def attempt():
            resp = self.net.open(self.url, "zip_tail", method="HEAD")
            resp.close()
            if resp.headers.get("Content-Length") is None:
                raise FetchError(self.url, "HEAD gave no Content-Length; cannot read the zip by ranges")
            return int(resp.headers["Content-Length"])
        return self.net.retrying(self.url, attempt)

    def _read_remote(self, names) -> dict:
        self._directory()
        located = self._locate(names)
        return self._fetch_members(located)

    def _locate(self, names) -> dict:
        """{name: Entry or None}."""
        dir_path = os.path.join(self.dir, "directory.bin")
        # Measured: ~2 page reads per wanted member plus the first and last page.
        search_cost = (2.5 * len(names) + 2) * (PAGE + OVERLAP)
        use_search = self.mode == "search" or (self.mode == "auto" and search_cost < 0.6 * self.cd.size)
        if self._index is None and not os.path.isfile(dir_path) and use_search:
            try:
                found = self._search(names)
                self.strategy = "search"
                if all(found[n] is not None for n in names):
                    return found
                log.info("%s: %d member(s) not found by search; checking the whole directory",
                         self.url, sum(found[n] is None for n in names))
            except Unsorted as e:
                log.info("%s: directory is not sorted by name (%s); reading it whole", self.url, e)
                self.net.stats.event("zip_unsorted")
        index = self._full_index()
        self.strategy = "full"
        return {n: index.get(n) for n in names}

    def _full_index(self) -> dict:
        if self._index is not None:
            return self._index
        path = os.path.join(self.dir, "directory.bin")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                buf = f.read()
        else:
            buf = self._range(self.cd.offset, self.cd.offset + self.cd.size, "zip_directory")
        entries = zipdir.parse_all(buf)
        # (count mod 65536: some writers wrap the 16-bit count instead of writing Zip64 records)
        if len(entries) % 65536 != self.cd.count % 65536 or \
                (entries and entries[-1].pos + entries[-1].length != len(buf)):
            raise zipdir.ZipFormatError("%s: central directory holds %d entries, end record says %d"
                                        % (self.url, len(entries), self.cd.count))
        if not os.path.isfile(path):
            atomic_write_bytes(path, buf)
        self._index = {e.name: e for e in entries}
        return self._index

    # ---- directory search ----------------------------------------------------------------------
    def _load_pages(self, ks) -> None:
        todo = []
        for k in sorted(set(ks) - set(self._pages)):
            p = os.path.join(self.dir, "pages", "%d.bin" % k)
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    self._pages[k] = self._parse_page(k, f.read())
            else:
                todo.append(k)
        runs = []   # consecutive page numbers -> one request each
        for k in todo:
            if runs and runs[-1][1] == k - 1:
                runs[-1][1] = k
            else:
                runs.append([k, k])

        def fetch(run):
            k0, k1 = run
            lo = k0 * PAGE
            hi = min(self.cd.size, (k1 + 1) * PAGE + OVERLAP)
            data = self._range(self.cd.offset + lo, self.cd.offset + hi, "zip_directory")
            return [(k, data[(k - k0) * PAGE:(k - k0 + 1) * PAGE + OVERLAP]) for k in range(k0, k1 + 1)]
        with ThreadPoolExecutor(self.workers) as pool:
            for pieces in pool.map(fetch, runs):
                for k, buf in pieces:
                    self._pages[k] = self._parse_page(k, buf)
                    atomic_write_bytes(os.path.join(self.dir, "pages", "%d.bin" % k), buf, durable=False)

    def _parse_page(self, k: int, buf: bytes) -> _Page:
        base = k * PAGE
        start = 0 if k == 0 else zipdir.resync(buf, 0, self.cd.size, base)
        if start is None or start >= PAGE:
            return _Page([])
        entries = zipdir.parse_all(buf, base=base, start=start, stop=PAGE)
        nxt = entries[-1].pos + entries[-1].length - base if entries else start
        if nxt < PAGE and base + nxt < self.cd.size:   # an entry cut by the overlap: read up to its end
            head = self._range(self.cd.offset + base + nxt, self.cd.offset + min(self.cd.size, base + nxt + 46),
                               "zip_directory")
            if len(head) < 46 or head[:4] != zipdir.SIG_CDE:
                raise Unsorted("page %d: entry at %d is unreadable" % (k, base + nxt))
            n, m, c = zipdir.struct.unpack_from("<3H", head, 28)
            end = min(self.cd.size, base + nxt + 46 + n + m + c)
            buf = buf[:nxt] + self._range(self.cd.offset + base + nxt, self.cd.offset + end, "zip_directory")
            entries = zipdir.parse_all(buf, base=base, start=start, stop=PAGE)
        names = [e.name for e in entries]
        if any(a >= b for a, b in zip(names, names[1:])):
            raise Unsorted("page %d is not in name order" % k)
        return _Page(entries)

    def _search(self, names) -> dict:
        npages = (self.cd.size + PAGE - 1) // PAGE
        found, tries = {}, dict.fromkeys(names, 0)
        need = {0, npages - 1}
        for _ in range(64):
            self._load_pages(need)
            loaded = sorted(k for k, p in self._pages.items() if p.names)
            for a, b in zip(loaded, loaded[1:]):
                if self._pages[a].names[-1] >= self._pages[b].names[0]:
                    raise Unsorted("pages %d and %d overlap in name order" % (a, b))
            firsts = [self._pages[k].names[0] for k in loaded]
            need = set()
            for t in names:
                if t in found:
                    continue
                j = bisect.bisect_right(firsts, t) - 1
                if j < 0:   # before the first name of the directory
                    found[t] = None
                    continue
                a = loaded[j]
                b = loaded[j + 1] if j + 1 < len(loaded) else npages
                pa = self._pages[a]
                if t <= pa.names[-1]:
                    found[t] = pa.entries.get(t)
                    continue
                k = self._probe(t, a, b, npages, tries[t])
                tries[t] += 1
                if k is None:
                    found[t] = None
                else:
                    need.add(k)
            if not need:
                return found
        raise Unsorted("search did not converge")

    def _probe(self, t: str, a: int, b: int, npages: int, tries: int):
        """An unloaded page in (a, b) to read next for target ``t``, or None if all are loaded."""
        lo, hi = a + 1, b - 1
        if lo > hi:
            return None
        k = (lo + hi) // 2
        ka, kt = _hex_key(self._pages[a].names[0]), _hex_key(t)
        if tries < 4 and b < npages and ka is not None and kt is not None:
            pb = self._pages[b]
            kb = _hex_key(pb.names[0])
            if kb is not None and kb > ka:
                pa_pos = self._pages[a].first_pos
                est = pa_pos + (kt - ka) * (pb.first_pos - pa_pos) / (kb - ka)
                k = min(hi, max(lo, int(est // PAGE)))
        if k not in self._pages:
            return k
        for d in range(1, hi - lo + 1):   # an empty page was loaded here already: nearest unloaded
            for c in (k - d, k + d):
                if lo <= c <= hi and c not in self._pages:
                    return c
        return None

    # ---- members -------------------------------------------------------------------------------
    def _fetch_members(self, located: dict) -> dict:
        out = {n: MissingMember(n) for n, e in located.items() if e is None}
        wanted = sorted((e for e in located.values() if e is not None), key=lambda e: e.header_offset)
        groups = []
        for e in wanted:
            start = e.header_offset
            end = min(self.cd.offset, start + 30 + len(e.name.encode()) + e.extra_len + e.csize)
            if groups and start - groups[-1][1] <= GAP and end - groups[-1][0] <= MAX_MERGED:
                groups[-1][1] = max(groups[-1][1], end)
                groups[-1][2].append(e)
            else:
                groups.append([start, end, [e]])

        def fetch(group):
            start, end, members = group
            data = self._range(start, end, "zip_members")
            res = {}
            for e in members:
                piece = data[e.header_offset - start:]
                try:
                    h = zipdir.local_header_size(piece, e.name)
                    if h + e.csize > len(piece):   # local extra longer than the directory's: read it
                        piece = self._range(e.header_offset, e.header_offset + h + e.csize, "zip_members")
                    res[e.name] = zipdir.member_payload(piece, e)
                except zipdir.ZipFormatError as err:
                    res[e.name] = err
            return res
        with ThreadPoolExecutor(self.workers) as pool:
            for res in pool.map(fetch, groups):
                out.update(res)
        return out
