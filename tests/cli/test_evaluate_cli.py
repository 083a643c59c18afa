"""evaluate.py end to end: a real run folder (tiny 64 px model, random weights) and a tiny data
folder in the downloader layout, built here; the CLI runs as a subprocess."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from dataset.records import ImageRecord, MaskPNG, ObjectRecord
from dataset.voc import write_voc
from mrcnn.config import Config
from tests.helpers import tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVALUATE = os.path.join(ROOT, "evaluate.py")
# Cat objects per test image (the last one is a negative); the dog folder must be ignored.
CAT_OBJECTS = [1, 2, 1, 1, 0]


class TinyCat(Config):
    NAME = "cat"
    BACKBONE = "small"
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 2
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    TOP_DOWN_PYRAMID_SIZE = 32
    RPN_CONV_CHANNELS = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    MASK_HEAD_CHANNELS = 16
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    POST_NMS_ROIS_INFERENCE = 100
    DETECTION_MAX_INSTANCES = 10
    DETECTION_MIN_CONFIDENCE = 0.7


def _class_folder(root, name, mid, split, counts, size=(64, 48)):
    """{root}/{name}/{split}/ with images, whole-image mask PNGs and VOC XMLs; returns split dir."""
    cdir = os.path.join(root, name.lower())
    sdir = os.path.join(cdir, split)
    for sub in ("images", "masks", "annotations"):
        os.makedirs(os.path.join(sdir, sub), exist_ok=True)
    with open(os.path.join(cdir, "manifest.json"), "w") as f:
        json.dump({"class": name, "mid": mid, "splits": [split]}, f)
    w, h = size
    rng = np.random.default_rng(len(name))
    for n, count in enumerate(counts):
        iid = f"{name.lower()}{n:04d}"
        img = os.path.join(sdir, "images", iid + ".jpg")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img, quality=90)
        objs = []
        for k in range(count):
            y1, x1 = 4 + 10 * k, 6 + 14 * k
            y2, x2 = y1 + 16, x1 + 20
            m = np.zeros((h, w), np.uint8)
            m[y1:y2, x1:x2] = 255
            mpath = os.path.join(sdir, "masks", f"{iid}_{mid.strip('/').replace('/', '')}_b{k}.png")
            Image.fromarray(m).save(mpath)
            objs.append(ObjectRecord(name, (float(y1), float(x1), float(y2), float(x2)), MaskPNG(mpath),
                                     {"label_name": mid, "box_id": f"b{k}"}))
        write_voc(ImageRecord(iid, img, w, h, objs, extra={"split": split}),
                  os.path.join(sdir, "annotations", iid + ".xml"), sdir)
    return sdir


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """logs/ with an old run without checkpoints and a newer finished run; data/ with cat and dog."""
    base = tmp_path_factory.mktemp("evalcli")
    data = os.path.join(base, "data")
    _class_folder(data, "Cat", "/m/01yrx", "test", CAT_OBJECTS)
    _class_folder(data, "Dog", "/m/0bt9lr", "test", [1, 1])
    logs = os.path.join(base, "logs")
    old = os.path.join(logs, "cat20240101T0000")
    run = os.path.join(logs, "cat20250102T0304")
    cfg = TinyCat()
    state = {"version": 1, "classes": ["Cat"], "class_names": ["BG", "Cat"], "data": data,
             "limit": None, "seed": 1, "base_url": None, "images_url": None,
             "config_path": "configs/tiny.toml", "overrides": [], "epochs": 1,
             "schedule": [{"layers": "heads", "epochs": 1, "learning_rate": 0.001}],
             "completed_epoch": 1, "best": {"epoch": 1, "metric": "val_segm_AP", "value": 0.0},
             "weights": "coco", "status": "finished"}
    for folder in (old, run):
        os.makedirs(folder)
        cfg.to_toml(os.path.join(folder, "config.toml"), extra={"git_commit": "test"})
        with open(os.path.join(folder, "state.json"), "w") as f:
            json.dump(state, f)
    past = time.time() - 3600
    os.utime(os.path.join(old, "state.json"), (past, past))
    # Seeded and tamed: untamed random heads may call every ROI background, and then nothing is
    # detected at any confidence (it happened once in CI).
    model = tiny_model(cfg, model_dir=logs)
    ckpt = os.path.join(run, "mask_rcnn_cat_0001.h5")
    model.save_weights(ckpt)
    model.save_weights(os.path.join(run, "best.h5"))
    return {"base": str(base), "data": data, "logs": logs, "run": run, "old": old, "ckpt": ckpt}


def _run(world, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([sys.executable, EVALUATE, "--logs", world["logs"], *args], cwd=world["base"],
                       capture_output=True, text=True, timeout=300, env=env)
    return p


def _evaluate_module():
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import evaluate
    return evaluate


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def _events(folder):
    """[(tag, plugin name)] of every summary in the TensorBoard event files of ``folder``."""
    import tensorflow as tf

    out = []
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                out.append((v.tag, v.metadata.plugin_data.plugin_name))
    return out


def test_evaluate_newest_run_writes_everything(world):
    p = _run(world)
    assert p.returncode == 0, p.stderr
    run, out = world["run"], os.path.join(world["run"], "eval_test")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    for key in ("segm", "bbox", "per_class", "matterport_mAP50", "num_images", "num_gt",
                "num_predictions", "weights", "split", "run", "classes"):
        assert key in m, key
    for t in ("segm", "bbox"):
        assert set(m[t]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert all(-1 <= v <= 1 for v in m[t].values())
    # The newest run, its best.h5, only the run's class (the dog folder is not evaluated).
    assert m["run"] == os.path.abspath(run) and m["weights"] == os.path.join(run, "best.h5")
    assert m["split"] == "test" and m["classes"] == ["Cat"] and m["epoch"] == 1
    assert m["num_images"] == len(CAT_OBJECTS) and m["num_gt"] == sum(CAT_OBJECTS)
    assert list(m["per_class"]) == ["Cat"] and m["per_class"]["Cat"]["num_gt"] == sum(CAT_OBJECTS)
    assert "matterport per-image mAP@0.5" in p.stdout and "segm" in p.stdout

    with open(os.path.join(out, "ground_truth.json")) as f:
        gt = json.load(f)
    assert len(gt["images"]) == len(CAT_OBJECTS) and len(gt["annotations"]) == sum(CAT_OBJECTS)
    assert [c["name"] for c in gt["categories"]] == ["Cat"]
    with open(os.path.join(out, "predictions.json")) as f:
        preds = json.load(f)
    assert len(preds) == m["num_predictions"]
    if preds:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        coco = COCO(os.path.join(out, "ground_truth.json"))
        segm = [{k: v for k, v in d.items() if k != "bbox"} for d in preds]
        ev = COCOeval(coco, coco.loadRes(segm), "segm")
        ev.evaluate(), ev.accumulate(), ev.summarize()
        assert ev.stats[0] == pytest.approx(m["segm"]["AP"], abs=1e-6)

    assert _png(os.path.join(out, "pr_curve.png")).ndim == 3
    overlays = sorted(glob.glob(os.path.join(out, "overlays", "*.png")))
    assert len(overlays) == len(CAT_OBJECTS)  # --overlays 8 > 5 images
    assert all(_png(o).shape[0] > 100 for o in overlays)
    events = _events(out)
    assert sum(plugin == "images" for _, plugin in events) == len(CAT_OBJECTS)
    assert ("metrics/segm_AP", "scalars") in events


def test_evaluate_in_process_weights_limit_class_out(world, tmp_path, capsys):
    """train.py calls evaluate.main in its own process: the same outputs, exit status returned."""
    evaluate = _evaluate_module()
    out = os.path.join(tmp_path, "ev")
    code = evaluate.main(["--logs", world["logs"], "--weights", world["ckpt"], "--limit", "2",
                          "--overlays", "1", "--class", "cat", "--out", out, "--no-tensorboard",
                          "--min-confidence", "0.5"])
    assert code == 0, capsys.readouterr().err
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    # The run is found from the folder of --weights; "cat" is spelled as the run spells it.
    assert m["run"] == world["run"] and m["classes"] == ["Cat"]
    assert m["num_images"] == 2 and m["num_gt"] == sum(CAT_OBJECTS[:2])
    assert m["weights"] == world["ckpt"] and m["epoch"] == 1 and m["min_confidence"] == 0.5
    with open(os.path.join(out, "predictions.json")) as f:
        assert all(d["score"] >= 0.5 for d in json.load(f))
    assert len(glob.glob(os.path.join(out, "overlays", "*.png"))) == 1
    assert not glob.glob(os.path.join(out, "events.out.tfevents.*"))
    assert "matterport per-image mAP@0.5" in capsys.readouterr().out


def test_predict_mode(world, tmp_path):
    src = tmp_path / "images"
    src.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 255, (50, 30), dtype=np.uint8)).save(src / "grey.png")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    (src / "notes.txt").write_text("ignored")
    extra = os.path.join(world["data"], "cat", "test", "images", "cat0000.jpg")
    out = tmp_path / "pred"
    p = _run(world, "--image", str(src), "--image", extra, "--out", str(out), "--splash",
             "--min-confidence", "0")
    assert p.returncode == 0, p.stderr
    assert "broken.jpg" in p.stderr
    with open(out / "detections.json") as f:
        report = json.load(f)
    assert [os.path.basename(s["image"]) for s in report["skipped"]] == ["broken.jpg"]
    assert [os.path.basename(r["image"]) for r in report["images"]] == ["a.png", "grey.png", "cat0000.jpg"]
    total = 0
    for r in report["images"]:
        stem = os.path.splitext(os.path.basename(r["image"]))[0]
        assert _png(out / f"{stem}.png").ndim == 3
        splash = _png(out / f"{stem}_splash.png")
        assert splash.shape == (r["height"], r["width"], 3)
        union = np.zeros((r["height"], r["width"]), bool)
        masks = sorted(glob.glob(str(out / f"{stem}_[0-9][0-9]_*.png")))
        assert len(masks) == len(r["detections"]) <= TinyCat.DETECTION_MAX_INSTANCES
        for i, d in enumerate(r["detections"]):
            assert re.fullmatch(rf"{stem}_{i:02d}_cat_\d\.\d\d\.png", d["mask"]) and d["class"] == "Cat"
            mask = _png(out / d["mask"])
            assert mask.dtype == np.uint8 and mask.shape == (r["height"], r["width"])
            assert set(np.unique(mask)) <= {0, 255}
            y1, x1, y2, x2 = d["box"]
            inside = np.zeros_like(mask, bool)
            inside[y1:y2, x1:x2] = True
            assert not (mask.astype(bool) & ~inside).any()  # masks are pasted inside their box
            union |= mask.astype(bool)
        total += len(r["detections"])
        grey = splash[~union]
        assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()
        if stem == "a":  # lossless input: splash keeps the original colours under the masks
            original = _png(src / "a.png")
            assert (splash[union] == original[union]).all()
    assert total > 0, "min confidence 0 on a random model should give detections"


def test_predict_min_confidence_default_is_the_configs(world):
    from mrcnn_keras3.evaluate_run import load_config

    cfg_path = os.path.join(world["run"], "config.toml")
    assert load_config(cfg_path, None).DETECTION_MIN_CONFIDENCE == 0.7
    assert load_config(cfg_path, 0.05).DETECTION_MIN_CONFIDENCE == 0.05


@pytest.mark.parametrize("args, message", [
    (["--weights", "missing.h5"], "Weights file not found: missing.h5"),
    (["--weights", "{base}/fake.h5", "--config", "{run}/config.toml"], "is not an HDF5 weights file"),
    (["--weights", "{base}/outside.h5"], "is not inside a run folder (no config.toml beside it): "
                                         "pass --config TOML"),
    (["--split", "validation"], "'validation' split of {data}"),
    (["--class", "Dog"], "Class Dog is not one the model was trained on: Cat"),
    (["--run", "{old}"], "has no checkpoint yet"),
    (["--run", "{base}/nope"], "does not exist"),
    (["--image", "{base}/no_such.jpg"], "--image {base}/no_such.jpg: no such file"),
])
def test_bad_input_exits_2(world, args, message):
    with open(os.path.join(world["base"], "fake.h5"), "w") as f:
        f.write("not hdf5")
    shutil.copyfile(world["ckpt"], os.path.join(world["base"], "outside.h5"))
    args = [a.format(**world) for a in args]
    p = _run(world, *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message.format(**world) in p.stderr
    assert "Traceback" not in p.stderr


def test_no_run_in_logs(world, tmp_path):
    p = subprocess.run([sys.executable, EVALUATE, "--logs", str(tmp_path / "empty")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "No previous run" in p.stderr and "train.py" in p.stderr and "--run" in p.stderr


def test_weights_error_from_loader_is_reported_as_usage_error(world, tmp_path, capsys):
    """An HDF5 file that is not Keras weights (e.g. a Keras 3 .weights.h5): WeightsError's text, exit 2."""
    import h5py

    bad = os.path.join(tmp_path, "empty.h5")
    with h5py.File(bad, "w") as f:
        f.create_group("something")
    code = _evaluate_module().main(["--logs", world["logs"], "--run", world["run"], "--weights", bad])
    assert code == 2
    assert "has no 'layer_names' attribute" in capsys.readouterr().err


