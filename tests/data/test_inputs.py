"""Tests for mrcnn.data.inputs: per-image training samples and their validation.

NumPy only (no model): references are built with mrcnn.utils on the same masks.
"""
import logging
import re

import numpy as np
import pytest

from mrcnn import utils
from mrcnn.structures.anchors import get_anchors
from mrcnn.data.inputs import (UnusableSample, check_image, load_image_gt, prepare_sample,
                               sample_problems, validate_dataset)
from tests.train_helpers import FaultyShapes, ManyInstances, faulty_shapes, shapes, train_config


@pytest.fixture(scope="module")
def config():
    return train_config(RPN_TRAIN_ANCHORS_PER_IMAGE=256)


@pytest.fixture(scope="module")
def anchors(config):
    return get_anchors(config, (64, 64), normalized=False)


def _non_empty(ds):
    return [i for i in ds.image_ids if ds.load_mask(i)[0].shape[-1]]


def test_load_image_gt_pads_a_wide_image_and_shifts_boxes(config):
    ds = shapes(3, seed=4, size=64)
    ds.image_info[0].update(height=48)          # re-register image 0 as 48 x 64
    ds.image_info[0]["shapes"] = [("square", (200, 10, 10), (24, 30, 8))]
    image, meta, class_ids, bbox, mask = load_image_gt(ds, config, 0, use_mini_mask=False)
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert meta.shape == (config.IMAGE_META_SIZE,)
    assert class_ids.dtype == np.int32 and class_ids.tolist() == [1]
    assert bbox.dtype == np.int32 and mask.dtype == bool and mask.shape == (64, 64, 1)
    meta_d = utils.parse_image_meta(meta[None])
    # 48 x 64 fits without scaling: 8 rows of zero padding above and below.
    assert meta_d["window"][0].tolist() == [8, 0, 56, 64]
    assert meta_d["original_image_shape"][0].tolist() == [48, 64, 3]
    raw_mask, _ = ds.load_mask(0)
    ref = np.pad(raw_mask, [(8, 8), (0, 0), (0, 0)])
    np.testing.assert_array_equal(mask, ref)
    np.testing.assert_array_equal(bbox, utils.extract_bboxes(ref))
    assert bbox.tolist() == [[16 + 8, 22, 33 + 8, 39]]
    assert (image[:8] == 0).all() and (image[56:] == 0).all()
    # The image's own source's classes are active: all 4 (BG + 3 shapes).
    assert meta_d["active_class_ids"][0].tolist() == [1, 1, 1, 1]


def test_load_image_gt_mini_masks_match_minimize_mask(config):
    ds = shapes(4, seed=2)
    i = _non_empty(ds)[0]
    image, _, class_ids, bbox, mini = load_image_gt(ds, config, i)
    _, _, _, _, full = load_image_gt(ds, config, i, use_mini_mask=False)
    assert mini.shape == tuple(config.MINI_MASK_SHAPE) + (len(class_ids),)
    np.testing.assert_array_equal(mini, utils.minimize_mask(bbox, full, config.MINI_MASK_SHAPE))


