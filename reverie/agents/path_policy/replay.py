"""A prioritised replay buffer of the path policy's experience (Schaul et al. 2016). No Ray.

An experience is a query the policy should answer, (source, relation id, answer), with the reward
its answer earns (1 for an answer a rating or a fact confirms; 0 for one a rating rejects) and a
weight (a rating's share of its client's volume). The learner re-walks replayed queries with the
current policy, so old experience teaches on-policy: what is replayed is the question, not the walk.

Proportional prioritisation: experience i is drawn with P(i) = p_i^alpha / sum_k p_k^alpha, where
p_i = |surprise| + epsilon and the surprise is how far the policy's chance of earning the reward was
from it when last walked. Importance-sampling weights w_i = (N P(i))^-beta / max_k w_k undo the
bias of drawing surprising experience more often. A full buffer drops its least surprising entry.
The buffer saves as one .npz, written then renamed, so a learner killed mid-save leaves the old file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reverie.atomic import atomic_write

EPSILON = 1e-3
"""Keeps every experience drawable once its surprise is gone."""


@dataclass
class ReplaySample:
    """What `sample` draws: buffer positions, the experiences and their importance weights."""

    index: np.ndarray  # [B] positions, for update_priorities
    queries: np.ndarray  # [B, 3] source, relation id, answer
    rewards: np.ndarray  # [B] the reward the answer earns
    weights: np.ndarray  # [B] importance-sampling weight times the experience's own weight


class PrioritizedReplay:
    """Bounded proportional prioritised replay over (query, reward, weight) experiences."""

    def __init__(self, capacity: int = 20_000, alpha: float = 0.6, beta: float = 0.4) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0.0 <= alpha <= 1.0 or not 0.0 <= beta <= 1.0:
            raise ValueError(f"alpha and beta must be in [0, 1], got {alpha}, {beta}")
        self.capacity, self.alpha, self.beta = int(capacity), float(alpha), float(beta)
        self.queries = np.zeros((0, 3), np.int64)
        self.rewards = np.zeros(0, np.float64)
        self.own_weights = np.zeros(0, np.float64)
        self.priorities = np.zeros(0, np.float64)

    def __len__(self) -> int:
        return len(self.rewards)

    def add(self, queries: np.ndarray, rewards: np.ndarray, weights: np.ndarray | None = None) -> None:
        """New experience enters with the largest priority so far, so each is drawn soon."""
        queries = np.asarray(queries, np.int64).reshape(-1, 3)
        rewards = np.asarray(rewards, np.float64).reshape(-1)
        weights = np.ones(len(rewards)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
        if not len(queries) == len(rewards) == len(weights):
            raise ValueError("queries, rewards and weights must have the same length")
        top = float(self.priorities.max()) if len(self) else 1.0
        self.queries = np.concatenate([self.queries, queries])
        self.rewards = np.concatenate([self.rewards, rewards])
        self.own_weights = np.concatenate([self.own_weights, weights])
        self.priorities = np.concatenate([self.priorities, np.full(len(rewards), top)])
        if len(self) > self.capacity:
            # the least surprising go first; among equals, the oldest (a stable sort keeps age order)
            keep = np.sort(np.argsort(-self.priorities, kind="stable")[: self.capacity])
            self._keep(keep)

    def _keep(self, keep: np.ndarray) -> None:
        self.queries, self.rewards = self.queries[keep], self.rewards[keep]
        self.own_weights, self.priorities = self.own_weights[keep], self.priorities[keep]

    def probabilities(self) -> np.ndarray:
        """P(i) of every experience."""
        scaled = self.priorities**self.alpha
        return scaled / scaled.sum()

    def sample(self, size: int, rng: np.random.Generator, beta: float | None = None) -> ReplaySample:
        """`size` experiences drawn with replacement by priority, with their importance weights."""
        if not len(self):
            raise ValueError("the replay buffer is empty")
        beta = self.beta if beta is None else beta
        probs = self.probabilities()
        index = rng.choice(len(self), size=size, p=probs)
        weights = (len(self) * probs[index]) ** -beta
        weights /= (len(self) * probs.min()) ** -beta  # the largest any experience can get is 1
        return ReplaySample(index, self.queries[index], self.rewards[index], weights * self.own_weights[index])

    def update_priorities(self, index: np.ndarray, surprise: np.ndarray) -> None:
        """After walking drawn experience again: its new surprise sets its priority."""
        self.priorities[np.asarray(index, np.int64)] = np.abs(np.asarray(surprise, np.float64)) + EPSILON

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            queries=self.queries,
            rewards=self.rewards,
            own_weights=self.own_weights,
            priorities=self.priorities,
            settings=np.array([self.capacity, self.alpha, self.beta], np.float64),
        )
        return atomic_write(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "PrioritizedReplay":
        try:
            with np.load(Path(path)) as data:
                capacity, alpha, beta = data["settings"].tolist()
                replay = cls(int(capacity), alpha, beta)
                replay.queries, replay.rewards = data["queries"].astype(np.int64), data["rewards"]
                replay.own_weights, replay.priorities = data["own_weights"], data["priorities"]
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a replay buffer ({exc})") from exc
        if not len(replay.queries) == len(replay.rewards) == len(replay.priorities) == len(replay.own_weights):
            raise ValueError(f"{path}: a replay buffer whose arrays disagree in length")
        return replay
