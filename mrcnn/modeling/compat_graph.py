"""matterport's Keras model surface on ``MaskRCNNNet`` (``model.keras_model``).

matterport's ``keras_model`` was one functional graph; the notebooks fetch its layers by name
(``get_layer("ROI").output``) and run pieces of it (``MaskRCNN.run_graph``). ``MaskRCNNNet`` is
a subclassed model, so here an *inference view* is built on demand: a functional
``keras.Model`` over the same layers and weights, with matterport's inputs
``input_image`` [B, H, W, 3], ``input_image_meta`` [B, META], ``input_anchors`` [B, A, 4] and
outputs ``[mrcnn_detection, mrcnn_class, mrcnn_bbox, mrcnn_mask, ROI, rpn_class, rpn_bbox]``.
Every backbone/FPN layer (``res2c_out`` ...) is in it. The training and detect() paths do not
use it. ``MatterportSurface`` gives the net ``inputs``, ``outputs``, those layers by name, and
``save_weights``/``load_weights`` on a plain ``.h5`` in matterport's HDF5 layout.
"""
from __future__ import annotations

import inspect

import keras
import tensorflow as tf

from mrcnn.modeling.network import MaskRCNNNet
from mrcnn.structures import boxes_tf

# image_meta: id, original shape (3), molded shape (3), window (4), scale, then one flag per
# class (``mrcnn.structures.image.compose_image_meta``).
META_SIZE_FIXED = 12
VIEW_LAYERS = ("input_image_meta", "input_anchors", "rpn_class", "rpn_bbox", "ROI", "mrcnn_class",
               "mrcnn_bbox", "mrcnn_mask", "mrcnn_detection")


def _with_meta(fn, *args, meta):
    """Call ``fn(*args)`` (a function, or a layer: its ``call`` is inspected), adding what it
    takes of the image metas: ``image_meta(s)`` [B, META], or ``image_shapes`` [B, 2] (the
    molded (H, W) of each image, meta[:, 4:6])."""
    params = inspect.signature(getattr(fn, "call", fn)).parameters
    for name in ("image_meta", "image_metas"):
        if name in params:
            return fn(*args, **{name: meta})
    if "image_shapes" in params:
        return fn(*args, image_shapes=meta[:, 4:6])
    return fn(*args)


class _NetLayer(keras.layers.Layer):
    """A weightless view layer that runs part of ``MaskRCNNNet`` (held untracked)."""

    def __init__(self, net, **kwargs):
        kwargs.setdefault("dtype", "float32")   # the graph layers work in float32 (see ``features``)
        super().__init__(**kwargs)
        object.__setattr__(self, "_net", net)

    def get_config(self):
        """The layer's config plus the viewed network's explicit arguments ("net")."""
        config = super().get_config()
        config["net"] = self._net.get_config()
        return config

    @classmethod
    def from_config(cls, config):
        """A view of a network rebuilt from config["net"] (fresh weights, as Keras' from_config)."""
        config = dict(config)
        config["net"] = MaskRCNNNet.from_config(config["net"])
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="mrcnn")
class MetaWindows(_NetLayer):
    """image_meta [B, META] -> the image window [B, 4] normalised to the molded image."""

    def call(self, meta):
        return boxes_tf.norm_boxes(meta[:, 7:11], meta[:, 4:6])

    def compute_output_shape(self, meta_shape):
        return (meta_shape[0], 4)


@keras.saving.register_keras_serializable(package="mrcnn")
class Classifier(_NetLayer):
    """rois [B, R, 4], image_meta, P2..P5 -> logits [B, R, C], probs [B, R, C], deltas [B, R, C, 4]."""

    def call(self, rois, meta, p2, p3, p4, p5):
        return _with_meta(self._net.classify, rois, [p2, p3, p4, p5], meta=meta)

    def compute_output_shape(self, rois_shape, *_):
        b, r, c = rois_shape[0], rois_shape[1], self._net.num_classes
        return (b, r, c), (b, r, c), (b, r, c, 4)


@keras.saving.register_keras_serializable(package="mrcnn")
class MaskGraph(_NetLayer):
    """detections [B, D, 6], image_meta, P2..P5 -> all-class mask probs [B, D, 28, 28, C].

    Named ``mrcnn_mask`` and holding the final conv's weights, as matterport's
    TimeDistributed ``mrcnn_mask`` layer did (so ``get_weights()`` gives kernel and bias).
    """

    def __init__(self, net, **kwargs):
        super().__init__(net, **kwargs)
        self.conv = net.mask_head.get_layer("mrcnn_mask")

    def __getattr__(self, name):
        """Anything else (``kernel``, ``bias``, ``filters``...) is the final conv's."""
        conv = self.__dict__.get("conv")
        if conv is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(conv, name)

    def call(self, detections, meta, p2, p3, p4, p5):
        net = self._net
        b, d = tf.shape(detections)[0], tf.shape(detections)[1]
        boxes = tf.reshape(detections[..., :4], [-1, 4])
        box_ix = tf.repeat(tf.range(b), d)
        pooled = _with_meta(net.roi_align_mask, boxes, box_ix, [p2, p3, p4, p5], meta=meta)
        masks = tf.cast(net.mask_head(pooled, training=False), tf.float32)
        return tf.reshape(masks, tf.concat([[b, d], tf.shape(masks)[1:]], axis=0))

    def compute_output_shape(self, det_shape, *_):
        c, (h, w) = self._net.num_classes, self._net.mask_shape
        return (det_shape[0], det_shape[1], h, w, c)


