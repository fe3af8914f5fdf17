"""Training controllers: who picks the action before each interval of a run. No Ray.

Controllers by name (CONTROLLERS), each through the same `act`, so the benchmark compares them at
equal compute on the same runs:
- "keep": never acts, so the run follows its base schedule (with the schedule "constant" at a
  grid of learning rates, "cosine" or "linear", these are the static arms);
- "random": a uniformly random action (the floor);
- "agent": the RLlib-trained LRControlNet, greedy;
- "replay": a fixed action sequence, open loop (the agent's schedule without its feedback);
- "llm": the local LLM (or Ollama, through the fallback chain) reads the same history as text and
  names one action, its decoding constrained to the menu (the backends' `choices`: token masks for
  the bundled model, structured output for Ollama);
- "llm-free": the same, unconstrained, as a chat model would answer.
Both replies are parsed strictly: anything but an action's exact name counts as "keep", and is
counted (`invalid`). The bundled 135M model never answers with a bare action name unconstrained.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from reverie.agents.lr_control.config import ControlConfig
from reverie.agents.lr_control.env import ACTIONS, KEEP, ControlState, TrainingControlEnv
from reverie.llm.base import Sampling

log = logging.getLogger(__name__)


class Controller(Protocol):
    name: str

    def reset(self, seed: int) -> None:
        """A new run begins."""
        ...

    def act(self, observation: np.ndarray, state: ControlState, config: ControlConfig) -> int:
        """The action (an index of ACTIONS) before the next interval."""
        ...


class Keep:
    name = "keep"

    def reset(self, seed: int) -> None:
        pass

    def act(self, observation, state, config) -> int:
        return KEEP


class RandomController:
    name = "random"

    def __init__(self, seed: int = 0):
        self.base_seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng([self.base_seed, seed])

    def act(self, observation, state, config) -> int:
        return int(self.rng.integers(len(ACTIONS)))


class AgentController:
    """The trained agent (a LRControlNet), greedy."""

    name = "agent"

    def __init__(self, net):
        self.net = net

    def reset(self, seed: int) -> None:
        pass

    def act(self, observation, state, config) -> int:
        return self.net.act(observation)


class Replay:
    """A fixed sequence of actions, whatever happens."""

    name = "replay"

    def __init__(self, actions: Sequence[int]):
        self.actions = [int(a) for a in actions]

    def reset(self, seed: int) -> None:
        pass

    def act(self, observation, state, config) -> int:
        step = len(state.actions)
        return self.actions[step] if step < len(self.actions) else KEEP


_SPACE = re.compile(r"\s+")


def parse_action(reply: str) -> int | None:
    """The action a reply names, or None. Strict: after lower-casing, trimming whitespace, quotes and
    a final full stop, the reply must be exactly one action's name ("keep", "double the learning
    rate", ...); anything more or less is not an action."""
    text = _SPACE.sub(" ", reply.strip().lower()).strip("\"'`*").rstrip(".").strip()
    return ACTIONS.index(text) if text in ACTIONS else None


SYSTEM = (
    "You control a neural network's training. Before each interval you choose exactly one action. "
    "Reply with the action's name only, one of: " + "; ".join(ACTIONS) + "."
)


def history_text(state: ControlState, config: ControlConfig) -> str:
    """The run so far as the LLM reads it: one line per interval, then the question."""
    lines = [
        f"Training budget: {state.budget} steps ({state.epochs:.1f} passes over the data), {config.intervals} intervals; "
        f"the learning rate follows a {config.schedule} schedule from {config.base_lr:g}, times your multiplier 2^k "
        f"(|k| <= {config.max_lr_exponent})."
    ]
    for i, report in enumerate(state.reports):
        lr = f", lr {state.lrs[i - 1]:.2e}" if i > 0 else ""
        lines.append(
            f"step {report.steps}{lr}: train loss {report.train_loss:.3f}, val loss {report.val_loss:.3f}, "
            f"val acc {report.val_acc:.3f}"
        )
    lines.append(f"Now k = {state.lr_exponent}, weight decay exponent {state.wd_exponent}. Which action?")
    return "\n".join(lines)


@dataclass
class LLMController:
    """The LLM as a controller: the same history, as text; the same menu."""

    chain: Any  # an llm.FallbackChain
    constrained: bool = True
    """Decode within the menu (the reply is an action) rather than free text."""
    max_new_tokens: int = 12
    name: str = "llm"
    invalid: int = 0
    asked: int = 0
    replies: list[str] = field(default_factory=list)
    seed: int = 0

    def reset(self, seed: int) -> None:
        self.seed = seed

    def act(self, observation, state, config) -> int:
        sampling = Sampling(
            temperature=0.0,
            top_k=1,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
            choices=ACTIONS if self.constrained else None,
        )
        reply, _ = self.chain.generate(history_text(state, config), SYSTEM, sampling)
        self.asked += 1
        self.replies.append(reply)
        action = parse_action(reply)
        if action is None:
            self.invalid += 1
            log.info("LLM controller: %r is not an action; keeping", reply)
            return KEEP
        return action


CONTROLLERS: dict[str, Callable[..., Controller]] = {
    "keep": lambda **_: Keep(),
    "random": lambda seed=0, **_: RandomController(seed),
    "agent": lambda net=None, **_: AgentController(net),
    "replay": lambda actions=(), **_: Replay(actions),
    "llm": lambda chain=None, **_: LLMController(chain),
    "llm-free": lambda chain=None, **_: LLMController(chain, constrained=False, name="llm-free"),
}
"""Controllers by name; each takes what it needs by keyword (net, actions, chain, seed)."""


@dataclass
class Episode:
    """One controlled run: its held-out score, its last validation accuracy, what was done."""

    run_seed: int
    test_score: float
    val_acc: float
    steps: int
    actions: list[int]
    lrs: list[float]
    rewards: float


def run_episode(config: ControlConfig, controller: Controller, run_seed: int, home: Any = None) -> Episode:
    """One run of `config`'s trainee under `controller`."""
    env = TrainingControlEnv(config, home=home)
    obs, _ = env.reset(options={"run_seed": run_seed})
    controller.reset(run_seed)
    total, done = 0.0, False
    while not done:
        obs, reward, done, _, _ = env.step(controller.act(obs, env.state, env.run_config))
        total += reward
    trainee = env.trainee
    assert trainee is not None  # env.reset built it
    return Episode(
        run_seed,
        trainee.test_score(),
        env.state.reports[-1].val_acc,
        trainee.steps,
        list(env.state.actions),
        list(env.state.lrs),
        total,
    )
