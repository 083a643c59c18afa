"""Tests for mrcnn.data.imgaug_compat: imgaug 0.4.0 on NumPy 2, matterport's mask handling."""
import warnings

import numpy as np
import pytest

from mrcnn.data import imgaug_compat
from mrcnn.data.imgaug_compat import apply_imgaug, apply_numpy_shim, import_imgaug

warnings.filterwarnings("ignore", category=DeprecationWarning, module="imageio")

ia = import_imgaug()
import imgaug.augmenters as iaa  # noqa: E402  (needs the shim first)


def l_scene(size=10):
    """An asymmetric L-shaped mask and an image that is bright exactly on it."""
    masks = np.zeros((size, size, 2), bool)
    masks[1, 2:6, 0] = True
    masks[2:4, 2, 0] = True
    masks[6:9, 5:7, 1] = True
    image = np.zeros((size, size, 3), np.uint8)
    image[masks[..., 0]] = [200, 150, 100]
    image[masks[..., 1]] = [90, 60, 30]
    return image, masks


def test_import_works_and_sctypes_has_numpy1_meaning():
    assert ia.__version__ == "0.4.0"
    assert np.float64 in np.sctypes["float"] and np.uint8 in np.sctypes["uint"]
    assert np.complex is complex and np.float is float and np.int is int
    assert apply_numpy_shim() == []          # idempotent


def test_shim_never_overrides_existing_attributes(monkeypatch):
    assert np.bool is np.bool_               # NumPy 2's own np.bool is kept
    sentinel = object()
    monkeypatch.setattr(np, "float", sentinel, raising=False)
    monkeypatch.delattr(np, "complex", raising=False)
    monkeypatch.delattr(np, "sctypes", raising=False)
    assert sorted(apply_numpy_shim()) == ["complex", "sctypes"]
    assert np.float is sentinel and np.complex is complex
    assert np.int8 in np.sctypes["int"]
    if int(np.__version__.split(".")[0]) >= 2:
        assert "object" not in vars(np) and "str" not in vars(np)   # reserved by NumPy


def test_fliplr_flips_image_and_masks_together():
    image, masks = l_scene()
    out_i, out_m = apply_imgaug(iaa.Fliplr(1.0), image, masks)
    np.testing.assert_array_equal(out_i, image[:, ::-1])
    np.testing.assert_array_equal(out_m, masks[:, ::-1])
    assert out_m.dtype == bool and out_i.dtype == np.uint8


def test_affine_rotate_90_on_known_mask():
    image, masks = l_scene()
    out_i, out_m = apply_imgaug(iaa.Affine(rotate=90), image, masks)
    # imgaug's positive rotation is clockwise in image coordinates.
    np.testing.assert_array_equal(out_m, np.rot90(masks, -1))
    np.testing.assert_array_equal(out_i, np.rot90(image, -1))


def test_colour_augmenters_leave_masks_unchanged():
    image, masks = l_scene()
    out_i, out_m = apply_imgaug(iaa.Multiply(0.5), image, masks)
    np.testing.assert_array_equal(out_m, masks)
    np.testing.assert_array_equal(out_i, image // 2)
    # np.complex path (frequency noise) runs and still leaves masks alone.
    out_i, out_m = apply_imgaug(iaa.BlendAlphaFrequencyNoise(foreground=iaa.Multiply(2.0)), image, masks)
    np.testing.assert_array_equal(out_m, masks)


def test_meta_augmenters_keep_image_and_masks_aligned():
    image, masks = l_scene(16)
    ia.seed(3)
    seq = iaa.Sequential([
        iaa.Fliplr(0.5), iaa.Flipud(0.5),
        iaa.OneOf([iaa.Affine(rotate=90), iaa.Affine(rotate=180), iaa.Affine(rotate=270)]),
        iaa.Sometimes(0.5, iaa.Affine(rotate=180)),
        iaa.SomeOf((0, 2), [iaa.Multiply((0.6, 0.9)), iaa.Fliplr(1.0)]),
    ])
    for _ in range(5):
        out_i, out_m = apply_imgaug(seq, image, masks)
        np.testing.assert_array_equal(out_i.max(-1) > 0, out_m.any(-1))
        np.testing.assert_array_equal(out_m.sum((0, 1)), masks.sum((0, 1)))


def test_shape_change_is_refused_with_a_clear_message():
    image, masks = l_scene()
    with pytest.raises(ValueError, match="changed the image shape"):
        apply_imgaug(iaa.Resize({"height": 5, "width": 5}), image, masks)


def test_zero_instances():
    image, _ = l_scene()
    out_i, out_m = apply_imgaug(iaa.Affine(rotate=90), image, np.zeros((10, 10, 0), bool))
    assert out_m.shape == (10, 10, 0) and out_i.shape == image.shape


def test_mask_augmenter_list_is_matterports():
    assert imgaug_compat.MASK_AUGMENTERS == ["Sequential", "SomeOf", "OneOf", "Sometimes", "Fliplr",
                                             "Flipud", "CropAndPad", "Affine", "PiecewiseAffine"]
