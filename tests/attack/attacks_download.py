"""Attacks on the downloader (download/): lying servers and hostile files, all on 127.0.0.1."""
from __future__ import annotations

import os

from tests.attack import CLEAR, SKIPPED, SURVIVED, attack
from tests.attack.builders import bomb_png
from tests.attack.server import lying_server

CAT = "/m/01yrx"


def cat_mirror(tmp, n=2):
    """A one-split mirror (validation) and {image id: [Cat mask names]} of its Cat images."""
    from download.mirror import build_mirror, load_ground_truth
    d = os.path.join(tmp, "mirror")
    build_mirror(d, images_per_split=n, splits=("validation",), seed=11)
    gt = load_ground_truth(d)["splits"]["validation"]
    cats = {i: [o["mask_path"] for o in e["objects"] if o["mid"] == CAT] for i, e in gt.items()}
    return d, {i: m for i, m in cats.items() if m}


def download(srv, out, **kw):
    from download import download_class
    args = dict(out=out, splits="validation", base_url=srv.base_url, images_url=srv.images_url,
                progress=False, timeout=2.0, retries=2, backoff=0.01, workers=4)
    args.update(kw)
    return download_class("Cat", **args)


def replace_member(d, name, data):
    from download.mirror import faults
    faults.remove_member(d, "validation", name)
    faults.add_member(d, "validation", name[0], name, data)


def split_report(manifest):
    return manifest["splits"]["validation"]


@attack(4, "a 20000x20000 mask PNG (decompression bomb) in a shard", timeout=60)
def mask_bomb(tmp):
    d, cats = cat_mirror(tmp)
    victim, others = sorted(cats)[0], sorted(cats)[1:]
    replace_member(d, cats[victim][0], bomb_png())
    out = os.path.join(tmp, "out")
    for _ in range(2):  # a rerun meets the same file and reports it the same way
        with lying_server(d) as srv:
            m = download(srv, out)
        r = split_report(m)
        failed = {f["image_id"]: f["reason"] for f in r["failed"]}
        assert list(failed) == [victim], r["failed"]
        assert "400,000,000 pixels" in failed[victim] and "limit" in failed[victim], failed
        assert r["images"] == len(others) == len(cats) - 1
    assert os.path.isfile(os.path.join(out, "cat", "manifest.json"))
    assert not os.path.exists(os.path.join(out, "cat", "validation", "annotations", victim + ".xml"))
    return SKIPPED


def _flip_member_bytes(d, name):
    """fn for srv.lie: flip one byte inside ``name``'s stored data when a response covers it."""
    from download.mirror import faults
    from download.mirror.testing import zip_member_spans
    lo, hi = zip_member_spans(faults.shard_path(d, "validation", name[0]))[name]

    def fn(body, start):
        k = hi - 8 - start  # a byte of the member's data (its local header comes first)
        if 0 <= k < len(body) and start <= lo:
            body = body[:k] + bytes([body[k] ^ 0xFF]) + body[k + 1:]
        return body
    return fn


@attack(5, "a corrupted mask response (once, then always)", timeout=60)
def corrupt_mask_response(tmp):
    d, cats = cat_mirror(tmp)
    victim = sorted(cats)[0]
    name = cats[victim][0]
    shard = "/openimages/v5/validation-masks/validation-masks-%s.zip" % name[0]
    out = os.path.join(tmp, "out")
    mask = os.path.join(out, "cat", "validation", "masks", name)
    xml = os.path.join(out, "cat", "validation", "annotations", victim + ".xml")
    with lying_server(d) as srv:  # once: the retry repairs it within the run
        srv.lie(shard, _flip_member_bytes(d, name), times=1)
        m = download(srv, out, zip_mode="full")
    assert split_report(m)["failed"] == [] and os.path.isfile(mask) and os.path.isfile(xml)
    out = os.path.join(tmp, "out2")
    mask = mask.replace(os.sep + "out" + os.sep, os.sep + "out2" + os.sep)
    xml = xml.replace(os.sep + "out" + os.sep, os.sep + "out2" + os.sep)
    with lying_server(d) as srv:  # always: reported, not marked complete
        srv.lie(shard, _flip_member_bytes(d, name), times=-1)
        m = download(srv, out, zip_mode="full")
    failed = {f["image_id"]: f["reason"] for f in split_report(m)["failed"]}
    assert list(failed) == [victim] and name in failed[victim] and "CRC" in failed[victim], failed
    assert not os.path.exists(xml) and not os.path.exists(mask)
    with lying_server(d) as srv:  # a healthy server: the rerun repairs it
        m = download(srv, out, zip_mode="full")
    assert split_report(m)["failed"] == [] and os.path.isfile(mask) and os.path.isfile(xml)
    return SURVIVED


HTML = b"<html><body><h1>Service temporarily unavailable</h1></body></html>\n"


@attack(6, "an HTML error page served with 200 for the class list", timeout=60)
def poisoned_class_list(tmp):
    from download.classes import ClassResolutionError
    d, cats = cat_mirror(tmp)
    out = os.path.join(tmp, "out")
    with lying_server(d) as srv:
        srv.lie("*/class-descriptions-boxable.csv", lambda body, start: HTML, times=-1)
        try:
            download(srv, out)
            raise AssertionError("an HTML class list was accepted")
        except ClassResolutionError as e:
            assert "not an Open Images class list" in str(e) and "class-descriptions" in str(e), e
    cache = os.path.join(out, ".cache")
    cached = os.listdir(cache) if os.path.isdir(cache) else []
    assert not any("class-descriptions" in n for n in cached), cached
    with lying_server(d) as srv:  # healthy again: nothing poisoned was kept
        m = download(srv, out)
    assert split_report(m)["images"] == len(cats)
    return CLEAR


