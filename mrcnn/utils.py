"""Common utilities with matterport's ``mrcnn.utils`` names and semantics.

NumPy only: this module never imports TensorFlow or Keras. Heavy libraries
(scikit-image, PIL) are imported lazily inside the functions that need them.

Box format everywhere: (y1, x1, y2, x2) in pixels, y2/x2 exclusive.
"""
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"


############################################################
#  Dataset
############################################################

class Dataset:
    """Base class for datasets, with matterport's API.

    Subclass it, register classes with ``add_class`` and images with
    ``add_image`` (e.g. in a ``load_xxx`` method), override ``load_mask``
    (and ``load_image`` if images are not files), then call ``prepare()``.

    Internal class ids are contiguous 0..num_classes-1 (0 is "BG");
    per-source ids are mapped through "source.id" keys.
    """

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        # Background is always the first class.
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}

    def add_class(self, source, class_id, class_name):
        """Register a class of ``source``. Duplicates are skipped."""
        assert "." not in source, "Source name cannot contain a dot: %r" % (source,)
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return  # already registered
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image; extra keyword arguments are stored in its info dict."""
        image_info = {"id": image_id, "source": source, "path": path}
        image_info.update(kwargs)
        self.image_info.append(image_info)

    def image_reference(self, image_id):
        """A string (link or path) identifying the image, for debugging. Override it."""
        return ""

    def prepare(self, class_map=None):
        """Build the lookup tables. Call after all add_class/add_image calls."""

        def clean_name(name):
            """Shorter display name: the part before the first comma."""
            return ",".join(name.split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        self.class_from_source_map = {
            "{}.{}".format(info["source"], info["id"]): cid
            for info, cid in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {
            "{}.{}".format(info["source"], info["id"]): iid
            for info, iid in zip(self.image_info, self._image_ids)}

        # Sorted for a deterministic order; BG's empty source is included
        # in every source's class list, as in matterport.
        self.sources = sorted({i["source"] for i in self.class_info})
        self.source_class_ids = {}
        for source in self.sources:
            self.source_class_ids[source] = []
            for i, info in enumerate(self.class_info):
                if i == 0 or source == info["source"]:
                    self.source_class_ids[source].append(i)

    def map_source_class_id(self, source_class_id):
        """Internal class id of a "source.id" string, e.g. "coco.12" -> 23."""
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id, source):
        """Source's own id of internal ``class_id``."""
        info = self.class_info[class_id]
        assert info["source"] == source, (
            "Class %d belongs to source %r, not %r" % (class_id, info["source"], source))
        return info["id"]

    @property
    def image_ids(self):
        return self._image_ids

    def source_image_link(self, image_id):
        """Path or URL of the image in its source; override for remote images."""
        return self.image_info[image_id]["path"]

    def load_image(self, image_id):
        """Load the image as RGB uint8 [H, W, 3] as displayed (EXIF orientation applied, grey
        made RGB, alpha dropped, 16-bit scaled; see mrcnn.structures.pixels)."""
        path = self.image_info[image_id]["path"]
        try:
            from mrcnn.structures.pixels import read_rgb
            image = read_rgb(path)[0]
        except (OSError, ValueError) as e:
            raise OSError("Cannot read image %d (%s): %s. Check the file exists and is a "
                          "valid image, or remove it from the dataset."
                          % (image_id, path, e)) from e
        if image.ndim != 3:
            image = np.stack([image] * 3, axis=-1)
        if image.shape[-1] == 4:
            image = image[..., :3]
        if image.dtype != np.uint8:
            image = image.astype(np.uint8)
        return np.ascontiguousarray(image)

    def load_mask(self, image_id):
        """Instance masks of the image: (bool [H, W, N], int32 [N]).

        Override this in your subclass. The base returns empty arrays
        (and warns), as matterport does.
        """
        logger.warning("You are using the default load_mask(), maybe you need to define your own one.")
        mask = np.empty([0, 0, 0])
        class_ids = np.empty([0], np.int32)
        return mask, class_ids


############################################################
#  Boxes
############################################################

def extract_bboxes(mask):
    """Boxes of instance masks.

    mask: [H, W, N] (bool or 0/1). Returns int32 [N, (y1, x1, y2, x2)] with
    y2/x2 exclusive; an empty mask gives a zero box.
    """
    mask = np.asarray(mask).astype(bool)
    # Reducing over a middle or inner axis of [H, W, N] is ~10x slower in NumPy than over the
    # last axis of an [N, H, W] copy (a hot spot of the input pipeline at 1024 px).
    planes = np.ascontiguousarray(mask.transpose(2, 0, 1))
    rows = planes.any(axis=2).T  # [H, N]
    cols = planes.any(axis=1).T  # [W, N]
    present = rows.any(axis=0)
    y1 = rows.argmax(axis=0)
    y2 = mask.shape[0] - rows[::-1].argmax(axis=0)
    x1 = cols.argmax(axis=0)
    x2 = mask.shape[1] - cols[::-1].argmax(axis=0)
    boxes = np.stack([y1, x1, y2, x2], axis=1).astype(np.int32)
    boxes[~present] = 0
    return boxes.reshape(-1, 4)


