"""SavedModel export (mrcnn.io.export, mrcnn-export): the graph's resize and mask pasting against the NumPy
references, the CLI's SavedModel against ``MaskRCNN.detect``, zero detections, atomic writes.

The tests that really export a model are marked slow (one CLI export in a subprocess, one in
process: ~40 s CPU together); the rest run in a few seconds."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mrcnn import utils
from mrcnn.io import runs
from tests.helpers import random_image, tiny_config, tiny_model

tf = pytest.importorskip("tensorflow")

from mrcnn.io import export  # noqa: E402  (after the TensorFlow check)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASS_NAMES = ["BG", "cat", "dog"]


def export_config(**overrides):
    values = dict(IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, NUM_CLASSES=3, POST_NMS_ROIS_INFERENCE=100,
                  DETECTION_MIN_CONFIDENCE=0.0)
    values.update(overrides)
    return tiny_config(**values)


# ----------------------------------------------------------------------------- graph pieces
@pytest.mark.parametrize("h, w, min_dim, max_dim, min_scale", [
    (40, 52, 64, 64, 0),      # upscale (capped by max_dim), pad rows
    (100, 80, 64, 64, 0),     # downscale, pad columns
    (64, 64, 64, 64, 0),      # no resize
    (33, 17, 64, 128, 0),     # upscale, long side below max_dim
    (7, 9, 64, 64, 2),        # IMAGE_MIN_SCALE
    (37, 101, 32, 128, 1.5),  # min_scale beats min_dim
    (63, 65, 64, 64, 0),      # slight downscale, odd padding
    (1, 5, 64, 64, 0),
])
def test_resize_matches_resize_image_bit_exactly(h, w, min_dim, max_dim, min_scale):
    rng = np.random.default_rng(h * 1000 + w)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[h // 3:, w // 2:] = rng.integers(1, 256, 3, dtype=np.uint8)  # flat areas: exact .0 sums
    ref, window, _, _, _ = utils.resize_image(image, min_dim=min_dim, max_dim=max_dim,
                                              min_scale=min_scale, mode="square")
    new_h, new_w = export.square_resize_shape(h, w, min_dim, max_dim, min_scale)
    assert (int(new_h), int(new_w)) == (window[2] - window[0], window[3] - window[1])
    out = export.resize_like_skimage(tf.constant(image), new_h, new_w).numpy()
    np.testing.assert_array_equal(out, ref[window[0]:window[2], window[1]:window[3]])


def test_paste_masks_matches_numpy():
    rng = np.random.default_rng(1)
    H, W, n = 47, 61, 30
    masks = rng.random((n, 28, 28)).astype(np.float32)
    masks[:4] = 0.5 + 0.5 * masks[:4]  # all >= 0.5: paste_masks' clip keeps the blended edges on
    y1, x1 = rng.integers(-15, H, n), rng.integers(-15, W, n)
    boxes = np.stack([y1, x1, y1 + rng.integers(1, 50, n), x1 + rng.integers(1, 60, n)], 1)
    boxes[0], boxes[1] = [0, 0, 1, 1], [-5, -5, H + 5, W + 5]
    out = export.paste_masks_tf(tf.constant(masks), tf.constant(boxes, tf.int32), H, W).numpy()
    ref = utils.paste_masks(masks, boxes, (H, W))
    assert out.dtype == bool and out.shape == (n, H, W)
    assert ref.sum() > 0
    np.testing.assert_array_equal(out, ref.transpose(2, 0, 1))
    empty = export.paste_masks_tf(tf.zeros([0, 28, 28]), tf.zeros([0, 4], tf.int32), H, W).numpy()
    assert empty.shape == (0, H, W)


# ----------------------------------------------------------------------------- CLI end to end
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A fake run folder (random weights, config.toml, state.json) exported by the CLI."""
    tmp = tmp_path_factory.mktemp("export")
    run = tmp / "tiny20250101T0000"
    run.mkdir()
    config = export_config()
    model = tiny_model(config, model_dir=str(tmp))
    model.save_weights(str(run / "best.h5"))
    config.to_toml(str(run / "config.toml"))
    runs.write_state(str(run), {"class_names": CLASS_NAMES})
    out = tmp / "saved"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "mrcnn_keras3.export_cli", str(run), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Exported" in proc.stdout
    return model, tf.saved_model.load(str(out)), out


