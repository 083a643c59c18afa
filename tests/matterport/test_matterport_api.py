"""matterport's inspection API, called the way its notebooks call it (inspect_data,
inspect_model, inspect_weights, train_shapes), with matterport's shapes and dtypes."""
import re
from collections import OrderedDict

import numpy as np
import pytest

from mrcnn import utils, visualize
from mrcnn import model as modellib
from mrcnn.data.shapes import ShapesDataset
from tests.helpers import random_image, tiny_config, tiny_model

CONFIG = tiny_config(IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128)


@pytest.fixture(scope="module")
def dataset():
    ds = ShapesDataset()
    ds.load_shapes(6, 128, 128, seed=3)
    ds.prepare()
    return ds


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(CONFIG, model_dir=tmp_path_factory.mktemp("logs"))


def first_with_instances(dataset):
    return next(i for i in dataset.image_ids if len(dataset.load_mask(i)[1]))


# ---------------------------------------------------------------- NumPy data helpers
def test_load_image_gt_defaults_to_full_masks(dataset):
    image_id = first_with_instances(dataset)
    image, meta, class_ids, bbox, mask = modellib.load_image_gt(dataset, CONFIG, image_id)
    n = len(class_ids)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert meta.shape == (CONFIG.IMAGE_META_SIZE,) and meta.dtype == np.float64
    assert class_ids.dtype == np.int32 and bbox.dtype == np.int32 and bbox.shape == (n, 4)
    assert mask.shape == (128, 128, n) and mask.dtype == bool          # use_mini_mask=False
    _, _, _, _, mini = modellib.load_image_gt(dataset, CONFIG, image_id, use_mini_mask=True)
    assert mini.shape == tuple(CONFIG.MINI_MASK_SHAPE) + (n,)


def test_anchor_shapes_rpn_targets_and_random_rois(dataset, model):
    shapes = modellib.compute_backbone_shapes(CONFIG, CONFIG.IMAGE_SHAPE)
    np.testing.assert_array_equal(shapes, [[32, 32], [16, 16], [8, 8], [4, 4], [2, 2]])
    model.get_anchors(CONFIG.IMAGE_SHAPE)
    anchors = model.anchors                                      # pixels, set by get_anchors
    assert anchors.shape == (3 * (32 * 32 + 16 * 16 + 64 + 16 + 4), 4) and anchors.max() > 1.5
    image, _, class_ids, bbox, _ = modellib.load_image_gt(dataset, CONFIG, first_with_instances(dataset))
    match, deltas = modellib.build_rpn_targets(image.shape, anchors, class_ids, bbox, CONFIG)
    assert match.shape == (len(anchors),) and match.dtype == np.int32 and (match == 1).any()
    assert deltas.shape == (CONFIG.RPN_TRAIN_ANCHORS_PER_IMAGE, 4) and deltas.dtype == np.float64
    rois = modellib.generate_random_rois(image.shape, 200, class_ids, bbox)
    assert rois.shape == (200, 4) and rois.dtype == np.int32
    assert np.all(rois[:, 2] > rois[:, 0]) and np.all(rois[:, 3] > rois[:, 1]) and rois.max() <= 128


def test_build_detection_targets(dataset):
    cfg = tiny_config(IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128, USE_MINI_MASK=False)
    image, _, class_ids, bbox, mask = modellib.load_image_gt(dataset, cfg, first_with_instances(dataset))
    rois = np.concatenate([bbox, modellib.generate_random_rois(image.shape, 100, class_ids, bbox)])
    r, ids, deltas, masks = modellib.build_detection_targets(rois, class_ids, bbox, mask, cfg)
    R, C = cfg.TRAIN_ROIS_PER_IMAGE, cfg.NUM_CLASSES
    assert r.shape == (R, 4) and r.dtype == rois.dtype and ids.shape == (R,) and ids.dtype == np.int32
    assert deltas.shape == (R, C, 4) and deltas.dtype == np.float32
    assert masks.shape == (R, 28, 28, C) and masks.dtype == np.float32
    pos = np.flatnonzero(ids > 0)
    assert len(pos) >= len(bbox)                                 # the GT boxes themselves are positives
    assert masks[pos, :, :, ids[pos]].max() > 0.5


