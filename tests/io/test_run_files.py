"""mrcnn.io.run_files: results.csv rows, results.png, best/last links, TensorBoard tags, crops.
(tests/cli/test_tensorboard.py checks the main summary tags and one crop through mrcnn.io.runs;
the atomic writes themselves are mrcnn.io.fsio's.)"""
import csv
import os

import numpy as np
import pytest

from mrcnn.io import run_files


def _leftovers(folder, keep):
    return sorted(set(os.listdir(folder)) - set(keep))


def test_read_results_without_a_file(tmp_path):
    assert run_files.read_results(str(tmp_path)) == []
    assert run_files.plot_results(str(tmp_path)) is None
    assert os.listdir(tmp_path) == []


def test_append_results_replaces_sorts_and_grows_columns(tmp_path):
    d = str(tmp_path)
    run_files.append_results(d, {"epoch": 2, "loss": 0.5})
    run_files.append_results(d, {"epoch": 1, "loss": 1.0 / 3})
    rows = run_files.append_results(d, {"epoch": 2, "loss": 0.25, "val_segm_AP": 0.125})
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    with open(tmp_path / run_files.RESULTS_CSV, newline="") as f:
        lines = list(csv.reader(f))
    assert lines == [["epoch", "loss", "val_segm_AP"], ["1", "0.333333", ""], ["2", "0.25", "0.125"]]
    assert run_files.read_results(d) == [{"epoch": "1", "loss": "0.333333", "val_segm_AP": ""},
                                         {"epoch": "2", "loss": "0.25", "val_segm_AP": "0.125"}]
    assert _leftovers(d, [run_files.RESULTS_CSV]) == []   # written atomically: no temp files


def test_plot_results_writes_a_png(tmp_path):
    d = str(tmp_path)
    for epoch in (1, 2):
        run_files.append_results(d, {"epoch": epoch, "loss": 1.0 / epoch, "val_loss": 1.5 / epoch,
                                     "val_segm_AP": 0.1 * epoch, "lr": 0.01})
    path = run_files.plot_results(d)
    assert path == os.path.join(d, run_files.RESULTS_PNG)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert _leftovers(d, [run_files.RESULTS_CSV, run_files.RESULTS_PNG]) == []


def test_link_or_copy_hard_links_and_replaces(tmp_path):
    src, dst = tmp_path / "mask_rcnn_x_0002.h5", tmp_path / "best.h5"
    src.write_bytes(b"epoch 2")
    dst.write_bytes(b"old best")
    run_files.link_or_copy(str(src), str(dst))
    assert os.path.samefile(src, dst) and dst.read_bytes() == b"epoch 2"   # no second copy on disk
    assert _leftovers(tmp_path, [src.name, dst.name]) == []


def test_link_or_copy_falls_back_to_a_copy(tmp_path, monkeypatch):
    def no_links(a, b):
        raise OSError(95, "Operation not supported")

    src, dst = tmp_path / "a.h5", tmp_path / "last.h5"
    src.write_bytes(b"weights" * 1000)
    dst.write_bytes(b"older")
    monkeypatch.setattr(os, "link", no_links)        # a filesystem without hard links
    run_files.link_or_copy(str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes() and not os.path.samefile(src, dst)
    assert _leftovers(tmp_path, [src.name, dst.name]) == []


@pytest.mark.parametrize("key,tag", [
    ("loss", "loss/total"), ("val_loss", "loss/total"), ("rpn_bbox_loss", "loss/rpn_bbox"),
    ("val_mrcnn_class_loss", "loss/mrcnn_class"), ("lr", "lr"), ("val_learning_rate", "lr"),
    ("bbox_AP50", "metrics/bbox_AP50"), ("val_matterport_mAP50", "metrics/matterport_mAP50"),
    ("validation_loss_x", "metrics/validation_loss_x"),   # only the "val_" prefix is dropped
])
def test_summary_tag(key, tag):
    assert run_files.summary_tag(key) == tag


def _crop_reference(image, pad, white):
    """The bounding box of the non-white pixels, grown by ``pad`` and clipped (a plain loop)."""
    ys, xs = [], []
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            if any(int(c) < white for c in image[y, x, :3]):
                ys.append(y)
                xs.append(x)
    if not ys:
        return image
    return image[max(min(ys) - pad, 0):max(ys) + pad + 1, max(min(xs) - pad, 0):max(xs) + pad + 1]


@pytest.mark.parametrize("seed", range(4))
def test_crop_to_content_matches_a_reference(seed):
    rng = np.random.default_rng(seed)
    image = np.full((30, 40, 4), 255, np.uint8)
    for _ in range(rng.integers(1, 4)):
        y, x = rng.integers(0, 30), rng.integers(0, 40)
        image[y, x, rng.integers(0, 3)] = rng.integers(0, 245)
    image[rng.integers(0, 30), rng.integers(0, 40), 3] = 0   # alpha is not ink
    pad = int(rng.integers(0, 8))
    out = run_files.crop_to_content(image, pad=pad)
    np.testing.assert_array_equal(out, _crop_reference(image, pad, 245))


def test_crop_to_content_known_box():
    image = np.full((20, 30, 3), 250, np.uint8)   # 250 >= white=245: blank
    image[5:8, 10:12] = 244
    assert run_files.crop_to_content(image, pad=2).shape == (7, 6, 3)
    assert run_files.crop_to_content(image, pad=0, white=244).shape == (20, 30, 3)   # nothing is ink
    assert run_files.crop_to_content(image, pad=100).shape == (20, 30, 3)            # pad clipped
