"""mrcnn.engine.callbacks: RunLogger's run-folder bookkeeping (results.csv, state.json, best.h5 /
last.h5 by the chosen metric), current_lr, and EvaluationCallback's logs and TensorBoard output
with a stand-in inference model (tests/evaluation/test_eval_loop.py's OracleModel on its BoxesDataset)."""
import json
import math
import os
import types

import pytest

from mrcnn.io import runs
from tests.evaluation.test_eval_loop import BoxesDataset, OracleModel, TrainConfig


def _train_model(tmp_path, keep=0, optimizer=None):
    return types.SimpleNamespace(
        log_dir=str(tmp_path), model_dir=str(tmp_path.parent),
        _trainer=None if optimizer is None else types.SimpleNamespace(optimizer=optimizer),
        config=types.SimpleNamespace(KEEP_CHECKPOINTS=keep, DETECTION_MIN_CONFIDENCE=0.7),
        keras_model=types.SimpleNamespace(weight_groups=dict))


def _run(tmp_path, epoch_logs, metric="val_segm_AP", first_epoch=0, state=None, model=None):
    """Feed RunLogger one epoch per logs dict, each with a fresh checkpoint file unless the dict
    says ``"checkpoint": None``; returns the state dict."""
    from mrcnn.engine.callbacks import RunLogger

    cb = RunLogger(model or _train_model(tmp_path), state if state is not None else {"epochs": 9},
                   metric=metric, verbose=False)
    for epoch, logs in enumerate(epoch_logs, start=first_epoch):
        logs = dict(logs)
        if "checkpoint" not in logs:
            ckpt = tmp_path / f"mask_rcnn_boxes_{epoch + 1:04d}.h5"
            ckpt.write_bytes(b"epoch %d" % (epoch + 1))
            logs["checkpoint"] = str(ckpt)
        elif logs["checkpoint"] is None:
            del logs["checkpoint"]
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, logs)
    return cb.state


def test_best_is_the_lowest_val_loss_when_there_is_no_ap(tmp_path):
    state = _run(tmp_path, [{"loss": 2.0, "val_loss": 1.0}, {"loss": 1.0, "val_loss": 0.5},
                            {"loss": 0.1, "val_loss": 0.7}])
    assert state["best"] == {"epoch": 2, "metric": "val_loss", "value": 0.5}
    assert (tmp_path / "best.h5").read_bytes() == b"epoch 2"
    assert (tmp_path / "last.h5").read_bytes() == b"epoch 3"


def test_best_is_the_highest_ap_and_nan_never_wins(tmp_path):
    state = _run(tmp_path, [{"loss": 1.0, "val_segm_AP": 0.3}, {"loss": 0.5, "val_segm_AP": float("nan")},
                            {"loss": 0.4, "val_segm_AP": 0.2}, {"loss": 0.3, "val_segm_AP": 0.31}])
    assert state["best"] == {"epoch": 4, "metric": "val_segm_AP", "value": 0.31}
    assert (tmp_path / "best.h5").read_bytes() == b"epoch 4"


def test_a_new_metric_restarts_the_best(tmp_path):
    # Evaluation starts at epoch 2: the loss of epoch 1 cannot be compared with an AP.
    state = _run(tmp_path, [{"loss": 0.1}, {"loss": 0.9, "val_segm_AP": 0.05}, {"loss": 0.2, "val_segm_AP": 0.01}])
    assert state["best"] == {"epoch": 2, "metric": "val_segm_AP", "value": 0.05}


def test_chosen_metric_and_its_direction(tmp_path):
    state = _run(tmp_path, [{"loss": 1.0, "val_bbox_AP": 0.4, "val_segm_AP": 0.1},
                            {"loss": 0.9, "val_bbox_AP": 0.2, "val_segm_AP": 0.9}], metric="val_bbox_AP")
    assert state["best"]["epoch"] == 1 and state["best"]["metric"] == "val_bbox_AP"