def test_data_generator_with_detection_targets(dataset):
    g = modellib.data_generator(dataset, CONFIG, shuffle=True, random_rois=100, batch_size=2,
                                detection_targets=True)
    [images, meta, rpn_match, rpn_bbox, gt_ids, gt_boxes, gt_masks, rpn_rois, rois], \
        [mrcnn_class_ids, mrcnn_bbox, mrcnn_mask] = next(g)
    G, R, C = CONFIG.MAX_GT_INSTANCES, CONFIG.TRAIN_ROIS_PER_IMAGE, CONFIG.NUM_CLASSES
    assert images.shape == (2, 128, 128, 3) and images.dtype == np.float32
    assert meta.shape == (2, CONFIG.IMAGE_META_SIZE)
    assert rpn_match.shape[::2] == (2, 1) and rpn_match.dtype == np.int32
    assert rpn_bbox.shape == (2, 256, 4)
    assert gt_ids.shape == (2, G) and gt_ids.dtype == np.int32 and gt_boxes.dtype == np.int32
    assert gt_masks.shape == (2, 56, 56, G) and gt_masks.dtype == bool
    assert rpn_rois.shape == (2, 100, 4) and rois.shape == (2, R, 4)
    assert mrcnn_class_ids.shape == (2, R, 1) and mrcnn_bbox.shape == (2, R, C, 4)
    assert mrcnn_mask.shape == (2, R, 28, 28, C)
    inputs, outputs = next(modellib.data_generator(dataset, CONFIG, batch_size=1))
    assert len(inputs) == 7 and outputs == []


# ---------------------------------------------------------------- graph blocks
def test_graph_blocks_by_matterport_names():
    import keras

    image = keras.Input((128, 128, 3), name="input_image")
    meta = keras.Input((CONFIG.IMAGE_META_SIZE,), name="input_image_meta")
    c1, c2, c3, c4, c5 = modellib.resnet_graph(image, "resnet50", stage5=True, train_bn=False)
    assert c2.shape[1:] == (32, 32, 256) and c5.shape[1:] == (4, 4, 2048)
    assert [c._keras_history[0].name for c in (c2, c3, c4, c5)] == ["res2c_out", "res3d_out", "res4f_out",
                                                                     "res5c_out"]
    assert modellib.resnet_graph(keras.Input((64, 64, 3)), "resnet50")[4] is None   # stage5=False
    rpn = modellib.build_rpn_model(1, 3, 256)
    assert rpn.name == "rpn_model" and [o.shape[-1] for o in rpn.outputs] == [2, 2, 4]
    logits, probs, bbox = modellib.rpn_graph(keras.Input((8, 8, 16)), 3, 1)
    assert probs.shape[1:] == (192, 2) and bbox.shape[1:] == (192, 4)
    anchors = keras.Input((None, 4))
    rois = modellib.ProposalLayer(10, 0.7, config=CONFIG, name="ROI")([probs, bbox, anchors])
    maps = [keras.Input((s, s, 16)) for s in (32, 16, 8, 4)]
    cls_logits, cls_probs, deltas = modellib.fpn_classifier_graph(rois, maps, meta, 7, 4, train_bn=False,
                                                                  fc_layers_size=32)
    masks = modellib.build_fpn_mask_graph(rois, maps, meta, 14, 4, train_bn=False)
    dets = modellib.DetectionLayer(CONFIG, name="mrcnn_detection")([rois, cls_probs, deltas, meta])
    assert cls_probs.shape[1:] == (10, 4) and deltas.shape[1:] == (10, 4, 4)
    assert masks.shape[1:] == (10, 28, 28, 4) and dets.shape[1:] == (CONFIG.DETECTION_MAX_INSTANCES, 6)
    pooled = modellib.PyramidROIAlign([7, 7], name="roi_align")([rois, meta] + maps)
    assert pooled.shape[1:] == (10, 7, 7, 16)
    bn = modellib.BatchNorm(name="bn_x")
    assert bn.epsilon == 1e-3 and bn(keras.Input((4, 4, 3)), training=False).shape[1:] == (4, 4, 3)


def test_batch_slice_and_mold_mask():
    import tensorflow as tf

    x, y = tf.reshape(tf.range(6.0), (2, 3)), tf.ones((2, 3))
    s = utils.batch_slice([x, y], lambda a, b: a + b, 2)
    np.testing.assert_allclose(s.numpy(), x.numpy() + 1)
    a, b = utils.batch_slice(x, lambda a: (a * 2, tf.reduce_sum(a)), 2, names=["d", "s"])
    assert a.shape == (2, 3) and b.shape == (2,)
    mask = np.zeros((64, 64, 2), bool)
    mask[10:30, 20:50, 0] = True
    mask[5:9, 5:9, 1] = True
    molded = utils.mold_mask(mask, CONFIG)
    assert molded.shape == (28, 28, 2) and molded.dtype == np.float32 and molded.min() > 0.99
    assert utils.mold_mask(mask[:, :, 0], (10, 20, 30, 50)).shape == (28, 28)


