"""matterport's ``MaskRCNN`` API on Keras 3.

    model = MaskRCNN(mode="inference", config=config, model_dir="logs")
    model.load_weights("mask_rcnn_coco.h5", by_name=True)
    r = model.detect([image])[0]      # rois int32 [N, (y1, x1, y2, x2)] original pixels,
                                      # class_ids int32 [N], scores float32 [N], masks bool [H, W, N]

The network lives in ``mrcnn.modeling.network`` (with matterport's graph surface: ``mrcnn.modeling.compat_graph``);
training in ``mrcnn.engine.training``.
"""
from __future__ import annotations

import logging
import os
import re

import keras
import numpy as np
import tensorflow as tf

from mrcnn import utils
from mrcnn.io import runs, weights_io
from mrcnn.structures.anchors import compute_backbone_shapes, get_anchors  # noqa: F401
from mrcnn.modeling.compat_graph import MatterportNet, matterport_weight_names
from mrcnn.engine.model_inspect import InspectMixin, log  # noqa: F401
from mrcnn.modeling.network import MaskRCNNNet  # noqa: F401
# matterport's NumPy data helpers and graph blocks, kept in their own modules.
from mrcnn.data.matterport_data import (build_detection_targets, build_rpn_targets,  # noqa: F401
                                   data_generator, generate_random_rois, load_image_gt)
from mrcnn.modeling.matterport_graph import (BatchNorm, DetectionLayer, ProposalLayer,  # noqa: F401
                                    PyramidROIAlign, build_fpn_mask_graph, build_rpn_model,
                                    fpn_classifier_graph, resnet_graph, rpn_graph)
# matterport kept these in model.py; user code imports them from here.
from mrcnn.utils import compose_image_meta, mold_image, parse_image_meta, unmold_image  # noqa: F401

_logger = logging.getLogger(__name__)


LAYER_REGEX = {
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "all": ".*",
}