def test_help_is_fast_and_does_not_import_tensorflow():
    code = ("import sys; sys.argv = ['evaluate.py']; import evaluate; "
            "evaluate.parse_args(['--image', 'x.jpg', '--limit', '3']); "
            "print('tensorflow' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.stdout.strip() == "False", p.stderr


def test_class_filter_keeps_selected_classes_renumbered(world):
    """--class on a multi-class run: detections of the other classes are dropped and the kept
    ones get the evaluation dataset's ids (the model's id 2 becomes 1)."""
    evaluate = _evaluate_module()
    from mrcnn.model import MaskRCNN

    cfg = type("ThreeClass", (TinyCat,), {"NUM_CLASSES": 3, "DETECTION_MIN_CONFIDENCE": 0.0,
                                           "DETECTION_MAX_INSTANCES": 30, "SEED": 7})()
    model = MaskRCNN(mode="inference", config=cfg, model_dir=world["logs"])
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    raw = model.detect([image])[0]
    assert len(raw["class_ids"]) > 0
    for model_id in (1, 2):  # one class or both are detected: each call drops and/or keeps some
        got = evaluate.ClassFilter(model, {model_id: 1}).detect([image])[0]
        keep = raw["class_ids"] == model_id
        np.testing.assert_array_equal(got["rois"], raw["rois"][keep])
        np.testing.assert_array_equal(got["scores"], raw["scores"][keep])
        np.testing.assert_array_equal(got["masks"], raw["masks"][..., keep])
        assert got["masks"].shape == (48, 64, keep.sum())
        assert got["class_ids"].dtype == np.int32 and (got["class_ids"] == 1).all()
    assert evaluate.select_classes(["BG", "Cat", "Teddy bear"], ["teddy_BEAR"]) == ["Teddy bear"]
    assert evaluate.select_classes(["BG", "Dog", "Cat"], None) == ["Dog", "Cat"]