def test_parallel_model_says_it_delegates(model):
    from mrcnn.parallel_model import ParallelModel

    with pytest.warns(UserWarning, match="tf.distribute"):
        pm = ParallelModel(model.keras_model, 2)
    assert pm.inner_model is model.keras_model and pm.get_layer("ROI") is model.keras_model.get_layer("ROI")


# ---------------------------------------------------------------- the Keras model surface
GRAPH_LAYERS = ["input_image", "input_image_meta", "input_anchors", "res2a_out", "res3a_out", "res4a_out",
                "res5a_out", "rpn_class", "rpn_bbox", "ROI", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask",
                "mrcnn_detection"]


def test_keras_model_inputs_outputs_and_named_layers(model):
    km = model.keras_model
    assert [t.name for t in km.inputs] == ["input_image", "input_image_meta", "input_anchors"]
    assert len(km.outputs) == 7
    for name in GRAPH_LAYERS:
        assert km.get_layer(name).output is not None, name
    mask_layer = km.get_layer("mrcnn_mask")     # the mask output, holding the final conv's weights
    assert [w.shape for w in mask_layer.get_weights()] == [(1, 1, 16, 4), (4,)]
    assert mask_layer.kernel is km.mask_head.get_layer("mrcnn_mask").kernel


def test_run_graph_on_named_layers(model):
    image = random_image(128, 128, seed=2)
    km = model.keras_model
    out = model.run_graph([image], [(n, km.get_layer(n).output) for n in GRAPH_LAYERS])
    assert isinstance(out, OrderedDict) and list(out) == GRAPH_LAYERS
    assert all(isinstance(v, np.ndarray) for v in out.values())
    A, R, D, C = len(model.anchors), CONFIG.POST_NMS_ROIS_INFERENCE, CONFIG.DETECTION_MAX_INSTANCES, 4
    assert out["input_image"].shape == (1, 128, 128, 3) and out["res2a_out"].shape[:3] == (1, 32, 32)
    assert out["rpn_class"].shape == (1, A, 2) and out["rpn_bbox"].shape == (1, A, 4)
    assert out["ROI"].shape == (1, R, 4) and out["mrcnn_class"].shape == (1, R, C)
    assert out["mrcnn_bbox"].shape == (1, R, C, 4) and out["mrcnn_mask"].shape == (1, D, 28, 28, C)
    det = out["mrcnn_detection"]
    assert det.shape == (1, D, 6) and det.dtype == np.float32
    # The view computes what detect() computes.
    r = model.detect([image])[0]
    n = int(np.sum(det[0, :, 4] > 0))
    assert n == len(r["class_ids"]) and np.all(det[0, :n, 4].astype(np.int32) == r["class_ids"])
    np.testing.assert_allclose(det[0, :n, 5], r["scores"], rtol=1e-4, atol=1e-5)
    # As matterport: molded images and their metas (from mold_inputs) give the same outputs.
    molded, metas, _ = model.mold_inputs([image])
    again = model.run_graph(molded, [("detections", km.get_layer("mrcnn_detection").output)], image_metas=metas)
    np.testing.assert_allclose(again["detections"], det, rtol=1e-4, atol=1e-5)


def test_ancestor_and_find_trainable_layer(model):
    km = model.keras_model
    pillar = km.get_layer("ROI").output
    found = model.ancestor(pillar, "rpn_class")
    assert found is km.get_layer("rpn_class").output
    assert model.ancestor(pillar, "ROI/pre_nms_anchors:0") is None    # inside a layer: not in Keras 3's graph
    layer = km.get_layer("mrcnn_class_logits")
    assert model.find_trainable_layer(layer) is layer


def test_detect_molded_and_empty_detections(model, dataset):
    image_id = first_with_instances(dataset)
    image, meta, _, _, _ = modellib.load_image_gt(dataset, CONFIG, image_id)
    r = model.detect_molded(np.expand_dims(image, 0), np.expand_dims(meta, 0), verbose=1)[0]
    n = len(r["rois"])
    assert r["rois"].dtype == np.int32 and r["class_ids"].dtype == np.int32 and r["scores"].dtype == np.float32
    assert r["masks"].shape == (128, 128, n)
    # No detections: masks float64 [H, W, 0], as matterport's np.empty(shape[:2] + (0,)).
    empty = model.unmold_detections(np.zeros((0, 6), np.float32), np.zeros((0, 28, 28), np.float32),
                                    (96, 128, 3), (128, 128, 3), np.array([16, 0, 112, 128]))
    assert empty["masks"].shape == (96, 128, 0) and empty["masks"].dtype == np.float64
    assert empty["rois"].shape == (0, 4) and empty["rois"].dtype == np.int32


