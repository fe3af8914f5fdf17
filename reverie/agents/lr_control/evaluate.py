"""Controllers compared at equal compute on the same runs (`reverie eval tuner`, the benchmark). No Ray.

Every arm runs the same trainee config on the same evaluation seeds with the same budget, from the
same default learning rate and weight decay; they differ only in the base schedule and in who acts:
- "static": a constant learning rate, the grid's best by mean validation accuracy;
- "cosine", "linear": the schedule, no actions;
- "agent": the trained agent acting on cosine;
- "replay": the agent's actions on a calibration run, replayed open loop on every run;
- "llm", "llm-free": the LLM acting on cosine, its reply constrained to the menu or free;
- "random": random actions on cosine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reverie.agents.lr_control.config import ControlConfig
from reverie.agents.lr_control.controllers import CONTROLLERS, Controller, Episode, LLMController, run_episode

ARMS = ("static", "cosine", "linear", "agent", "replay", "llm", "llm-free", "random")
STATIC_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
CALIBRATION_SEED = 10_000
EVAL_SEEDS = tuple(range(5))


@dataclass
class ArmResult:
    arm: str
    episodes: list[Episode]
    note: str = ""

    @property
    def scores(self) -> np.ndarray:
        return np.array([e.test_score for e in self.episodes])

    @property
    def grad_steps(self) -> int:
        """Compute per run."""
        return int(self.episodes[0].steps) if self.episodes else 0


def control_of_agent(folder: str | Path, trainee_config: Any) -> ControlConfig:
    """The ControlConfig the agent in `folder` was trained under, for `trainee_config`'s runs."""
    from reverie.agents.lr_control.net import read_lr_control_config

    saved = dict(read_lr_control_config(folder)["control"])
    saved.pop("seeds", None)
    saved.pop("train_subsets", None)  # training's domain randomisation; the runs measured are the task's own
    saved.pop("base_lrs", None)
    return ControlConfig(**{**saved, "trainee_config": trainee_config})


def run_arm(
    arm: str,
    control: ControlConfig,
    seeds: Sequence[int],
    home: Any,
    agent: Any = None,
    chain: Any = None,
    progress: Callable[[str], None] | None = None,
) -> ArmResult:
    """One arm over `seeds`. `agent`: a loaded LRControlNet (agent, replay); `chain`: an LLM fallback chain (llm)."""
    cosine = dataclasses.replace(control, schedule="cosine")

    def over(config: ControlConfig, make: Callable[[], Controller]) -> list[Episode]:
        episodes = []
        for seed in seeds:
            episodes.append(run_episode(config, make(), seed, home))
            if progress:
                progress(f"{arm} seed {seed}: {episodes[-1].test_score:.4f}")
        return episodes

    if arm == "static":
        best, best_val, best_eps = None, -1.0, []
        for lr in STATIC_GRID:
            eps = over(dataclasses.replace(control, schedule="constant", base_lr=lr), CONTROLLERS["keep"])
            val = float(np.mean([e.val_acc for e in eps]))
            if val > best_val:
                best, best_val, best_eps = lr, val, eps
        return ArmResult(arm, best_eps, f"lr {best:g} (best of {', '.join(f'{x:g}' for x in STATIC_GRID)} on val)")
    if arm in ("cosine", "linear"):
        return ArmResult(arm, over(dataclasses.replace(control, schedule=arm), CONTROLLERS["keep"]))
    if arm == "random":
        return ArmResult(arm, over(cosine, lambda: CONTROLLERS["random"](seed=1)))
    if arm == "agent":
        return ArmResult(arm, over(control, lambda: CONTROLLERS["agent"](net=agent)))
    if arm == "replay":
        calibration = run_episode(control, CONTROLLERS["agent"](net=agent), CALIBRATION_SEED, home)
        return ArmResult(
            arm,
            over(control, lambda: CONTROLLERS["replay"](actions=calibration.actions)),
            f"actions {calibration.actions} (the agent on seed {CALIBRATION_SEED})",
        )
    if arm in ("llm", "llm-free"):
        controllers: list[LLMController] = []

        def make() -> Controller:
            controller = CONTROLLERS[arm](chain=chain)
            assert isinstance(controller, LLMController)  # what "llm" and "llm-free" build
            controllers.append(controller)
            return controllers[-1]

        episodes = over(cosine, make)
        asked = sum(c.asked for c in controllers)
        invalid = sum(c.invalid for c in controllers)
        replies = [r for c in controllers for r in c.replies]
        example = f"; e.g. {replies[0].strip()[:80]!r}" if replies else ""
        return ArmResult(arm, episodes, f"{invalid} of {asked} replies were not an action (kept){example}")
    raise ValueError(f"unknown arm {arm!r}: use one of {', '.join(ARMS)}")
