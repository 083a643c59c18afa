"""Tests for mrcnn.data.data_pipeline.InputPipeline: determinism, static shapes, no dropped images."""
import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.structures.anchors import get_anchors
from mrcnn.data.data_pipeline import InputPipeline
from mrcnn.data.inputs import prepare_sample
from mrcnn.data.shapes import ShapesDataset
from tests.train_helpers import faulty_shapes, shapes, train_config


@pytest.fixture(scope="module")
def config():
    return train_config()


@pytest.fixture(scope="module")
def dataset():
    return shapes(7, seed=11, empty_fraction=0.3)


def _batches(pipe, epoch, steps, **kwargs):
    return [{k: v.numpy() for k, v in b.items()} for b in pipe.stream(epoch, steps, **kwargs)]


def _equal(a, b):
    return len(a) == len(b) and all(
        set(x) == set(y) and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def test_same_epoch_and_seed_give_identical_streams(config, dataset):
    pipe = InputPipeline(dataset, config, dataset.image_ids, seed=3)
    first = _batches(pipe, 2, 3)
    again = _batches(pipe, 2, 3)
    # A second pipeline object and a single-threaded map give the same samples.
    other = _batches(InputPipeline(dataset, config, dataset.image_ids, seed=3, num_parallel_calls=1), 2, 3)
    assert _equal(first, again) and _equal(first, other)


def test_epochs_and_seeds_differ(config, dataset):
    pipe = InputPipeline(dataset, config, dataset.image_ids, seed=3)
    e0, e1 = pipe.epoch_order(0, 3), pipe.epoch_order(1, 3)
    assert not np.array_equal(e0, e1)
    seeded = InputPipeline(dataset, config, dataset.image_ids, seed=4).epoch_order(0, 3)
    assert not np.array_equal(e0, seeded)
    # Same image in two epochs: same image pixels, but RPN subsampling draws anew.
    a, b = _batches(pipe, 0, 3), _batches(pipe, 1, 3)
    assert not _equal(a, b)


def test_sample_randomness_comes_from_seed_epoch_and_position(config, dataset):
    """A stream's sample equals prepare_sample with rng (seed, epoch, position)."""
    pipe = InputPipeline(dataset, config, dataset.image_ids, seed=5)
    batch = _batches(pipe, 1, 2)[1]
    order = pipe.epoch_order(1, 2)
    anchors = get_anchors(config, (64, 64), normalized=False)
    for j in range(2):
        position = 2 + j
        ref = prepare_sample(dataset, config, int(order[position]), anchors,
                             rng=np.random.default_rng([5, 1, position]))
        assert batch["image_id"][j] == order[position]
        for k, v in ref.items():
            np.testing.assert_array_equal(batch[k][j], v, err_msg=k)


def test_batches_have_static_shapes(config, dataset):
    pipe = InputPipeline(dataset, config, dataset.image_ids, seed=0)
    ds = pipe.stream(0, 2)
    spec = ds.element_spec
    assert spec == pipe.element_spec()
    for k, s in spec.items():
        assert s.shape.is_fully_defined(), k
        assert s.shape[0] == config.BATCH_SIZE
    assert spec["image"] == tf.TensorSpec((2, 64, 64, 3), tf.uint8)
    assert spec["gt_masks"].shape == (2, 28, 28, config.MAX_GT_INSTANCES)
    for b in ds:
        for k, v in b.items():
            assert tuple(v.shape) == tuple(spec[k].shape), k


@pytest.mark.parametrize("configured", [None, 0])
def test_one_pass_keeps_every_image_including_empty_ones(config, configured):
    ds = shapes(9, seed=12, empty_fraction=0.5)
    empty = {i for i in ds.image_ids if ds.load_mask(i)[0].shape[-1] == 0}
    assert len(empty) == round(9 * 0.5)
    pipe = InputPipeline(ds, config, ds.image_ids, seed=1)
    steps = pipe.steps_per_epoch(configured)
    assert steps == math.ceil(9 / 2) == 5
    batches = _batches(pipe, 0, steps)
    assert len(batches) == steps
    seen = np.concatenate([b["image_id"] for b in batches])
    # 10 slots for 9 images: every image once, the last slot from the next permutation.
    assert sorted(set(seen[:9].tolist())) == list(range(9)) and len(seen) == 10
    gt_empty = [int(i) for b in batches for i, g in zip(b["image_id"], b["gt_class_ids"]) if not g.any()]
    assert set(gt_empty) == empty


def test_configured_steps_repeat_the_data(config, dataset):
    pipe = InputPipeline(dataset, config, dataset.image_ids, seed=1)
    assert pipe.steps_per_epoch(10) == 10
    order = pipe.epoch_order(0, 10)
    assert len(order) == 20
    # Each full pass is a permutation of the 7 images.
    assert sorted(order[:7].tolist()) == list(range(7)) and sorted(order[7:14].tolist()) == list(range(7))


def test_no_shuffle_keeps_dataset_order(config, dataset):
    pipe = InputPipeline(dataset, config, [4, 1, 6], shuffle=False, seed=1)
    assert pipe.epoch_order(0, 3).tolist() == [4, 1, 6, 4, 1, 6]
    assert pipe.epoch_order(5, 1).tolist() == [4, 1]


def test_shards_partition_the_epoch_and_keep_per_position_randomness(config, dataset):
    pipe = InputPipeline(dataset, config, dataset.image_ids, seed=2)
    full = _batches(pipe, 0, 2)
    shards = [_batches(pipe, 0, 2, shard=(i, 2), batch_size=1) for i in range(2)]
    flat_full = [{k: b[k][j] for k in b} for b in full for j in range(2)]
    for i, shard in enumerate(shards):
        flat = [{k: b[k][0] for k in b} for b in shard]
        assert _equal([{k: v[None] for k, v in s.items()} for s in flat],
                      [{k: v[None] for k, v in s.items()} for s in flat_full[i::2]])


def test_pipeline_augmentation_and_no_augmentation_sources(config, dataset):
    def flip(image, masks, rng):
        return image[:, ::-1], masks[:, ::-1]

    plain = _batches(InputPipeline(dataset, config, dataset.image_ids, seed=1), 0, 1)[0]
    flipped = _batches(InputPipeline(dataset, config, dataset.image_ids, flip, seed=1), 0, 1)[0]
    skipped = _batches(InputPipeline(dataset, config, dataset.image_ids, flip, ["shapes"], seed=1), 0, 1)[0]
    np.testing.assert_array_equal(flipped["image"], plain["image"][:, :, ::-1])
    assert _equal([skipped], [plain])


def test_no_usable_images_is_a_clear_error(config, dataset):
    with pytest.raises(ValueError, match="no usable images"):
        InputPipeline(dataset, config, [])


def test_float_images_are_rounded_to_uint8(config):
    class FloatShapes(ShapesDataset):
        def load_image(self, image_id):
            return super().load_image(image_id).astype(np.float64) + 0.3

    ds = FloatShapes()
    ds.load_shapes(2, 64, 64, seed=1)
    ds.prepare()
    ref = shapes(2, seed=1)
    a = _batches(InputPipeline(ds, config, ds.image_ids, seed=1), 0, 1)
    b = _batches(InputPipeline(ref, config, ref.image_ids, seed=1), 0, 1)
    assert _equal(a, b)


def test_image_failing_mid_epoch_is_replaced_and_reported(config, caplog):
    """A NaN image or a load error is skipped (next id), recorded, and the epoch goes on."""
    ds = faulty_shapes(5, {1: "nan_image", 3: "raise"}, seed=2)
    pipe = InputPipeline(ds, config, ds.image_ids, shuffle=False, seed=1)
    with caplog.at_level("WARNING", logger="mrcnn.data.data_pipeline"):
        batches = _batches(pipe, 0, 3)
    ids = np.concatenate([b["image_id"] for b in batches]).tolist()
    # Order 0 1 2 3 4 0: 1 -> 2 and 3 -> 4, each keeping the failed slot's randomness.
    assert ids == [0, 2, 2, 4, 4, 0]
    assert sorted(pipe.failures) == [1, 3]
    assert "NaN or infinite" in pipe.failures[1] and "unreadable" in pipe.failures[3]
    assert "Skipping image 1 " in caplog.text and "Skipping image 3 " in caplog.text
    for b in batches:
        assert np.isfinite(b["gt_boxes"]).all()
    # Deterministic: a second stream (failures now known) gives the same batches.
    assert _equal(batches, _batches(pipe, 0, 3))


def test_bad_annotations_are_checked_at_load_and_skipped(config, caplog):
    """No up-front pass: each sample is checked as it loads (empty mask, masks of another size,
    class id out of range), replaced by the next id with the failed slot's randomness, warned
    about with its id and problem, and recorded; the stream stays deterministic."""
    ds = faulty_shapes(8, {2: "empty_mask", 3: "size", 4: "class"}, seed=5)
    assert all(ds.load_mask(i)[0].shape[-1] for i in (2, 4))
    pipe = InputPipeline(ds, config, ds.image_ids, shuffle=False, seed=1)
    with caplog.at_level("WARNING", logger="mrcnn.data.data_pipeline"):
        batches = _batches(pipe, 0, 4)
    ids = np.concatenate([b["image_id"] for b in batches]).tolist()
    assert ids == [0, 1, 5, 5, 5, 5, 6, 7]
    assert sorted(pipe.failures) == [2, 3, 4]
    assert "empty mask for instance(s) [0]" in pipe.failures[2]
    assert "differs from image size" in pipe.failures[3]
    assert "outside 1..3" in pipe.failures[4]
    for i in (2, 3, 4):
        assert f"Skipping image {i} " in caplog.text
    # The replacement keeps the slot's randomness: slot 2 (image 5) equals image 5 loaded there.
    ref = InputPipeline(ds, config, ds.image_ids, shuffle=False, seed=1).load_sample(5, 0, 2)
    np.testing.assert_array_equal(batches[1]["image"][0], ref[0])
    assert _equal(batches, _batches(pipe, 0, 4))


def test_all_images_bad_is_a_clear_error(config):
    ds = faulty_shapes(2, {0: "size", 1: "class"}, seed=5)
    pipe = InputPipeline(ds, config, ds.image_ids, shuffle=False, seed=1)
    with pytest.raises(tf.errors.OpError, match="None of the pipeline's images could be used"):
        _batches(pipe, 0, 1)


def test_imgaug_augmentation_is_reproducible_under_the_seed(config):
    """imgaug's random state is global; each sample gets a copy seeded from its own rng."""
    compat = pytest.importorskip("mrcnn.data.imgaug_compat")
    iaa = compat.import_imgaug().augmenters
    ds = shapes(8, seed=5)
    aug = iaa.Sequential([iaa.Fliplr(0.5), iaa.Affine(rotate=(-20, 20))])
    pipe = InputPipeline(ds, config, ds.image_ids, aug, seed=1)
    runs = [_batches(pipe, 0, 4) for _ in range(2)]
    assert _equal(*runs)
    plain = _batches(InputPipeline(ds, config, ds.image_ids, seed=1), 0, 4)
    assert not _equal(runs[0], plain)
    assert not _equal(runs[0], _batches(InputPipeline(ds, config, ds.image_ids, aug, seed=2), 0, 4))
