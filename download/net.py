"""HTTP with retries, exact-length checks and byte accounting, shared by every fetcher.

One ``Net`` holds one pooled ``requests.Session`` (pool size = worker count) and a ``Stats``.
Transient failures (5xx, 429, connection errors, timeouts, bodies cut short) are retried with
exponential backoff; 4xx other than 429 fail at once. ``timeout`` bounds each socket read; a
body must also keep a minimum average rate (``min_rate`` bytes/s after ``rate_grace`` seconds),
so a server trickling 1 byte per second cannot hold a download for ever. Every request asks for
``Accept-Encoding: identity`` so Content-Length is the byte count of the body we receive.
"""
from __future__ import annotations

import socket
import threading
import time
from collections import Counter


class FetchError(RuntimeError):
    """A URL could not be fetched (after retries when the failure looked transient)."""

    resumable = True   # False: the same command cannot succeed later (the source itself is bad)

    def __init__(self, url: str, message: str, status: int | None = None):
        self.url = url
        self.status = status
        super().__init__("%s: %s" % (url, message))


class Unreachable(FetchError):
    """The host cannot be reached at all (name resolution failed, connection refused or timed
    out): not transient the way a 503 is, so it is retried once, quickly, not with backoff."""

    def __init__(self, url: str, reason: str):
        self.reason = reason
        super().__init__(url, "cannot connect (%s)" % reason)


def connect_failure(exc: BaseException) -> str | None:
    """Why ``exc`` (a requests/urllib3 error) never reached the server, or None if it did."""
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NameResolutionError):
            return "name resolution failed"
        if isinstance(exc, NewConnectionError):
            refused = isinstance(exc.__cause__ or exc.__context__, ConnectionRefusedError) \
                or "refused" in str(exc).lower()
            return "connection refused" if refused else "cannot connect"
        if isinstance(exc, ConnectTimeoutError):  # after: NewConnectionError is one
            return "connection timed out"
        nxt = getattr(exc, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = next((a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)), None)
        exc = nxt or exc.__cause__ or exc.__context__
    return None


class Truncated(IOError):
    """A body shorter than announced (Content-Length / Content-Range) or cut mid-line."""


class TooSlow(Truncated):
    """A body arriving slower than the minimum rate (a stalled or trickling server): retried."""


class RangeIgnored(RuntimeError):
    """A server answered a Range request with 200 and the whole body."""

    def __init__(self, url: str, response):
        self.url = url
        self.response = response   # still open (streaming): the caller may consume the whole body
        super().__init__("%s: server ignored the Range header (HTTP 200)" % url)