@attack(6, "a poisoned cached class list: error names the file, --refresh re-reads it", timeout=60)
def poisoned_cache_refresh(tmp):
    from download.classes import ClassResolutionError, DESCRIPTIONS, cache_file
    d, cats = cat_mirror(tmp)
    out = os.path.join(tmp, "out")
    with lying_server(d) as srv:
        download(srv, out)
        path = cache_file(os.path.join(out, ".cache"), srv.base_url, DESCRIPTIONS)
        with open(path, "w") as f:  # a valid-looking but stale list (an older release) without Cat
            f.write("/m/0bt9lr,Dog\n")
        try:
            download(srv, out)
            raise AssertionError("a stale class list gave no error")
        except ClassResolutionError as e:
            assert path in str(e) and "--refresh" in str(e), e
        m = download(srv, out, refresh=True)
    assert split_report(m)["images"] == len(cats)
    with lying_server(d) as other:  # another mirror (another port) never reads this cache
        assert cache_file(os.path.join(out, ".cache"), other.base_url, DESCRIPTIONS) != path
    return CLEAR


@attack(8, "a server sending 1 byte per second", timeout=40)
def trickling_server(tmp):
    import time
    d, cats = cat_mirror(tmp)
    victim = sorted(cats)[0]
    out = os.path.join(tmp, "out")
    with lying_server(d, max_seconds=15) as srv:
        srv.slow("/images/validation/%s.jpg" % victim, 1, times=-1)
        t = time.monotonic()
        m = download(srv, out, timeout=1.5, retries=1, min_rate=20000)  # a byte a second never trips the 1.5 s read timeout
        took = time.monotonic() - t
    failed = {f["image_id"]: f["reason"] for f in split_report(m)["failed"]}
    assert list(failed) == [victim] and "minimum rate" in failed[victim], failed
    assert took < 10, took
    assert split_report(m)["images"] == len(cats) - 1
    with lying_server(d) as srv:  # the rerun completes it
        m = download(srv, out)
    assert split_report(m)["failed"] == []
    return SKIPPED


def _csv(d):
    from download.mirror import faults
    return faults.csv_path(d, "validation")


def _objects(out):
    """{image id: number of <object>s} in the downloaded XML."""
    ann = os.path.join(out, "cat", "validation", "annotations")
    return {n[:-4]: open(os.path.join(ann, n)).read().count("<object>") for n in sorted(os.listdir(ann))}


@attack(11, "every Cat row of the CSV twice", timeout=60)
def duplicate_rows(tmp):
    d, cats = cat_mirror(tmp)
    with lying_server(d) as srv:
        clean = os.path.join(tmp, "clean")
        download(srv, clean)
        path = _csv(d)
        lines = open(path).read().splitlines(keepends=True)
        dup = [ln for ln in lines[1:] if CAT in ln]
        with open(path, "a") as f:
            f.writelines(dup)
        m = download(srv, os.path.join(tmp, "out"))
    r = split_report(m)
    assert r["duplicate_rows"] == len(dup) > 0, r
    assert sum("duplicate row" in x["reason"] for x in r["rejected"]) == len(dup)
    assert _objects(os.path.join(tmp, "out")) == _objects(clean)
    return SKIPPED


@attack(15, "a fully quoted (valid) segmentation CSV", timeout=60)
def quoted_csv(tmp):
    import csv
    d, cats = cat_mirror(tmp)
    path = _csv(d)
    rows = list(csv.reader(open(path, newline="")))
    with open(path, "w", newline="") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    with lying_server(d) as srv:
        m = download(srv, os.path.join(tmp, "out"))
    assert split_report(m)["images"] == len(cats) and split_report(m)["failed"] == []
    return SURVIVED


@attack(15, "one malformed Cat row among good ones", timeout=60)
def malformed_row(tmp):
    d, cats = cat_mirror(tmp)
    with open(_csv(d), "a") as f:
        f.write("ffff000000000000_m01yrx_00000001.png,ffff000000000000,/m/01yrx,00000001,0.1,0.2\n")
    with lying_server(d) as srv:
        m = download(srv, os.path.join(tmp, "out"))
    r = split_report(m)
    assert r["images"] == len(cats) and r["malformed_rows"] == 1, r
    assert any("malformed row" in x["reason"] and "6 columns" in x["reason"] for x in r["rejected"])
    return SKIPPED


@attack(15, "a CSV without its final newline: no 'rerun to resume'", timeout=60)
def csv_without_newline(tmp):
    from download.__main__ import main
    d, _ = cat_mirror(tmp)
    data = open(_csv(d), "rb").read()
    open(_csv(d), "wb").write(data[:-1])
    import contextlib
    import io
    with lying_server(d) as srv, contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(["--class", "Cat", "--splits", "validation", "--out", os.path.join(tmp, "out"),
                   "--base-url", srv.base_url, "--images-url", srv.images_url, "--retries", "1", "-q"])
    text = err.getvalue()
    assert rc == 1 and "rerun" not in text.replace("rerunning will not help", "") and "will not help" in text, text
    return CLEAR
