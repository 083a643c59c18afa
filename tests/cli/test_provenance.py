"""Data provenance (issue 18, build 1): a data folder records its source; a download or a run
asked for another source refuses it, naming both; the demo keeps its own folders."""
import json
import os
import subprocess
import sys

import pytest

from download.core import SourceMismatch, check_source, same_source

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL = "https://storage.googleapis.com/openimages/"


def write_manifest(class_dir, base, imgs="https://s3.amazonaws.com/open-images-dataset/"):
    os.makedirs(class_dir, exist_ok=True)
    with open(os.path.join(class_dir, "manifest.json"), "w") as f:
        json.dump({"class": "Cat", "sources": {"base_url": base, "images_url": imgs}}, f)


def test_same_source_ignores_only_a_local_mirrors_port():
    assert same_source("http://127.0.0.1:4000/openimages/", "http://127.0.0.1:5123/openimages")
    assert not same_source("http://127.0.0.1:4000/openimages/", REAL)
    assert not same_source("http://mirror.example/oi/", "http://mirror.example:8080/oi/")
    assert same_source(REAL, REAL.rstrip("/"))


def test_check_source_names_both(tmp_path):
    write_manifest(str(tmp_path / "cat"), "http://127.0.0.1:4000/openimages/")
    with pytest.raises(SourceMismatch) as e:
        check_source(str(tmp_path / "cat"), REAL, "https://s3.amazonaws.com/open-images-dataset/")
    assert "http://127.0.0.1:4000/openimages/" in str(e.value) and REAL in str(e.value)
    check_source(str(tmp_path / "dog"), REAL, REAL)  # nothing downloaded yet: fine


def test_download_refuses_a_folder_from_another_source(tmp_path):
    from download import download_class
    from download.mirror import build_mirror
    from download.mirror.testing import running

    build_mirror(str(tmp_path / "mirror"), images_per_split=2, image_classes=["Cat"])
    write_manifest(str(tmp_path / "data" / "cat"), REAL)  # as if fetched from the real Open Images
    with running(str(tmp_path / "mirror")) as srv:
        with pytest.raises(SourceMismatch, match="was downloaded from " + REAL):
            download_class("Cat", out=str(tmp_path / "data"), splits=("validation",),
                           base_url=srv.base_url, images_url=srv.images_url, progress=False)
    assert not (tmp_path / "data" / "cat" / "validation").exists()


def test_train_no_download_refuses_data_of_another_source(tmp_path):
    write_manifest(str(tmp_path / "data" / "cat"), "http://127.0.0.1:4000/openimages/")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--class", "Cat", "--epochs", "1",
                           "--no-download", "--weights", "none", "--data", str(tmp_path / "data"),
                           "--logs", str(tmp_path / "logs"), "--base-url", REAL],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "http://127.0.0.1:4000/openimages/" in proc.stderr and REAL in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_uses_its_own_folders():
    src = open(os.path.join(REPO, "bench", "demo.py"), encoding="utf8").read()
    assert '"--data", os.path.join(args.dir, "data")' in src and 'os.path.join(args.dir, "logs")' in src
