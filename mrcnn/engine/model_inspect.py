"""matterport's inspection methods of ``MaskRCNN`` (mixed into ``mrcnn.model.MaskRCNN``):
``run_graph``, ``ancestor``, ``find_trainable_layer``, ``detect_molded``.

They run on the functional inference view of ``mrcnn.modeling.compat_graph`` (same layers and weights).
"""
from __future__ import annotations

import re
from collections import OrderedDict

import numpy as np


def log(text, array=None):
    """matterport's notebook helper: print ``text``, and for an array its shape, min, max and dtype."""
    if array is not None:
        array = np.asarray(array)
        stats = (f"min: {array.min():10.5f}  max: {array.max():10.5f}" if array.size
                 else f"min: {'':10}  max: {'':10}")
        text = f"{text:<25}shape: {str(array.shape):20}  {stats}  {array.dtype}"
    print(text)


def _log(name, array):
    log(name, array)


class InspectMixin:
    """Needs ``keras_model``, ``config``, ``mode``, ``mold_inputs``, ``get_anchors`` and
    ``detect_molded_arrays`` from ``MaskRCNN``."""

    def run_graph(self, images, outputs, image_metas=None):
        """Compute the given graph tensors. ``outputs``: [(name, tensor)], tensors from
        ``keras_model.get_layer(...).output`` (or ``.inputs``/``.outputs``). With
        ``image_metas`` the images are taken as molded already. Returns an OrderedDict of
        NumPy arrays, each logged as matterport's does."""
        import keras

        outputs = OrderedDict(outputs)
        for name, tensor in outputs.items():
            if tensor is None:
                raise ValueError(f"run_graph: output {name!r} is None (ancestor() found no such tensor)")
        view = self.keras_model.inference_view()
        if image_metas is None:
            molded, image_metas, _ = self.mold_inputs(images)
        else:
            molded = np.asarray(images, np.float32)
        anchors = self.get_anchors(molded[0].shape)
        anchors = np.broadcast_to(anchors, (len(molded),) + anchors.shape)
        fn = keras.Model(view.inputs, list(outputs.values()))
        values = fn([molded, np.asarray(image_metas, np.float32), anchors], training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        result = OrderedDict((k, np.asarray(keras.ops.convert_to_numpy(v)))
                             for k, v in zip(outputs, values))
        for k, v in result.items():
            _log(k, v)
        return result

    def ancestor(self, tensor, name, checked=None):
        """The first graph tensor above ``tensor`` whose producing layer matches ``name``
        (a regex full-matched against "layer", "layer:0" or "layer/..."), or None.

        Keras 3 graphs hold layer outputs, not TensorFlow's internal ops: names of tensors
        inside a layer (e.g. "ROI/pre_nms_anchors:0") are not found.
        """
        checked = checked if checked is not None else set()
        pattern = re.compile(name) if isinstance(name, str) else name
        history = getattr(tensor, "_keras_history", None)
        if history is None or len(checked) > 500:
            return None
        operation, node_index, _ = history
        node = operation._inbound_nodes[node_index]
        for parent in node.input_tensors:
            if id(parent) in checked:
                continue
            checked.add(id(parent))
            op = parent._keras_history[0]
            if any(pattern.fullmatch(n) for n in (op.name, op.name + ":0", getattr(parent, "name", ""))):
                return parent
            found = self.ancestor(parent, pattern, checked)
            if found is not None:
                return found
        return None

    def find_trainable_layer(self, layer):
        """The layer holding the weights: unwraps TimeDistributed-style wrappers (``.layer``)."""
        if layer.__class__.__name__ == "TimeDistributed" and hasattr(layer, "layer"):
            return self.find_trainable_layer(layer.layer)
        return layer

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detect on images already resized (e.g. ``load_image_gt``'s) and their metas, fed to
        the network as given. Results are in the molded image's pixels (window = whole image),
        as in matterport: dicts of rois int32 [N, 4], class_ids int32 [N], scores float32 [N],
        masks bool [H, W, N] (float64 [H, W, 0] when N = 0)."""
        if self.mode != "inference":
            raise ValueError("Create the model with mode='inference' to call detect_molded().")
        molded = np.asarray(molded_images, np.float32)
        if verbose:
            print(f"Processing {len(molded)} images")
            for image in molded:
                _log("image", image)
            _log("image_metas", image_metas)
        h, w = molded.shape[1:3]
        windows = np.tile(np.array([[0, 0, h, w]], np.int32), (len(molded), 1))
        return self.detect_molded_arrays(molded, windows, [m.shape for m in molded])
