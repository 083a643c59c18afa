"""mrcnn.evaluation.eval_loop: the evaluation config, ground truth from a Dataset, and the
detect-and-score loop on a tiny synthetic dataset with a stand-in model of known accuracy."""
import os
import types

import numpy as np
import pytest

from mrcnn import utils
from mrcnn.config import Config
from mrcnn.evaluation import eval_loop

# Per image: (class id, (y1, x1, y2, x2)) of filled rectangles on a 32 x 40 image.
OBJECTS = {0: [(1, (2, 3, 12, 15)), (2, (16, 20, 30, 38))],
           1: [(2, (5, 5, 25, 12))]}


class BoxesDataset(utils.Dataset):
    """Two 32 x 40 images whose instances are filled rectangles (masks bool [H, W, N]); pixel
    (0, 0) holds the image's index, so a stand-in model can tell the images apart."""

    def __init__(self):
        super().__init__()
        self.add_class("boxes", 1, "square")
        self.add_class("boxes", 2, "bar")
        for i in OBJECTS:
            self.add_image("boxes", image_id="img-%d" % i, path=None, objects=OBJECTS[i])
        self.prepare()

    def load_image(self, image_id):
        image = np.full((32, 40, 3), 200, np.uint8)
        masks, _ = self.load_mask(image_id)
        image[masks.any(axis=2)] = (30, 90, 160)
        image[0, 0] = image_id
        return image

    def load_mask(self, image_id):
        objs = self.image_info[image_id]["objects"]
        masks = np.zeros((32, 40, len(objs)), bool)
        for k, (_, (y1, x1, y2, x2)) in enumerate(objs):
            masks[y1:y2, x1:x2, k] = True
        return masks, np.array([c for c, _ in objs], np.int32)


class OracleModel:
    """A stand-in for an inference MaskRCNN: ``detect`` returns the ground truth with score 0.9,
    dropping the objects listed in ``miss`` ({image index: [object index]})."""

    def __init__(self, dataset, miss=None):
        self.dataset = dataset
        self.miss = miss or {}
        self.keras_model = types.SimpleNamespace(weight_groups=dict)   # no weights to copy
        self.images_seen = []

    def detect(self, images):
        (image,) = images
        index = int(image[0, 0, 0])
        self.images_seen.append(index)
        gt = eval_loop.ground_truth(self.dataset, index)
        keep = [k for k in range(len(gt["class_ids"])) if k not in self.miss.get(index, [])]
        return [{"rois": gt["boxes"][keep].astype(np.int32), "class_ids": gt["class_ids"][keep],
                 "scores": np.full(len(keep), 0.9, np.float32), "masks": gt["masks"][..., keep]}]


class TrainConfig(Config):
    NAME = "evalloop"
    NUM_CLASSES = 3
    GPU_COUNT = 1
    IMAGES_PER_GPU = 4
    DETECTION_MIN_CONFIDENCE = 0.7


def test_inference_config_is_a_derived_copy():
    train = TrainConfig()
    cfg = eval_loop.inference_config(train)
    assert (cfg.IMAGES_PER_GPU, cfg.GPU_COUNT, cfg.BATCH_SIZE) == (1, 1, 1)
    assert cfg.DETECTION_MIN_CONFIDENCE == eval_loop.EVAL_MIN_CONFIDENCE == 0.05
    assert (train.IMAGES_PER_GPU, train.BATCH_SIZE, train.DETECTION_MIN_CONFIDENCE) == (4, 4, 0.7)
    assert eval_loop.inference_config(train, min_confidence=0.3).DETECTION_MIN_CONFIDENCE == 0.3
    assert eval_loop.inference_config(train, min_confidence=None).DETECTION_MIN_CONFIDENCE == 0.7


