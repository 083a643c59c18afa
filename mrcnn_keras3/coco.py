"""matterport's COCO model: its 81 class names (in the order of ``mask_rcnn_coco.h5``'s heads)
and how to tell a COCO weights file, for ``--image photo.jpg --weights coco``."""
from __future__ import annotations

import os

# matterport's samples/demo.ipynb order; index = class id of mask_rcnn_coco.h5.
CLASS_NAMES = [
    "BG", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush"]
NUM_CLASSES = len(CLASS_NAMES)  # 81: background + 80


def config_path():
    """The shipped TOML of matterport's COCO inference model (ResNet-101, 81 classes)."""
    from . import config_dir
    return os.path.join(config_dir(), "coco.toml")


def coco_mode(weights_arg, weights_path, run):
    """True when predictions should use COCO's names: ``--weights coco``, or an 81-class weights
    file outside any run folder (e.g. a local mask_rcnn_coco.h5)."""
    if weights_arg == "coco":
        return True
    if run is not None or not weights_path:
        return False
    from .weights import file_num_classes
    return file_num_classes(weights_path) == NUM_CLASSES
