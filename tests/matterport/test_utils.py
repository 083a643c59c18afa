"""Tests for mrcnn.utils (NumPy references and known values)."""
import numpy as np
import pytest

from mrcnn import utils


# ---------------------------------------------------------------- Dataset

class _Toy(utils.Dataset):
    def load_toy(self):
        self.add_class("toy", 1, "cat, domestic")
        self.add_class("toy", 2, "dog")
        self.add_class("toy", 1, "cat again")  # duplicate: skipped
        self.add_class("other", 7, "car")
        for i in range(3):
            self.add_image("toy", image_id="img%d" % i, path="/nowhere/%d.jpg" % i, extra=i)


def test_dataset_prepare_maps():
    ds = _Toy()
    ds.load_toy()
    ds.prepare()
    assert ds.class_info[0] == {"source": "", "id": 0, "name": "BG"}
    assert ds.num_classes == 4
    assert ds.class_names == ["BG", "cat", "dog", "car"]
    assert list(ds.class_ids) == [0, 1, 2, 3]
    assert ds.num_images == 3 and list(ds.image_ids) == [0, 1, 2]
    assert ds.map_source_class_id("toy.2") == 2
    assert ds.map_source_class_id("other.7") == 3
    assert ds.get_source_class_id(3, "other") == 7
    assert ds.image_from_source_map["toy.img1"] == 1
    assert ds.sources == ["", "other", "toy"]
    assert ds.source_class_ids["toy"] == [0, 1, 2]
    assert ds.source_class_ids["other"] == [0, 3]
    assert ds.image_info[2]["extra"] == 2
    assert ds.source_image_link(1) == "/nowhere/1.jpg"
    assert ds.image_reference(0) == ""
    with pytest.raises(AssertionError):
        ds.get_source_class_id(3, "toy")


def test_dataset_rejects_dot_in_source():
    with pytest.raises(AssertionError):
        utils.Dataset().add_class("a.b", 1, "x")


def test_dataset_base_load_mask_empty():
    mask, ids = utils.Dataset().load_mask(0)
    assert mask.shape == (0, 0, 0) and ids.shape == (0,) and ids.dtype == np.int32


@pytest.mark.parametrize("mode,shape", [("L", (5, 7)), ("RGB", (5, 7, 3)), ("RGBA", (5, 7, 4)),
                                        ("P", (5, 7))])
def test_dataset_load_image_modes(tmp_path, mode, shape):
    from PIL import Image
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, size=shape, dtype=np.uint8)
    im = Image.fromarray(arr, mode="L" if mode == "P" else mode)
    if mode == "P":
        im = im.convert("P")
    path = tmp_path / "x.png"
    im.save(path)
    ds = utils.Dataset()
    ds.add_image("t", 0, str(path))
    ds.prepare()
    out = ds.load_image(0)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    if mode == "L":
        assert (out == arr[..., None]).all()
    elif mode in ("RGB", "RGBA"):
        assert (out == arr[..., :3]).all()


def test_dataset_load_image_missing_file_names_it(tmp_path):
    ds = utils.Dataset()
    ds.add_image("t", 0, str(tmp_path / "missing.jpg"))
    with pytest.raises(OSError, match="missing.jpg"):
        ds.load_image(0)


# ---------------------------------------------------------------- boxes

def test_extract_bboxes_matches_loop_and_empty():
    rng = np.random.default_rng(1)
    mask = np.zeros((20, 30, 4), bool)
    mask[3:7, 5:9, 0] = True
    mask[..., 1] = rng.random((20, 30)) > 0.97
    mask[19, 29, 3] = True  # touches the far corner: exclusive end = shape
    boxes = utils.extract_bboxes(mask)
    assert boxes.dtype == np.int32 and boxes.shape == (4, 4)
    assert boxes[0].tolist() == [3, 5, 7, 9]
    ys, xs = np.where(mask[..., 1])
    assert boxes[1].tolist() == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
    assert boxes[2].tolist() == [0, 0, 0, 0]
    assert boxes[3].tolist() == [19, 29, 20, 30]
    assert utils.extract_bboxes(np.zeros((5, 5, 0), bool)).shape == (0, 4)


def _random_boxes(rng, n, size=50):
    yx = rng.integers(0, size, (n, 2))
    hw = rng.integers(1, size // 2, (n, 2))
    return np.concatenate([yx, yx + hw], axis=1).astype(np.float32)


def test_compute_overlaps_known_and_reference():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 5]], float)
    np.testing.assert_allclose(utils.compute_overlaps(a, b), [[1.0, 25 / 175, 0.0, 0.5]])
    rng = np.random.default_rng(2)
    b1, b2 = _random_boxes(rng, 7), _random_boxes(rng, 5)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    ref = np.stack([utils.compute_iou(b2[j], b1, area(b2[j:j + 1])[0], area(b1)) for j in range(5)], 1)
    np.testing.assert_allclose(utils.compute_overlaps(b1, b2), ref, rtol=1e-6)
    assert utils.compute_overlaps(np.zeros((0, 4)), b2).shape == (0, 5)