def test_state_json_and_results_csv(tmp_path):
    state = _run(tmp_path, [{"loss": 1.5, "val_loss": 1.25, "note": "not a number"},
                            {"loss": 1.0, "val_loss": 0.75}])
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk == state and state["completed_epoch"] == 2 and state["epochs"] == 9
    rows = runs.read_results(str(tmp_path))
    assert [(r["epoch"], float(r["loss"]), float(r["val_loss"])) for r in rows] == [("1", 1.5, 1.25), ("2", 1.0, 0.75)]
    assert "note" not in rows[0] and "checkpoint" not in rows[0]
    assert all(math.isnan(float(r["lr"])) for r in rows)   # no optimizer yet
    assert all(float(r["time"]) >= 0 for r in rows)
    assert os.path.isfile(tmp_path / "results.png")
    # A resumed run repeats epoch 2: its row is replaced, not added.
    state = _run(tmp_path, [{"loss": 0.5, "val_loss": 0.5}], first_epoch=1, state=state)
    rows = runs.read_results(str(tmp_path))
    assert [(r["epoch"], float(r["loss"])) for r in rows] == [("1", 1.5), ("2", 0.5)]
    assert state["best"] == {"epoch": 2, "metric": "val_loss", "value": 0.5}


def test_without_a_checkpoint_only_the_records_change(tmp_path):
    state = _run(tmp_path, [{"loss": 1.0, "checkpoint": None}])
    assert "best" not in state and state["completed_epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["results.csv", "results.png", "state.json"]


def test_keep_last_n_keeps_the_best_too(tmp_path):
    _run(tmp_path, [{"val_loss": v} for v in (0.5, 0.9, 0.8, 0.7)], model=_train_model(tmp_path, keep=1))
    assert [os.path.basename(p) for p in runs.checkpoints(str(tmp_path))] == [
        "mask_rcnn_boxes_0001.h5", "mask_rcnn_boxes_0004.h5"]


def test_current_lr(tmp_path):
    import keras

    from mrcnn.engine.callbacks import current_lr

    assert math.isnan(current_lr(_train_model(tmp_path)))
    assert math.isnan(current_lr(types.SimpleNamespace()))
    opt = keras.optimizers.SGD(learning_rate=0.0125)
    assert current_lr(_train_model(tmp_path, optimizer=opt)) == pytest.approx(0.0125)
    _run(tmp_path, [{"loss": 1.0}], model=_train_model(tmp_path, optimizer=opt))
    assert float(runs.read_results(str(tmp_path))[0]["lr"]) == pytest.approx(0.0125)


def test_evaluation_callback_logs_and_tensorboard(tmp_path, monkeypatch):
    import mrcnn.model
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mrcnn.engine.callbacks import EvaluationCallback

    ds = BoxesDataset()
    built = []

    def fake_maskrcnn(mode, config, model_dir):
        built.append((mode, config.IMAGES_PER_GPU, config.DETECTION_MIN_CONFIDENCE, model_dir))
        return OracleModel(ds)

    monkeypatch.setattr(mrcnn.model, "MaskRCNN", fake_maskrcnn)
    model = _train_model(tmp_path)
    model.config = TrainConfig()
    cb = EvaluationCallback(model, ds, every=2, images=1, progress=False)
    logs = {"loss": 1.0}
    cb.on_epoch_end(0, logs)                  # not an evaluation epoch
    cb.on_epoch_end(1, None)                  # nothing to add the metrics to
    assert logs == {"loss": 1.0} and built == [] and not os.path.exists(tmp_path / "validation")
    cb.on_epoch_end(1, logs)
    assert built == [("inference", 1, 0.05, str(tmp_path.parent))]   # evaluation keeps low scores
    assert logs["val_segm_AP"] == pytest.approx(1.0) and logs["val_bbox_AP"] == pytest.approx(1.0)
    assert logs["val_matterport_mAP50"] == pytest.approx(1.0) and logs["loss"] == 1.0
    assert cb.last_metrics["num_images"] == 2
    assert os.listdir(tmp_path / "val_images" / "epoch_0002") == ["img-0.png"]
    acc = EventAccumulator(str(tmp_path / "validation"), size_guidance={"tensors": 0}).Reload()
    tags = acc.Tags()["tensors"]
    assert runs.summary_tag("val_segm_AP") in tags and "predictions/0" in tags
    assert logs["val_segm_APl"] == -1.0 and runs.summary_tag("val_segm_APl") not in tags  # no large objects
    (event,) = acc.Tensors(runs.summary_tag("val_segm_AP"))
    assert event.step == 2
    cb.on_epoch_end(3, logs)
    assert len(built) == 1   # the inference model is built once
