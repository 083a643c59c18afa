"""mrcnn.engine.model_inspect: ``log``'s format and InspectMixin on a tiny Keras graph (a
stand-in for MaskRCNN: inference_view, mold_inputs, get_anchors, detect_molded_arrays).
tests/matterport/test_matterport_api.py runs the same methods on a real MaskRCNN."""
import types

import numpy as np
import pytest

from mrcnn.engine.model_inspect import InspectMixin, log


def test_log_format(capsys):
    log("just text")
    log("boxes", np.array([[1, -2.5], [3, 4]], np.float32))
    log("empty", np.zeros((0, 4), np.int32))
    log("list", [1, 2, 3])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "just text"
    assert lines[1] == "boxes                    shape: (2, 2)                min:   -2.50000  max:    4.00000  float32"
    assert lines[2] == "empty                    shape: (0, 4)                min:             max:             int32"
    assert lines[3].startswith("list") and "shape: (3,)" in lines[3] and lines[3].endswith(
        f"min:    1.00000  max:    3.00000  {np.asarray([1]).dtype}")


def _graph():
    """images [B, 8, 8, 3], metas [B, 5], anchors [B, 6, 4] -> pool [B, 3], cat [B, 8], flat [B, 24]."""
    import keras

    images = keras.Input((8, 8, 3), name="input_image")
    metas = keras.Input((5,), name="input_image_meta")
    anchors = keras.Input((6, 4), name="input_anchors")
    pool = keras.layers.GlobalAveragePooling2D(name="pool")(images)
    cat = keras.layers.Concatenate(name="cat")([pool, metas])
    flat = keras.layers.Flatten(name="flat")(anchors)
    dense = keras.layers.Dense(2, name="head")(cat)
    return keras.Model([images, metas, anchors], [dense, flat], name="tiny")


class _Stub(InspectMixin):
    MEAN = np.float32(100)

    def __init__(self, mode="inference"):
        self.mode, self.graph, self.calls = mode, _graph(), []
        self.keras_model = types.SimpleNamespace(inference_view=lambda: self.graph,
                                                 get_layer=self.graph.get_layer)

    def mold_inputs(self, images):
        molded = np.stack(images).astype(np.float32) - self.MEAN
        metas = np.tile(np.arange(5, dtype=np.float32), (len(images), 1))
        return molded, metas, None

    def get_anchors(self, image_shape):
        assert tuple(image_shape) == (8, 8, 3)
        return np.arange(24, dtype=np.float32).reshape(6, 4) / 100

    def detect_molded_arrays(self, molded, windows, shapes):
        self.calls.append((molded, windows, shapes))
        return ["result"] * len(molded)


@pytest.fixture(scope="module")
def stub():
    return _Stub()


def test_run_graph_molds_and_logs(stub, capsys):
    images = [np.full((8, 8, 3), v, np.uint8) for v in (110, 140)]
    layer = stub.keras_model.get_layer
    out = stub.run_graph(images, [("pool", layer("pool").output), ("cat", layer("cat").output),
                                  ("anchors", layer("flat").output)])
    assert list(out) == ["pool", "cat", "anchors"]
    np.testing.assert_allclose(out["pool"], [[10] * 3, [40] * 3])           # mean of the molded image
    np.testing.assert_allclose(out["cat"], [[10] * 3 + list(range(5)), [40] * 3 + list(range(5))])
    np.testing.assert_allclose(out["anchors"], np.tile(np.arange(24) / 100, (2, 1)), rtol=1e-6)
    printed = capsys.readouterr().out.splitlines()
    assert [p.split()[0] for p in printed] == ["pool", "cat", "anchors"]
    assert "shape: (2, 3)" in printed[0] and "max:   40.00000" in printed[0]


def test_run_graph_with_metas_takes_images_as_molded(stub, capsys):
    molded = np.full((1, 8, 8, 3), -7, np.float32)
    metas = np.array([[9, 8, 7, 6, 5]], np.float32)
    out = stub.run_graph(molded, [("cat", stub.keras_model.get_layer("cat").output)], image_metas=metas)
    np.testing.assert_allclose(out["cat"], [[-7, -7, -7, 9, 8, 7, 6, 5]])
    with pytest.raises(ValueError, match="output 'nothing' is None"):
        stub.run_graph(molded, [("nothing", None)], image_metas=metas)


def test_ancestor(stub):
    g = stub.graph
    head = g.get_layer("head").output
    assert stub.ancestor(head, "pool") is g.get_layer("pool").output
    assert stub.ancestor(head, "cat:0") is g.get_layer("cat").output
    assert stub.ancestor(head, "input_image_meta") is g.get_layer("input_image_meta").output
    assert stub.ancestor(head, "p.*l") is g.get_layer("pool").output          # a regex, full match
    assert stub.ancestor(head, "poo") is None and stub.ancestor(head, "flat") is None  # not above head
    assert stub.ancestor(g.get_layer("flat").output, "input_anchors") is g.get_layer("input_anchors").output
    assert stub.ancestor(np.zeros(3), "pool") is None                          # not a graph tensor


def test_find_trainable_layer(stub):
    import keras

    dense = keras.layers.Dense(3)
    wrapped = keras.layers.TimeDistributed(keras.layers.TimeDistributed(dense))
    assert stub.find_trainable_layer(wrapped) is dense
    assert stub.find_trainable_layer(dense) is dense
    assert stub.find_trainable_layer(stub.graph.get_layer("pool")) is stub.graph.get_layer("pool")


def test_detect_molded_feeds_whole_image_windows(capsys):
    model = _Stub()
    molded = np.zeros((2, 8, 12, 3), np.uint8)
    assert model.detect_molded(molded, np.zeros((2, 5)), verbose=1) == ["result", "result"]
    (args,) = model.calls
    assert args[0].dtype == np.float32 and args[0].shape == (2, 8, 12, 3)
    assert args[1].dtype == np.int32 and args[1].tolist() == [[0, 0, 8, 12]] * 2
    assert args[2] == [(8, 12, 3)] * 2
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "Processing 2 images"
    assert [p.split()[0] for p in printed[1:]] == ["image", "image", "image_metas"]
    model.detect_molded(molded, np.zeros((2, 5)))
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="mode='inference'"):
        _Stub(mode="training").detect_molded(molded, np.zeros((2, 5)))
