"""mrcnn.io.coco_weights.download_trained_weights against a local HTTP server on 127.0.0.1.

tests/matterport/test_utils.py already downloads a good file, a non-HDF5 page and a 404 through
``mrcnn.utils`` (the target appears only on success) and an unreachable port. Here: a body cut
short of its Content-Length, a failed download over an existing file, the file mode under a
umask, what ``verbose`` prints, and a path object as the target."""
import http.server
import os
import threading

import numpy as np
import pytest

from mrcnn.io import coco_weights

SIGNATURE = b"\x89HDF\r\n\x1a\n"
GOOD = SIGNATURE + np.random.default_rng(0).bytes(3 << 20)   # more than one 1 MiB copy chunk


class _Handler(http.server.BaseHTTPRequestHandler):
    """/good.h5, /short.h5 (Content-Length says 1000 bytes more than are sent), /page.h5
    (not HDF5); anything else is a 404."""

    def do_GET(self):
        if self.path in ("/good.h5", "/short.h5"):
            body, length = GOOD, len(GOOD) + (1000 if self.path == "/short.h5" else 0)
        elif self.path == "/page.h5":
            body = b"<html>" + b"x" * 100 + b"</html>"
            length = len(body)
        else:
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_good_download_follows_umask(base_url, tmp_path, umask_027, capsys):
    target = tmp_path / "weights" / "mask_rcnn_coco.h5"      # folder made on the way; a Path works
    assert coco_weights.download_trained_weights(target, url=base_url + "/good.h5") == str(target)
    assert target.read_bytes() == GOOD
    assert os.stat(target).st_mode & 0o777 == 0o640            # 0o666 less the umask, not mkstemp's 0o600
    assert os.listdir(target.parent) == ["mask_rcnn_coco.h5"]
    out = capsys.readouterr().out
    assert out == f"Downloading pretrained model to {target} ...\n... done downloading pretrained model!\n"


def test_short_body_is_incomplete(base_url, tmp_path, capsys):
    target = tmp_path / "mask_rcnn_coco.h5"
    with pytest.raises(OSError, match=r"incomplete \(%d of %d bytes\)" % (len(GOOD), len(GOOD) + 1000)):
        coco_weights.download_trained_weights(target, verbose=0, url=base_url + "/short.h5")
    assert os.listdir(tmp_path) == []
    assert capsys.readouterr().out == ""                        # verbose=0 prints nothing


@pytest.mark.parametrize("name,message", [
    ("short.h5", "incomplete"), ("page.h5", "not an HDF5 file"), ("missing.h5", "pass its local path")])
def test_failure_keeps_an_existing_file(base_url, tmp_path, name, message):
    target = tmp_path / "mask_rcnn_coco.h5"
    target.write_bytes(b"previous download")
    with pytest.raises(OSError, match=message):
        coco_weights.download_trained_weights(str(target), verbose=0, url=f"{base_url}/{name}")
    assert target.read_bytes() == b"previous download"
    assert os.listdir(tmp_path) == ["mask_rcnn_coco.h5"]     # no .part temp file left behind


def test_signature_checked_only_for_h5_targets(base_url, tmp_path):
    target = tmp_path / "page.bin"   # matterport's check is for .h5 files; other names keep the bytes
    coco_weights.download_trained_weights(target, verbose=0, url=base_url + "/page.h5")
    assert target.read_bytes().startswith(b"<html>")
    assert coco_weights.COCO_SIZE == 257557808 and coco_weights.COCO_MODEL_URL.endswith("/mask_rcnn_coco.h5")
