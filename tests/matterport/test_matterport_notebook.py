"""A notebook-style matterport script (train_shapes + inspect_model + inspect_weights cells),
run unchanged as a subprocess on a generated dataset: ``import imgaug`` first (as coco.py
does), then mrcnn in matterport's order. The project's .pth start-up hook is processed as an
installed distribution's would be."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r'''
import imgaug
import imgaug.augmenters as iaa
import os
import sys
import random
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mrcnn.config import Config
from mrcnn import utils
import mrcnn.model as modellib
from mrcnn import visualize
from mrcnn.model import log
from mrcnn.data.shapes import ShapesDataset

MODEL_DIR = sys.argv[1]


class ShapesConfig(Config):
    NAME = "shapes"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 1 + 3
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_ROIS_PER_IMAGE = 32
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    # tiny network for a CPU test
    BACKBONE = "small"
    TOP_DOWN_PYRAMID_SIZE = 32
    RPN_CONV_CHANNELS = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    MASK_HEAD_CHANNELS = 16
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 64
    DETECTION_MAX_INSTANCES = 20
    DETECTION_MIN_CONFIDENCE = 0.0


config = ShapesConfig()
dataset_train = ShapesDataset()
dataset_train.load_shapes(8, 128, 128, seed=1)
dataset_train.prepare()
dataset_val = ShapesDataset()
dataset_val.load_shapes(4, 128, 128, seed=2)
dataset_val.prepare()

model = modellib.MaskRCNN(mode="training", config=config, model_dir=MODEL_DIR)
model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE, epochs=1, layers="heads",
            augmentation=iaa.Fliplr(0.5))
model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE / 10, epochs=2, layers="all")


class InferenceConfig(ShapesConfig):
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


inference_config = InferenceConfig()
model = modellib.MaskRCNN(mode="inference", config=inference_config, model_dir=MODEL_DIR)
model_path = model.find_last()
print("Loading weights from ", model_path)
model.load_weights(model_path, by_name=True)

image_id = dataset_val.image_ids[0]
original_image, image_meta, gt_class_id, gt_bbox, gt_mask = \
    modellib.load_image_gt(dataset_val, inference_config, image_id, use_mini_mask=False)
log("original_image", original_image)
log("gt_mask", gt_mask)
assert gt_mask.shape[:2] == original_image.shape[:2]

activations = model.run_graph([original_image], [
    ("input_image", model.keras_model.get_layer("input_image").output),
    ("res2a_out", model.keras_model.get_layer("res2a_out").output),
    ("rpn_class", model.keras_model.get_layer("rpn_class").output),
    ("rpn_bbox", model.keras_model.get_layer("rpn_bbox").output),
    ("roi", model.keras_model.get_layer("ROI").output),
    ("probs", model.keras_model.get_layer("mrcnn_class").output),
    ("deltas", model.keras_model.get_layer("mrcnn_bbox").output),
    ("masks", model.keras_model.get_layer("mrcnn_mask").output),
    ("detections", model.keras_model.get_layer("mrcnn_detection").output),
])
sorted_anchor_ids = np.argsort(activations["rpn_class"][:, :, 1].flatten())[::-1]
visualize.draw_boxes(original_image, boxes=model.anchors[sorted_anchor_ids[:10]], ax=plt.subplots(1)[1])
det_class_ids = activations["detections"][0, :, 4].astype(np.int32)
print("RUN_GRAPH", activations["detections"].shape, activations["masks"].shape)

results = model.detect([original_image], verbose=1)
r = results[0]
AP, precisions, recalls, overlaps = utils.compute_ap(gt_bbox, gt_class_id, gt_mask,
                                                     r["rois"], r["class_ids"], r["scores"], r["masks"])
print("AP", AP)
visualize.plot_overlaps(gt_class_id, r["class_ids"], r["scores"], overlaps, dataset_val.class_names)
visualize.display_weight_stats(model)

LAYER_TYPES = ["Conv2D", "Dense", "Conv2DTranspose"]
layers = model.get_trainable_layers()
layers = list(filter(lambda l: l.__class__.__name__ in LAYER_TYPES, layers))
print("HISTOGRAM_LAYERS", len(layers), layers[0].weights[0].name)

model.keras_model.save_weights("w.h5")
fresh = modellib.MaskRCNN(mode="inference", config=inference_config, model_dir=MODEL_DIR)
fresh.keras_model.load_weights("w.h5", by_name=True)
r2 = fresh.detect([original_image])[0]
assert np.array_equal(r["rois"], r2["rois"]) and np.array_equal(r["class_ids"], r2["class_ids"])
assert np.allclose(r["scores"], r2["scores"]) and np.array_equal(r["masks"], r2["masks"])
print("RELOADED_IDENTICAL", len(r["rois"]))
'''


@pytest.mark.slow
def test_matterport_notebook_script(tmp_path):
    script = tmp_path / "notebook.py"
    script.write_text(SCRIPT)
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "mrcnn_keras3_imgaug.pth").write_text(open(os.path.join(ROOT, "mrcnn_keras3_imgaug.pth")).read())
    launcher = ("import runpy, site, sys; site.addsitedir(sys.argv[1]); sys.argv = sys.argv[2:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", launcher, str(site_dir), str(script), str(tmp_path / "logs")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "Starting at epoch 0. LR=0.001" in out and "Starting at epoch 1. LR=0.0001" in out
    assert "Checkpoint Path: " in out and "Selecting layers to train" in out
    assert "RUN_GRAPH (1, 20, 6) (1, 20, 28, 28, 4)" in out
    assert "WEIGHT NAME" in out and "AP " in out
    line = [l for l in out.splitlines() if l.startswith("HISTOGRAM_LAYERS")][0]
    assert int(line.split()[1]) > 20 and line.split()[2].endswith("/kernel:0")
    assert "RELOADED_IDENTICAL" in out
