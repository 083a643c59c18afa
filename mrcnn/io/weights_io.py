"""Read and write Keras-2-layout HDF5 weight files (matterport's ``mask_rcnn_coco.h5``).

Layout: root attribute ``layer_names`` (bytes or str; split into ``layer_names0``, ``1``, ...
when long), one group per layer with attribute ``weight_names``, datasets at
``{layer}/{weight_name}`` (e.g. ``conv1/conv1/kernel:0``; the nested RPN sits at
``rpn_model/rpn_conv_shared/kernel:0``). Values are assigned in order; BatchNorm order is
gamma, beta, moving_mean, moving_variance, which is also Keras 3's order.

Keras 3 cannot read this format by name, so it is read with h5py here. ``save`` writes the
same layout, so our checkpoints load in both directions.
"""
from __future__ import annotations

import os
import re

import numpy as np

HEAD_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
_ATTR_LIMIT = 64000  # HDF5 object-header attributes must stay under 64 KiB


class WeightsError(ValueError):
    """A weight file that does not fit the model; the message says what to do."""


def _decode(v):
    return v.decode("utf8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def read_list_attr(obj, name):
    """An attribute that may be chunked as name0, name1, ... -> list[str]."""
    if name in obj.attrs:
        return [_decode(v) for v in np.atleast_1d(obj.attrs[name])]
    out, i = [], 0
    while f"{name}{i}" in obj.attrs:
        out.extend(_decode(v) for v in np.atleast_1d(obj.attrs[f"{name}{i}"]))
        i += 1
    return out


def _write_list_attr(obj, name, values):
    data = np.array([v.encode("utf8") for v in values], dtype="S")
    if data.nbytes <= _ATTR_LIMIT:
        obj.attrs[name] = data
        return
    chunks = int(np.ceil(data.nbytes / _ATTR_LIMIT))
    for i, part in enumerate(np.array_split(data, chunks)):
        obj.attrs[f"{name}{i}"] = part


def _layer_root(f):
    # A whole-model save keeps the weights under "model_weights".
    if "layer_names" not in f.attrs and "layer_names0" not in f.attrs and "model_weights" in f:
        return f["model_weights"]
    return f


def read_weights(filepath):
    """{layer_name: [np.ndarray, ...]} in file order, plus weight names per layer."""
    import h5py

    if not os.path.isfile(filepath):
        raise WeightsError(f"Weights file not found: {filepath}. Pass the path of an existing .h5 file.")
    try:
        f = h5py.File(filepath, "r")
    except OSError as exc:
        raise WeightsError(
            f"{filepath} is not an HDF5 weights file, or it was cut short ({exc}). Pass a Keras .h5 "
            f"file such as mask_rcnn_coco.h5 or one of our checkpoints.") from None
    with f:
        root = _layer_root(f)
        names = read_list_attr(root, "layer_names")
        if not names:
            raise WeightsError(f"{filepath} has no 'layer_names' attribute: it is not a Keras weights file.")
        out = {}
        for lname in names:
            out[lname] = _read_group(root, lname, filepath)
        return out


def _read_group(root, lname, filepath):
    """[(weight name, array)] of one layer group; WeightsError when it is missing or unreadable
    (a file cut short by a power loss or a full disk opens but fails here)."""
    what = "is damaged or incomplete"
    try:
        if lname not in root:
            what = f"lists layer '{lname}' in layer_names but has no group of that name"
            raise KeyError(lname)
        g = root[lname]
        wnames = read_list_attr(g, "weight_names")
        missing = [wn for wn in wnames if wn not in g]
        if missing:
            what = f"layer '{lname}' lists weights {missing[:3]} that the file does not hold"
            raise KeyError(missing[0])
        return [(wn, np.asarray(g[wn])) for wn in wnames]
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        detail = "" if isinstance(exc, KeyError) else f" ({exc})"
        raise WeightsError(f"{filepath} {what}{detail}: it was cut short or edited. Use another "
                           f"checkpoint of the run (python train.py --resume falls back to the newest "
                           f"complete one) or download the file again.") from None


def _sublayer(weight_name):
    """'rpn_conv_shared/kernel:0' -> 'rpn_conv_shared' (None when there is no prefix)."""
    parts = weight_name.split("/")
    return parts[-2] if len(parts) >= 2 else None


def _pair(target, values, lname, filepath):
    """Checked (variable, array) pairs for a layer (or a nested model treated as one group)."""
    import keras

    if isinstance(target, keras.Model):
        # Nested sub-model (rpn_model): match its sublayers by the weight-name prefix.
        by_sub = {}
        for wn, v in values:
            by_sub.setdefault(_sublayer(wn), []).append(v)
        pairs = []
        for sub in target.layers:
            if not sub.weights:
                continue
            if sub.name in by_sub:
                pairs += _pair_layer(sub, by_sub[sub.name], f"{lname}/{sub.name}", filepath)
            else:
                raise WeightsError(f"{filepath}: group '{lname}' has no weights for '{sub.name}'.")
        return pairs
    return _pair_layer(target, [v for _, v in values], lname, filepath)


def _pair_layer(layer, arrays, lname, filepath):
    weights = layer.weights
    if len(weights) != len(arrays):
        raise WeightsError(
            f"Layer '{lname}' has {len(weights)} weights in the model but {len(arrays)} in {filepath}.")
    for i, (w, a) in enumerate(zip(weights, arrays)):
        if tuple(w.shape) != tuple(a.shape):
            raise WeightsError(_mismatch_message(lname, i, a.shape, w.shape, filepath))
    return list(zip(weights, arrays))


def _mismatch_message(lname, index, file_shape, model_shape, filepath):
    msg = (f"Layer '{lname}': weight {index} has shape {tuple(file_shape)} in {filepath} "
           f"but {tuple(model_shape)} in the model.")
    if lname in HEAD_LAYERS:
        n_file = file_shape[-1] // (4 if lname == "mrcnn_bbox_fc" else 1)
        n_model = model_shape[-1] // (4 if lname == "mrcnn_bbox_fc" else 1)
        msg += (f" The file was trained with {n_file} classes and the model has NUM_CLASSES={n_model}."
                f" To fine-tune to a new class count, load by name without the class-specific heads:"
                f" model.load_weights(path, by_name=True, exclude={HEAD_LAYERS!r})")
    else:
        msg += " The file was saved from a different architecture (check BACKBONE and the config)."
    return msg


def load_weights(groups, filepath, by_name=False, exclude=None):
    """Load ``filepath`` into ``groups`` ({name: layer or nested model}).

    by_name=False is strict: every group with weights must be in the file and vice versa.
    by_name=True loads the layers present in both and skips the rest. ``exclude`` (a list of
    names) implies by_name. Returns the list of names loaded.
    """
    exclude = set(exclude or [])
    if exclude:
        by_name = True
    data = read_weights(filepath)
    targets = {n: t for n, t in groups.items() if t.weights and n not in exclude}
    if not by_name:
        missing = sorted(set(targets) - set(n for n, v in data.items() if v))
        extra = sorted(n for n, v in data.items() if v and n not in groups)
        if missing or extra:
            raise WeightsError(
                f"{filepath} does not match the model layer for layer (missing in file: {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}; not in model: {extra[:5]}{'...' if len(extra) > 5 else ''})."
                f" Pass by_name=True to load the layers that match.")
    # Check every layer before assigning any, so a mismatch leaves the model untouched.
    loaded, pairs = [], []
    for name, target in targets.items():
        if name not in data or not data[name]:
            continue
        pairs += _pair(target, data[name], name, filepath)
        loaded.append(name)
    for w, a in pairs:
        w.assign(a.astype(w.dtype) if hasattr(a, "astype") else a)
    return loaded


def _entries(groups):
    """[(group name, [(weight name, array)])] in the order they are written."""
    import keras

    out = []
    for name, target in groups.items():
        subs = target.layers if isinstance(target, keras.Model) else [target]
        prefix = (lambda sub: sub.name) if isinstance(target, keras.Model) else (lambda sub: name)
        out.append((name, [(f"{prefix(sub)}/{_short(w)}:0", np.asarray(w.numpy()))
                           for sub in subs for w in sub.weights]))
    return out


def save_weights(groups, filepath, extra_attrs=None):
    """Write ``groups`` in the Keras-2 layout, atomically (temp file, fsync, then rename).

    The free space is checked first: a full disk raises mrcnn.io.fsio.DiskFullError naming the
    folder and the bytes needed, before HDF5 starts (HDF5 can crash on a full disk), and leaves
    no temp file and the previous ``filepath`` intact.
    """
    import h5py
    import keras

    from mrcnn.io.fsio import atomic_path

    entries = _entries(groups)
    need = sum(a.nbytes for _, ws in entries for _, a in ws) + 4096 * (1 + sum(len(ws) for _, ws in entries))
    with atomic_path(filepath, suffix=".h5", need=need) as tmp:
        with h5py.File(tmp, "w") as f:
            _write_list_attr(f, "layer_names", [n for n, _ in entries])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = keras.__version__.encode()
            for k, v in (extra_attrs or {}).items():
                f.attrs[k] = v
            for name, ws in entries:
                g = f.create_group(name)
                _write_list_attr(g, "weight_names", [wn for wn, _ in ws])
                for wn, a in ws:
                    g.create_dataset(wn, data=a)


def _short(variable):
    """Keras 3 variable path 'conv1/kernel' -> 'kernel'."""
    return re.sub(r":\d+$", "", variable.path.split("/")[-1])
