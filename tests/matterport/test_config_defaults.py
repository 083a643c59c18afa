"""Every ``Config`` default equals matterport's, as listed in ../shared/docs/mrcnn-compat.md.

The doc's "from mrcnn.config import Config" list is parsed (KEY=VALUE items, chained
A=B=VALUE items and the LOSS_WEIGHTS sentence) and each value compared with ``Config()``.
Keys matterport does not have must default to matterport's behaviour (``EXTRA_KEYS``).
"""
import ast
import re
from pathlib import Path

import numpy as np
import pytest

from mrcnn.config import DERIVED_KEYS, Config

DOC = Path(__file__).resolve().parents[2].parent / "shared" / "docs" / "mrcnn-compat.md"

# Keys the doc does not list, with the default that reproduces matterport.
EXTRA_KEYS = {
    "COMPUTE_BACKBONE_SHAPE": None,  # matterport's own key, not in the doc's list
    "RPN_CONV_CHANNELS": 512,        # matterport hard-codes 512 (rpn_conv_shared)
    "MASK_HEAD_CHANNELS": 256,       # matterport hard-codes 256 (mrcnn_mask_conv1..4)
    "SEED": None,                    # unseeded, as matterport
    "ROI_INCLUDE_GT": False,         # matterport samples ROIs from the proposals only
    "WARMUP_STEPS": 0,
    "AUGMENT": False,                # matterport augments only when given ``augmentation``
    "TRAIN_SCHEDULE": None,          # train() calls decide the stages
    "MIXED_PRECISION": None,         # float32
    "KEEP_CHECKPOINTS": 0,           # every epoch's checkpoint stays, as matterport
    "GRADIENT_CLIP_MODE": "per_tensor",  # Keras 2 clipnorm: each gradient tensor on its own
    "DATA_WORKERS": 0,               # samples prepared in threads (matterport: keras workers)
    "XLA_COMPILE": False,            # plain TensorFlow graph, as matterport
}


def doc_defaults_section():
    if not DOC.is_file():
        pytest.skip(f"{DOC} is absent (the repository's parent folder has no shared/docs)")
    text = DOC.read_text(encoding="utf-8")
    start = text.index("from mrcnn.config import Config")
    end = text.index("`mrcnn.utils.Dataset`", start)
    return text[start:end]


def _value_at(text, i):
    """The literal starting at text[i]: bracketed, quoted, or a bare token."""
    pairs = {"[": "]", "(": ")"}
    if text[i] in pairs:
        depth, j = 0, i
        while True:
            depth += {text[i]: 1, pairs[text[i]]: -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                return text[i:j]
    if text[i] == '"':
        return text[i:text.index('"', i + 1) + 1]
    return re.match(r"[^,\s:;()]+", text[i:]).group(0).rstrip(".")


def parse_defaults(section):
    """{KEY: python value} from "KEY=VALUE" items; "A=B=VALUE" gives both keys the value."""
    values = {}
    for line in section.splitlines():
        if "Derived in" in line:
            continue
        for m in re.finditer(r"\b([A-Z][A-Z0-9_]*)=", line):
            j = m.end()
            while re.match(r"[A-Z][A-Z0-9_]*=", line[j:]):   # chained A=B=VALUE
                j = line.index("=", j) + 1
            values[m.group(1)] = ast.literal_eval(_value_at(line, j))
        m = re.search(r"LOSS_WEIGHTS: ([\d.]+) each for ([a-z_, ]+)", line)
        if m:
            values["LOSS_WEIGHTS"] = {k.strip(): float(m.group(1)) for k in m.group(2).split(",")}
    return values


def test_parser_on_the_doc_forms():
    got = parse_defaults('  - A_B=None, C=(1,2), D=[0.5,1,2]: x. E="s" (or t), F=G=[0.1,0.2].\n'
                         "  - LOSS_WEIGHTS: 1.0 each for a_loss, b_loss.\n  - H=0.0001, I=False.")
    assert got == {"A_B": None, "C": (1, 2), "D": [0.5, 1, 2], "E": "s", "F": [0.1, 0.2],
                   "G": [0.1, 0.2], "LOSS_WEIGHTS": {"a_loss": 1.0, "b_loss": 1.0}, "H": 0.0001, "I": False}


def _same(ours, theirs):
    if theirs is None or isinstance(theirs, (bool, str)):
        return ours is theirs or (isinstance(theirs, str) and ours == theirs)
    if isinstance(theirs, dict):
        return isinstance(ours, dict) and ours.keys() == theirs.keys() and all(
            _same(ours[k], v) for k, v in theirs.items())
    if isinstance(theirs, tuple) and not isinstance(ours, tuple):
        return False   # matterport's tuples stay tuples (user code may index or compare them)
    ours_arr, theirs_arr = np.asarray(ours), np.asarray(theirs)
    return ours_arr.shape == theirs_arr.shape and np.array_equal(ours_arr, theirs_arr)


def test_every_default_equals_matterports():
    doc = parse_defaults(doc_defaults_section())
    assert len(doc) >= 40, sorted(doc)   # the whole list was read
    config = Config()
    wrong = {k: (getattr(config, k, "<missing>"), v) for k, v in doc.items() if not _same(getattr(config, k, None), v)}
    assert not wrong, f"Config defaults differ from matterport's (ours, theirs): {wrong}"
    unlisted = set(config.keys()) - set(doc)
    assert unlisted == set(EXTRA_KEYS), "a new Config key needs its matterport-behaviour default in EXTRA_KEYS"
    assert {k: getattr(config, k) for k in EXTRA_KEYS} == EXTRA_KEYS


def test_derived_values_as_documented():
    config = Config()
    assert set(DERIVED_KEYS) == {"BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE"}
    assert config.BATCH_SIZE == 2 and config.IMAGE_META_SIZE == 12 + 1
    assert config.IMAGE_SHAPE.tolist() == [1024, 1024, 3]
    crop = type("Crop", (Config,), {"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 512})()
    assert crop.IMAGE_SHAPE.tolist() == [512, 512, 3]
