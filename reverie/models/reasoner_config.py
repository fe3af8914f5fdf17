"""How the graph reasoner is built and trained: a torch-free module, so the CLI shows its defaults
without loading torch. The network and its training are in graph_reasoner.py."""

from __future__ import annotations

from dataclasses import dataclass

from reverie.errors import ConfigError

HIDE = ("fact", "relation")


@dataclass
class ReasonerConfig:
    """How the graph reasoner is built and trained (`reverie train reasoner`)."""

    dim: int = 64
    """Width of node states and relation embeddings."""
    layers: int = 3
    """Rounds of message passing: the longest path that can reach an answer (3 suits UMLS and Kinship)."""
    heads: int = 4
    """Attention heads over a node's incoming edges (dim must divide by it)."""
    batch_size: int = 32
    """Queries per gradient step; every query in a batch propagates over the graph at once."""
    lr: float = 1e-2
    """Adam's learning rate."""
    epochs: int = 20
    """Passes over the training queries (both directions); `minutes` may end training earlier."""
    minutes: float | None = None
    """Wall-clock cap on training; the best dev checkpoint so far is kept."""
    eval_every: int = 100
    """Gradient steps between dev evaluations and progress reports (at most an epoch; 0: once per epoch)."""
    patience: int = 6
    """Stop after this many dev evaluations without a better dev MRR (0: never)."""
    hide: str = "fact"
    """What a training query may not read: "fact", its own fact (both directions); "relation", every edge of
    the query relation at the head (as the path policy's mask_query_edges="all"), for graphs whose test heads
    have no edge of the asked relation at all (Countries S3; it also does best on S2)."""
    max_nodes: int | None = None
    """At most this many reached nodes per query send messages in a round, those of highest learned priority
    (A*Net's pruning, for large graphs such as WN18RR); None: every reached node sends."""
    seed: int = 0
    """Seed of the weights and of the batch order."""

    def __post_init__(self) -> None:
        if self.hide not in HIDE:
            raise ConfigError(f"hide must be one of {', '.join(HIDE)}, not {self.hide!r}")
        if self.dim < 1 or self.layers < 1 or self.heads < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ConfigError("dim, layers, heads, batch_size and epochs must be at least 1")
        if self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} does not divide into {self.heads} heads")
        if self.max_nodes is not None and self.max_nodes < 1:
            raise ConfigError("max_nodes must be at least 1 (or None)")
        if self.lr <= 0:
            raise ConfigError("lr must be positive")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError("minutes must be positive")