class MaskRCNN(InspectMixin):
    """Mask R-CNN with matterport's methods. ``keras_model`` is the Keras 3 model; its
    inference graph has matterport's layer names (``mrcnn.modeling.compat_graph``)."""

    def __init__(self, mode, config, model_dir):
        if mode not in ("training", "inference"):
            raise ValueError(f"mode must be 'training' or 'inference', not {mode!r}")
        config.validate(mode)
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        self.epoch = 0
        self.set_log_dir()
        # Variables belong to the strategy in scope now (train.py builds under strategy.scope()).
        self.strategy = tf.distribute.get_strategy()
        self.keras_model = self.build(mode=mode, config=config)
        matterport_weight_names(self.keras_model)  # weights print as "conv1/kernel:0"
        self._detect_fn = None
        self._trainer = None

    # ------------------------------------------------------------------ building
    def build(self, mode, config):
        """The network of ``config`` (read by ``MaskRCNNNet.from_config``) under its SEED and
        MIXED_PRECISION."""
        if config.IMAGE_RESIZE_MODE != "none":
            h, w = config.IMAGE_SHAPE[:2]
            if h / 2 ** 6 != int(h / 2 ** 6) or w / 2 ** 6 != int(w / 2 ** 6):
                raise ValueError("Image size must be divisible by 64 (IMAGE_MAX_DIM, or IMAGE_MIN_DIM in crop mode)")
        if getattr(config, "SEED", None) is not None:
            # SEED makes the initial weights reproducible (Keras draws them from its global seed).
            import keras

            keras.utils.set_random_seed(int(config.SEED))
        policy = getattr(config, "MIXED_PRECISION", None)
        if not policy:
            return MatterportNet.from_config(config, mode)
        import keras

        # Layers take the global policy when they are built; restore it so other models are unaffected.
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            return MatterportNet.from_config(config, mode)
        finally:
            keras.config.set_dtype_policy(previous)

    def get_anchors(self, image_shape):
        """Normalised anchors float32 [A, 4] for a molded image shape. Sets ``self.anchors`` to
        the same anchors in pixels, as matterport's inspect notebooks expect."""
        self.anchors = get_anchors(self.config, tuple(image_shape[:2]), normalized=False)
        return get_anchors(self.config, tuple(image_shape[:2]), normalized=True)

    # ------------------------------------------------------------------ weights
    def load_weights(self, filepath, by_name=False, exclude=None):
        """Load a Keras-2-layout .h5 (``mask_rcnn_coco.h5`` or our checkpoints).

        ``exclude`` (layer names) implies ``by_name``. The epoch counter is taken from the file
        name when it follows our checkpoint pattern, so training continues from there.
        """
        if exclude:
            by_name = True
        loaded = weights_io.load_weights(self.keras_model.weight_groups(), filepath, by_name, exclude)
        self.set_log_dir(filepath)
        return loaded

    def save_weights(self, filepath):
        """Write all weights in the same layout, atomically."""
        weights_io.save_weights(self.keras_model.weight_groups(), filepath)

    def get_imagenet_weights(self):
        """Download ImageNet ResNet-50 weights (no top) into the Keras cache; return the path."""
        from mrcnn.utils import download_trained_weights

        url = ("https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
               "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
        path = os.path.join(os.path.expanduser("~"), ".keras", "models", os.path.basename(url))
        if not os.path.exists(path):
            download_trained_weights(path, verbose=1, url=url)
        return path

    # ------------------------------------------------------------------ logs and checkpoints
    def set_log_dir(self, model_path=None):
        """Set ``log_dir``, ``checkpoint_path`` and ``epoch``; a checkpoint path resumes its run and
        epoch. The names are ``mrcnn.io.runs``' (matterport's: ``{name}{YYYYmmddTHHMM}``)."""
        self.epoch = 0
        when, suffix = None, ""
        parsed = runs.parse_checkpoint_path(model_path) if model_path else None
        if parsed:
            when, suffix, self.epoch = parsed  # suffix: claim_run_dir's "-2" for a taken minute
        name = runs.model_name(self.config)
        self.log_dir = os.path.join(self.model_dir, runs.run_dir_name(name, when, suffix))
        self.checkpoint_path = runs.checkpoint_template(self.log_dir, name)

    def find_last(self):
        """Path of the newest checkpoint of the newest run of this config's NAME."""
        name = runs.model_name(self.config)
        path = runs.find_last(self.model_dir, name)
        if path is None:
            raise FileNotFoundError(
                f"Could not find a checkpoint of '{name}' in {self.model_dir}: no run folder "
                f"{name}YYYYmmddTHHMM/ holds a mask_rcnn_{name}_NNNN.h5. Train first, or pass a weights path.")
        return path

    # ------------------------------------------------------------------ trainability
    def set_trainable(self, layer_regex, keras_model=None, indent=0, verbose=1):
        """Make layers whose name full-matches ``layer_regex`` trainable and freeze the rest.

        Accepts the names in ``LAYER_REGEX`` too. Reaches inside ``rpn_model``. With
        ``verbose`` > 0 prints matterport's list: "Selecting layers to train", "In model: "
        for a nested model, then each trainable layer's name and class.
        """
        pattern = re.compile(LAYER_REGEX.get(layer_regex, layer_regex))
        if verbose > 0 and keras_model is None:
            log("Selecting layers to train")
        for group in self.keras_model.weight_groups().values():
            if isinstance(group, keras.Model):
                group.trainable = True  # nested: reset, then decide per sub-layer
                if verbose > 0:
                    print("In model: ", group.name)
                layers, pad = group.layers, indent + 4
            else:
                layers, pad = [group], indent
            for layer in layers:
                if not layer.weights:
                    continue
                layer.trainable = bool(pattern.fullmatch(layer.name))
                if layer.trainable and verbose > 0:
                    log("{}{:20}   ({})".format(" " * pad, layer.name, layer.__class__.__name__))

    def get_trainable_layers(self):
        return [l for l in self.keras_model.leaf_layers() if l.weights and l.trainable]

    # ------------------------------------------------------------------ training
    def compile(self, learning_rate, momentum):
        """Kept for API compatibility: ``train()`` builds its own optimiser and losses."""
        self.config.LEARNING_RATE = learning_rate
        self.config.LEARNING_MOMENTUM = momentum

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, no_augmentation_sources=None, verbose=1):
        """Train to the cumulative target ``epochs`` (matterport semantics); see ``mrcnn.engine.training``.
        Prints matterport's "Starting at epoch N. LR=..." and "Checkpoint Path: ..." lines, and
        with ``verbose`` > 0 (the default, as matterport) the trainable layers."""
        if self.mode != "training":
            raise ValueError("Create the model with mode='training' to train it.")
        log("\nStarting at epoch {}. LR={}\n".format(self.epoch, learning_rate))
        log("Checkpoint Path: {}".format(self.checkpoint_path))
        self.set_trainable(layers, verbose=verbose)
        return self.trainer.train(train_dataset, val_dataset, learning_rate, epochs, layers,
                                  augmentation=augmentation, custom_callbacks=custom_callbacks,
                                  no_augmentation_sources=no_augmentation_sources)

    @property
    def trainer(self):
        """The ``mrcnn.engine.training.Trainer`` of this training-mode model (made on first use):
        its ``build_steps``/``distribute`` step API, ``history``, ``step_losses``, ``bad_images``."""
        if self._trainer is None:
            if self.mode != "training":
                raise ValueError("Create the model with mode='training' to train it.")
            from mrcnn.engine.training import Trainer
            self._trainer = Trainer(self)
        return self._trainer

    # ------------------------------------------------------------------ inference
    def mold_inputs(self, images):
        """List of RGB images -> (molded float32 [B, H, W, 3], image_metas [B, META], windows [B, 4] pixels)."""
        c = self.config
        molded, metas, windows = [], [], []
        for image in images:
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != c.IMAGE_CHANNEL_COUNT:
                raise ValueError(f"detect() expects images of shape [H, W, {c.IMAGE_CHANNEL_COUNT}], "
                                 f"got {image.shape}")
            resized, window, scale, _, _ = utils.resize_image(
                image, min_dim=c.IMAGE_MIN_DIM, min_scale=c.IMAGE_MIN_SCALE, max_dim=c.IMAGE_MAX_DIM,
                mode=c.IMAGE_RESIZE_MODE)
            molded.append(mold_image(resized, c))
            metas.append(compose_image_meta(0, image.shape, resized.shape, window, scale,
                                            np.zeros([c.NUM_CLASSES], dtype=np.int32)))
            windows.append(window)
        shapes = {m.shape for m in molded}
        if len(shapes) != 1:
            raise ValueError("All images in one detect() batch must resize to the same shape; "
                             "use IMAGE_RESIZE_MODE='square' or call detect() per image.")
        return np.stack(molded).astype(np.float32), np.stack(metas), np.stack(windows)

    def detect_graph(self):
        """The traced detection function (made once): (molded float32 [B, H, W, C], windows
        float32 [B, 4] normalised, anchors float32 [A, 4] normalised) -> the inference
        network's outputs (detections, masks, counts); see ``detect_molded_arrays``."""
        if self._detect_fn is None:
            net = self.keras_model
            spec = [tf.TensorSpec([None, None, None, self.config.IMAGE_CHANNEL_COUNT], tf.float32),
                    tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None, 4], tf.float32)]

            @tf.function(input_signature=spec, reduce_retracing=True)
            def detect_fn(images, windows, anchors):
                return net((images, windows, anchors), training=False)

            self._detect_fn = detect_fn
        return self._detect_fn

    def detect(self, images, verbose=0):
        """Run detection on a list of RGB images (any count; batched by BATCH_SIZE).

        Returns one dict per image: rois int32 [N, 4] (y1, x1, y2, x2) original pixels,
        class_ids int32 [N], scores float32 [N], masks bool [H, W, N] (N may be 0).
        """
        if self.mode != "inference":
            raise ValueError("Create the model with mode='inference' to call detect().")
        for k, image in enumerate(images):  # an empty image would divide by zero when resized
            if np.ndim(image) < 2 or min(np.shape(image)[:2]) < 1:
                raise ValueError(f"detect(): image {k} has shape {np.shape(image)}; every image needs "
                                 "at least 1x1 pixels (H, W[, C]). Skip empty images before detect().")
        results = []
        step = max(int(self.config.BATCH_SIZE), 1)
        if verbose:
            log(f"Processing {len(images)} images")
            for image in images:
                log("image", image)
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            molded, metas, windows = self.mold_inputs(chunk)
            if verbose:
                log("molded_images", molded)
                log("image_metas", metas)
            results.extend(self.detect_molded_arrays(molded, windows, [np.shape(im) for im in chunk]))
        return results

    def detect_molded_arrays(self, molded, windows, original_shapes):
        """Molded batch [B, H, W, 3], pixel windows [B, 4] -> per-image result dicts."""
        shape = molded.shape[1:3]
        anchors = self.get_anchors(shape)
        norm_windows = utils.norm_boxes(windows, shape).astype(np.float32)
        detections, masks, counts = self.detect_graph()(
            tf.constant(molded), tf.constant(norm_windows), tf.constant(anchors))
        detections, masks, counts = detections.numpy(), masks.numpy(), counts.numpy()
        out, offset = [], 0
        for i, n in enumerate(counts):
            out.append(self.unmold_detections(detections[i, :n], masks[offset:offset + n],
                                              original_shapes[i], molded.shape[1:], windows[i]))
            offset += n
        return out

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """Detections [N, 6] normalised + masks [N, 28, 28] -> a result dict in original pixels."""
        boxes = detections[:, :4]
        class_ids = detections[:, 4].astype(np.int32)
        scores = detections[:, 5].astype(np.float32)
        wy1, wx1, wy2, wx2 = utils.norm_boxes(np.asarray(window, np.float32)[None], image_shape[:2])[0]
        shift = np.array([wy1, wx1, wy1, wx1])
        scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
        boxes = utils.denorm_boxes((boxes - shift) / scale, original_image_shape[:2])
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, class_ids, scores, mrcnn_mask = boxes[keep], class_ids[keep], scores[keep], mrcnn_mask[keep]
        masks = utils.paste_masks(mrcnn_mask, boxes, tuple(original_image_shape[:2]))
        # matterport: no detections gives np.empty([H, W, 0]), float64.
        masks = masks.astype(bool, copy=False) if len(boxes) else np.empty(tuple(original_image_shape[:2]) + (0,))
        return {"rois": boxes.astype(np.int32), "class_ids": class_ids, "scores": scores, "masks": masks}
