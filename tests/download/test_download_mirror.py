"""The generated mirror looks like Open Images and the server speaks HTTP ranges like GCS/S3."""
import csv
import io
import os
import re
import time
import zipfile

import numpy as np
import pytest
import requests
from PIL import Image

from download.annotations import HEADER
from download.mirror import build_mirror, load_ground_truth
from download.mirror.build import rle_decode, rle_encode
from download.mirror.testing import running

NAME = re.compile(r"^([0-9a-f]{16})_(m[0-9a-z]+)_([0-9a-f]{8})\.png$")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("mirror"))
    build_mirror(d, images_per_split=4, splits=("train",), seed=2)
    return d


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 5), (17, 9)]:
        for p in (0.0, 0.3, 1.0):
            m = rng.random(shape) < p
            assert np.array_equal(rle_decode(rle_encode(m), *shape), m)


def test_layout_names_and_class_lists(mirror):
    v5 = os.path.join(mirror, "openimages", "v5")
    desc = open(os.path.join(v5, "class-descriptions-boxable.csv")).read().splitlines()
    assert {"/m/01yrx,Cat", "/m/0bt9lr,Dog", "/m/0kmg4,Teddy bear"} <= set(desc)
    seg = set(open(os.path.join(v5, "classes-segmentation.txt")).read().split())
    assert "/m/01yrx" in seg and "/m/07j7r" not in seg   # Tree: boxes only
    rows = list(csv.reader(open(os.path.join(v5, "train-annotations-object-segmentation.csv"))))
    assert rows[0] == HEADER
    shards = {}
    for s in "0123456789abcdef":
        with zipfile.ZipFile(os.path.join(v5, "train-masks", "train-masks-%s.zip" % s)) as zf:
            names = zf.namelist()
            assert names == sorted(names)
            shards.update({n: s for n in names})
    for r in rows[1:]:
        m = NAME.match(r[0])
        assert m and m.group(1) == r[1] and m.group(2) == r[2].replace("/", "") and m.group(3) == r[3]
        assert shards[r[0]] == r[1][0]   # in the shard named by the ImageID's first character
        assert all(0 <= float(v) <= 1 for v in r[4:8]) and len(r[9].split(";")) >= 3


def test_masks_match_ground_truth_and_some_differ_in_resolution(mirror):
    gt = load_ground_truth(mirror)["splits"]["train"]
    v5 = os.path.join(mirror, "openimages", "v5", "train-masks")
    sizes = set()
    for iid, e in gt.items():
        jpg = Image.open(os.path.join(mirror, "images", "train", iid + ".jpg"))
        assert jpg.size == (e["width"], e["height"])
        with zipfile.ZipFile(os.path.join(v5, "train-masks-%s.zip" % iid[0])) as zf:
            for o in e["objects"]:
                png = np.asarray(Image.open(io.BytesIO(zf.read(o["mask_path"]))))
                s = e["mask_scale"]
                sizes.add(png.shape[0] // e["height"])
                assert png.shape == (e["height"] * s, e["width"] * s)
                want = rle_decode(o["mask_rle"], e["height"], e["width"])
                assert np.array_equal(png[::s, ::s] > 127, want) and want.sum() == o["area"] > 100
                ys, xs = np.nonzero(want)
                assert o["box"] == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
    assert sizes == {1, 2}


def test_classes_have_distinct_colours(mirror):
    """Learnable: mean object colour clusters by class, far from the other classes'."""
    gt = load_ground_truth(mirror)["splits"]["train"]
    colours = {}
    for iid, e in gt.items():
        img = np.asarray(Image.open(os.path.join(mirror, "images", "train", iid + ".jpg")), dtype=float)
        for o in e["objects"]:
            m = rle_decode(o["mask_rle"], e["height"], e["width"])
            colours.setdefault(o["class"], []).append(img[m].mean(axis=0))
    means = {c: np.mean(v, axis=0) for c, v in colours.items()}
    assert set(means) == {"Cat", "Dog", "Teddy bear", "Horse", "Bird"}
    for c, v in colours.items():
        spread = max(np.linalg.norm(x - means[c]) for x in v)
        nearest = min(np.linalg.norm(means[c] - means[o]) for o in means if o != c)
        assert spread < nearest / 2, (c, spread, nearest)


def test_server_ranges_head_and_errors(mirror):
    path = os.path.join(mirror, "openimages", "v5", "classes-segmentation.txt")
    data = open(path, "rb").read()
    with running(mirror) as srv:
        url = srv.base_url + "v5/classes-segmentation.txt"
        r = requests.get(url, headers={"Range": "bytes=2-5"})
        assert r.status_code == 206 and r.content == data[2:6]
        assert r.headers["Content-Range"] == "bytes 2-5/%d" % len(data) and r.headers["Accept-Ranges"] == "bytes"
        assert requests.get(url, headers={"Range": "bytes=-4"}).content == data[-4:]
        assert requests.get(url, headers={"Range": "bytes=3-"}).content == data[3:]
        bad = requests.get(url, headers={"Range": "bytes=%d-" % len(data)})
        assert bad.status_code == 416 and bad.headers["Content-Range"] == "bytes */%d" % len(data)
        h = requests.head(url)
        assert h.status_code == 200 and int(h.headers["Content-Length"]) == len(data) and h.content == b""
        assert requests.get(srv.base_url + "../ground_truth.json").status_code == 404
        assert requests.get(srv.root_url + "openimages/../../etc/passwd").status_code == 404
        assert requests.get(srv.images_url + "train/nope.jpg").status_code == 404
        srv.add_fault("*/classes-segmentation.txt", "status", times=1, arg=503)
        assert requests.get(url).status_code == 503 and requests.get(url).content == data
    with running(mirror, no_range=True, latency_ms=50) as srv:
        t = time.monotonic()
        r = requests.get(srv.base_url + "v5/classes-segmentation.txt", headers={"Range": "bytes=2-5"})
        assert time.monotonic() - t >= 0.05
        assert r.status_code == 200 and r.content == data and "Accept-Ranges" not in r.headers
