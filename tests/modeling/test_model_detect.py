"""MaskRCNN.detect(): the documented result schema, batches, zero detections, no retracing,
and the mapping of detections back to original-image pixels."""
import numpy as np
import pytest

from mrcnn import utils
from mrcnn.model import MaskRCNN
from tests.helpers import random_image, tiny_config, tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tiny_config(IMAGES_PER_GPU=2), model_dir=tmp_path_factory.mktemp("logs"))


def check_result(r, image_shape, num_classes, max_instances):
    h, w = image_shape[:2]
    assert set(r) == {"rois", "class_ids", "scores", "masks"}
    n = len(r["rois"])
    assert r["rois"].dtype == np.int32 and r["rois"].shape == (n, 4)
    assert r["class_ids"].dtype == np.int32 and r["class_ids"].shape == (n,)
    assert r["scores"].dtype == np.float32 and r["scores"].shape == (n,)
    assert r["masks"].dtype == (bool if n else np.float64) and r["masks"].shape == (h, w, n)  # matterport
    assert n <= max_instances
    if n:
        y1, x1, y2, x2 = r["rois"].T
        assert np.all((0 <= y1) & (y1 < y2) & (y2 <= h)) and np.all((0 <= x1) & (x1 < x2) & (x2 <= w))
        assert np.all((1 <= r["class_ids"]) & (r["class_ids"] < num_classes))
        assert np.all(np.diff(r["scores"]) <= 0) and np.all((r["scores"] > 0) & (r["scores"] <= 1))
        for i, (a, b, c, d) in enumerate(r["rois"]):  # mask pixels lie inside their box
            outside = r["masks"][:, :, i].copy()
            outside[a:c, b:d] = False
            assert not outside.any()
    return n


def test_one_image_schema(model):
    image = random_image(96, 128, seed=1)
    results = model.detect([image], verbose=0)
    assert isinstance(results, list) and len(results) == 1
    n = check_result(results[0], image.shape, model.config.NUM_CLASSES, model.config.DETECTION_MAX_INSTANCES)
    assert n > 0
    assert results[0]["masks"].any()


def test_two_images_of_different_sizes_in_one_call(model):
    images = [random_image(96, 128, seed=1), random_image(128, 64, seed=2)]
    results = model.detect(images)
    assert len(results) == 2
    for image, r in zip(images, results):
        assert check_result(r, image.shape, model.config.NUM_CLASSES, model.config.DETECTION_MAX_INSTANCES) > 0
    # A batch gives each image the same result as detecting it alone.
    for image, batched in zip(images, results):
        alone = model.detect([image])[0]
        np.testing.assert_array_equal(batched["class_ids"], alone["class_ids"])
        np.testing.assert_allclose(batched["scores"], alone["scores"], rtol=1e-4)
        assert np.abs(batched["rois"] - alone["rois"]).max() <= 1
        assert (batched["masks"] != alone["masks"]).mean() < 0.01


def test_more_images_than_batch_size(model):
    images = [random_image(64, 64, seed=s) for s in range(3)]
    results = model.detect(images)
    assert len(results) == 3
    for image, r in zip(images, results):
        check_result(r, image.shape, model.config.NUM_CLASSES, model.config.DETECTION_MAX_INSTANCES)


def test_no_retracing(model):
    fn = model.detect_graph()
    model.detect([random_image(96, 128, seed=1), random_image(100, 100, seed=2)])
    for seed in range(3):
        model.detect([random_image(96, 128, seed=seed)])
    assert fn.experimental_get_tracing_count() == 1


def _set_class_bias(model, class_one_logit):
    """Zero kernel: every ROI predicts class 1 with score e^b / (e^b + 3) (4 classes). Weights
    are variables, so changing them needs no retrace."""
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    bias[:] = 0
    bias[1] = class_one_logit
    layer.set_weights([np.zeros_like(kernel), bias])
    return np.exp(class_one_logit) / (np.exp(class_one_logit) + 3)


def test_zero_detections_and_threshold(tmp_path):
    image = random_image(100, 80, seed=4)
    m = tiny_model(tiny_config(DETECTION_MIN_CONFIDENCE=0.5), model_dir=tmp_path, foreground=False)
    assert _set_class_bias(m, 1.0) < 0.5  # 0.475: below the threshold, nothing is detected
    r = m.detect([image])[0]
    assert check_result(r, image.shape, 4, 20) == 0
    assert r["rois"].shape == (0, 4) and r["masks"].shape == (100, 80, 0)
    score = _set_class_bias(m, 2.0)  # 0.711: every ROI is a class-1 candidate
    r = m.detect([image])[0]
    assert check_result(r, image.shape, 4, 20) > 0
    assert set(r["class_ids"].tolist()) == {1}
    np.testing.assert_allclose(r["scores"], score, rtol=1e-5)
    assert m.detect_graph().experimental_get_tracing_count() == 1