def test_prepare_sample_shapes_dtypes_and_targets(config, anchors):
    ds = shapes(4, seed=3)
    i = _non_empty(ds)[0]
    s = prepare_sample(ds, config, i, anchors, rng=np.random.default_rng(0))
    g = config.MAX_GT_INSTANCES
    expect = {"image": ((64, 64, 3), np.uint8), "active_class_ids": ((4,), np.int32),
              "rpn_match": ((len(anchors),), np.int32), "rpn_bbox": ((256, 4), np.float32),
              "gt_class_ids": ((g,), np.int32), "gt_boxes": ((g, 4), np.float32),
              "gt_masks": ((28, 28, g), np.bool_)}
    assert set(s) == set(expect)
    for k, (shape, dtype) in expect.items():
        assert s[k].shape == shape and s[k].dtype == dtype, k
    _, _, class_ids, bbox, mini = load_image_gt(ds, config, i)
    n = len(class_ids)
    assert 1 <= n < g
    np.testing.assert_array_equal(s["gt_class_ids"][:n], class_ids)
    assert (s["gt_class_ids"][n:] == 0).all() and (s["gt_boxes"][n:] == 0).all()
    assert not s["gt_masks"][..., n:].any()
    np.testing.assert_allclose(s["gt_boxes"][:n], utils.norm_boxes(bbox, (64, 64)), rtol=1e-6)
    np.testing.assert_array_equal(s["gt_masks"][..., :n], mini)
    m = s["rpn_match"]
    assert set(np.unique(m)) <= {-1, 0, 1}
    pos = int((m == 1).sum())
    assert 1 <= pos <= 128 and int((m != 0).sum()) == 256
    assert (s["rpn_bbox"][:pos] != 0).any(axis=1).all() and (s["rpn_bbox"][pos:] == 0).all()


def test_image_without_instances_gives_zero_gt_and_only_negative_anchors(config, anchors):
    ds = shapes(6, seed=5, empty_fraction=0.5)
    empty = [i for i in ds.image_ids if ds.load_mask(i)[0].shape[-1] == 0]
    assert empty
    s = prepare_sample(ds, config, empty[0], anchors, rng=np.random.default_rng(0))
    assert not s["gt_class_ids"].any() and not s["gt_boxes"].any() and not s["gt_masks"].any()
    assert int((s["rpn_match"] == -1).sum()) == config.RPN_TRAIN_ANCHORS_PER_IMAGE == 256
    assert int((s["rpn_match"] == 1).sum()) == 0
    assert not s["rpn_bbox"].any()


def test_base_dataset_load_mask_empty_array_is_an_image_without_instances(config, anchors):
    """matterport's default load_mask returns np.empty([0, 0, 0]): treated as no instances."""
    class NoMasks(utils.Dataset):
        def load_image(self, image_id):
            return np.full((64, 64, 3), 90, np.uint8)

        def load_mask(self, image_id):
            return np.empty([0, 0, 0]), np.empty([0], np.int32)

    ds = NoMasks()
    ds.add_class("x", 1, "thing")
    ds.add_image("x", 0, None)
    ds.prepare()
    config = train_config(NUM_CLASSES=2, RPN_TRAIN_ANCHORS_PER_IMAGE=256)
    s = prepare_sample(ds, config, 0, anchors, rng=np.random.default_rng(0))
    assert not s["gt_class_ids"].any() and int((s["rpn_match"] == -1).sum()) == 256


def test_more_instances_than_max_gt_are_subsampled_reproducibly(anchors):
    config = train_config(NUM_CLASSES=2, MAX_GT_INSTANCES=8)
    ds = ManyInstances(30)
    all_boxes = utils.norm_boxes(utils.extract_bboxes(ds.load_mask(0)[0]), (64, 64))
    picks = []
    for seed in (0, 0, 1):
        s = prepare_sample(ds, config, 0, anchors, rng=np.random.default_rng(seed))
        assert (s["gt_class_ids"] == 1).all()
        assert s["gt_masks"].reshape(-1, 8).any(axis=0).all()
        # Every kept box is one of the 30 originals, each at most once.
        rows = [int(np.flatnonzero(np.abs(all_boxes - b).max(1) < 1e-6)[0]) for b in s["gt_boxes"]]
        assert len(set(rows)) == 8
        picks.append(rows)
    assert picks[0] == picks[1] and picks[0] != picks[2]


def test_callable_augmentation_changes_image_and_masks_together(config):
    ds = shapes(3, seed=7)
    i = _non_empty(ds)[0]

    def flip(image, masks, rng):
        return image[:, ::-1], masks[:, ::-1]

    image, _, _, _, mask = load_image_gt(ds, config, i, use_mini_mask=False)
    image_f, _, _, _, mask_f = load_image_gt(ds, config, i, augmentation=flip, use_mini_mask=False)
    np.testing.assert_array_equal(image_f, image[:, ::-1])
    np.testing.assert_array_equal(mask_f, mask[:, ::-1])


