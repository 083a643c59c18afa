"""The run folder's one owner: its name, its files and how to find, resolve and read a run.

    logs/{name}{YYYYmmddTHHMM}/   (``-2``, ``-3``... when that minute's is taken; matterport's naming)
    config.toml          resolved config + [run] table (git commit, package versions)
    state.json           CLI state: args, classes, schedule, completed epoch, best epoch/metric
    mask_rcnn_{name}_{epoch:04d}.h5   one checkpoint per epoch (``find_last`` reads these)
    best.h5, last.h5     hard links (copies where links fail) to the best (validation mask AP)
                         and the newest checkpoint; KEEP_CHECKPOINTS prunes the other epochs
    interrupted.h5       the weights when Ctrl-C stopped training mid-epoch
    results.csv/.png     one row per epoch (``mrcnn.io.run_files``)
    train/, validation/  TensorBoard event files

No TensorFlow here: the commands and tests read runs without importing the model.
"""
from __future__ import annotations

import collections
import datetime
import json
import os
import re

from mrcnn.io.fsio import atomic_copy, atomic_write_text  # noqa: F401
from mrcnn.io.run_files import (RESULTS_CSV, RESULTS_PNG, append_results,  # noqa: F401
                                crop_to_content, link_or_copy, plot_results, read_results,
                                summary_tag)

STATE = "state.json"
CONFIG = "config.toml"
BEST = "best.h5"
LAST = "last.h5"
INTERRUPTED = "interrupted.h5"
RUN_SUFFIX_RE = r"\d{8}T\d{4}(-\d+)?"  # after the name: the minute, "-2"... for a taken one
# matterport's set_log_dir pattern: .../{name}{YYYYmmddTHHMM}[-k]/mask_rcnn_{name}_{epoch:04d}.h5
_CHECKPOINT_PATH_RE = re.compile(
    r".*[/\\]([\w-]+?)(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(?P<suffix>-\d+)?[/\\]mask\_rcnn\_[\w-]+(\d{4})\.h5$")
_CHECKPOINT_FILE_RE = re.compile(r"mask_rcnn_.*_(\d{4,})\.h5")


class RunError(ValueError):
    """A run folder, its files or a weights file cannot be used; the message says why and the fix."""


class MissingError(RunError, FileNotFoundError):
    """No run, or no checkpoint, where one was looked for."""


# ----------------------------------------------------------------------------- names
def model_name(config):
    """The lower-case NAME that run folders and checkpoints carry ("mrcnn" when unset)."""
    return (getattr(config, "NAME", None) or "mrcnn").lower()


def run_dir_name(name, when=None, suffix=""):
    """``{name}{YYYYmmddTHHMM}{suffix}``: a run folder's name (``when`` defaults to now)."""
    return f"{name}{(when or datetime.datetime.now()):%Y%m%dT%H%M}{suffix}"


def checkpoint_template(run_dir, name):
    """``{run_dir}/mask_rcnn_{name}_{epoch:04d}.h5`` with ``{epoch:04d}`` left to format."""
    return os.path.join(run_dir, f"mask_rcnn_{name}_{{epoch:04d}}.h5")


def checkpoint_path(run_dir, name, epoch):
    return checkpoint_template(run_dir, name).format(epoch=int(epoch))


def parse_checkpoint_path(path):
    """(run start datetime, run suffix "" or "-k", epoch) of a checkpoint path inside a run
    folder (matterport's pattern), else None."""
    m = _CHECKPOINT_PATH_RE.match(str(path).replace("\\", "/"))
    if not m:
        return None
    return datetime.datetime(*(int(m.group(i)) for i in range(2, 7))), m.group("suffix") or "", int(m.group(8))


def checkpoint_epoch(path):
    """The epoch of an epoch checkpoint file name (``mask_rcnn_cat_0003.h5`` -> 3), else None."""
    m = _CHECKPOINT_FILE_RE.fullmatch(os.path.basename(str(path)))
    return int(m.group(1)) if m else None


def is_run_of(folder_name, name):
    """True for a run folder of exactly ``name`` ("cat" never matches "cat_dog2026...")."""
    return re.fullmatch(re.escape(name) + RUN_SUFFIX_RE, folder_name) is not None


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


