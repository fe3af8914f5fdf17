"""Rollout engine and arbitration. No Ray: actors/ hosts these."""
from reverie.dreams.arbiter import Arbiter
from reverie.dreams.walker import EmbeddingWalker, Rollouts, dream, start_nodes, walk

__all__ = ["Arbiter", "EmbeddingWalker", "Rollouts", "dream", "start_nodes", "walk"]
