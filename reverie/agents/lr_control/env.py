"""Training control as a gymnasium environment: one episode is one training run of a trainee
(reverie/agents/lr_control/trainees/__init__.py) with a fixed budget of gradient steps, cut into `intervals` decisions.

Before each interval the controller picks one action from the seed's menu made real (ACTIONS):
keep, halve or double the learning rate, raise or lower the weight decay. The learning rate is
not free: it is a base schedule (cosine by default) times a bounded multiplier 2^k, |k| <= max_lr_exponent,
so an action is a bounded residual on the schedule and "keep" at every step is the schedule
itself (the literature shows an unanchored controller loses to cosine). Weight decay is
base_weight_decay x 10^j, |j| <= max_wd_exponent.

Observation (OBSERVATION, float32): the budget spent, the learning rate and both exponents, the
latest train and validation losses and accuracies, the last two changes of the log validation loss
and of the validation accuracy, the generalisation gap, the gradient norm, the validation loss
against its best so far, and how many passes over its data the run's budget makes.

Reward: -delta log(validation loss) per interval (so a run's rewards add up to its log loss
reduction), plus `final_weight` x the final validation accuracy at the last interval.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from reverie.agents.lr_control.config import ControlConfig, schedule_factor
from reverie.agents.lr_control.trainees import Trainee, TrainingReport

ACTIONS = (
    "keep",
    "halve the learning rate",
    "double the learning rate",
    "raise the weight decay",
    "lower the weight decay",
)
"""The controller's menu; its index is the action."""
KEEP, LR_DOWN, LR_UP, WD_UP, WD_DOWN = range(len(ACTIONS))

OBSERVATION = (
    "budget spent",
    "log10 lr + 3",
    "lr exponent / max",
    "wd exponent / max",
    "val acc",
    "train acc",
    "log val loss",
    "log train loss",
    "d log val loss",
    "previous d log val loss",
    "d val acc",
    "log train loss - log val loss",
    "log1p grad norm",
    "log val loss - log best val loss",
    "log2(1 + epochs the budget makes) / 4",
)


@dataclass
class ControlState:
    """Where a run stands: its budget, the exponents the controller has set, and what happened so far."""

    budget: int
    epochs: float = 0.0
    lr_exponent: int = 0
    wd_exponent: int = 0
    reports: list[TrainingReport] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)


def apply_action(config: ControlConfig, state: ControlState, action: int) -> None:
    """Move the exponents by one action, within their bounds (an invalid action keeps)."""
    k, j = state.lr_exponent, state.wd_exponent
    if action == LR_DOWN:
        k -= 1
    elif action == LR_UP:
        k += 1
    elif action == WD_UP:
        j += 1
    elif action == WD_DOWN:
        j -= 1
    state.lr_exponent = int(np.clip(k, -config.max_lr_exponent, config.max_lr_exponent))
    state.wd_exponent = int(np.clip(j, -config.max_wd_exponent, config.max_wd_exponent))
    state.actions.append(int(action) if 0 <= action < len(ACTIONS) else KEEP)


def learning_rate(config: ControlConfig, state: ControlState):
    """lr(step) for the next interval: the base schedule times 2^k."""
    scale, budget = config.base_lr * 2.0**state.lr_exponent, state.budget
    return lambda step: scale * schedule_factor(config.schedule, step / budget)


def weight_decay(config: ControlConfig, state: ControlState) -> float:
    return config.base_weight_decay * 10.0**state.wd_exponent


def observe(config: ControlConfig, state: ControlState) -> np.ndarray:
    """The controller's view of the run (see OBSERVATION)."""
    reports = state.reports
    now = reports[-1]
    log_val = [math.log(max(r.val_loss, 1e-6)) for r in reports]
    d1 = log_val[-1] - log_val[-2] if len(reports) > 1 else 0.0
    d2 = log_val[-2] - log_val[-3] if len(reports) > 2 else 0.0
    d_acc = now.val_acc - reports[-2].val_acc if len(reports) > 1 else 0.0
    lr_now = learning_rate(config, state)(now.steps)
    obs = [
        now.steps / state.budget,
        math.log10(max(lr_now, 1e-12)) + 3.0,
        state.lr_exponent / max(config.max_lr_exponent, 1),
        state.wd_exponent / max(config.max_wd_exponent, 1),
        now.val_acc,
        now.train_acc,
        log_val[-1],
        math.log(max(now.train_loss, 1e-6)),
        d1,
        d2,
        d_acc,
        math.log(max(now.train_loss, 1e-6)) - log_val[-1],
        math.log1p(now.grad_norm),
        log_val[-1] - min(log_val),
    ]
    obs.append(math.log2(1.0 + state.epochs) / 4.0)
    return np.clip(np.asarray(obs, np.float32), -10.0, 10.0)


class TrainingControlEnv(gym.Env):
    """One episode = one training run; one step = one interval of its budget.

    Config: the fields of ControlConfig, as a dict (RLlib's env_config) or keyword arguments, plus
    `home` (REVERIE_HOME, where the trainee's data is cached). `reset(seed=...)` draws the run's
    seed from `seeds`; `reset(options={"run_seed": s})` runs seed s exactly.
    """

    metadata: dict[str, Any] = {}

    def __init__(self, config: dict | ControlConfig | None = None, **kwargs: Any):
        if isinstance(config, ControlConfig):
            config = dataclasses.asdict(config) | {"trainee_config": config.trainee_config}
        cfg = {**dict(config or {}), **kwargs}
        self.home = cfg.pop("home", None)
        fields = {f.name for f in dataclasses.fields(ControlConfig)}
        unknown = set(cfg) - fields
        if unknown:
            raise ValueError(f"TrainingControlEnv: unknown config keys {sorted(unknown)}")
        for key in ("seeds", "train_subsets", "base_lrs"):
            if key in cfg:
                cfg[key] = tuple(cfg[key])
        self.config = ControlConfig(**cfg)
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(len(OBSERVATION),), dtype=np.float32)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.trainee: Trainee | None = None
        self.state = ControlState(budget=0)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        run_seed = (options or {}).get("run_seed")
        if run_seed is None:
            run_seed = int(self.np_random.choice(self.config.seeds))
        self.run_seed = int(run_seed)
        self.trainee = self.config.make_trainee(self.run_seed, self.home)
        self.run_config = self.config.for_run(self.run_seed)
        self.state = ControlState(
            budget=self.trainee.budget, epochs=self.trainee.epochs, reports=[self.trainee.report()]
        )
        self._interval = 0
        return observe(self.run_config, self.state), {"run_seed": self.run_seed}

    def step(self, action):
        config, state, trainee = self.run_config, self.state, self.trainee
        apply_action(config, state, int(action))
        self._interval += 1
        target = round(trainee.budget * self._interval / config.intervals)
        lr = learning_rate(config, state)
        state.lrs.append(lr(trainee.steps))
        report = trainee.advance(target - trainee.steps, lr, weight_decay(config, state))
        before = state.reports[-1]
        state.reports.append(report)
        reward = math.log(max(before.val_loss, 1e-6)) - math.log(max(report.val_loss, 1e-6))
        done = self._interval >= config.intervals
        if done:
            reward += config.final_weight * report.val_acc
        return observe(config, state), float(reward), done, False, {"val_acc": report.val_acc}