def build_inference_view(net):
    """The functional inference graph over ``net``'s layers (see the module docstring)."""
    image = net.feature_model.input
    meta = keras.Input(shape=(META_SIZE_FIXED + net.num_classes,), name="input_image_meta")
    anchors = keras.Input(shape=(None, 4), name="input_anchors")
    outs = net.feature_model.outputs
    pyramid, rpn_probs, rpn_deltas = outs[:5], outs[6], outs[7]
    rpn_class = keras.layers.Identity(name="rpn_class", dtype="float32")(rpn_probs)
    rpn_bbox = keras.layers.Identity(name="rpn_bbox", dtype="float32")(rpn_deltas)
    rois = net.proposals(rpn_class, rpn_bbox, anchors)
    _, probs, deltas = Classifier(net, name="mrcnn_classifier")(rois, meta, *pyramid[:4])
    probs = keras.layers.Identity(name="mrcnn_class", dtype="float32")(probs)
    deltas = keras.layers.Identity(name="mrcnn_bbox", dtype="float32")(deltas)
    windows = MetaWindows(net, name="mrcnn_windows")(meta)
    detections = net.detection(rois, probs, deltas, windows)
    masks = MaskGraph(net, name="mrcnn_mask")(detections, meta, *pyramid[:4])
    return keras.Model([image, meta, anchors],
                       [detections, probs, deltas, masks, rois, rpn_class, rpn_bbox],
                       name="mask_rcnn")


def matterport_weight_names(net):
    """Name every weight ``<layer>/<weight>:0`` (matterport's printed names, e.g.
    ``res2a_branch2a/kernel:0``). Only the display name changes: ``variable.path`` stays."""
    for layer in net.leaf_layers():
        for v in layer.weights:
            short = v.path.split("/")[-1].split(":")[0]
            v._name = f"{layer.name}/{short}:0"


class MatterportSurface:
    """Mixin for ``MaskRCNNNet``: matterport's functional-model attributes, through the view."""

    def get_layer(self, name=None, index=None):
        """matterport's graph names (ROI, mrcnn_mask, ...) from the view; others as before."""
        view_layer = self.view_layer(name)
        if view_layer is not None:
            return view_layer
        return super().get_layer(name=name, index=index)

    def inference_view(self):
        """The functional inference view (built once, inference mode only)."""
        view = self.__dict__.get("_matterport_view")
        if view is None:
            if "feature_model" not in self.__dict__ and not hasattr(self, "feature_model"):
                raise AttributeError("the network is not built yet")
            if getattr(self, "mode", "inference") != "inference":
                raise AttributeError("matterport's graph surface (inputs, outputs, get_layer('ROI')...) "
                                     "is built for mode='inference' models")
            view = build_inference_view(self)
            object.__setattr__(self, "_matterport_view", view)
        return view

    def view_layer(self, name):
        """The view's layer ``name`` when it is one of matterport's graph names, else None."""
        if name in VIEW_LAYERS and getattr(self, "mode", "inference") == "inference":
            return self.inference_view().get_layer(name)
        return None

    @property
    def inputs(self):
        return self.inference_view().inputs

    @property
    def outputs(self):
        return self.inference_view().outputs

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """``*.h5`` (not ``*.weights.h5``): matterport's HDF5 layout, readable by matterport."""
        if _legacy_h5(filepath):
            from mrcnn.io import weights_io
            return weights_io.save_weights(self.weight_groups(), str(filepath))
        return super().save_weights(filepath, overwrite=overwrite, **kwargs)

    def load_weights(self, filepath, by_name=False, skip_mismatch=False, exclude=None, **kwargs):
        """``*.h5`` in matterport's layout (by order, or ``by_name``); else Keras 3's loader."""
        if _legacy_h5(filepath):
            from mrcnn.io import weights_io
            return weights_io.load_weights(self.weight_groups(), str(filepath), by_name or bool(exclude),
                                           exclude)
        return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)


def _legacy_h5(filepath):
    name = str(filepath)
    return name.endswith((".h5", ".hdf5")) and not name.endswith(".weights.h5")


@keras.saving.register_keras_serializable(package="mrcnn")
class MatterportNet(MatterportSurface, MaskRCNNNet):
    """``MaskRCNNNet`` with matterport's model surface; what ``MaskRCNN.keras_model`` is."""
