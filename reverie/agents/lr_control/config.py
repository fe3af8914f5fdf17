"""What the learning-rate control agent is trained with (CleanRL's `Args`): `LRControlTrainConfig`,
with the episodes it learns on (`ControlConfig`, read by TrainingControlEnv). `reverie train tuner`
takes its defaults from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from reverie.agents.lr_control.trainees import TRAINEES, Trainee
from reverie.agents.ppo import PPOSettings
from reverie.errors import ConfigError


def schedule_factor(name: str, progress: float) -> float:
    """The base schedule at `progress` (0 at the first step, 1 after the last), relative to the base lr."""
    if name == "constant":
        return 1.0
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if name == "linear":
        return max(1.0 - progress, 0.0)
    raise ValueError(f"unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}")


SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class ControlConfig:
    """What one training-control episode is: which trainee, its budget cut into decisions, the
    base schedule the controller's residual acts on, and the reward."""

    trainee: str = "headline"
    """A key of TRAINEES."""
    trainee_config: Any = None
    """The trainee's own config (HeadlineConfig, PBTToyConfig); None takes its defaults."""
    intervals: int = 20
    """Decisions per run: the budget is cut into this many equal intervals."""
    schedule: str = "cosine"
    """Base schedule: "cosine", "linear" or "constant"."""
    base_lr: float = 1e-3
    """The schedule's peak learning rate (every arm starts here)."""
    base_weight_decay: float = 1e-4
    max_lr_exponent: int = 5
    """The multiplier 2^k stays within 2^-5 .. 2^5 of the schedule."""
    max_wd_exponent: int = 2
    """Weight decay stays within 10^-2 .. 10^2 of its base."""
    final_weight: float = 1.0
    """Weight of the final validation accuracy in the last reward."""
    seeds: tuple[int, ...] = tuple(range(100, 1100))
    """Run seeds an episode draws from (training); evaluation uses others."""
    train_subsets: tuple[int, ...] = ()
    """Domain randomisation for the headline trainee: each run trains on the first of these sizes
    its seed picks (seed mod count; 0 = the whole train split), so an agent meets runs that
    under-fit and runs that over-fit. Empty: the trainee config's own."""
    base_lrs: tuple[float, ...] = ()
    """Domain randomisation of the starting point: each run's schedule peaks at the one of these its
    seed picks (seed // 7 mod count) instead of `base_lr`, so an agent must read the run to know
    whether to raise or lower it. Empty: `base_lr` always."""

    def __post_init__(self) -> None:
        if self.trainee not in TRAINEES:
            raise ConfigError(f"unknown trainee {self.trainee!r}: use one of {', '.join(TRAINEES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        if self.intervals < 1 or self.base_lr <= 0 or self.max_lr_exponent < 0 or self.max_wd_exponent < 0:
            raise ConfigError("intervals must be >= 1, base_lr > 0 and the exponent bounds >= 0")
        if not self.seeds:
            raise ConfigError("seeds must not be empty")

    def for_run(self, seed: int) -> "ControlConfig":
        """The config one run follows: `base_lr` as `base_lrs` picks it for this seed."""
        if not self.base_lrs:
            return self
        return dataclasses.replace(self, base_lr=float(self.base_lrs[(seed // 7) % len(self.base_lrs)]), base_lrs=())

    def make_trainee(self, seed: int, home: Any = None) -> Trainee:
        """A fresh run of the trainee, seeded."""
        config = self.trainee_config
        if config is None:
            config = default_trainee_config(self.trainee)
        if self.train_subsets and self.trainee == "headline":
            size = self.train_subsets[seed % len(self.train_subsets)]
            config = dataclasses.replace(config, train_subset=size or None)
        return TRAINEES[self.trainee](config, seed, home)


def default_trainee_config(trainee: str) -> Any:
    if trainee == "headline":
        from reverie.agents.lr_control.trainees.headline import HeadlineConfig

        return HeadlineConfig()
    from reverie.agents.lr_control.trainees.pbt_toy import PBTToyConfig

    return PBTToyConfig()


@dataclass(frozen=True)
class LRControlTrainConfig:
    """What `reverie train tuner` trains: the RLlib agent that steers a training run."""

    control: ControlConfig = field(default_factory=ControlConfig)
    """The episodes it learns on: by default the headline classifier (healthtweets, MLP)."""
    iterations: int = 40
    """PPO iterations; with `minutes`, the cap."""
    minutes: float | None = None
    """Stop after the iteration that passes this much training time."""
    envs: int = 8
    """Training runs stepped together."""
    seed: int = 0
    hidden: int = 64
    """Hidden size of the agent's network."""
    ppo: PPOSettings = field(
        default_factory=lambda: PPOSettings(
            lr=3e-4, entropy_coeff=0.01, vf_clip_param=10.0, num_epochs=8, batches_per_iteration=2, minibatch_size=64
        )
    )
    """PPO for episodes of `control.intervals` decisions: a train batch is envs x intervals x batches_per_iteration."""

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.envs < 1 or self.hidden < 1:
            raise ConfigError("iterations, envs and hidden must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"minutes must be positive, got {self.minutes}")