def test_imgaug_pipeline_runs_through_the_numpy2_shim(config):
    pytest.importorskip("mrcnn.data.imgaug_compat")
    from mrcnn.data.imgaug_compat import import_imgaug

    iaa = import_imgaug().augmenters
    ds = shapes(3, seed=7)
    i = _non_empty(ds)[0]
    image, _, _, _, mask = load_image_gt(ds, config, i, use_mini_mask=False)
    aug = iaa.Sequential([iaa.Fliplr(1.0), iaa.Multiply((1.0, 1.0))])
    image_f, _, _, _, mask_f = load_image_gt(ds, config, i, augmentation=aug, use_mini_mask=False)
    np.testing.assert_array_equal(image_f, image[:, ::-1])
    np.testing.assert_array_equal(mask_f, mask[:, ::-1])


# ------------------------------------------------------------------ validation
def test_check_image_accepts_clean_and_empty_images():
    ds = shapes(8, seed=1, empty_fraction=0.5)
    assert all(check_image(ds, i) == [] for i in ds.image_ids)


def test_check_image_names_each_fault():
    ds = faulty_shapes(8, {0: "empty_mask", 1: "size", 2: "class", 3: "raise"}, seed=3)
    assert all(ds.load_mask(i)[0].shape[-1] for i in (0, 2))   # faults need instances
    assert "empty mask for instance(s) [0]" in "; ".join(check_image(ds, 0))
    assert "mask size (72, 64) differs from image size (64, 64)" in "; ".join(check_image(ds, 1))
    assert "class ids [4] outside 1..3" in "; ".join(check_image(ds, 2))
    assert "load_mask failed" in "; ".join(check_image(ds, 3))
    assert "unreadable" in "; ".join(check_image(ds, 3))
    assert all(check_image(ds, i) == [] for i in range(4, 8))


def test_check_image_size_mismatch_found_when_info_lacks_size():
    """Without height/width in image_info the image is decoded to get its size."""
    class NoSizeInfo(utils.Dataset):
        def load_image(self, image_id):
            return np.zeros((64, 64, 3), np.uint8)

        def load_mask(self, image_id):
            mask = np.zeros((72 if image_id == 0 else 64, 64, 1), bool)
            mask[10:20, 10:20] = True
            return mask, np.ones(1, np.int32)

    ds = NoSizeInfo()
    ds.add_class("x", 1, "thing")
    ds.add_image("x", 0, None)
    ds.add_image("x", 1, None)
    ds.prepare()
    assert any("mask size (72, 64) differs from image size (64, 64)" in p for p in check_image(ds, 0))
    assert check_image(ds, 1) == []


def test_check_image_count_mismatch_and_wrong_rank():
    class Broken(FaultyShapes):
        def load_mask(self, image_id):
            mask, ids = super().load_mask(image_id)
            if image_id == 0:
                return mask, np.concatenate([ids, [1]])
            return mask[..., 0], ids

    ds = Broken()
    ds.load_shapes(2, 64, 64, seed=3)
    ds.prepare()
    assert any("masks but" in p for p in check_image(ds, 0))
    assert any("expected [H, W, N]" in p for p in check_image(ds, 1))


def test_check_image_accepts_crowd_instances():
    """matterport's COCO loader marks crowds with negative class ids; they are valid."""
    class Crowds(FaultyShapes):
        def load_mask(self, image_id):
            mask, ids = super().load_mask(image_id)
            return mask, -ids

    ds = Crowds()
    ds.load_shapes(2, 64, 64, seed=3)
    ds.prepare()
    assert check_image(ds, 0) == []


