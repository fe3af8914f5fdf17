"""What a training controller steers: a training run advanced one interval at a time, at a
learning rate and weight decay the controller sets (the Trainee protocol, base.py). No Ray.

Trainees by name (TRAINEES): "headline", the headline classifier (headline.py); "pbt-toy", Ray Tune's
PBT toy problem (pbt_toy.py), whose best learning rate is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reverie.agents.lr_control.trainees.base import Trainee, TrainingReport
from reverie.agents.lr_control.trainees.headline import HeadlineRun
from reverie.agents.lr_control.trainees.pbt_toy import PBTToy


def _pbt_toy(config: Any, seed: int, home: Any = None) -> Trainee:
    return PBTToy(config, seed)  # the toy reads no data from REVERIE_HOME


TRAINEES: dict[str, Callable[..., Trainee]] = {"headline": HeadlineRun, "pbt-toy": _pbt_toy}
"""Trainees by name: each builds a run from (its config, seed, REVERIE_HOME for cached data)."""

__all__ = ["TRAINEES", "Trainee", "TrainingReport"]