def _nms_reference(boxes, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(utils.compute_overlaps(boxes[i:i + 1], boxes[k:k + 1])[0, 0] <= threshold
               for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_non_max_suppression_reference(seed):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 40, size=30)
    scores = rng.random(40)
    keep = utils.non_max_suppression(boxes, scores, 0.3)
    assert keep.dtype == np.int32
    assert keep.tolist() == _nms_reference(boxes, scores, 0.3)
    assert utils.non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_box_deltas_round_trip_and_known():
    rng = np.random.default_rng(3)
    boxes, gt = _random_boxes(rng, 10), _random_boxes(rng, 10)
    deltas = utils.box_refinement(boxes, gt)
    np.testing.assert_allclose(utils.apply_box_deltas(boxes, deltas), gt, rtol=1e-4, atol=1e-3)
    d = utils.box_refinement(np.array([[0, 0, 10, 20]]), np.array([[5, 0, 25, 20]]))
    np.testing.assert_allclose(d, [[1.0, 0.0, np.log(2), 0.0]], atol=1e-6)


def test_norm_denorm_boxes():
    boxes = np.array([[0, 0, 100, 200], [10, 20, 30, 40]])
    norm = utils.norm_boxes(boxes, (101, 201))
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm[0], [0, 0, 99 / 100, 199 / 200])
    back = utils.denorm_boxes(norm, (101, 201))
    assert back.dtype == np.int32 and (back == boxes).all()


# ---------------------------------------------------------------- resizing

def test_resize_image_square_known():
    image = np.full((100, 200, 3), 7, np.uint8)
    out, window, scale, padding, crop = utils.resize_image(image, 64, 128, 0, "square")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert scale == 0.64 and window == (32, 0, 96, 128) and crop is None
    assert padding == [(32, 32), (0, 0), (0, 0)]
    assert (out[32:96] == 7).all() and (out[:32] == 0).all() and (out[96:] == 0).all()


def test_resize_image_none_pad64_crop():
    image = np.arange(50 * 70 * 3, dtype=np.float32).reshape(50, 70, 3)
    out, window, scale, padding, crop = utils.resize_image(image, mode="none")
    assert out is image and window == (0, 0, 50, 70) and scale == 1
    out, window, scale, padding, _ = utils.resize_image(image, min_dim=64, mode="pad64")
    assert scale == 64 / 50 and out.shape == (64, 128, 3) and out.dtype == np.float32
    assert window == (0, 19, 64, 109) and padding == [(0, 0), (19, 19), (0, 0)]
    out, window, scale, padding, crop = utils.resize_image(
        image, min_dim=64, mode="crop", rng=np.random.default_rng(0))
    assert out.shape == (64, 64, 3) and window == (0, 0, 64, 64)
    assert crop[2:] == (64, 64) and 0 <= crop[1] <= 90 - 64
    with pytest.raises(ValueError, match="stretch"):
        utils.resize_image(image, 64, 128, mode="stretch")


def test_resize_mask_follows_resize_image():
    image = np.zeros((100, 200, 3), np.uint8)
    mask = np.zeros((100, 200, 2), bool)
    mask[20:60, 50:150, 0] = True
    image[mask[..., 0]] = 255
    out, window, scale, padding, crop = utils.resize_image(image, 64, 128, 0, "square")
    m = utils.resize_mask(mask, scale, padding, crop)
    assert m.shape == (128, 128, 2) and m.dtype == bool and not m[..., 1].any()
    bright = out[..., 0] > 127
    iou = (bright & m[..., 0]).sum() / (bright | m[..., 0]).sum()
    assert iou > 0.95
    assert utils.resize_mask(np.zeros((100, 200, 0), bool), scale, padding).shape == (128, 128, 0)
    cropped = utils.resize_mask(mask, 1, None, crop=(10, 40, 64, 64))
    assert (cropped[..., 0] == mask[10:74, 40:104, 0]).all()


def test_minimize_expand_round_trip():
    mask = np.zeros((60, 80, 2), bool)
    mask[10:50, 5:45, 0] = True
    yy, xx = np.mgrid[:60, :80]
    mask[..., 1] = (yy - 30) ** 2 + (xx - 55) ** 2 < 15 ** 2
    boxes = utils.extract_bboxes(mask)
    mini = utils.minimize_mask(boxes, mask, (28, 28))
    assert mini.shape == (28, 28, 2) and mini.dtype == bool and mini[..., 0].all()
    full = utils.expand_mask(boxes, mini, mask.shape)
    assert (full[..., 0] == mask[..., 0]).all()
    iou = (full[..., 1] & mask[..., 1]).sum() / (full[..., 1] | mask[..., 1]).sum()
    assert iou > 0.9
    with pytest.raises(ValueError, match="instance 0"):
        utils.minimize_mask(np.array([[5, 5, 5, 9]]), mask[..., :1], (28, 28))