def test_validate_dataset_skips_and_reports_without_crashing(caplog):
    faults = {0: "empty_mask", 1: "size", 2: "class", 3: "raise"}
    ds = faulty_shapes(10, faults, seed=3)
    with caplog.at_level(logging.WARNING, logger="mrcnn.data.inputs"):
        good, bad = validate_dataset(ds)
    assert good == list(range(4, 10))
    assert sorted(bad) == [0, 1, 2, 3]
    assert all(bad[i] for i in bad)
    text = caplog.text
    for i in range(4):
        assert f"Skipping image {i} " in text
    # A subset of ids is checked on its own.
    good, bad = validate_dataset(ds, image_ids=[1, 5])
    assert good == [5] and list(bad) == [1]


def test_prepare_sample_rejects_nan_pixels_and_wrong_channels(config, anchors):
    ds = faulty_shapes(2, {0: "nan_image"}, seed=3)
    with pytest.raises(ValueError, match=r"Image 0 .*NaN or infinite"):
        prepare_sample(ds, config, 0, anchors, rng=np.random.default_rng(0))

    class Rgba(FaultyShapes):
        def load_image(self, image_id):
            image = super().load_image(image_id)
            return np.concatenate([image, image[..., :1]], axis=-1)

    ds = Rgba()
    ds.load_shapes(1, 64, 64, seed=3)
    ds.prepare()
    with pytest.raises(ValueError, match=r"shape \(64, 64, 4\); expected \[H, W, 3\]"):
        prepare_sample(ds, config, 0, anchors, rng=np.random.default_rng(0))


def test_load_image_gt_rejects_masks_of_another_size_than_the_image(config):
    """image_info can claim the masks' size (so check_image passes); loading still refuses."""
    class WrongInfo(utils.Dataset):
        def load_image(self, image_id):
            return np.zeros((64, 64, 3), np.uint8)

        def load_mask(self, image_id):
            mask = np.zeros((72, 64, 1), bool)
            mask[10:20, 10:20] = True
            return mask, np.ones(1, np.int32)

    ds = WrongInfo()
    ds.add_class("x", 1, "thing")
    ds.add_image("x", 0, None, height=72, width=64)
    ds.prepare()
    assert check_image(ds, 0) == []
    with pytest.raises(ValueError, match=r"Image 0 .*masks \(72, 64, 1\).*image of shape \(64, 64, 3\)"):
        load_image_gt(ds, config, 0)


def test_prepare_sample_refuses_bad_annotations_with_their_problems(config, anchors):
    """The load-time check of training: the problems of check_image, on the loaded sample."""
    ds = faulty_shapes(5, {0: "empty_mask", 1: "size", 2: "class", 3: "raise"}, seed=3)
    for i, text in ((0, "empty mask for instance(s) [0]"), (1, "differs from image size"),
                    (2, "class ids [4] outside 1..3")):
        with pytest.raises(UnusableSample, match=rf"Image {i} .*{re.escape(text)}") as info:
            prepare_sample(ds, config, i, anchors, rng=np.random.default_rng(0))
        assert info.value.image_id == i and any(text in p for p in info.value.problems)
    with pytest.raises(OSError, match="unreadable"):
        prepare_sample(ds, config, 3, anchors, rng=np.random.default_rng(0))
    prepare_sample(ds, config, 4, anchors, rng=np.random.default_rng(0))


def test_sample_problems_counts_and_crowds():
    mask = np.zeros((8, 8, 2), bool)
    mask[1:3, 1:3] = True
    assert sample_problems(mask, [1, -2], (8, 8), 3) == []
    assert sample_problems(mask, [1], (8, 8), 3) == ["2 masks but 1 class ids"]
    assert sample_problems(np.zeros((0, 0, 0)), [], (8, 8), 3) == []
    assert sample_problems(np.zeros((8, 8)), [1], (8, 8), 3)[0].endswith("expected [H, W, N]")
