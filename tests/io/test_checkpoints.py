"""Checkpoint retention (issue 18, build 7): KEEP_CHECKPOINTS keeps the newest N epochs and the
best; best.h5 / last.h5 are hard links (copies where the filesystem has none)."""
import os
import types

from mrcnn.io import runs


def _epochs(tmp_path, keep, aps):
    from mrcnn.engine.callbacks import RunLogger

    model = types.SimpleNamespace(log_dir=str(tmp_path), _trainer=None,
                                  config=types.SimpleNamespace(KEEP_CHECKPOINTS=keep))
    cb = RunLogger(model, {"epochs": len(aps)}, verbose=False)
    for epoch, ap in enumerate(aps):
        ckpt = tmp_path / f"mask_rcnn_cat_{epoch + 1:04d}.h5"
        ckpt.write_bytes(b"weights of epoch %d" % (epoch + 1))
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, {"loss": 1.0, "val_segm_AP": ap, "checkpoint": str(ckpt)})
    return cb.state


def test_keeps_the_newest_n_and_the_best_with_links(tmp_path):
    state = _epochs(tmp_path, 2, [0.1, 0.9, 0.3, 0.4, 0.2])
    assert [os.path.basename(p) for p in runs.checkpoints(str(tmp_path))] == [
        "mask_rcnn_cat_0002.h5", "mask_rcnn_cat_0004.h5", "mask_rcnn_cat_0005.h5"]
    assert state["best"]["epoch"] == 2
    assert (tmp_path / "best.h5").read_bytes() == b"weights of epoch 2"
    assert (tmp_path / "last.h5").read_bytes() == b"weights of epoch 5"
    assert os.path.samefile(tmp_path / "best.h5", tmp_path / "mask_rcnn_cat_0002.h5")  # no extra disk
    assert os.path.samefile(tmp_path / "last.h5", tmp_path / "mask_rcnn_cat_0005.h5")
    assert runs.best_weights(str(tmp_path)).endswith("best.h5")


def test_zero_keeps_every_epoch_like_matterport(tmp_path):
    _epochs(tmp_path, 0, [0.1, 0.2, 0.3])
    assert len(runs.checkpoints(str(tmp_path))) == 3


def test_copies_where_links_fail(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError("no hard links on this filesystem")

    monkeypatch.setattr(os, "link", no_links)
    _epochs(tmp_path, 1, [0.5, 0.1])
    assert (tmp_path / "best.h5").read_bytes() == b"weights of epoch 1"
    assert not os.path.samefile(tmp_path / "best.h5", tmp_path / "mask_rcnn_cat_0001.h5")
    assert sorted(os.listdir(tmp_path)) == ["best.h5", "last.h5", "mask_rcnn_cat_0001.h5",
                                            "mask_rcnn_cat_0002.h5", "results.csv", "results.png", "state.json"]


def test_defaults_config_keeps_all_and_shipped_configs_keep_three():
    from mrcnn.config import Config

    from mrcnn_keras3 import config_dir

    assert Config.KEEP_CHECKPOINTS == 0
    for name in ("default.toml", "cat.toml", "cpu-small.toml", "demo.toml"):
        assert Config.from_toml(os.path.join(config_dir(), name)).KEEP_CHECKPOINTS == 3


def test_weights_last_matches_the_run_name_exactly(tmp_path):
    import pytest

    from mrcnn_keras3.cli import UsageError
    from mrcnn_keras3.weights import find_last

    for run, epoch in (("cat20260101T0000", 2), ("cat_dog20260102T0000", 5), ("cat20260101T0000-2", 1)):
        (tmp_path / run).mkdir()
        (tmp_path / run / f"mask_rcnn_x_{epoch:04d}.h5").write_bytes(b"x")
    assert find_last(str(tmp_path), "cat").endswith("cat20260101T0000-2/mask_rcnn_x_0001.h5")
    assert find_last(str(tmp_path), "cat_dog").endswith("cat_dog20260102T0000/mask_rcnn_x_0005.h5")
    with pytest.raises(UsageError, match="no checkpoint of a 'dog' run"):
        find_last(str(tmp_path), "dog")