class Stats:
    """Thread-safe counters: bytes and requests per category, plus free-form event counts."""

    def __init__(self):
        self._lock = threading.Lock()
        self.bytes = Counter()
        self.requests = Counter()
        self.events = Counter()

    def add_bytes(self, category: str, n: int) -> None:
        with self._lock:
            self.bytes[category] += n

    def add_request(self, category: str) -> None:
        with self._lock:
            self.requests[category] += 1

    def event(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.events[name] += n

    def as_dict(self) -> dict:
        with self._lock:
            return {"bytes": dict(sorted(self.bytes.items())), "requests": dict(sorted(self.requests.items())),
                    "events": dict(sorted(self.events.items())), "bytes_total": sum(self.bytes.values())}


def _transient_status(code: int) -> bool:
    return code >= 500 or code in (408, 429)


class Net:
    """Pooled session + retry policy. ``timeout`` is seconds for connect and for each socket read;
    a body slower than ``min_rate`` bytes/s on average once ``rate_grace`` seconds (default
    ``timeout``) have passed is abandoned as TooSlow and retried."""

    def __init__(self, workers: int = 16, timeout: float = 30.0, retries: int = 5, backoff: float = 0.5,
                 stats: Stats | None = None, min_rate: float = 1024.0, rate_grace: float | None = None):
        import requests
        from requests.adapters import HTTPAdapter
        self.requests = requests
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.min_rate = float(min_rate)
        self.rate_grace = float(timeout if rate_grace is None else rate_grace)
        self.stats = stats or Stats()
        self.session = requests.Session()
        # shards x per-shard threads can exceed `workers`: keep them all pooled (no discard warnings)
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=4 * max(4, workers), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Accept-Encoding": "identity", "User-Agent": "mrcnn-keras3-download/0.1"})
        self.transient = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                          Truncated)

    def close(self) -> None:
        self.session.close()

    def sleep_before_retry(self, attempt: int) -> None:
        """Exponential backoff: backoff * 2**attempt seconds, capped at 30 s."""
        self.stats.event("retries")
        time.sleep(min(30.0, self.backoff * (2 ** attempt)))

    def open(self, url: str, category: str, headers: dict | None = None, method: str = "GET"):
        """One streaming request (no retry); raises FetchError for a non-2xx status.

        Returns the open response; the caller reads (and closes) it.
        """
        self.stats.add_request(category)
        resp = self.session.request(method, url, headers=headers or {}, stream=True, timeout=self.timeout)
        if resp.status_code >= 300:
            code = resp.status_code
            resp.close()
            raise FetchError(url, "HTTP %d" % code, status=code)
        return resp

    def retrying(self, url: str, func):
        """Call ``func()`` until it succeeds, retrying transient errors with backoff."""
        last, unreachable = None, 0
        for attempt in range(self.retries + 1):
            try:
                return func()
            except FetchError as e:
                if e.status is None or not _transient_status(e.status):
                    raise
                last = e
            except self.transient as e:
                reason = connect_failure(e) if isinstance(e, self.requests.ConnectionError) else None
                if reason:  # one quick retry (a blip), never the backoff series of a 503
                    unreachable += 1
                    if unreachable > 1 or attempt >= self.retries:
                        raise Unreachable(url, reason) from None
                    self.stats.event("retries")
                    time.sleep(0.2)
                    continue
                last = e
            if attempt < self.retries:
                self.sleep_before_retry(attempt)
        raise FetchError(url, "failed after %d attempts (last error: %s)" % (self.retries + 1, last))

    def _deadline(self, resp, length: int | None):
        """(timer, fired flag) shutting the response's socket once a body of ``length`` bytes is
        overdue at ``min_rate``: a socket read blocks until its buffer fills, so a trickle of one
        byte per second never trips the per-read timeout nor returns to a rate check in the loop."""
        fired = threading.Event()
        sock = getattr(getattr(resp.raw, "connection", None), "sock", None)
        if not length or self.min_rate <= 0 or sock is None:
            return None, fired

        def fire():
            fired.set()
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        timer = threading.Timer(self.rate_grace + length / self.min_rate, fire)
        timer.daemon = True
        timer.start()
        return timer, fired

    def read_body(self, resp, category: str, expected: int | None, sink=None) -> bytes | int:
        """Read a streaming body, counting bytes; check it is exactly ``expected`` long when given.

        With ``sink`` (a callable taking chunks) returns the byte count instead of the bytes.
        Raises TooSlow (transient) when the body comes slower than ``min_rate``.
        """
        parts = []
        n = 0
        t0 = time.monotonic()
        cl = resp.headers.get("Content-Length")
        timer, fired = self._deadline(resp, expected if expected is not None else
                                      int(cl) if cl and cl.isdigit() else None)

        def too_slow():
            self.stats.event("too_slow")
            return TooSlow("%s: %d bytes in %.1f s, under the minimum rate of %g bytes/s (--min-rate)"
                           % (resp.url, n, time.monotonic() - t0, self.min_rate))
        try:
            for chunk in resp.iter_content(chunk_size=1 << 16):
                n += len(chunk)
                late = time.monotonic() - t0 - self.rate_grace
                if late > 0 and self.min_rate > 0 and n < self.min_rate * late:
                    raise too_slow()
                self.stats.add_bytes(category, len(chunk))
                if sink is None:
                    parts.append(chunk)
                else:
                    sink(chunk)
        except Exception:
            if fired.is_set():
                raise too_slow() from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
            resp.close()
        if fired.is_set():
            raise too_slow()
        if expected is not None and n != expected:
            raise Truncated("%s: body is %d bytes, expected %d" % (resp.url, n, expected))
        return b"".join(parts) if sink is None else n

    def get_bytes(self, url: str, category: str) -> bytes:
        """Whole body of ``url`` (retried; a body shorter than Content-Length is refetched)."""
        def attempt():
            resp = self.open(url, category)
            cl = resp.headers.get("Content-Length")
            return self.read_body(resp, category, int(cl) if cl is not None else None)
        return self.retrying(url, attempt)

    def get_range(self, url: str, start: int, end: int, category: str) -> tuple[bytes, int]:
        """Bytes [start, end) of ``url`` and the resource's total size (from Content-Range).

        Raises RangeIgnored (response left open) if the server answers 200 with the whole body.
        """
        def attempt():
            resp = self.open(url, category, headers={"Range": "bytes=%d-%d" % (start, end - 1)})
            if resp.status_code != 206:
                raise RangeIgnored(url, resp)
            first, last, total = parse_content_range(resp.headers.get("Content-Range", ""), url)
            if first != start or last != min(end, total) - 1:
                resp.close()
                raise FetchError(url, "asked bytes %d-%d, server sent %d-%d" % (start, end - 1, first, last))
            return self.read_body(resp, category, last - first + 1), total
        return self.retrying(url, attempt)

    def get_suffix(self, url: str, n: int, category: str) -> tuple[bytes, int]:
        """The last ``n`` bytes of ``url`` (fewer if the file is smaller) and its total size."""
        def attempt():
            resp = self.open(url, category, headers={"Range": "bytes=-%d" % n})
            if resp.status_code != 206:
                raise RangeIgnored(url, resp)
            first, last, total = parse_content_range(resp.headers.get("Content-Range", ""), url)
            return self.read_body(resp, category, last - first + 1), total
        return self.retrying(url, attempt)


def parse_content_range(value: str, url: str) -> tuple[int, int, int]:
    """``bytes a-b/total`` -> (a, b, total); raises FetchError when malformed or total unknown."""
    try:
        unit, rest = value.strip().split(" ", 1)
        span, total = rest.split("/")
        a, b = span.split("-")
        if unit != "bytes" or total == "*":
            raise ValueError(value)
        first, last, size = int(a), int(b), int(total)
        if not (0 <= first <= last < size):
            raise ValueError(value)
        return first, last, size
    except ValueError:
        raise FetchError(url, "malformed Content-Range %r" % value) from None