def test_pad64_mode_handles_several_molded_sizes_without_retracing(tmp_path):
    m = tiny_model(tiny_config(IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=128),
                   model_dir=tmp_path)
    for shape in ((64, 64), (70, 130), (128, 64)):
        image = random_image(*shape, seed=shape[1])
        check_result(m.detect([image])[0], image.shape, 4, 20)
    assert m.detect_graph().experimental_get_tracing_count() == 1


def test_unmold_detections_hand_worked(model):
    # A 100x80 image in a 128 square: scale 1, window (14, 24, 114, 104). The molded-pixel box
    # (24, 34, 64, 74) is the original-pixel box (10, 10, 50, 50).
    original, molded_shape = (100, 80, 3), (128, 128, 3)
    _, window, scale, _, _ = utils.resize_image(np.zeros(original, np.uint8), 64, 128, 0, "square")
    assert tuple(window) == (14, 24, 114, 104) and scale == 1
    box = utils.norm_boxes(np.array([[24, 34, 64, 74]]), molded_shape[:2])
    detections = np.concatenate([box, [[2, 0.9]]], axis=1).astype(np.float32)
    r = model.unmold_detections(detections, np.ones((1, 28, 28), np.float32), original, molded_shape,
                                np.array(window))
    np.testing.assert_array_equal(r["rois"], [[10, 10, 50, 50]])
    np.testing.assert_array_equal(r["class_ids"], [2])
    assert r["masks"].shape == (100, 80, 1)
    expected = np.zeros((100, 80), bool)
    expected[10:50, 10:50] = True
    np.testing.assert_array_equal(r["masks"][..., 0], expected)


def test_bad_input_and_wrong_mode(tmp_path, model):
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        model.detect([np.zeros((32, 32), np.uint8)])
    with pytest.raises(ValueError, match="mode='inference'"):
        MaskRCNN(mode="training", config=tiny_config(), model_dir=str(tmp_path)).detect([random_image(64, 64)])


def test_zero_detections_in_a_batch_of_two(tmp_path):
    """Both images empty, then one empty and one not: the mask head never sees an empty batch
    (oneDNN rejects one; ``make test`` runs this with TF_ENABLE_ONEDNN_OPTS=0 and =1)."""
    m = tiny_model(tiny_config(IMAGES_PER_GPU=2, DETECTION_MIN_CONFIDENCE=0.5), model_dir=tmp_path,
                   foreground=False)
    _set_class_bias(m, 1.0)
    images = [random_image(100, 80, seed=4), random_image(90, 120, seed=5)]
    for image, r in zip(images, m.detect(images)):
        assert check_result(r, image.shape, 4, 20) == 0
        assert r["masks"].shape == image.shape[:2] + (0,)
    _set_class_bias(m, 2.0)
    assert all(check_result(r, im.shape, 4, 20) > 0 for im, r in zip(images, m.detect(images)))


def test_pyramid_level_uses_the_molded_size_in_pad64(tmp_path, monkeypatch):
    """The network gives ROIAlign the molded image's area (image_meta's image_shape), not
    IMAGE_SHAPE's: a 64x192 molded image in pad64 mode with IMAGE_MAX_DIM=128."""
    import tensorflow as tf

    from mrcnn.modeling import roi_align

    m = tiny_model(tiny_config(IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=128),
                   model_dir=tmp_path)
    image = random_image(60, 128, seed=3)
    molded, metas, windows = m.mold_inputs([image])
    areas, real = [], roi_align.roi_levels

    def spy(boxes, image_area):
        areas.append(np.unique(np.asarray(image_area)))
        return real(boxes, image_area)

    monkeypatch.setattr(roi_align, "roi_levels", spy)
    shape = molded.shape[1:3]
    norm_windows = utils.norm_boxes(windows, shape).astype(np.float32)
    m.keras_model((tf.constant(molded), tf.constant(norm_windows), tf.constant(m.get_anchors(shape))))
    expected = float(np.prod(utils.parse_image_meta(metas)["image_shape"][0][:2]))
    assert expected == 64 * 192 != np.prod(m.config.IMAGE_SHAPE[:2])   # 60x128 -> 64x137 -> 64x192
    assert len(areas) == 2 and all(a.tolist() == [expected] for a in areas)   # box and mask ROIAlign
