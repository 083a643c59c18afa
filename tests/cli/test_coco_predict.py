"""COCO-pretrained prediction in one command (issue 18, build 8): ``--image photo.jpg --weights
coco`` or a local 81-class file outside any run: COCO's class names, overlays, masks and
detections.json in a new folder per call. The 81-class file is saved from the small backbone
here (a real ResNet-101 model is too slow for the test suite)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL_COCO = """NAME = "coco"
NUM_CLASSES = 81
BACKBONE = "small"
IMAGE_MIN_DIM = 64
IMAGE_MAX_DIM = 64
IMAGES_PER_GPU = 1
TOP_DOWN_PYRAMID_SIZE = 16
RPN_CONV_CHANNELS = 16
FPN_CLASSIF_FC_LAYERS_SIZE = 32
MASK_HEAD_CHANNELS = 16
RPN_ANCHOR_SCALES = [8, 16, 32, 64, 128]
POST_NMS_ROIS_INFERENCE = 50
DETECTION_MIN_CONFIDENCE = 0.0
"""


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory):
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    root = tmp_path_factory.mktemp("coco")
    (root / "small_coco.toml").write_text(SMALL_COCO)
    config = Config.from_toml(str(root / "small_coco.toml"))
    model = MaskRCNN(mode="inference", config=config, model_dir=str(root / "logs"))
    weights = root / "cache" / "mask_rcnn_coco.h5"
    weights.parent.mkdir()
    model.save_weights(str(weights))
    photo = root / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    return root, str(weights), str(photo)


def evaluate(cwd, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(REPO, "evaluate.py"), *args], cwd=str(cwd),
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})))


@pytest.mark.slow
def test_coco_names_and_a_new_folder_per_call(coco_file):
    from mrcnn_keras3.coco import CLASS_NAMES

    root, weights, photo = coco_file
    config = str(root / "small_coco.toml")
    # --weights coco: the cached mask_rcnn_coco.h5 is used when its size is the released one;
    # here a local 81-class file outside a run stands for it.
    first = evaluate(root, "--image", photo, "--weights", weights, "--config", config)
    assert first.returncode == 0, first.stderr
    second = evaluate(root, "--image", photo, "--weights", weights, "--config", config)
    assert second.returncode == 0, second.stderr
    out1, out2 = root / "predict" / "001", root / "predict" / "002"
    assert out1.is_dir() and out2.is_dir()  # nothing overwritten
    report = json.loads((out1 / "detections.json").read_text())
    assert report["classes"] == CLASS_NAMES[1:] and len(CLASS_NAMES) == 81
    assert report["box_format"].startswith("[y1, x1, y2, x2]")
    dets = report["images"][0]["detections"]
    assert dets and all(d["class"] == CLASS_NAMES[d["class_id"]] for d in dets)
    assert (out1 / "photo.png").is_file() and all((out1 / d["mask"]).is_file() for d in dets)
    assert "No instances to display" not in first.stdout and " 1 instances" not in first.stdout
    assert "1 image ->" in first.stdout


def test_weights_coco_offline_is_one_line(tmp_path):
    import socket

    photo = str(tmp_path / "photo.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = evaluate(tmp_path, "--image", photo, "--weights", "coco",
                    env={"MRCNN_CACHE": str(tmp_path), "MRCNN_COCO_URL": f"http://127.0.0.1:{port}/m.h5"})
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert f"cannot reach http://127.0.0.1:{port}/m.h5" in proc.stderr and "--weights PATH" in proc.stderr
