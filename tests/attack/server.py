"""A lying HTTP server for the attacks: serves a mirror folder (download.mirror layout) on
127.0.0.1 with Range support, and lets each attack rewrite or slow down chosen responses.

``with lying_server(mirror_dir) as srv:`` then ``srv.lie(glob, fn, times=1)`` where
``fn(body, start) -> body`` rewrites the bytes of the matching response (``start`` = its first
byte in the file; a response it leaves unchanged does not count towards ``times``); ``srv.slow(glob, bytes_per_s, times)`` trickles the body out. Every response
is bounded: a slow one stops after ``max_seconds``. ``srv.stop()`` closes it.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from download.mirror.server import parse_range


class LyingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root, max_seconds=20.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root, self.max_seconds = os.path.realpath(root), max_seconds
        self.rules, self.lock, self.log = [], threading.Lock(), []
        self.root_url = "http://127.0.0.1:%d/" % self.server_address[1]
        self.base_url, self.images_url = self.root_url + "openimages/", self.root_url + "images/"

    def lie(self, pattern, fn, times=1):
        with self.lock:
            self.rules.append([pattern, "lie", fn, times])

    def slow(self, pattern, bytes_per_s, times=1):
        with self.lock:
            self.rules.append([pattern, "slow", bytes_per_s, times])

    def take(self, path, body, start):
        """(kind, arg, body) of the first rule left for ``path``; a lie counts only when it
        changed the body."""
        with self.lock:
            for r in self.rules:
                if r[3] != 0 and fnmatch.fnmatch(path, r[0]):
                    new = r[2](body, start) if r[1] == "lie" else body
                    if r[1] == "lie" and new == body:
                        continue
                    r[3] -= 1
                    return r[1], r[2], new
        return None, None, body

    def stop(self):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        path = unquote(urlsplit(self.path).path)
        local = os.path.realpath(os.path.join(srv.root, path.lstrip("/")))
        if not local.startswith(srv.root + os.sep) or not os.path.isfile(local):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(local, "rb") as f:
            data = f.read()
        rng = parse_range(self.headers.get("Range"), len(data)) if self.headers.get("Range") else None
        start, end = rng if rng and rng != "bad" else (0, len(data) - 1)
        body = data[start:end + 1]
        kind, arg, body = srv.take(path, body, start)
        srv.log.append((path, self.headers.get("Range"), kind))
        self.send_response(206 if rng and rng != "bad" else 200)
        if rng and rng != "bad":
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if kind == "slow":
                deadline = time.time() + srv.max_seconds
                for i in range(len(body)):
                    if time.time() > deadline:
                        break
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(1.0 / arg)
                self.close_connection = True
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


@contextlib.contextmanager
def lying_server(root, max_seconds=20.0):
    srv = LyingServer(root, max_seconds)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.stop()