def _serve(loaded, image):
    out = loaded.signatures["serving_default"](image=tf.constant(image))
    return {k: v.numpy() for k, v in out.items()}


def _check_against_detect(model, loaded, image, exact):
    ref = model.detect([image])[0]
    out = _serve(loaded, image)
    n = len(ref["class_ids"])
    assert n > 0, "the fixture model should detect something"
    h, w = image.shape[:2]
    assert out["boxes"].dtype == np.int32 and out["boxes"].shape == (n, 4)
    assert out["classes"].dtype == np.int32 and out["scores"].dtype == np.float32
    assert out["masks"].dtype == bool and out["masks"].shape == (n, h, w)
    assert int(out["num_detections"]) == n
    np.testing.assert_array_equal(out["classes"], ref["class_ids"])
    np.testing.assert_allclose(out["scores"], ref["scores"], atol=1e-4)
    ref_masks = ref["masks"].transpose(2, 0, 1)
    if exact:
        np.testing.assert_array_equal(out["boxes"], ref["rois"])
        np.testing.assert_array_equal(out["masks"], ref_masks)
    else:
        assert np.abs(out["boxes"] - ref["rois"]).max() <= 1
        for a, b in zip(out["masks"], ref_masks):
            union = (a | b).sum()
            assert union == 0 or (a & b).sum() / union > 0.95


@pytest.mark.slow  # the fixture exports through the CLI: ~20 s CPU
def test_cli_export_matches_detect_without_resize(exported):
    model, loaded, _ = exported
    _check_against_detect(model, loaded, random_image(64, 64, seed=3), exact=True)


@pytest.mark.slow
@pytest.mark.parametrize("h, w", [(40, 52), (100, 80)])
def test_cli_export_matches_detect_with_resize(exported, h, w):
    model, loaded, _ = exported
    _check_against_detect(model, loaded, random_image(h, w, seed=h), exact=False)


@pytest.mark.slow
def test_class_names_signature_and_asset(exported):
    _, loaded, out = exported
    names = loaded.signatures["class_names"]()["class_names"].numpy()
    assert [n.decode() for n in names] == CLASS_NAMES
    with open(os.path.join(out, "assets", "class_names.txt"), encoding="utf8") as f:
        assert f.read().split("\n")[:3] == CLASS_NAMES
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["image"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, 3]
    assert not [p for p in os.listdir(os.path.dirname(out)) if p.startswith(".saved")]  # no temp left


@pytest.mark.slow
def test_empty_image_is_refused(exported):
    _, loaded, _ = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one pixel"):
        _serve(loaded, np.zeros((0, 5, 3), np.uint8))


# ----------------------------------------------------------------------------- API, errors, atomicity
@pytest.fixture(scope="module")
def empty_model(tmp_path_factory):
    """Random weights (no foreground bias) with DETECTION_MIN_CONFIDENCE=1.0: never detects."""
    return tiny_model(export_config(DETECTION_MIN_CONFIDENCE=1.0),
                      model_dir=str(tmp_path_factory.mktemp("logs")), foreground=False)


@pytest.mark.slow
def test_zero_detections(empty_model, tmp_path):
    image = random_image(50, 70, seed=5)
    assert len(empty_model.detect([image])[0]["class_ids"]) == 0
    out = export.export_saved_model(empty_model, tmp_path / "m")  # no names: generic ones
    loaded = tf.saved_model.load(out)
    result = _serve(loaded, image)
    assert result["boxes"].shape == (0, 4) and result["boxes"].dtype == np.int32
    assert result["classes"].shape == (0,) and result["scores"].shape == (0,)
    assert result["masks"].shape == (0, 50, 70) and int(result["num_detections"]) == 0
    names = loaded.signatures["class_names"]()["class_names"].numpy()
    assert [n.decode() for n in names] == ["BG", "class 1", "class 2"]


