"""The dreams: walkers that fan out rollouts, the Rollouts they produce, the chains they become,
and arbitration. No Ray: actors/ hosts these."""

from reverie.dreams.arbiter import Arbiter, residual
from reverie.dreams.embedding_walker import EmbeddingWalker, walk
from reverie.dreams.rollouts import Rollouts, WalkQuery, build_chain, rollout_tree
from reverie.dreams.walkers import WALKERS, Walker, arbitrate, dream, make_walker

__all__ = [
    "WALKERS",
    "Arbiter",
    "EmbeddingWalker",
    "Rollouts",
    "WalkQuery",
    "Walker",
    "arbitrate",
    "build_chain",
    "dream",
    "make_walker",
    "residual",
    "rollout_tree",
    "walk",
]
