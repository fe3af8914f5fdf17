"""Ray Tune's PBT toy problem as a trainee (the dynamics of ray/tune/examples/pbt_function.py).

"Accuracy" grows fastest when the learning rate is near an optimum that depends on the accuracy
itself: it rises from 0.001 to 0.01 as accuracy climbs to 100, then falls back to 0.001 at 200 (a
triangle wave). A learning rate more than 3x off the optimum in either direction makes no progress,
and one too high loses accuracy. So the right schedule is known, and a constant learning rate never
gets far. Same constants as Tune's example; the noise comes from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reverie.agents.lr_control.trainees.base import TrainingReport

MIDPOINT = 100.0  # the optimum peaks at this accuracy
Q_TOLERANCE = 3.0  # a learning rate more than this factor off the optimum makes no progress
NOISE_LEVEL = 2.0  # Gaussian noise on each step's accuracy change
TOP = 2 * MIDPOINT  # the accuracy at which Tune's example calls the problem solved


def optimal_lr(accuracy: float) -> float:
    """The triangle wave: 0.001 at 0 and at 200, 0.01 at 100 (clipped to [0.001, 0.01])."""
    if accuracy < MIDPOINT:
        best = 0.01 * accuracy / MIDPOINT
    else:
        best = 0.01 - 0.01 * (accuracy - MIDPOINT) / MIDPOINT
    return min(0.01, max(0.001, best))


@dataclass(frozen=True)
class PBTToyConfig:
    budget: int = 300
    """Steps of the toy a run may take."""


class PBTToy:
    epochs = 0.0  # no data: the toy is its accuracy alone

    def __init__(self, config: PBTToyConfig | None = None, seed: int = 0):
        self.config = config or PBTToyConfig()
        self.budget, self.steps, self.accuracy = self.config.budget, 0, 0.0
        self._rng = np.random.default_rng(seed)

    def advance(self, steps: int, lr: Callable[[int], float], weight_decay: float = 0.0) -> TrainingReport:
        steps = min(int(steps), self.budget - self.steps)
        for _ in range(steps):
            rate = float(lr(self.steps))
            best = optimal_lr(self.accuracy)
            q_err = max(rate, best) / min(rate, best)
            if q_err < Q_TOLERANCE:
                self.accuracy += (1.0 / q_err) * self._rng.random()
            elif rate > best:
                self.accuracy -= (q_err - Q_TOLERANCE) * self._rng.random()
            self.accuracy = max(0.0, self.accuracy + NOISE_LEVEL * self._rng.normal())
            self.steps += 1
        return self.report()

    def report(self) -> TrainingReport:
        # accuracy as a fraction of the solved level, and the shortfall as a loss, so the
        # controller reads the toy as it reads a classifier
        acc = min(self.accuracy / TOP, 1.0)
        loss = max(1.0 - acc, 1e-3)
        return TrainingReport(self.steps, loss, acc, loss, acc, 0.0)

    def test_score(self) -> float:
        return self.accuracy

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "accuracy": self.accuracy, "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.accuracy = int(state["steps"]), float(state["accuracy"])
        self._rng.bit_generator.state = state["rng"]
