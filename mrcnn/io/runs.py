"""Run folders: ``logs/{name}{YYYYmmddTHHMM}/`` (``-2``, ``-3``... when that minute's is taken) and what train.py / evaluate.py keep there.

    config.toml          resolved config + [run] table (git commit, package versions)
    state.json           CLI state: args, classes, schedule, completed epoch, best epoch/metric
    mask_rcnn_{name}_{epoch:04d}.h5   one checkpoint per epoch (``find_last`` reads these)
    best.h5, last.h5     hard links (copies where links fail) to the best (validation mask AP)
                         and the newest checkpoint; KEEP_CHECKPOINTS prunes the other epochs
    results.csv/.png     one row per epoch: losses, validation losses, validation AP; curves
    train/, validation/  TensorBoard event files

No TensorFlow here: evaluate.py and tests read runs without importing the model.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil

from mrcnn.io.fsio import atomic_open, atomic_path

STATE = "state.json"
RESULTS_CSV = "results.csv"
RESULTS_PNG = "results.png"


def claim_run_dir(path):
    """Create the run folder ``path``, or ``path-2``, ``path-3``... when another run already holds
    it; return the folder created. ``os.mkdir`` is atomic, so two runs started in the same minute
    never share a folder (and never overwrite each other's checkpoints or state.json)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    k = 1
    while True:
        candidate = path if k == 1 else f"{path}-{k}"
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            k += 1


def atomic_write_text(path, text):
    with atomic_open(path, "w") as f:
        f.write(text)


def link_or_copy(src, dst):
    """``dst`` as a hard link to ``src`` (no extra disk), atomically; a copy where the filesystem
    has no hard links. Safe because every checkpoint is written as a new file (atomic rename),
    never in place: a later epoch never changes what ``best.h5`` holds."""
    tmp = f"{dst}.tmp-link"
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        atomic_copy(src, dst)


def prune_checkpoints(run_dir, keep, best_epoch=None):
    """Delete epoch checkpoints but the newest ``keep`` and the one of ``best_epoch``
    (``keep`` 0: keep all, matterport's behaviour); the deleted paths."""
    if not keep:
        return []
    ckpts = checkpoints(run_dir)
    keep_set = set(ckpts[-int(keep):])
    removed = []
    for path in ckpts:
        m = re.search(r"_(\d{4,})\.h5$", path)
        if path in keep_set or (m and best_epoch is not None and int(m.group(1)) == int(best_epoch)):
            continue
        os.unlink(path)
        removed.append(path)
    return removed


def atomic_copy(src, dst):
    """Copy ``src`` to ``dst`` atomically; DiskFullError (folder, bytes) if it cannot fit."""
    with open(src, "rb") as fin, atomic_open(dst, "wb", need=os.path.getsize(src)) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


# state.json keys train.py --resume needs, with their JSON types.
_STATE_TYPES = {"classes": list, "data": str, "seed": int, "epochs": int, "schedule": list,
                "completed_epoch": int}


def read_state(run_dir):
    """A run's state.json, checked; ValueError naming the file and the fix when it is damaged."""
    path = os.path.join(run_dir, STATE)
    fix = (f"Restore it from a backup, or start a new run (python train.py --class ... without "
           f"--resume); the checkpoints in {run_dir} can be loaded with --weights.")
    try:
        with open(path, encoding="utf8") as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"Cannot read {path}: {e}. {fix}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not an object. {fix}")
    for key, kind in _STATE_TYPES.items():
        if key in state and not isinstance(state[key], kind) or kind is int and isinstance(state.get(key), bool):
            raise ValueError(f"{path}: \"{key}\" is {json.dumps(state[key])}, expected a "
                             f"{'list' if kind is list else kind.__name__}. {fix}")
    if "classes" in state and not all(isinstance(c, str) for c in state["classes"]):
        raise ValueError(f"{path}: \"classes\" must be a list of class names. {fix}")
    return state


def write_state(run_dir, state):
    atomic_write_text(os.path.join(run_dir, STATE), json.dumps(state, indent=2, sort_keys=True))


def read_run_state(run_dir):
    """The run's state.json as a dict; {} when ``run_dir`` is None or has no state.json.
    Raises ValueError("Cannot read {path}: {reason}") when the file exists but cannot be read."""
    path = os.path.join(run_dir, STATE) if run_dir else None
    if path is None or not os.path.isfile(path):
        return {}
    return read_state(run_dir)


class ClassCountError(ValueError):
    """The class names found do not match NUM_CLASSES; ``names`` holds them."""

    def __init__(self, names, num_classes):
        super().__init__(f"{len(names)} class names ({names}) for NUM_CLASSES={num_classes}")
        self.names, self.num_classes = names, num_classes


def class_names(state, num_classes, fallback=None):
    """["BG", ...] in the model's class-id order, from a run's state dict: its "class_names", else
    "BG" + its "classes", else "BG" + ``fallback`` (names in training's order), else generic
    "class i" names for ``num_classes`` (background included).

    Raises ClassCountError when the names found are not ``num_classes`` long.
    """
    names = state.get("class_names") or (["BG"] + list(state["classes"]) if state.get("classes")
                                          else None)
    names = names or (["BG"] + list(fallback) if fallback else None)
    if names is None:
        return ["BG"] + [f"class {i}" for i in range(1, num_classes)]
    if len(names) != num_classes:
        raise ClassCountError(names, num_classes)
    return names