# state.json keys train.py --resume needs, with their JSON types.
_STATE_TYPES = {"classes": list, "data": str, "seed": int, "epochs": int, "schedule": list,
                "completed_epoch": int}


def read_state(run_dir):
    """A run's state.json, checked; RunError naming the file and the fix when it is damaged."""
    path = os.path.join(run_dir, STATE)
    fix = (f"Restore it from a backup, or start a new run (python train.py --class ... without "
           f"--resume); the checkpoints in {run_dir} can be loaded with --weights.")
    try:
        with open(path, encoding="utf8") as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        raise RunError(f"Cannot read {path}: {e}. {fix}") from None
    if not isinstance(state, dict):
        raise RunError(f"{path} holds a {type(state).__name__}, not an object. {fix}")
    for key, kind in _STATE_TYPES.items():
        if key in state and not isinstance(state[key], kind) or kind is int and isinstance(state.get(key), bool):
            raise RunError(f"{path}: \"{key}\" is {json.dumps(state[key])}, expected a "
                             f"{'list' if kind is list else kind.__name__}. {fix}")
    if "classes" in state and not all(isinstance(c, str) for c in state["classes"]):
        raise RunError(f"{path}: \"classes\" must be a list of class names. {fix}")
    return state


def write_state(run_dir, state):
    atomic_write_text(os.path.join(run_dir, STATE), json.dumps(state, indent=2, sort_keys=True))


def read_run_state(run_dir):
    """The run's state.json as a dict; {} when ``run_dir`` is None or has no state.json.
    Raises RunError("Cannot read {path}: {reason}") when the file exists but cannot be read."""
    path = os.path.join(run_dir, STATE) if run_dir else None
    if path is None or not os.path.isfile(path):
        return {}
    return read_state(run_dir)


class ClassCountError(RunError):
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
    return (f"--resume continues {run_dir} with its recorded config ({os.path.join(run_dir, CONFIG)}); "
            f"it does not take {' '.join(given)}. To train on with another config, start a new run "
            f"from this run's weights: python train.py --class ... --epochs N --weights "
            f"{os.path.join(run_dir, LAST)} {' '.join(given)}")


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
        raise MissingError(
            f"No previous run in {os.path.abspath(logs_dir)} (no folder with a {STATE}). "
            f"Start one with: python train.py --class Cat --epochs 10")
    return runs[-1]


def checkpoints(run_dir):
    """Epoch checkpoints (``mask_rcnn_{name}_{epoch:04d}.h5``) of a run, oldest first."""
    return sorted(os.path.join(run_dir, f) for f in os.listdir(run_dir) if checkpoint_epoch(f) is not None)


def find_last(logs_dir, name):
    """The newest epoch checkpoint of the newest run folder named ``name`` that has one, else None."""
    try:
        folders = sorted(d for d in os.listdir(logs_dir)
                         if is_run_of(d, name) and os.path.isdir(os.path.join(logs_dir, d)))
    except FileNotFoundError:
        return None
    for folder in reversed(folders):
        ckpts = checkpoints(os.path.join(logs_dir, folder))
        if ckpts:
            return ckpts[-1]
    return None


def prune_checkpoints(run_dir, keep, best_epoch=None):
    """Delete epoch checkpoints but the newest ``keep`` and the one of ``best_epoch``
    (``keep`` 0: keep all, matterport's behaviour); the deleted paths."""
    if not keep:
        return []
    ckpts = checkpoints(run_dir)
    keep_set = set(ckpts[-int(keep):])
    removed = []
    for path in ckpts:
        if path in keep_set or (best_epoch is not None and checkpoint_epoch(path) == int(best_epoch)):
            continue
        os.unlink(path)
        removed.append(path)
    return removed


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
    """best.h5, else last.h5, else the newest epoch checkpoint; MissingError when none."""
    for name in (BEST, LAST):
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            return path
    ckpts = checkpoints(run_dir)
    if not ckpts:
        raise MissingError(f"Run {run_dir} has no checkpoint yet (no best.h5, last.h5 or mask_rcnn_*.h5).")
    return ckpts[-1]