def test_unmold_mask_box_and_clipping():
    ones = np.ones((28, 28), np.float32)
    full = utils.unmold_mask(ones, (10, 20, 30, 50), (64, 64, 3))
    assert full.dtype == bool and full.sum() == 20 * 30 and full[10:30, 20:50].all()
    part = utils.unmold_mask(ones, (-5, 50, 10, 70), (64, 64))
    assert part.sum() == 10 * 14 and part[0:10, 50:64].all()
    assert not utils.unmold_mask(ones, (5, 5, 5, 9), (64, 64)).any()
    molded = utils.mold_mask(full, (10, 20, 30, 50))
    assert molded.shape == (28, 28) and molded.min() == 1.0


def _smooth_masks(rng, n, size=28):
    """Random blobs: a few Gaussians summed, scaled to [0, 1]."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        for _ in range(3):
            cy, cx, s = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(3, 8)
            out[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        out[i] /= out[i].max()
    return out


def test_paste_masks_matches_unmold_mask():
    import time
    rng = np.random.default_rng(0)
    n, shape = 40, (200, 240)
    masks = _smooth_masks(rng, n)
    y1 = rng.integers(-20, 180, n)
    x1 = rng.integers(-20, 220, n)
    boxes = np.stack([y1, x1, y1 + rng.integers(3, 120, n), x1 + rng.integers(3, 120, n)], 1)
    t0 = time.perf_counter()
    fast = utils.paste_masks(masks, boxes, shape)
    t1 = time.perf_counter()
    slow = np.stack([utils.unmold_mask(masks[i], boxes[i], shape) for i in range(n)], -1)
    t2 = time.perf_counter()
    print("paste_masks %.1f ms vs unmold_mask loop %.1f ms for %d masks"
          % ((t1 - t0) * 1e3, (t2 - t1) * 1e3, n))
    assert fast.shape == (200, 240, n) and fast.dtype == bool
    for i in range(n):
        union = (fast[..., i] | slow[..., i]).sum()
        if union:
            assert (fast[..., i] & slow[..., i]).sum() / union > 0.95
        assert (fast[..., i] ^ slow[..., i]).sum() <= 4  # only a few boundary pixels
    assert utils.paste_masks(np.zeros((0, 28, 28)), np.zeros((0, 4)), shape).shape == (200, 240, 0)


# ---------------------------------------------------------------- meta

def test_mold_unmold_image_and_meta():
    from mrcnn.config import Config
    config = Config()
    image = np.random.default_rng(0).integers(0, 256, (4, 5, 3)).astype(np.uint8)
    molded = utils.mold_image(image, config)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded[0, 0], image[0, 0] - np.array([123.7, 116.8, 103.9]), rtol=1e-5)
    assert (utils.unmold_image(molded, config) == image).all()
    meta = utils.compose_image_meta(7, (100, 200, 3), (128, 128, 3), (32, 0, 96, 128), 0.64,
                                    [1, 0, 1, 1])
    assert meta.shape == (12 + 4,)
    parsed = utils.parse_image_meta(np.stack([meta, meta]))
    assert parsed["image_id"].tolist() == [7, 7]
    assert parsed["original_image_shape"][0].tolist() == [100, 200, 3]
    assert parsed["window"][1].tolist() == [32, 0, 96, 128]
    assert parsed["scale"][0] == np.float32(0.64)
    assert parsed["active_class_ids"][0].tolist() == [1, 0, 1, 1]
    assert utils.parse_image_meta(meta)["image_shape"].tolist() == [128, 128, 3]


def test_metrics_reexported():
    import mrcnn.evaluation.metrics
    for name in ("compute_overlaps_masks", "compute_matches", "compute_ap", "compute_ap_range",
                 "compute_recall", "trim_zeros"):
        assert getattr(utils, name) is getattr(mrcnn.evaluation.metrics, name)


def test_no_tensorflow_import():
    import subprocess
    import sys
    code = ("import mrcnn.utils, mrcnn.structures.anchors, sys; "
            "assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- download

@pytest.fixture
def local_server(tmp_path):
    """Serve tmp_path/www over HTTP on 127.0.0.1."""
    import functools
    import http.server
    import threading
    root = tmp_path / "www"
    root.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_download_trained_weights_local(local_server, tmp_path):
    root, base = local_server
    payload = b"\x89HDF\r\n\x1a\n" + np.random.default_rng(0).bytes(300_000)
    (root / "w.h5").write_bytes(payload)
    (root / "page.h5").write_bytes(b"<html>not found</html>")
    target = tmp_path / "out" / "mask_rcnn_coco.h5"
    assert utils.download_trained_weights(target, verbose=0, url=base + "/w.h5") == str(target)
    assert target.read_bytes() == payload
    bad = tmp_path / "out" / "bad.h5"
    with pytest.raises(OSError, match="not an HDF5"):
        utils.download_trained_weights(bad, verbose=0, url=base + "/page.h5")
    with pytest.raises(OSError, match="local path"):
        utils.download_trained_weights(bad, verbose=0, url=base + "/missing.h5")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mask_rcnn_coco.h5"]


def test_download_without_network_says_pass_local_path(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(OSError, match="pass its local path"):
        utils.download_trained_weights(tmp_path / "w.h5", verbose=0,
                                       url="http://127.0.0.1:%d/w.h5" % port, timeout=5)
    assert not list(tmp_path.iterdir())
    assert utils.COCO_MODEL_URL == \
        "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"
