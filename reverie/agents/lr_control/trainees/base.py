"""What every trainee is: a training run advanced one interval at a time, at a learning rate and
weight decay the controller sets (Trainee), and how an interval went (TrainingReport). No Ray."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class TrainingReport:
    """How one interval of training went."""

    steps: int  # gradient steps taken so far in the run
    train_loss: float  # mean over the interval's batches
    train_acc: float
    val_loss: float  # on the whole validation split, after the interval
    val_acc: float
    grad_norm: float  # mean gradient norm over the interval


class Trainee(Protocol):
    budget: int
    """Gradient steps the run may take."""
    steps: int
    """Gradient steps taken so far."""

    @property
    def epochs(self) -> float:
        """Passes over its training data the budget makes (0 for a trainee without data): what a tuner
        needs to know to tell a run that will under-fit from one that will over-fit."""
        ...

    def advance(self, steps: int, lr: Callable[[int], float], weight_decay: float) -> TrainingReport:
        """Take `steps` gradient steps; lr(step) is the learning rate of run step `step`."""
        ...

    def report(self) -> TrainingReport:
        """The run as it stands (validation only, no step taken): the state before the first interval."""
        ...

    def test_score(self) -> float:
        """The held-out figure the benchmark compares: test accuracy (the toy: its accuracy)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to go on from here (Ray Tune checkpoints it, so PBT exploits real weights)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