def test_save_weights_h5_matterport_layout_and_by_name(model, tmp_path):
    import h5py

    path = str(tmp_path / "w.h5")
    model.keras_model.save_weights(path)
    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        assert "conv1" in names and "rpn_model" in names and "mrcnn_mask" in names
        assert "rpn_model/rpn_conv_shared/kernel:0" in f and "conv1/conv1/kernel:0" in f
    other = tiny_model(CONFIG, seed=5)
    before = other.keras_model.get_layer("conv1").get_weights()[0]
    other.keras_model.load_weights(path, by_name=True)
    after = other.keras_model.get_layer("conv1").get_weights()[0]
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(after, model.keras_model.get_layer("conv1").get_weights()[0])


def test_layer_type_filters_and_weight_names(model):
    import keras

    layers = model.get_trainable_layers()
    picked = [l for l in layers if l.__class__.__name__ in ["Conv2D", "Dense", "Conv2DTranspose"]]
    convs = [l for l in layers if isinstance(l, keras.layers.Conv2D)]
    assert len(picked) > 20 and len(convs) > 20       # the fast conv classes count as Conv2D
    names = [w.name for l in picked for w in l.weights]
    assert "res2a_branch2a/kernel:0" in names and "rpn_conv_shared/kernel:0" in names
    assert all(re.fullmatch(r"[\w]+/(kernel|bias|gamma|beta|moving_mean|moving_variance):0", n) for n in names)


def test_set_trainable_and_train_print_matterport_lines(tmp_path, capsys, dataset):
    from mrcnn.model import MaskRCNN

    cfg = tiny_config(IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128, STEPS_PER_EPOCH=1, VALIDATION_STEPS=1)
    model = MaskRCNN(mode="training", config=cfg, model_dir=str(tmp_path))
    model.train(dataset, dataset, learning_rate=0.001, epochs=1, layers="heads")
    out = capsys.readouterr().out
    assert "Starting at epoch 0. LR=0.001" in out and "Checkpoint Path: " in out
    assert "Selecting layers to train" in out and "In model:  rpn_model" in out
    assert re.search(r"mrcnn_class_logits\s+\(Dense\)", out) and re.search(r"fpn_c5p5\s+\(Conv2D\)", out)


# ---------------------------------------------------------------- visualize
def test_inspection_plots(model, dataset, capsys):
    import matplotlib.pyplot as plt

    image_id = first_with_instances(dataset)
    image, _, gt_ids, gt_boxes, gt_masks = modellib.load_image_gt(dataset, CONFIG, image_id)
    r = model.detect([image])[0]
    ap, precisions, recalls, overlaps = utils.compute_ap(gt_boxes, gt_ids, gt_masks, r["rois"],
                                                         r["class_ids"], r["scores"], r["masks"])
    ax = visualize.plot_overlaps(gt_ids, r["class_ids"], r["scores"], overlaps, dataset.class_names)
    assert len(ax.texts) == overlaps.size
    rois = np.concatenate([gt_boxes, gt_boxes + 2])
    ids = np.concatenate([gt_ids, np.zeros_like(gt_ids)])
    visualize.draw_rois(image, rois, rois + 1, np.ones((len(rois), 28, 28)), ids, dataset.class_names)
    assert "Positive ROIs:  %d" % len(gt_ids) in capsys.readouterr().out
    canvas = np.zeros((20, 20, 3), np.uint8)
    assert visualize.draw_box(canvas, (2, 3, 12, 15), (255, 0, 0))[2, 5, 0] == 255
    _, ax = plt.subplots(1)
    visualize.draw_boxes(image, boxes=gt_boxes, refined_boxes=gt_boxes + 1,
                         visibilities=[2] * len(gt_boxes), captions=["x"] * len(gt_boxes), ax=ax)
    _, ax = plt.subplots(1)
    visualize.display_differences(image, gt_boxes, gt_ids, gt_masks, r["rois"], r["class_ids"], r["scores"],
                                  r["masks"], dataset.class_names, ax=ax)
    visualize.display_table([["a", "b"], [1, 2]])
    visualize.display_weight_stats(model)
    out = capsys.readouterr().out
    assert "WEIGHT NAME" in out and "res2a_branch2a/kernel:0" in out
    plt.close("all")
