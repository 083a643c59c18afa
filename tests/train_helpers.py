"""Shared pieces of the training tests: a 64 px training config and small datasets.

The config builds on ``tests.helpers.TinyConfig`` (owned by the model-core tests) and makes it
cheap enough to train on two CPU cores: 64x64 images, 2 images per batch, few ROIs and GT.
TRAIN_BN is True because the weights start random: frozen BatchNorm at its initial
statistics (mean 0, variance 1) lets activations grow through the backbone.
"""
from __future__ import annotations

import numpy as np

from mrcnn.data.shapes import ShapesDataset
from mrcnn.utils import Dataset
from tests.helpers import TinyConfig

TRAIN_OVERRIDES = dict(
    # Restated from TinyConfig so that pinned numbers do not move when it changes.
    BACKBONE="small", NUM_CLASSES=4, TOP_DOWN_PYRAMID_SIZE=32, RPN_CONV_CHANNELS=32,
    FPN_CLASSIF_FC_LAYERS_SIZE=64, MASK_HEAD_CHANNELS=16, POST_NMS_ROIS_INFERENCE=64,
    DETECTION_MAX_INSTANCES=20, DETECTION_MIN_CONFIDENCE=0.0,
    NAME="shapes", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, IMAGES_PER_GPU=2,
    RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), RPN_TRAIN_ANCHORS_PER_IMAGE=64,
    PRE_NMS_LIMIT=1000, POST_NMS_ROIS_TRAINING=200, TRAIN_ROIS_PER_IMAGE=32,
    MAX_GT_INSTANCES=8, MINI_MASK_SHAPE=(28, 28), LEARNING_RATE=0.01, SEED=1,
    TRAIN_BN=True, STEPS_PER_EPOCH=3, VALIDATION_STEPS=1, WARMUP_STEPS=0, ROI_INCLUDE_GT=True,
)


def train_config(**overrides):
    """A validated 64 px training config; ``overrides`` are class-level attributes."""
    values = dict(TRAIN_OVERRIDES)
    values.update(overrides)
    cls = type("TrainTestConfig", (TinyConfig,), values)
    return cls()


def shapes(count, seed=0, size=64, empty_fraction=0.0, max_instances=4):
    """A prepared ShapesDataset of ``count`` images of size x size."""
    ds = ShapesDataset()
    ds.load_shapes(count, size, size, seed=seed, empty_fraction=empty_fraction,
                   max_instances=max_instances)
    ds.prepare()
    return ds


class FaultyShapes(ShapesDataset):
    """ShapesDataset with seeded annotation faults, keyed by image id.

    ``faults``: {image_id: kind} with kind one of
      "empty_mask"  - the first instance's mask is all False,
      "size"        - the masks are 8 px taller than the image,
      "class"       - the first class id is NUM_CLASSES (outside the dataset),
      "raise"       - load_mask raises,
      "nan_image"   - load_image returns float32 with NaN/inf pixels (not uint8).
    """

    def __init__(self, faults=None, **kwargs):
        super().__init__(**kwargs)
        self.faults = dict(faults or {})

    def load_image(self, image_id):
        image = super().load_image(image_id)
        if self.faults.get(image_id) == "nan_image":
            image = image.astype(np.float32)
            image[: image.shape[0] // 2] = np.nan
            image[image.shape[0] // 2:, :4] = np.inf
        return image

    def load_mask(self, image_id):
        kind = self.faults.get(image_id)
        if kind == "raise":
            raise OSError(f"annotation file of image {image_id} is unreadable")
        mask, class_ids = super().load_mask(image_id)
        if kind == "empty_mask" and mask.shape[-1]:
            mask = mask.copy()
            mask[..., 0] = False
        elif kind == "size":
            mask = np.concatenate([mask, np.zeros((8,) + mask.shape[1:], bool)], axis=0)
        elif kind == "class" and len(class_ids):
            class_ids = class_ids.copy()
            class_ids[0] = self.num_classes
        return mask, class_ids


def faulty_shapes(count, faults, seed=0, size=64, empty_fraction=0.0):
    ds = FaultyShapes(faults)
    ds.load_shapes(count, size, size, seed=seed, empty_fraction=empty_fraction)
    ds.prepare()
    return ds


class ManyInstances(Dataset):
    """One 64x64 image with ``n`` disjoint 4x4 squares of class 1 (for MAX_GT subsampling)."""

    def __init__(self, n=30):
        super().__init__()
        self.n = n
        self.add_class("grid", 1, "square")
        self.add_image("grid", image_id=0, path=None, height=64, width=64)
        self.prepare()

    def load_image(self, image_id):
        image = np.full((64, 64, 3), 40, np.uint8)
        image[self.load_mask(image_id)[0].any(-1)] = 220
        return image

    def load_mask(self, image_id):
        mask = np.zeros((64, 64, self.n), bool)
        for k in range(self.n):
            y, x = divmod(k, 8)
            mask[y * 8 + 2:y * 8 + 6, x * 8 + 2:x * 8 + 6, k] = True
        return mask, np.ones(self.n, np.int32)


def first_batch(pipe, epoch=0, steps=1):
    """The first batch of ``pipe.stream(epoch, steps)`` as a dict of tensors."""
    return next(iter(pipe.stream(epoch, steps)))