def test_inference_config_precision_overrides_the_runs():
    train = TrainConfig()
    train.MIXED_PRECISION = "mixed_float16"
    assert eval_loop.inference_config(train).MIXED_PRECISION == "mixed_float16"   # the run's own
    assert eval_loop.inference_config(train, precision="bfloat16").MIXED_PRECISION == "mixed_bfloat16"
    assert eval_loop.inference_config(train, precision="off").MIXED_PRECISION is None
    assert train.MIXED_PRECISION == "mixed_float16"
    with pytest.raises(ValueError, match="bfloat16"):
        eval_loop.inference_config(train, precision="float64")


def test_ground_truth_boxes_from_masks():
    ds = BoxesDataset()
    gt = eval_loop.ground_truth(ds, 0)
    np.testing.assert_array_equal(gt["boxes"], [[2, 3, 12, 15], [16, 20, 30, 38]])   # (y1, x1, y2, x2)
    assert gt["boxes"].dtype == np.int32 and gt["class_ids"].dtype == np.int32
    np.testing.assert_array_equal(gt["class_ids"], [1, 2])
    assert gt["masks"].dtype == bool and gt["masks"].shape == (32, 40, 2)
    assert gt["masks"].sum() == 10 * 12 + 14 * 18


def test_perfect_predictions_score_one(tmp_path):
    ds = BoxesDataset()
    metrics, evaluator, overlays = eval_loop.evaluate_dataset(
        OracleModel(ds), ds, overlay_dir=str(tmp_path / "ov"), overlay_count=1, progress=False)
    for t in ("segm", "bbox"):
        assert metrics[t]["AP"] == pytest.approx(1.0) and metrics[t]["AP50"] == pytest.approx(1.0)
    assert metrics["matterport_mAP50"] == pytest.approx(1.0)
    assert (metrics["num_images"], metrics["num_gt"], metrics["num_predictions"]) == (2, 3, 3)
    assert set(evaluator.image_id_map) == {"img-0", "img-1"}   # the dataset's own ids
    assert overlays == [str(tmp_path / "ov" / "img-0.png")] and os.path.getsize(overlays[0]) > 0


def test_a_missed_object_halves_recall():
    # Image 0 loses its second object: 2 of 3 found. Class "bar" (2 GT, 1 found at score 0.9)
    # has precision 1 up to recall 0.5: COCO's 101-point AP = 51/101; class "square" is perfect.
    ds = BoxesDataset()
    metrics, _, overlays = eval_loop.evaluate_dataset(OracleModel(ds, miss={0: [1]}), ds, progress=False)
    assert overlays == []
    for t in ("segm", "bbox"):
        assert metrics[t]["AP"] == pytest.approx((1.0 + 51 / 101) / 2)
    # matterport per image at IoU 0.5: image 0 has AP 0.5 (one of two), image 1 is perfect.
    assert metrics["matterport_mAP50"] == pytest.approx(0.75)


def test_limit_and_image_ids():
    ds = BoxesDataset()
    model = OracleModel(ds)
    metrics, _, _ = eval_loop.evaluate_dataset(model, ds, limit=1, progress=False)
    assert metrics["num_images"] == 1 and model.images_seen == [0]
    model = OracleModel(ds)
    metrics, _, _ = eval_loop.evaluate_dataset(model, ds, image_ids=[1], progress=False)
    assert (metrics["num_images"], metrics["num_gt"]) == (1, 1) and model.images_seen == [1]


def test_flat_metrics_keeps_the_scalars():
    metrics = {"segm": {"AP": 0.5, "AP50": 1, "per_class": {"a": 1.0}}, "bbox": {"AP": -1.0},
               "matterport_mAP50": 0.25, "num_images": 3, "per_class": {}}
    assert eval_loop.flat_metrics(metrics, prefix="val_") == {
        "val_segm_AP": 0.5, "val_segm_AP50": 1.0, "val_bbox_AP": -1.0, "val_matterport_mAP50": 0.25}
    assert eval_loop.flat_metrics({}) == {}
