"""The offline path (issue 18, build 2): every check that needs no network comes first, an
unreachable host is one line naming the URL and the ways out, within 3 s; the COCO weights
download shows progress and resumes. Servers and closed ports on 127.0.0.1 only."""
import os
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def offline(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/"
    env = dict(os.environ, MRCNN_CACHE=str(tmp_path / "cache"), MRCNN_COCO_URL=url + "mask_rcnn_coco.h5",
               TF_CPP_MIN_LOG_LEVEL="2", OPENIMAGES_BASE_URL=url + "openimages/",
               OPENIMAGES_IMAGES_URL=url + "images/")
    return {"url": url, "env": env, "tmp": tmp_path}


def train(offline, *args):
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--data", str(offline["tmp"] / "data"),
           "--logs", str(offline["tmp"] / "logs"), *args]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=str(offline["tmp"]), env=offline["env"], capture_output=True,
                          text=True, timeout=60)
    return proc, time.monotonic() - t0


def assert_one_offline_line(proc, seconds, url):
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: cannot reach " + url) and "connection refused" in line
    for way in ("--base-url", "--images-url", "OPENIMAGES_BASE_URL", "--no-download", "--weights PATH"):
        assert way in line, way
    assert seconds < 3.0, seconds


def test_offline_run_is_one_line_within_3_s(offline):
    proc, seconds = train(offline, "--class", "Cat", "--epochs", "1")
    assert_one_offline_line(proc, seconds, offline["url"] + "openimages/")
    assert not (offline["tmp"] / "logs").exists()


def test_offline_coco_weights_is_one_line(offline):
    proc, seconds = train(offline, "--class", "Cat", "--epochs", "1", "--no-download")
    assert_one_offline_line(proc, seconds, offline["url"] + "mask_rcnn_coco.h5")


@pytest.mark.parametrize("args, needles", [
    (["--config", "nonexistent.toml"], ["Config file not found: nonexistent.toml", "default.toml"]),
    (["--set", "IMAGE_MAX_DIMS=64"], ["IMAGE_MAX_DIMS", "IMAGE_MAX_DIM"]),
    (["--weights", "missing.h5"], ["Weights file not found: missing.h5"]),
    (["--weights", "imagenet", "--config", "demo.toml"], ["resnet50/resnet101", "'small'", "--weights none"]),
])
def test_input_errors_come_before_the_network(offline, args, needles):
    proc, seconds = train(offline, "--class", "Cat", "--epochs", "1", *args)
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach" not in proc.stderr and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr
    assert seconds < 3.0


def test_unreachable_host_is_retried_once_not_six_times():
    from download.net import Net, Unreachable

    net = Net(retries=5, backoff=0.5)
    t0 = time.monotonic()
    with pytest.raises(Unreachable, match="connection refused"):
        net.get_bytes(f"http://127.0.0.1:{closed_port()}/x.csv", "csv")
    assert net.stats.as_dict()["requests"]["csv"] == 2
    assert time.monotonic() - t0 < 2.0


def test_coco_weights_download_resumes_from_the_part_file(tmp_path):
    import h5py
    import numpy as np

    from download.mirror.server import serve
    from mrcnn_keras3.weights import fetch_resumable

    served = tmp_path / "served" / "openimages"  # the mirror server serves openimages/ and images/
    served.mkdir(parents=True)
    with h5py.File(served / "w.h5", "w") as f:
        f["x"] = np.arange(50000, dtype=np.float32)
    data = (served / "w.h5").read_bytes()
    out = tmp_path / "cache" / "w.h5"
    out.parent.mkdir()
    (tmp_path / "cache" / "w.h5.part").write_bytes(data[:len(data) // 2])  # an interrupted download
    server, base_url = serve(str(served.parent))
    try:
        fetch_resumable(base_url + "w.h5", str(out), size=len(data), progress=False)
        ranges = [e for e in server.log if e[0] == "GET"]
    finally:
        server.stop()
    assert out.read_bytes() == data and not (tmp_path / "cache" / "w.h5.part").exists()
    assert len(ranges) == 1 and server.bytes_sent() == len(data) - len(data) // 2


def test_ctrl_c_in_a_download_stops_cleanly_and_says_how_to_resume(tmp_path):
    import signal

    from download.mirror import build_mirror
    from download.mirror.testing import running

    build_mirror(str(tmp_path / "mirror"), images_per_split=6, image_classes=["Cat"])
    with running(str(tmp_path / "mirror"), latency_ms=150) as srv:
        proc = subprocess.Popen([sys.executable, "-m", "download", "--class", "Cat", "--out", str(tmp_path / "data"),
                                 "--base-url", srv.base_url, "--images-url", srv.images_url, "--workers", "2"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while len(srv.log) < 8 and time.monotonic() < deadline:  # well into the download
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "run the same command again to resume" in err
