"""A local HTTP server for a mirror directory, with Range support and fault injection for tests.

``serve(dir)`` runs a ``ThreadingHTTPServer`` on 127.0.0.1 in a daemon thread and returns
``(server, base_url)``; ``server.images_url`` is the images prefix. GET and HEAD; Range
(``bytes=a-b``, ``a-``, ``-n``) answered 206 with Content-Range; Content-Length always; HTTP/1.1
keep-alive (set ``server.no_suffix_range`` to refuse ``bytes=-n`` with 416). Only files under ``dir/openimages/`` and ``dir/images/`` are served. ``latency_ms`` delays every request; ``no_range`` ignores Range (200 + whole body).

Faults (``server.add_fault(pattern, kind, times=1, arg=None)``, pattern an fnmatch glob on the URL
path): ``"status"`` answers HTTP ``arg`` (default 500); ``"hang"`` sleeps ``arg`` seconds (default 5)
before closing without an answer; ``"truncate"`` announces the full Content-Length but sends only
half of the body; ``"corrupt"`` sends the full length with every byte after the 16th of the file
zeroed (a JPEG that no longer decodes). ``times=-1`` = forever.
Every request is logged in ``server.log`` as (method, path, range header or None, status, bytes sent).
"""
from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CHUNK = 1 << 16


class Fault:
    def __init__(self, pattern: str, kind: str, times: int = 1, arg=None):
        if kind not in ("status", "hang", "truncate", "corrupt"):
            raise ValueError("unknown fault kind %r" % kind)
        self.pattern, self.kind, self.times, self.arg = pattern, kind, times, arg


class MirrorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: str, port: int = 0, latency_ms: float = 0, no_range: bool = False):
        super().__init__(("127.0.0.1", port), Handler)
        self.root = os.path.realpath(root)
        self.latency = latency_ms / 1000.0
        self.no_range = no_range
        self.no_suffix_range = False
        self.faults: list[Fault] = []
        self.log: list[tuple] = []
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0   # most requests being answered at once (shows client concurrency)
        host, port = self.server_address[:2]
        self.root_url = "http://%s:%d/" % (host, port)
        self.base_url = self.root_url + "openimages/"
        self.images_url = self.root_url + "images/"

    def add_fault(self, pattern: str, kind: str, times: int = 1, arg=None) -> Fault:
        f = Fault(pattern, kind, times, arg)
        with self.lock:
            self.faults.append(f)
        return f

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.times != 0 and fnmatch.fnmatch(path, f.pattern):
                    if f.times > 0:
                        f.times -= 1
                    return f
        return None

    def record(self, *entry) -> None:
        with self.lock:
            self.log.append(entry)

    def requests_per_path(self, method: str = "GET") -> Counter:
        with self.lock:
            return Counter(e[1] for e in self.log if e[0] == method)

    def bytes_sent(self) -> int:
        with self.lock:
            return sum(e[4] for e in self.log)

    def reset_log(self) -> None:
        with self.lock:
            self.log.clear()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def parse_range(header: str, size: int):
    """(start, end_inclusive) for a single ``bytes=`` range, None if absent/unparsable, "bad" if unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    a, _, b = header[6:].strip().partition("-")
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                return "bad"
            return max(0, size - n), size - 1
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, keep-alive responses stall on the
    # client's delayed ACK (~40 ms each), which would swamp the latency being simulated.
    disable_nagle_algorithm = True
    server: MirrorServer

    def log_message(self, format, *args):   # quiet
        pass

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def _plain(self, code: int, msg: str, extra: dict | None = None) -> None:
        body = msg.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        srv = self.server
        with srv.lock:
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            self._respond(head)
        finally:
            with srv.lock:
                srv.inflight -= 1

    def _respond(self, head: bool) -> None:
        srv = self.server
        if srv.latency:
            time.sleep(srv.latency)
        path = unquote(urlsplit(self.path).path)
        rng_header = self.headers.get("Range")
        fault = srv.take_fault(path)
        if fault is not None and fault.kind == "hang":
            time.sleep(fault.arg if fault.arg is not None else 5.0)
            srv.record(self.command, path, rng_header, 0, 0)
            self.close_connection = True
            return
        if fault is not None and fault.kind == "status":
            code = int(fault.arg or 500)
            srv.record(self.command, path, rng_header, code, 0)
            self._plain(code, "injected fault")
            return
        local = os.path.realpath(os.path.join(srv.root, path.lstrip("/")))
        served = (os.path.join(srv.root, "openimages") + os.sep, os.path.join(srv.root, "images") + os.sep)
        if not local.startswith(served) or not os.path.isfile(local):
            srv.record(self.command, path, rng_header, 404, 0)
            self._plain(404, "not found")
            return
        size = os.path.getsize(local)
        st = os.stat(local)
        etag = '"%x-%x"' % (size, st.st_mtime_ns)
        rng = None if srv.no_range else parse_range(rng_header, size)
        if srv.no_suffix_range and rng_header and rng_header.startswith("bytes=-"):
            rng = "bad"   # like servers that refuse suffix ranges
        if rng == "bad":
            srv.record(self.command, path, rng_header, 416, 0)
            self._plain(416, "range not satisfiable", {"Content-Range": "bytes */%d" % size})
            return
        start, end = rng if rng else (0, size - 1)
        length = end - start + 1 if size else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "image/jpeg" if local.endswith(".jpg") else "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        if not srv.no_range:
            self.send_header("Accept-Ranges", "bytes")
        if rng:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        sent = self._send_body(local, start, length, fault) if not head and length else 0
        srv.record(self.command, path, rng_header, 206 if rng else 200, sent)

    def _send_body(self, local: str, start: int, length: int, fault) -> int:
        """Send ``length`` bytes of ``local`` from ``start``; returns the bytes sent. A "truncate"
        fault sends half and a "corrupt" one zeroes all but the file's first 16 bytes; a body cut
        short closes the connection, as a real server's would be."""
        sent = 0
        limit = length // 2 if fault is not None and fault.kind == "truncate" else length
        try:
            with open(local, "rb") as f:
                f.seek(start)
                while sent < limit:
                    chunk = f.read(min(CHUNK, limit - sent))
                    if not chunk:
                        break
                    if fault is not None and fault.kind == "corrupt":
                        keep = max(0, 16 - (start + sent))
                        chunk = chunk[:keep] + b"\0" * max(0, len(chunk) - keep)
                    self.wfile.write(chunk)
                    sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if sent < length:
            self.close_connection = True
        return sent


def serve(dir: str, port: int = 0, latency_ms: float = 0, no_range: bool = False):
    """Start serving ``dir`` in a daemon thread; returns (server, base_url). Stop with ``server.stop()``."""
    srv = MirrorServer(dir, port=port, latency_ms=latency_ms, no_range=no_range)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    srv.thread = t
    return srv, srv.base_url
