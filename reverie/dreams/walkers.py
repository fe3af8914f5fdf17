"""Walkers: what fans out the dreams. One interface, one registry, one contract test for all.

A walker turns a question into a `WalkQuery` (`pose`), walks it (`walk`, in each rollout task)
and ranks the answers its walks reach (`rank`, in the arbiter). Walkers by kind:

- "embedding": `EmbeddingWalker`, steered by the question's embedding over the retrieved
  subgraph; needs no training.
- "path-policy": `PolicyWalker`, a path policy trained with RLlib on one graph, walking that graph.

`walks_retrieved` says which graph a walker's `walk` and `rank` take: the retrieved Subgraph (True)
or none, because it walks its own (False).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from reverie.dreams.rollouts import Rollouts, WalkQuery, rollout_tree
from reverie.graph_store.subgraph import Subgraph
from reverie.schemas import Candidate, Chain, LinkedEntity, RolloutTree

log = logging.getLogger(__name__)


class Walker(Protocol):
    kind: str
    """Its key in WALKERS."""
    name: str
    """What the Verdict reports as the policy that walked."""
    walks_retrieved: bool
    expert_names: tuple[str, ...]
    """Labels of its experts: Rollouts.expert indexes them."""

    @property
    def version(self) -> int | None:
        """The version of a trained policy (`reverie learn` makes new ones); None for one that is not trained."""
        ...

    def knows(self, entity_names: list[str]) -> int:
        """How many of `entity_names` it can start a walk from (the Pipeline picks the walker that
        knows most of a question's entities)."""
        ...

    def pose(
        self, sub: Subgraph, question_vec: np.ndarray, anchors: list[LinkedEntity], hops: int, question: str = ""
    ) -> WalkQuery:
        """`question`, its text, lets a walker match the asked relation by its words too."""
        ...

    def asked(self, query: WalkQuery) -> str | None:
        """The relation `query` asks, as a hop reads ("inverse of X" against its direction), when the
        walker decides one for the whole question; what a rating of its answer teaches."""
        ...

    def walk(self, graph: Subgraph | None, query: WalkQuery, count: int, rng: np.random.Generator) -> Rollouts: ...

    def rank(
        self, graph: Subgraph | None, query: WalkQuery, rollouts: Rollouts, limit: int = 10
    ) -> list[Candidate]: ...

    def chain(self, graph: Subgraph | None, rollouts: Rollouts, index: int) -> Chain:
        """Walk `index` as (what, action, result) steps with provenance."""
        ...

    def for_rollouts(self) -> "Walker":
        """The part of the walker the rollout tasks need (what Ray ships to each)."""
        ...


def _embedding(settings: Any, bundle: Any = None) -> Walker:
    """With the calibrator last fit on the graph under settings.home (the built-in one before any)."""
    from reverie.calibration import AnswerCalibrator
    from reverie.dreams.embedding_walker import EmbeddingWalker

    path = settings.paths.calibration
    try:
        calibrator = AnswerCalibrator.load(path) if path.exists() else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the built-in calibrator answers instead of %s: %s", path, exc)
        calibrator = None
    return EmbeddingWalker(
        settings.walker_temperature, settings.stop_bias, settings.walker_inverse_bias, calibrator=calibrator
    )


def _path_policy(settings: Any, bundle: Any = None) -> Walker:
    from reverie.dreams.policy_walker import PolicyWalker

    if bundle is None:
        raise ValueError("the path-policy walker needs a trained policy (reverie train policy)")
    return PolicyWalker(bundle)


WALKERS: dict[str, Callable[..., Walker]] = {"embedding": _embedding, "path-policy": _path_policy}
"""Walker kinds: each builds its walker from (settings, trained policy bundle or None)."""


def make_walker(kind: str, settings: Any, bundle: Any = None) -> Walker:
    if kind not in WALKERS:
        raise ValueError(f"unknown walker {kind!r}: use one of {', '.join(WALKERS)}")
    return WALKERS[kind](settings, bundle)


def arbitrate(
    walker: Walker, graph: Subgraph | None, query: WalkQuery, rollouts: Rollouts, limit: int, tree_walks: int = 0
) -> tuple[list[Candidate], RolloutTree | None]:
    """What the arbiter does, in the answering process or in the Arbiter actor: the ranked answers,
    and the rollout tree of the `tree_walks` most frequent walks when asked (0: none)."""
    candidates = walker.rank(graph, query, rollouts, limit)
    tree = (
        rollout_tree(rollouts, lambda index: walker.chain(graph, rollouts, index), tree_walks) if tree_walks else None
    )
    return candidates, tree


def dream(walker: Walker, graph: Subgraph | None, query: WalkQuery, count: int, seed: int) -> Rollouts:
    """`count` rollouts in one process: what one rollout task does."""
    return walker.walk(graph, query, count, np.random.default_rng(seed))
