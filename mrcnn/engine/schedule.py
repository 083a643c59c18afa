"""Staged training schedules: which layers train until which cumulative epoch, at what rate.

A schedule is a list of stages ``{"layers": "heads", "epochs": 10, "learning_rate": 0.001}``
with cumulative, strictly increasing ``epochs`` (matterport's chained ``train()`` calls).
``scale_schedule`` stretches one to N total epochs, keeping the stage proportions.
"""
from __future__ import annotations

import math


def default_schedule(learning_rate):
    """matterport's recipe: heads first, then all layers at a tenth of the rate (half and half)."""
    return [{"layers": "heads", "epochs": 1, "learning_rate": float(learning_rate)},
            {"layers": "all", "epochs": 2, "learning_rate": float(learning_rate) / 10}]


def scale_schedule(schedule, total_epochs, learning_rate):
    """Scale ``schedule`` to end at ``total_epochs``. Stages that would get no epoch are dropped.

    Missing learning rates default to ``learning_rate``.
    """
    if total_epochs < 1:
        raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
    stages = [dict(s) for s in (schedule or default_schedule(learning_rate))]
    end = float(stages[-1]["epochs"])
    out, prev = [], 0
    for i, stage in enumerate(stages):
        stop = total_epochs if i == len(stages) - 1 else int(math.ceil(stage["epochs"] * total_epochs / end - 1e-9))
        stop = min(stop, total_epochs)
        if stop <= prev:
            continue
        stage["epochs"] = stop
        stage.setdefault("learning_rate", float(learning_rate))
        stage["learning_rate"] = float(stage["learning_rate"])
        out.append(stage)
        prev = stop
    return out


def stages_from(schedule, completed_epoch):
    """The stages still to run after ``completed_epoch`` (for --resume)."""
    return [s for s in schedule if s["epochs"] > completed_epoch]