def _fake_save(content, crash=False):
    """Stands in for tf.saved_model.save (slow): writes ``content``, then crashes if asked."""
    def save(module, path, signatures=None):
        assert set(signatures) == {"serving_default", "class_names"}
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(content)
        if crash:
            raise KeyboardInterrupt  # as if killed mid-write
    return save


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_replaces_previous_and_survives_crash(empty_model, tmp_path, monkeypatch):
    target = tmp_path / "m"
    target.mkdir()
    (target / "saved_model.pb").write_bytes(b"previous")
    (target / "stale.txt").write_text("from the earlier export")
    monkeypatch.setattr(tf.saved_model, "save", _fake_save(b"half", crash=True))
    with pytest.raises(KeyboardInterrupt):
        export.export_saved_model(empty_model, target)
    assert (target / "saved_model.pb").read_bytes() == b"previous"
    with pytest.raises(KeyboardInterrupt):
        export.export_saved_model(empty_model, tmp_path / "new")
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temp folder, nothing at "new"

    monkeypatch.setattr(tf.saved_model, "save", _fake_save(b"second"))
    export.export_saved_model(empty_model, target, CLASS_NAMES)
    assert sorted(os.listdir(target)) == ["mrcnn_export.json", "saved_model.pb"]
    assert (target / "saved_model.pb").read_bytes() == b"second"
    assert os.stat(target).st_mode & 0o777 == 0o777 & ~_umask()
    assert sorted(os.listdir(tmp_path)) == ["m"]
    with pytest.raises(export.ExportError, match="2 class names"):
        export.export_saved_model(empty_model, target, CLASS_NAMES[:2])


def test_config_and_class_names(tmp_path):
    path = str(tmp_path / "config.toml")
    export_config(IMAGES_PER_GPU=2).to_toml(path)
    config = export.load_config(path, min_confidence=0.4)
    assert config.DETECTION_MIN_CONFIDENCE == 0.4 and config.BATCH_SIZE == 1
    assert export.load_config(path).DETECTION_MIN_CONFIDENCE == 0.0
    path_bf16 = str(tmp_path / "config_bf16.toml")
    export_config(MIXED_PRECISION="mixed_bfloat16").to_toml(path_bf16)
    assert export.load_config(path_bf16).MIXED_PRECISION is None   # float32 unless asked
    assert export.load_config(path_bf16, precision="bfloat16").MIXED_PRECISION == "mixed_bfloat16"
    assert runs.read_class_names(None, 3) == ["BG", "class 1", "class 2"]
    runs.write_state(str(tmp_path), {"classes": ["Cat", "Dog"]})
    assert runs.read_class_names(str(tmp_path), 3) == ["BG", "Cat", "Dog"]
    with pytest.raises(runs.RunError, match="NUM_CLASSES=4"):
        runs.read_class_names(str(tmp_path), 4)


def test_cli_errors(tmp_path, capsys):
    from mrcnn_keras3 import export_cli

    assert export_cli.main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "neither a run folder nor a weights file" in capsys.readouterr().err
    loose = tmp_path / "w.h5"
    tiny_model(export_config(), model_dir=str(tmp_path)).save_weights(str(loose))
    assert export_cli.main([str(loose), str(tmp_path / "out")]) == 2
    assert "--config" in capsys.readouterr().err
    cfg = tmp_path / "crop.toml"
    export_config(IMAGE_RESIZE_MODE="pad64").to_toml(str(cfg))
    assert export_cli.main([str(loose), str(tmp_path / "out"), "--config", str(cfg)]) == 2
    assert "only 'square'" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    export_config().to_toml(str(tmp_path / "ok.toml"))
    assert export_cli.main([str(loose), str(busy), "--config", str(tmp_path / "ok.toml")]) == 2
    assert "not a SavedModel" in capsys.readouterr().err
    assert os.listdir(busy) == ["notes.txt"]
    assert not (tmp_path / "out").exists()