def _areas(boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box [4] with boxes [N, 4], given their areas. Returns [N]."""
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def compute_overlaps(boxes1, boxes2):
    """IoU matrix float [N1, N2] of boxes1 [N1, 4] and boxes2 [N2, 4]."""
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 1, 4)
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(1, -1, 4)
    inter_h = np.maximum(np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]), 0)
    inter_w = np.maximum(np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]), 0)
    inter = inter_h * inter_w
    union = _areas(b1) + _areas(b2) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def non_max_suppression(boxes, scores, threshold, ties="stable"):
    """Greedy NMS. boxes [N, 4], scores [N]; drops boxes with IoU > threshold
    against a kept higher-scoring box. Returns int32 indices of kept boxes,
    highest score first. ties="stable": equal scores keep input order;
    ties="matterport": matterport's ``scores.argsort()[::-1]`` order."""
    boxes = np.asarray(boxes)
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    area = _areas(boxes)
    if ties not in ("stable", "matterport"):
        raise ValueError(f"ties must be 'stable' or 'matterport', not {ties!r}")
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable") if ties == "stable" else np.argsort(scores)[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        iou = compute_iou(boxes[i], boxes[order[1:]], area[i], area[order[1:]])
        order = order[1:][iou <= threshold]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes, deltas):
    """Apply (dy, dx, log(dh), log(dw)) deltas [N, 4] to boxes [N, 4]. float32 [N, 4]."""
    boxes = np.asarray(boxes, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    cx = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1 = cy - 0.5 * height
    x1 = cx - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def box_refinement(box, gt_box):
    """Deltas float32 [N, (dy, dx, log(dh), log(dw))] that turn box [N, 4] into gt_box [N, 4]."""
    box = np.asarray(box, dtype=np.float32)
    gt_box = np.asarray(gt_box, dtype=np.float32)
    h, w = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    gh, gw = gt_box[:, 2] - gt_box[:, 0], gt_box[:, 3] - gt_box[:, 1]
    dy = (gt_box[:, 0] + 0.5 * gh - box[:, 0] - 0.5 * h) / h
    dx = (gt_box[:, 1] + 0.5 * gw - box[:, 1] - 0.5 * w) / w
    return np.stack([dy, dx, np.log(gh / h), np.log(gw / w)], axis=1)


def norm_boxes(boxes, shape):
    """Pixel boxes -> normalised float32: (box - [0, 0, 1, 1]) / ([h, w, h, w] - 1)."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    return ((np.asarray(boxes, dtype=np.float64) - [0, 0, 1, 1]) / scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalised boxes -> int32 pixel boxes (inverse of norm_boxes, rounded)."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    return np.around(np.asarray(boxes, dtype=np.float64) * scale + [0, 0, 1, 1]).astype(np.int32)


############################################################
#  Resizing images (mask helpers: mrcnn.structures.masks)
############################################################

def resize(image, output_shape, order=1, mode="constant", cval=0, clip=True,
           preserve_range=False, anti_aliasing=False, anti_aliasing_sigma=None):
    """skimage.transform.resize with matterport's defaults (no anti-aliasing)."""
    from skimage.transform import resize as _resize
    return _resize(image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
                   preserve_range=preserve_range, anti_aliasing=anti_aliasing,
                   anti_aliasing_sigma=anti_aliasing_sigma)


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", rng=None):
    """Resize an image [H, W, C] keeping its aspect ratio (matterport modes).

    mode: "none" (unchanged), "square" (scale so the short side is min_dim,
    capped so the long side is <= max_dim, then zero-pad to max_dim x max_dim),
    "pad64" (scale up to min_dim/min_scale, pad each side to a multiple of 64),
    "crop" (scale up to min_dim, then a random min_dim x min_dim crop;
    ``rng`` is an optional np.random.Generator, else Python's ``random``).
    Returns (image with the input dtype, window (y1, x1, y2, x2) of the image
    inside the output, scale, padding [(top, bottom), (left, right), (0, 0)],
    crop (y, x, h, w) or None).
    """
    dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode == "none":
        return image, window, scale, padding, crop
    if mode not in ("square", "pad64", "crop"):
        raise ValueError("Mode %r not supported; use 'none', 'square', 'pad64' or 'crop'" % (mode,))
    if min_dim:
        scale = max(1, min_dim / min(h, w))  # never downscale here
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    if scale != 1:
        image = resize(image, (round(h * scale), round(w * scale)), preserve_range=True)
    h, w = image.shape[:2]
    if mode == "square":
        top, left = (max_dim - h) // 2, (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
    elif mode == "pad64":
        assert min_dim % 64 == 0, "Minimum dimension must be a multiple of 64"
        pad_h, pad_w = (-h) % 64, (-w) % 64
        top, left = pad_h // 2, pad_w // 2
        padding = [(top, pad_h - top), (left, pad_w - left), (0, 0)]
    else:  # crop
        if rng is None:
            import random
            y, x = random.randint(0, h - min_dim), random.randint(0, w - min_dim)
        else:
            y, x = int(rng.integers(0, h - min_dim + 1)), int(rng.integers(0, w - min_dim + 1))
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        return image.astype(dtype), (0, 0, min_dim, min_dim), scale, padding, crop
    image = np.pad(image, padding[:image.ndim], mode="constant", constant_values=0)
    window = (top, left, h + top, w + left)
    return image.astype(dtype), window, scale, padding, crop


############################################################
#  Image normalisation and meta data
############################################################

def mold_image(images, config):
    """RGB images (any numeric dtype) -> float32 with config.MEAN_PIXEL subtracted."""
    return np.asarray(images).astype(np.float32) - np.asarray(config.MEAN_PIXEL, np.float32)


def unmold_image(normalized_images, config):
    """Inverse of mold_image: uint8 images (clipped to 0..255)."""
    images = np.asarray(normalized_images, np.float32) + np.asarray(config.MEAN_PIXEL, np.float32)
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Pack image attributes into float64 [12 + num_classes]:
    id(1), original (H, W, C)(3), resized (H, W, C)(3), window (y1, x1, y2, x2)
    in resized pixels (4), scale(1), active_class_ids(num_classes)."""
    return np.array([image_id] + list(original_image_shape) + list(image_shape)
                    + list(window) + [scale] + list(active_class_ids), dtype=np.float64)


def parse_image_meta(meta):
    """Unpack compose_image_meta arrays: [batch, L] (or one [L]) -> dict of
    image_id, original_image_shape, image_shape, window (int32), scale
    (float32), active_class_ids (int32)."""
    meta = np.asarray(meta)
    return {
        "image_id": meta[..., 0].astype(np.int32),
        "original_image_shape": meta[..., 1:4].astype(np.int32),
        "image_shape": meta[..., 4:7].astype(np.int32),
        "window": meta[..., 7:11].astype(np.int32),
        "scale": meta[..., 11].astype(np.float32),
        "active_class_ids": meta[..., 12:].astype(np.int32),
    }


############################################################
#  Downloads
############################################################

def download_trained_weights(coco_model_path, verbose=1, url=COCO_MODEL_URL, timeout=60):
    """Download matterport's COCO weights (~258 MB) to ``coco_model_path``.

    Written to a temporary file beside the target, checked (size and HDF5
    signature), then renamed, so an interrupted download leaves nothing behind.
    """
    import shutil
    import tempfile
    import urllib.error
    import urllib.request
    path = os.fspath(coco_model_path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if verbose > 0:
        print("Downloading pretrained model to " + path + " ...")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    expected = resp.headers.get("Content-Length")
                    shutil.copyfileobj(resp, out, length=1 << 20)
            except (urllib.error.URLError, OSError) as e:
                raise OSError(
                    "Could not download the weights from %s (%s). Without network access, "
                    "download the file on another machine and pass its local path instead, "
                    "e.g. model.load_weights('/path/to/mask_rcnn_coco.h5', by_name=True)."
                    % (url, e)) from e
        size = os.path.getsize(tmp)
        if expected is not None and size != int(expected):
            raise OSError("Download from %s is incomplete (%d of %s bytes); retry, or pass a "
                          "local copy's path" % (url, size, expected))
        with open(tmp, "rb") as f:
            if path.endswith(".h5") and f.read(8) != b"\x89HDF\r\n\x1a\n":
                raise OSError("Download from %s is not an HDF5 file; check the URL, or pass "
                              "a local copy's path" % url)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if verbose > 0:
        print("... done downloading pretrained model!")
    return path


############################################################
#  Re-exports (matterport's names in mrcnn.utils)
############################################################

from mrcnn.structures.anchors import generate_anchors, generate_pyramid_anchors  # noqa: E402,F401
from mrcnn.structures.masks import (resize_mask, minimize_mask, expand_mask, mold_mask,  # noqa: E402,F401
                         unmold_mask, paste_masks, _bilinear_matrix)
from mrcnn.modeling.graph_utils import batch_slice  # noqa: E402,F401  (imports TensorFlow when called)

_METRICS_NAMES = ("compute_overlaps_masks", "compute_matches", "compute_ap",
                  "compute_ap_range", "compute_recall", "trim_zeros")
try:  # mrcnn.evaluation.metrics may import this module; keep utils importable either way
    from mrcnn.evaluation.metrics import (compute_overlaps_masks, compute_matches, compute_ap,  # noqa
                               compute_ap_range, compute_recall, trim_zeros)
except ImportError:  # not written yet, or a circular import in progress
    pass


def __getattr__(name):
    """Resolve the metrics names lazily when the import above could not."""
    if name in _METRICS_NAMES:
        import mrcnn.evaluation.metrics
        return getattr(mrcnn.evaluation.metrics, name)
    raise AttributeError("module 'mrcnn.utils' has no attribute %r" % name)
