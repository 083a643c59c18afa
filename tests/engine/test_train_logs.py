"""mrcnn.engine.train_logs.TrainLogs: a run's config.toml and its TensorBoard scalars, read back
with TensorBoard's EventAccumulator, on a stand-in model (log_dir and config only)."""
import os
import re
import tomllib
import types

import numpy as np
import pytest

from mrcnn.engine.train_logs import SUMMARY_EVERY_STEPS, TrainLogs
from mrcnn.io import runs
from tests.helpers import tiny_config


def _model(tmp_path, **overrides):
    return types.SimpleNamespace(log_dir=str(tmp_path / "tiny20260101T0000"), config=tiny_config(**overrides))


def _scalars(folder):
    """{tag: [(step, value)]} of the event files in ``folder``."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0}).Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def test_write_run_files_once_with_versions(tmp_path):
    import keras
    import tensorflow as tf

    model = _model(tmp_path)
    logs = TrainLogs(model)
    logs.write_run_files()
    path = runs.config_path(model.log_dir)
    raw = tomllib.loads(open(path, encoding="utf8").read())
    assert raw["NAME"] == "tiny" and raw["IMAGE_MAX_DIM"] == 128
    run = raw["run"]
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", run["git_commit"])
    assert (run["tensorflow"], run["keras"], run["numpy"]) == (tf.__version__, keras.__version__,
                                                               np.__version__)
    before = open(path, "rb").read()
    model.config = tiny_config(IMAGE_MAX_DIM=256)      # a later train() call in the same folder
    logs.write_run_files()
    assert open(path, "rb").read() == before           # the first config of the run is kept
    assert os.listdir(model.log_dir) == ["config.toml"]


def test_non_chief_writes_nothing(tmp_path):
    model = _model(tmp_path)
    logs = TrainLogs(model, chief=False)
    logs.write_run_files()
    logs.scalars("train", {"loss": 1.0}, 1, lr=0.1)
    logs.step(1, {"loss": 1.0}, 0.1)
    assert not os.path.exists(model.log_dir)


def test_epoch_scalars_per_split(tmp_path):
    model = _model(tmp_path)
    logs = TrainLogs(model)
    logs.scalars("train", {"loss": 2.5, "mrcnn_mask_loss": 0.75}, 1, lr=0.01)
    logs.scalars("train", {"loss": 1.5, "mrcnn_mask_loss": 0.5}, 2, lr=0.005)
    logs.scalars("validation", {"val_loss": 3.0, "val_segm_AP": 0.25}, 2)
    assert sorted(os.listdir(model.log_dir)) == ["train", "validation"]
    train = _scalars(os.path.join(model.log_dir, "train"))
    assert train == {"loss/total": [(1, 2.5), (2, 1.5)], "loss/mrcnn_mask": [(1, 0.75), (2, 0.5)],
                     "lr": [(1, pytest.approx(0.01)), (2, pytest.approx(0.005))]}
    val = _scalars(os.path.join(model.log_dir, "validation"))
    assert val == {"loss/total": [(2, 3.0)], "metrics/segm_AP": [(2, 0.25)]}   # no lr given: none


def test_step_summaries_every_n_steps(tmp_path):
    model = _model(tmp_path)
    logs = TrainLogs(model)
    assert SUMMARY_EVERY_STEPS == 10
    for step in range(1, 26):
        logs.step(step, {"loss": float(step), "rpn_class_loss": step / 10}, np.float32(0.5))
    logs.writer("train").flush()
    train = _scalars(os.path.join(model.log_dir, "train"))
    assert sorted(train) == ["steps/lr", "steps/rpn_class", "steps/total"]   # loss/total -> steps/total
    assert train["steps/total"] == [(1, 1.0), (10, 10.0), (20, 20.0)]   # the first step, then every 10th
    assert train["steps/rpn_class"] == [(s, pytest.approx(s / 10)) for s in (1, 10, 20)]
    assert train["steps/lr"] == [(s, 0.5) for s in (1, 10, 20)]
    assert logs.writer("train") is logs.writer("train")    # one writer per split