def weights_epoch(weights, state):
    """Epoch of a run's weights file: from a checkpoint's name, else (best.h5) the best epoch in
    state.json, else its completed epoch."""
    epoch = checkpoint_epoch(weights)
    if epoch is not None:
        return epoch
    if os.path.basename(weights) == BEST and state.get("best"):
        return int(state["best"].get("epoch") or 0)
    return int(state.get("completed_epoch") or 0)


def interrupted_path(run_dir):
    return os.path.join(run_dir, INTERRUPTED)


# ----------------------------------------------------------------------------- config and classes
def config_path(run_dir):
    return os.path.join(run_dir, CONFIG)


def read_config(path):
    """The ``Config`` of a config TOML (a run's config.toml); RunError when missing or invalid."""
    from mrcnn.config import Config, ConfigError

    if not os.path.isfile(path):
        raise RunError(f"Config file {path} not found: pass --config TOML.")
    try:
        return Config.from_toml(path)
    except ConfigError as e:
        raise RunError(str(e)) from None


def write_config(run_dir, config, extra=None):
    """``config.toml`` of a run (``extra``: the [run] table), unless the run already has one."""
    path = config_path(run_dir)
    if not os.path.exists(path):
        config.to_toml(path, extra=extra)
    return path


def read_class_names(run_dir, num_classes, fallback=None):
    """["BG", ...] of a run (see ``class_names``) read from its state.json ({} without one)."""
    return class_names(read_run_state(run_dir), num_classes, fallback)


def check_weights_file(path):
    """``path`` if it is an HDF5 file; RunError otherwise (before any model is built)."""
    import h5py

    if not os.path.isfile(path):
        raise RunError(f"Weights file not found: {path}. Pass the path of an existing .h5 file "
                       f"(a run's best.h5 / last.h5, or mask_rcnn_coco.h5).")
    if not h5py.is_hdf5(path):
        raise RunError(f"{path} is not an HDF5 weights file. Pass a Keras .h5 file such as "
                       f"mask_rcnn_coco.h5 or one of a run's checkpoints.")
    return path


def weights_num_classes(path):
    """Class count (background included) of the heads in a weights file; None without heads."""
    import h5py

    from mrcnn.io.weights_io import read_list_attr

    check_weights_file(path)
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
        if "mrcnn_class_logits" not in root:
            return None
        g = root["mrcnn_class_logits"]
        names = read_list_attr(g, "weight_names")
        return int(g[names[0]].shape[-1]) if names else None


# ----------------------------------------------------------------------------- resolving a run
Run = collections.namedtuple("Run", "dir weights config_path state")
Run.__doc__ = """A resolved run: its folder (None for loose weights), weights .h5, config TOML, state dict."""


def resolve_run(source=None, weights=None, config=None, logs="logs"):
    """The ``Run`` of ``source``: a run folder (its best weights), a weights / checkpoint file
    (its folder is the run when config.toml is beside it), or None / "last" (the newest run in
    ``logs``). ``weights`` picks another file of the run; ``config`` another config TOML.

    Raises RunError (MissingError for no run / no checkpoint) with the message and the fix.
    """
    run = None if source in (None, "last") else os.fspath(source)
    if run is not None and not os.path.isdir(run):
        if not os.path.isfile(run):
            raise RunError(f"{run} does not exist: it is neither a run folder nor a weights file. Pass "
                           f"a run folder (runs are in {os.path.abspath(logs)}) or a .h5 path.")
        run, weights = None, run
    if weights is not None:
        check_weights_file(weights)
    if run is None and weights is None:
        run = newest_run(logs)
    if run is None:
        folder = os.path.dirname(os.path.abspath(weights))
        run = folder if os.path.isfile(config_path(folder)) else None
        if run is None and not config:
            raise RunError(f"{weights} is not inside a run folder (no config.toml beside it): pass "
                           f"--config TOML to say how the model is built.")
    config = config or config_path(run)
    if not os.path.isfile(config):
        raise RunError(f"Config file {config} not found: the run folder is incomplete; pass --config TOML.")
    state = read_run_state(run)
    if weights is None:
        try:
            weights = best_weights(run)
        except MissingError as e:
            raise MissingError(f"{e} Train it further, or pass the path of a weights .h5.") from None
    return Run(run, check_weights_file(weights), config, state)