def config_change_refusal(run_dir, config=None, overrides=()):
    """The message refusing ``--config``/``--set`` with ``--resume`` (None when neither is given):
    a resumed run keeps the config it recorded, so they would be ignored or make config.toml lie."""
    given = ([f"--config {config}"] if config else []) + [f"--set {o}" for o in overrides]
    if not given:
        return None
    return (f"--resume continues {run_dir} with its recorded config ({os.path.join(run_dir, 'config.toml')}); "
            f"it does not take {' '.join(given)}. To train on with another config, start a new run "
            f"from this run's weights: python train.py --class ... --epochs N --weights "
            f"{os.path.join(run_dir, 'last.h5')} {' '.join(given)}")


def list_runs(logs_dir):
    """Run folders holding a state.json, least recently updated first (state.json mtime, then
    folder name): a resumed older run counts as the newest."""
    try:
        names = os.listdir(logs_dir)
    except FileNotFoundError:
        return []
    runs = [os.path.join(logs_dir, n) for n in names
            if os.path.isfile(os.path.join(logs_dir, n, STATE))]
    return sorted(runs, key=lambda p: (os.path.getmtime(os.path.join(p, STATE)), p))


def newest_run(logs_dir):
    runs = list_runs(logs_dir)
    if not runs:
        raise FileNotFoundError(
            f"No previous run in {os.path.abspath(logs_dir)} (no folder with a {STATE}). "
            f"Start one with: python train.py --class Cat --epochs 10")
    return runs[-1]


def checkpoints(run_dir):
    """Epoch checkpoints (``mask_rcnn_{name}_{epoch:04d}.h5``) of a run, oldest first."""
    return sorted(os.path.join(run_dir, f) for f in os.listdir(run_dir)
                  if re.fullmatch(r"mask_rcnn_.*_\d{4,}\.h5", f))


def newest_complete_checkpoint(run_dir):
    """(path or None, [(skipped path, reason)]): the newest epoch checkpoint that reads in full,
    and the newer ones that do not (what a power loss or a full disk leaves)."""
    from mrcnn.io.weights_io import WeightsError, read_weights

    skipped = []
    for path in reversed(checkpoints(run_dir)):
        try:
            read_weights(path)
            return path, skipped
        except WeightsError as e:
            skipped.append((path, str(e)))
    return None, skipped


def best_weights(run_dir):
    """best.h5, else last.h5, else the newest epoch checkpoint."""
    for name in ("best.h5", "last.h5"):
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            return path
    ckpts = checkpoints(run_dir)
    if not ckpts:
        raise FileNotFoundError(f"Run {run_dir} has no checkpoint yet (no best.h5, last.h5 or mask_rcnn_*.h5).")
    return ckpts[-1]


def summary_tag(key):
    """TensorBoard tag of a log key, grouped so the losses and the LR come first:
    ``loss`` -> ``loss/total``, ``mrcnn_mask_loss`` -> ``loss/mrcnn_mask``, ``learning_rate`` ->
    ``lr``, ``segm_AP`` -> ``metrics/segm_AP``. Train and validation share a tag in their own
    run folders (train/, validation/), so TensorBoard draws them on one card."""
    key = key[4:] if key.startswith("val_") else key
    if key == "loss":
        return "loss/total"
    if key.endswith("_loss"):
        return "loss/" + key[:-5]
    if key in ("learning_rate", "lr"):
        return "lr"
    return "metrics/" + key


def crop_to_content(image, pad=6, white=245):
    """``image`` [H, W, 3] uint8 without its blank (near-white) margins, ``pad`` px kept."""
    import numpy as np

    ink = (np.asarray(image)[..., :3] < white).any(axis=-1)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not len(rows):
        return image
    y1, y2 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, image.shape[0])
    x1, x2 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, image.shape[1])
    return image[y1:y2, x1:x2]


def append_results(run_dir, row):
    """Add or replace the row of ``row['epoch']`` in results.csv (atomically; columns may grow)."""
    path = os.path.join(run_dir, RESULTS_CSV)
    rows = read_results(run_dir)
    rows = [r for r in rows if int(r["epoch"]) != int(row["epoch"])] + [row]
    rows.sort(key=lambda r: int(r["epoch"]))
    fields = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
    return rows


def read_results(run_dir):
    path = os.path.join(run_dir, RESULTS_CSV)
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf8") as f:
        return list(csv.DictReader(f))


def plot_results(run_dir):
    """results.png: each loss, train against validation, the validation AP and the LR per epoch."""
    from mrcnn.evaluation import results_plot

    rows = read_results(run_dir)
    if not rows:
        return None
    path = os.path.join(run_dir, RESULTS_PNG)
    with atomic_path(path, suffix=".png") as tmp:
        results_plot.plot(rows, tmp)
    return path
