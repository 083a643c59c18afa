"""Terminal output (issue 18, build 4): one line per epoch stays on screen; --quiet is quiet."""
import os
import types

from mrcnn.io import runs


def test_epoch_line_has_losses_ap_lr_and_time():
    from mrcnn.engine.callbacks import epoch_line

    row = {"epoch": 3, "loss": 0.8123, "val_loss": 0.9, "mrcnn_mask_loss": 0.21, "val_mrcnn_mask_loss": 0.25,
           "val_segm_AP": 0.5121, "val_bbox_AP": -1.0, "lr": 0.001, "time": 42.14}
    line = epoch_line(row, 20)
    assert line.startswith("epoch 3/20")
    for part in ("loss 0.812/0.900", "mask 0.210/0.250", "segm_AP 0.512", "lr 0.001", "42.1s"):
        assert part in line, (part, line)
    assert "bbox_AP" not in line  # COCO's -1 ("nothing to score") is not a number to show
    assert "\n" not in line and "\r" not in line


def _logger(tmp_path, verbose):
    from mrcnn.engine.callbacks import RunLogger

    model = types.SimpleNamespace(log_dir=str(tmp_path), _trainer=None)
    cb = RunLogger(model, {"epochs": 2}, verbose=verbose)
    cb.on_epoch_begin(0)
    cb.on_epoch_end(0, {"loss": 1.5, "val_loss": 1.7, "val_segm_AP": 0.25})
    return runs.read_results(str(tmp_path))


def test_run_logger_prints_one_line_per_epoch_and_records_lr_and_time(tmp_path, capsys):
    rows = _logger(tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("epoch 1/2  loss 1.500/1.700") and "segm_AP 0.250" in out
    assert set(rows[0]) >= {"epoch", "loss", "val_loss", "lr", "time"}
    assert os.path.isfile(tmp_path / "results.png")


def test_run_logger_quiet_prints_nothing(tmp_path, capsys):
    _logger(tmp_path, verbose=False)
    assert capsys.readouterr().out == ""
