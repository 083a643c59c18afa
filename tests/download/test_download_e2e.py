"""End to end: the downloader against a generated local mirror, checked against its ground truth."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from download import download_class
from download.classes import ClassResolutionError
from download.mirror import build_mirror, load_ground_truth
from download.mirror.build import rle_decode
from download.mirror.testing import running

FAST = dict(progress=False, timeout=5, retries=3, backoff=0.01, workers=8)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("mirror"))
    build_mirror(d, images_per_split=6, splits=("train", "validation"), seed=3)
    with running(d) as srv:
        yield d, srv


@pytest.fixture(scope="module")
def cat(mirror, tmp_path_factory):
    d, srv = mirror
    out = str(tmp_path_factory.mktemp("out"))
    m = download_class("cat", out=out, splits=("train", "validation"), base_url=srv.base_url,
                       images_url=srv.images_url, **FAST)
    return out, m


def gt_class_images(gt, split, mid):
    return {iid: e for iid, e in gt["splits"][split].items() if any(o["mid"] == mid for o in e["objects"])}


def test_manifest_counts_match_ground_truth(mirror, cat):
    d, _ = mirror
    out, m = cat
    gt = load_ground_truth(d)
    assert m["class"] == "Cat" and m["mid"] == "/m/01yrx" and m["class_dir"] == "cat"
    for split in ("train", "validation"):
        want = gt_class_images(gt, split, "/m/01yrx")
        n_obj = sum(o["mid"] == "/m/01yrx" for e in want.values() for o in e["objects"])
        r = m["splits"][split]
        assert (r["images"], r["masks"], r["objects"], r["failed"]) == (len(want), n_obj, n_obj, [])
        assert sorted(f[:-4] for f in os.listdir(os.path.join(out, "cat", split, "images"))) == sorted(want)
    on_disk = json.load(open(os.path.join(out, "cat", "manifest.json")))
    assert on_disk["totals"] == m["totals"]
    assert m["sources"]["annotations"]["train"].endswith("v5/train-annotations-object-segmentation.csv")


def test_files_are_the_servers_bytes(mirror, cat):
    d, _ = mirror
    out, _ = cat
    for split in ("train", "validation"):
        for f in os.listdir(os.path.join(out, "cat", split, "images")):
            a = open(os.path.join(out, "cat", split, "images", f), "rb").read()
            assert a == open(os.path.join(d, "images", split, f), "rb").read()


def test_dataset_loads_the_ground_truth_masks(mirror, cat):
    """OpenImagesDataset (the training reader) gives the generated masks pixel for pixel."""
    from dataset import OpenImagesDataset
    d, _ = mirror
    out, _ = cat
    gt = load_ground_truth(d)
    for split in ("train", "validation"):
        ds = OpenImagesDataset()
        ds.load_openimages(os.path.join(out, "cat"), split)
        ds.prepare()
        want = gt_class_images(gt, split, "/m/01yrx")
        assert ds.num_images == len(want)
        scaled = 0
        for i in ds.image_ids:
            info = ds.image_info[i]
            e = want[info["id"]]
            scaled += e["mask_scale"] != 1
            masks, class_ids = ds.load_mask(i)
            rec = info["record"]
            assert masks.shape == (e["height"], e["width"], len(rec.objects))
            assert [ds.class_names[c] for c in class_ids] == ["Cat"] * len(rec.objects)
            by_box = {o["box_id"]: o for o in e["objects"]}
            for k, obj in enumerate(rec.objects):
                o = by_box[obj.extra["box_id"]]
                np.testing.assert_array_equal(masks[..., k], rle_decode(o["mask_rle"], e["height"], e["width"]))
                np.testing.assert_allclose(obj.box, o["box"], atol=1e-3)
        assert scaled > 0, "some masks must be at another resolution than their JPEG"


def test_rerun_fetches_nothing(mirror, cat):
    d, srv = mirror
    out, m = cat
    srv.reset_log()
    m2 = download_class("Cat", out=out, splits=("train", "validation"), base_url=srv.base_url,
                        images_url=srv.images_url, **FAST)
    assert srv.log == []
    assert m2["totals"] == m["totals"]
    assert m2["last_run"]["skipped"] == {"train": m["totals"]["images"] - m["splits"]["validation"]["images"],
                                         "validation": m["splits"]["validation"]["images"]}


def test_limit_is_a_seeded_sample_with_all_masks(mirror, tmp_path):
    d, srv = mirror
    gt = load_ground_truth(d)
    want = gt_class_images(gt, "train", "/m/0bt9lr")

    def run(seed, out):
        download_class("Dog", out=str(out), splits="train", limit=3, seed=seed, base_url=srv.base_url,
                       images_url=srv.images_url, **FAST)
        return sorted(f[:-4] for f in os.listdir(os.path.join(out, "dog", "train", "images")))
    a, b, c = run(0, tmp_path / "a"), run(0, tmp_path / "b"), run(7, tmp_path / "c")
    assert len(a) == 3 and a == b and a != c
    assert a != sorted(want)[:3]   # a sample, not the first ids
    for iid in a:
        n = sum(o["mid"] == "/m/0bt9lr" for o in want[iid]["objects"])
        masks = [f for f in os.listdir(tmp_path / "a" / "dog" / "train" / "masks") if f.startswith(iid)]
        assert len(masks) == n


@pytest.mark.parametrize("query", ["teddy bear", "TEDDY BEAR", "  Teddy   bear ", "/m/0kmg4"])
def test_class_names_any_case_and_mids(mirror, tmp_path, query):
    d, srv = mirror
    m = download_class(query, out=str(tmp_path), splits="validation", limit=1, base_url=srv.base_url,
                       images_url=srv.images_url, **FAST)
    assert (m["class"], m["mid"], m["class_dir"]) == ("Teddy bear", "/m/0kmg4", "teddy_bear")
    assert m["splits"]["validation"]["images"] == 1


def test_unknown_class_and_class_without_masks(mirror, tmp_path):
    d, srv = mirror
    kw = dict(out=str(tmp_path), base_url=srv.base_url, images_url=srv.images_url, **FAST)
    with pytest.raises(ClassResolutionError, match=r"Unknown class 'Kat'; did you mean Cat\?"):
        download_class("Kat", **kw)
    with pytest.raises(ClassResolutionError, match=r"'Tree' \(/m/07j7r\) has boxes but no segmentation masks"):
        download_class("tree", **kw)


def test_cli_two_classes_and_env_mirror(mirror, tmp_path):
    d, srv = mirror
    env = dict(os.environ, OPENIMAGES_BASE_URL=srv.base_url, OPENIMAGES_IMAGES_URL=srv.images_url)
    r = subprocess.run([sys.executable, "-m", "download", "--class", "cat", "--class", "Horse", "--splits",
                        "validation", "--limit", "2", "--out", str(tmp_path), "--workers", "4"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for cdir in ("cat", "horse"):
        m = json.load(open(tmp_path / cdir / "manifest.json"))
        assert m["splits"]["validation"]["images"] == 2
        assert m["sources"]["base_url"] == srv.base_url
    bad = subprocess.run([sys.executable, "-m", "download", "--class", "Kat", "--out", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "did you mean Cat?" in bad.stderr


def test_cli_is_light_and_never_imports_tensorflow(mirror, tmp_path):
    d, srv = mirror
    code = ("import sys, download.__main__ as m\n"
            "assert not {'requests', 'PIL', 'numpy', 'tensorflow', 'keras'} & set(sys.modules), sys.modules.keys()\n"
            "from download import download_class\n"
            "download_class('cat', out=%r, splits='validation', limit=1, base_url=%r, images_url=%r,"
            " progress=False)\n"
            "bad = {'tensorflow', 'keras'} & set(sys.modules)\n"
            "assert not bad, bad\n" % (str(tmp_path), srv.base_url, srv.images_url))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    h = subprocess.run([sys.executable, "-m", "download", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert h.returncode == 0 and "--base-url" in h.stdout and "--limit" in h.stdout


def test_images_are_fetched_concurrently(mirror, tmp_path):
    """Not a timing test: the server sees several requests in flight at once."""
    d, _ = mirror
    with running(d, latency_ms=30) as srv:
        download_class("Dog", out=str(tmp_path), splits="train", base_url=srv.base_url, images_url=srv.images_url,
                       **dict(FAST, workers=8))
        assert srv.max_inflight >= 4
    with running(d, latency_ms=30) as srv:
        download_class("Dog", out=str(tmp_path / "seq"), splits="train", base_url=srv.base_url,
                       images_url=srv.images_url, **dict(FAST, workers=1))
        assert srv.max_inflight == 1   # workers=1 really is one request at a time
