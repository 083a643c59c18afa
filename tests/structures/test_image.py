"""mrcnn.structures.image, imported directly. tests/matterport/test_utils.py checks the basic
cases through ``mrcnn.utils`` (square 100x200 -> 128, none, pad64 of 50x70, crop's shape, one
mold/unmold and meta round trip); here: pixel values against a NumPy ramp, the min_scale and
max_dim rules, pad64's padding, crops against slices, 2-D images, and batch round trips."""
import random
import types

import numpy as np
import pytest

from mrcnn.structures import image as im


def _ramp(h, w):
    """float32 [h, w, 3]: 2*x + 3*y + channel, linear, so bilinear resizing is exact inside."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([2 * x + 3 * y + c for c in range(3)], -1)


def test_facade_reexports():
    from mrcnn import utils
    for name in ("resize", "resize_image", "mold_image", "unmold_image", "compose_image_meta",
                 "parse_image_meta"):
        assert getattr(utils, name) is getattr(im, name)


def test_square_pixels_match_a_linear_ramp():
    image = _ramp(40, 60)
    out, window, scale, padding, crop = im.resize_image(image, min_dim=80, max_dim=128, mode="square")
    assert scale == 2 and out.shape == (128, 128, 3) and out.dtype == np.float32 and crop is None
    assert window == (24, 4, 104, 124) and padding == [(24, 24), (4, 4), (0, 0)]
    y1, x1, y2, x2 = window
    assert not out[:y1].any() and not out[y2:].any() and not out[:, :x1].any() and not out[:, x2:].any()
    # output pixel centre (i + 0.5) maps to input coordinate (i + 0.5) / scale - 0.5
    yo, xo = np.mgrid[0:80, 0:120].astype(np.float32)
    yi, xi = (yo + 0.5) / 2 - 0.5, (xo + 0.5) / 2 - 0.5
    expected = np.stack([2 * xi + 3 * yi + c for c in range(3)], -1)
    inner = (slice(1, -1), slice(1, -1))       # the outermost ring extrapolates: clamped
    np.testing.assert_allclose(out[y1:y2, x1:x2][inner], expected[inner], atol=1e-4)


@pytest.mark.parametrize("shape,kwargs,scale,out_shape,window", [
    # the short side reaches min_dim, unless the long side would pass max_dim (square only)
    ((100, 300), dict(min_dim=128, max_dim=256), 256 / 300, (256, 256), (85, 0, 170, 256)),
    # min_dim never shrinks; min_scale still enlarges
    ((100, 100), dict(min_dim=50, max_dim=256, min_scale=1.5), 1.5, (256, 256), (53, 53, 203, 203)),
    ((100, 100), dict(min_dim=50, max_dim=256, min_scale=0.5), 1, (256, 256), (78, 78, 178, 178)),
    # pad64: no max_dim cap, each side padded to a multiple of 64 (the extra pixel at the end)
    ((100, 700), dict(min_dim=64, max_dim=128, mode="pad64"), 1, (128, 704), (14, 2, 114, 702)),
    ((30, 50), dict(min_dim=64, mode="pad64"), 64 / 30, (64, 128), (0, 10, 64, 117)),
    ((30, 50), dict(min_dim=64, min_scale=3, mode="pad64"), 3, (128, 192), (19, 21, 109, 171)),
])
def test_scale_and_window_rules(shape, kwargs, scale, out_shape, window):
    image = np.full(shape + (3,), 9, np.uint8)
    out, got_window, got_scale, padding, _ = im.resize_image(image, **kwargs)
    assert got_scale == pytest.approx(scale) and out.shape == out_shape + (3,) and out.dtype == np.uint8
    assert got_window == window
    assert [(a, out_shape[i] - b) for i, (a, b) in enumerate(padding[:2])] == [
        (window[0], window[2]), (window[1], window[3])]
    y1, x1, y2, x2 = window
    assert (out[y1:y2, x1:x2] == 9).all() and out.sum() == 9 * (y2 - y1) * (x2 - x1) * 3


def test_pad64_requires_min_dim_multiple_of_64():
    with pytest.raises(AssertionError, match="multiple of 64"):
        im.resize_image(np.zeros((10, 10, 3)), min_dim=100, mode="pad64")


def test_crop_is_a_slice_of_the_image():
    image = np.random.default_rng(1).integers(0, 256, (100, 90, 3)).astype(np.uint8)
    random.seed(5)
    y, x = random.randint(0, 36), random.randint(0, 26)   # what resize_image draws without rng
    random.seed(5)
    out, window, scale, padding, crop = im.resize_image(image, min_dim=64, max_dim=128, mode="crop")
    assert crop == (y, x, 64, 64) and scale == 1 and window == (0, 0, 64, 64)
    assert padding == [(0, 0), (0, 0), (0, 0)]
    np.testing.assert_array_equal(out, image[y:y + 64, x:x + 64])
    seen = set()
    for seed in range(20):
        out, _, _, _, crop = im.resize_image(image, 64, 128, mode="crop", rng=np.random.default_rng(seed))
        y, x = crop[:2]
        assert 0 <= y <= 36 and 0 <= x <= 26
        np.testing.assert_array_equal(out, image[y:y + 64, x:x + 64])
        seen.add(crop)
    assert len(seen) > 5     # the offset really is random


def test_crop_scales_up_first():
    image = _ramp(32, 48)
    out, window, scale, _, crop = im.resize_image(image, min_dim=64, mode="crop",
                                                  rng=np.random.default_rng(0))
    assert scale == 2 and out.shape == (64, 64, 3) and crop[1] <= 96 - 64 and crop[0] == 0
    full = im.resize(image, (64, 96), preserve_range=True)
    np.testing.assert_array_equal(out, full[:, crop[1]:crop[1] + 64])


def test_two_dimensional_image():
    image = np.ones((50, 70), np.float32)
    out, window, _, padding, _ = im.resize_image(image, min_dim=50, max_dim=128, mode="square")
    assert out.shape == (128, 128) and window == (39, 29, 89, 99)
    assert out.sum() == 50 * 70 and (out[39:89, 29:99] == 1).all()


def test_mold_unmold_batch():
    config = types.SimpleNamespace(MEAN_PIXEL=np.array([10.0, 20.0, 30.0]))
    images = np.random.default_rng(2).integers(0, 256, (2, 4, 5, 3)).astype(np.uint8)
    molded = im.mold_image(images, config)
    assert molded.dtype == np.float32
    np.testing.assert_array_equal(molded, images.astype(np.float32) - [10, 20, 30])
    np.testing.assert_array_equal(im.unmold_image(molded, config), images)
    # unmold rounds to the nearest integer and clips to 0..255
    odd = np.array([[[-11.0, 0.6, 300.0]]], np.float32)
    np.testing.assert_array_equal(im.unmold_image(odd, config), [[[0, 21, 255]]])


def test_image_meta_batch_round_trip():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(4):
        original = tuple(int(v) for v in rng.integers(1, 2000, 2)) + (3,)
        window = tuple(int(v) for v in np.sort(rng.integers(0, 1024, 4)))
        active = rng.integers(0, 2, 6)
        rows.append((1000 + i, original, (1024, 1024, 3), window, float(rng.uniform(0.1, 3)), active))
    metas = np.stack([im.compose_image_meta(*r) for r in rows])
    assert metas.dtype == np.float64 and metas.shape == (4, 12 + 6)
    parsed = im.parse_image_meta(metas)
    for key, dtype in (("image_id", np.int32), ("original_image_shape", np.int32),
                       ("image_shape", np.int32), ("window", np.int32), ("scale", np.float32),
                       ("active_class_ids", np.int32)):
        assert parsed[key].dtype == dtype
    np.testing.assert_array_equal(parsed["image_id"], [r[0] for r in rows])
    np.testing.assert_array_equal(parsed["original_image_shape"], [r[1] for r in rows])
    np.testing.assert_array_equal(parsed["image_shape"], [r[2] for r in rows])
    np.testing.assert_array_equal(parsed["window"], [r[3] for r in rows])
    np.testing.assert_array_equal(parsed["scale"], np.float32([r[4] for r in rows]))
    np.testing.assert_array_equal(parsed["active_class_ids"], [r[5] for r in rows])
    one = im.parse_image_meta(metas[2])
    assert one["image_id"] == 1002 and one["window"].tolist() == list(rows[2][3])
