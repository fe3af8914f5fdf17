"""A knowledge-graph embedding "world model" trained with PyKEEN; no Ray.

The path policy uses it as a reward shaper (``score``) and to propose imagined edges (``propose``);
the arbiter weighs its belief against the path evidence.

Models come from one registry, ``WORLD_MODELS`` ("complex", "rotate"), picked by
``WorldModelConfig.model``; every model there passes the same contract test.

Ids follow the WalkGraph convention (reverie/agents/path_policy/walkgraph.py): entity and relation ids are the
positions of the SORTED names of the walkable graph; relation ids ``0..R-1`` are the stored
relations and ``R..2R-1`` their inverses (``R + r`` walks ``r`` against its direction).

Training uses PyKEEN's LCWA loop with ``create_inverse_triples=True``, so PyKEEN learns a separate
embedding for every inverse relation; internally PyKEEN numbers relation ``r`` as ``2r`` and its
inverse as ``2r + 1`` (``pykeen.inverse.DefaultRelationInverter``).

Scoring modes (``score_mode``):
- ``"forward"`` (default): the direction asked, ``f(h, 2r, t)`` for ``r`` and ``f(h, 2r+1, t)``
  for ``R + r``. This is what PyKEEN's own evaluation does (its ``predict_h`` answers
  ``(?, r, t)`` with the tails of ``(t, 2r+1)``), and it ranks best: on UMLS test, tail MRR 0.90.
  ``score(t, R + r, h)`` then equals PyKEEN's ``score_hrt_inverse`` of ``(h, r, t)``: a different
  number from ``score(h, r, t)`` (the two directions are learned separately), though both rank
  the true facts high.
- ``"both"``: the mean of the two learned directions, ``(f(h, 2r, t) + f(t, 2r+1, h)) / 2``, so
  ``score(t, R + r, h) == score(h, r, t)`` exactly. It ranks worse (UMLS tail MRR 0.79): the
  reverse term compares candidates in the slot PyKEEN never trained them to be ranked in.

Saved models are one file (torch.save of the state dict, a JSON string of config + id maps, and
the walkable graph as an int array so ``propose`` can skip known edges without the dataset).

torch and PyKEEN load on first use, so `WorldModelConfig` imports cheaply (the CLI reads its defaults).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from reverie.atomic import atomic_file
from reverie.errors import ConfigError
from reverie.home import Home
from reverie.ranking import filtered_ranks, ranking_metrics

if TYPE_CHECKING:
    from reverie.data.kg import KGDataset
    from reverie.schemas import Triple

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SCORE_MODES = ("forward", "both")


@dataclass(frozen=True)
class WorldModelConfig:
    """How a world model is trained (PyKEEN, LCWA loop, inverse triples)."""

    model: str = "complex"
    """A key of WORLD_MODELS: "complex" (ComplEx) or "rotate" (RotatE)."""
    dim: int = 200
    """Embedding dimension (complex numbers for both models)."""
    epochs: int = 200
    """Training epochs over the walkable graph."""
    seed: int = 0
    """Seeds the initialisation and the batches."""
    lr: float = 0.01
    """Adam learning rate."""
    batch_size: int = 256
    """Training batch (LCWA: one (head, relation) row per example)."""
    loss: str = "crossentropy"
    """PyKEEN loss: a softmax over all tails of each (head, relation)."""
    optimizer: str = "adam"
    """PyKEEN optimizer name."""
    regularizer_weight: float | None = None
    """N3 weight (Lacroix et al., 2018); None takes the model's own default (ComplEx 0.01, RotatE none)."""
    label_smoothing: float = 0.0
    """LCWA label smoothing."""
    score_mode: Literal["forward", "both"] = "forward"
    """Which learned direction scores a query; see the module docstring."""

    def __post_init__(self) -> None:
        if self.model not in WORLD_MODELS:
            raise ConfigError(f"unknown world model {self.model!r}: use one of {', '.join(WORLD_MODELS)}")
        if self.score_mode not in SCORE_MODES:
            raise ConfigError(f"score_mode must be one of {SCORE_MODES}")
        if self.dim < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("dim, epochs and batch_size must be >= 1")


def _complex(config: WorldModelConfig, factory, seed):
    from pykeen.models import ComplEx
    from pykeen.nn.init import xavier_normal_
    from pykeen.regularizers import PowerSumRegularizer

    weight = 0.01 if config.regularizer_weight is None else float(config.regularizer_weight)
    return ComplEx(
        triples_factory=factory,
        embedding_dim=config.dim,
        loss=config.loss,
        random_seed=seed,
        # PyKEEN's default (standard normal) init trains badly here; xavier works.
        entity_initializer=xavier_normal_,
        relation_initializer=xavier_normal_,
        # N3: |x|^3 summed over the complex coordinates of the looked-up embeddings.
        regularizer=PowerSumRegularizer if weight > 0 else None,
        regularizer_kwargs={"weight": weight, "p": 3.0, "normalize": True} if weight > 0 else None,
    )


def _rotate(config: WorldModelConfig, factory, seed):
    from pykeen.models import RotatE
    from pykeen.regularizers import PowerSumRegularizer

    weight = 0.0 if config.regularizer_weight is None else float(config.regularizer_weight)
    return RotatE(
        triples_factory=factory,
        embedding_dim=config.dim,
        loss=config.loss,
        random_seed=seed,
        regularizer=PowerSumRegularizer if weight > 0 else None,
        regularizer_kwargs={"weight": weight, "p": 3.0, "normalize": True} if weight > 0 else None,
    )


WORLD_MODELS: dict[str, Callable[..., Any]] = {"complex": _complex, "rotate": _rotate}
"""World models by name: each builds its PyKEEN model from (config, triples factory, seed)."""


def _build(config: WorldModelConfig, factory, seed: int | None):
    from pykeen.models.base import NoRandomSeedNecessary

    return WORLD_MODELS[config.model](config, factory, NoRandomSeedNecessary if seed is None else seed)


def _empty_factory(num_entities: int, num_relations: int):
    """A triples factory with no triples: the sizes are all a model needs to be rebuilt for loading."""
    import torch
    from pykeen.triples import CoreTriplesFactory

    return CoreTriplesFactory(
        mapped_triples=torch.empty((0, 3), dtype=torch.long),
        num_entities=num_entities,
        num_relations=num_relations,
        create_inverse_triples=True,
    )


def _sorted_ids(names) -> dict[str, int]:
    return {name: i for i, name in enumerate(sorted(set(names)))}


class WorldModel:
    """A trained KGE model over the walkable graph, addressed with WalkGraph ids."""

    def __init__(
        self,
        model,
        entities: list[str],
        relations: list[str],
        config: WorldModelConfig,
        graph: np.ndarray | None = None,
        stats: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.entities = list(entities)
        self.relations = list(relations)
        self.entity2id = {name: i for i, name in enumerate(self.entities)}
        self.relation2id = {name: i for i, name in enumerate(self.relations)}
        self.num_entities = len(self.entities)
        self.num_relations = len(self.relations)  # R forward relations; ids R..2R-1 are their inverses
        self.config = config
        self.stats = dict(stats or {})  # dataset, train_seconds, final_loss, num_graph_triples
        self.graph = np.zeros((0, 3), dtype=np.int64) if graph is None else np.asarray(graph, dtype=np.int64)
        self._graph_tails: dict[tuple[int, int], set[int]] | None = None

    # ------------------------------------------------------------------ training

    @classmethod
    def train(cls, dataset: KGDataset, config: WorldModelConfig | None = None, progress: bool = False) -> WorldModel:
        """Train on `dataset.graph` (the walkable facts) only."""
        import torch
        from pykeen.training import LCWATrainingLoop
        from pykeen.triples import CoreTriplesFactory

        config = config or WorldModelConfig()
        if not dataset.graph:
            raise ValueError(f"dataset {dataset.name!r} has no walkable triples to train on")
        entity2id = _sorted_ids([t.head for t in dataset.graph] + [t.tail for t in dataset.graph])
        relation2id = _sorted_ids(t.relation for t in dataset.graph)
        mapped = np.array(
            [(entity2id[t.head], relation2id[t.relation], entity2id[t.tail]) for t in dataset.graph], dtype=np.int64
        )
        mapped = np.unique(mapped, axis=0)
        factory = CoreTriplesFactory(
            mapped_triples=torch.from_numpy(mapped),
            num_entities=len(entity2id),
            num_relations=len(relation2id),
            create_inverse_triples=True,
        )
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        kge = _build(config, factory, config.seed)
        loop = LCWATrainingLoop(
            model=kge,
            triples_factory=factory,
            optimizer=config.optimizer,
            optimizer_kwargs={"lr": float(config.lr)},
            automatic_memory_optimization=False,
        )
        start = time.perf_counter()
        losses = loop.train(
            triples_factory=factory,
            num_epochs=config.epochs,
            batch_size=config.batch_size,
            label_smoothing=float(config.label_smoothing),
            use_tqdm=progress,
            use_tqdm_batch=False,
            pin_memory=False,
        )
        stats = {
            "train_seconds": round(time.perf_counter() - start, 2),
            "final_loss": float(losses[-1]) if losses else None,
            "dataset": dataset.name,
            "num_graph_triples": int(len(mapped)),
        }
        return cls(
            kge,
            entities=sorted(entity2id, key=entity2id.__getitem__),
            relations=sorted(relation2id, key=relation2id.__getitem__),
            config=config,
            graph=mapped,
            stats=stats,
        )

    # ------------------------------------------------------------------ scoring

    @property
    def score_mode(self) -> str:
        """ "forward" (default) or "both"; see the module docstring."""
        return self.config.score_mode

    @score_mode.setter
    def score_mode(self, mode: str) -> None:
        # any str may be asked for: WorldModelConfig.__post_init__ refuses one not in SCORE_MODES
        self.config = dataclasses.replace(self.config, score_mode=cast(Literal["forward", "both"], mode))

    def _internal(self, relations: np.ndarray):
        """PyKEEN ids for WalkGraph relation ids: (the direction asked, the reverse direction)."""
        import torch

        rel = np.asarray(relations, dtype=np.int64)
        R = self.num_relations
        if rel.size and (rel.min() < 0 or rel.max() >= 2 * R):
            raise IndexError(f"relation ids must be in [0, {2 * R}) (forward 0..{R - 1}, inverse {R}..{2 * R - 1})")
        inverse = rel >= R
        base = np.where(inverse, rel - R, rel)
        asked = 2 * base + inverse  # PyKEEN: r -> 2r, inverse of r -> 2r + 1
        reverse = 2 * base + (~inverse)
        return torch.from_numpy(asked), torch.from_numpy(reverse)

    def _entities(self, ids: np.ndarray):
        import torch

        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_entities):
            raise IndexError(f"entity ids must be in [0, {self.num_entities})")
        return torch.from_numpy(ids)

    def score_tails(self, heads: np.ndarray, relations: np.ndarray) -> np.ndarray:
        """float32 [B, E]: the score of every entity as the tail of (head, relation)."""
        import torch

        heads_t = self._entities(np.atleast_1d(heads))
        asked, reverse = self._internal(np.atleast_1d(relations))
        if heads_t.shape != asked.shape:
            raise ValueError("heads and relations must have the same length")
        with torch.inference_mode():
            scores = self.model.score_t(torch.stack([heads_t, asked], dim=1))
            if self.score_mode == "both":
                scores = 0.5 * (scores + self.model.score_h(torch.stack([reverse, heads_t], dim=1)))
        return scores.float().numpy()

    def score(self, heads: np.ndarray, relations: np.ndarray, tails: np.ndarray) -> np.ndarray:
        """float32 [B]: the score of each triple (head, relation, tail)."""
        import torch

        heads_t = self._entities(np.atleast_1d(heads))
        tails_t = self._entities(np.atleast_1d(tails))
        asked, reverse = self._internal(np.atleast_1d(relations))
        if not heads_t.shape == tails_t.shape == asked.shape:
            raise ValueError("heads, relations and tails must have the same length")
        with torch.inference_mode():
            scores = self.model.score_hrt(torch.stack([heads_t, asked, tails_t], dim=1)).view(-1)
            if self.score_mode == "both":
                back = self.model.score_hrt(torch.stack([tails_t, reverse, heads_t], dim=1)).view(-1)
                scores = 0.5 * (scores + back)
        return scores.float().numpy()

    def graph_tails(self, head: int, relation: int) -> set[int]:
        """Tails the walkable graph already has for (head, relation); inverse ids allowed."""
        if self._graph_tails is None:
            index: dict[tuple[int, int], set[int]] = defaultdict(set)
            R = self.num_relations
            for h, r, t in self.graph.tolist():
                index[(h, r)].add(t)
                index[(t, r + R)].add(h)
            self._graph_tails = dict(index)
        return self._graph_tails.get((int(head), int(relation)), set())

    def propose(self, head: int, relation: int, k: int, exclude: set[int] | None = None) -> list[tuple[int, float]]:
        """The top-k tails for (head, relation) that the graph lacks, best first, as (tail, score).

        Leaves out the tails the graph already has, `exclude`, and `head` itself (a self loop is the
        walker's NO_OP).
        """
        if k <= 0:
            return []
        scores = self.score_tails(np.array([head]), np.array([relation]))[0].astype(np.float64)
        drop = set(exclude or ()) | self.graph_tails(head, relation) | {int(head)}
        drop_ids = np.fromiter((d for d in drop if 0 <= d < self.num_entities), dtype=np.int64)
        scores[drop_ids] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(t), float(scores[t])) for t in top]

    # ------------------------------------------------------------------ evaluation

    def _ids(self, triples: list[Triple]) -> np.ndarray:
        rows = []
        for t in triples:
            h, r, o = self.entity2id.get(t.head), self.relation2id.get(t.relation), self.entity2id.get(t.tail)
            if h is not None and r is not None and o is not None:
                rows.append((h, r, o))
        return np.array(rows, dtype=np.int64).reshape(-1, 3)

    def evaluate(self, dataset: KGDataset, split: str = "test", batch_size: int = 512) -> dict[str, float]:
        """Filtered tail-prediction metrics on `split` ("train", "dev", "test" or "graph").

        The filter holds every known true tail of (h, r) in graph + train + dev + test. Ties count
        as the mean rank. Triples whose entities or relation the graph lacks are left out (logged).
        """
        if split not in ("train", "dev", "test", "graph"):
            raise ValueError(f"unknown split {split!r}")
        queries = getattr(dataset, split)
        triples = self._ids(queries)
        if len(triples) < len(queries):
            logger.warning(
                "evaluate: %d of %d %s triples use entities or relations the graph lacks; left out",
                len(queries) - len(triples),
                len(queries),
                split,
            )
        known: dict[tuple[int, int], set[int]] = defaultdict(set)
        for h, r, t in self._ids([*dataset.graph, *dataset.train, *dataset.dev, *dataset.test]).tolist():
            known[(h, r)].add(t)
        ranks = []
        for start in range(0, len(triples), batch_size):
            batch = triples[start : start + batch_size]
            scores = self.score_tails(batch[:, 0], batch[:, 1])
            ranks.append(filtered_ranks(scores, batch[:, 2], [known[(h, r)] for h, r, _ in batch.tolist()]))
        return ranking_metrics(np.concatenate(ranks) if ranks else [])

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write one file atomically."""
        import torch

        meta = {
            "format": FORMAT_VERSION,
            "config": {**dataclasses.asdict(self.config), **self.stats},
            "entities": self.entities,
            "relations": self.relations,
        }
        payload = {
            "meta_json": json.dumps(meta),
            "state_dict": self.model.state_dict(),
            "graph": torch.from_numpy(np.ascontiguousarray(self.graph)),
        }
        with atomic_file(path) as handle:
            torch.save(payload, handle)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WorldModel:
        import torch

        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        meta = json.loads(payload["meta_json"])
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported world model format {meta.get('format')!r}")
        saved = meta["config"]
        fields = {f.name for f in dataclasses.fields(WorldModelConfig)}
        config = WorldModelConfig(**{k: v for k, v in saved.items() if k in fields})
        kge = _build(config, _empty_factory(len(meta["entities"]), len(meta["relations"])), seed=None)
        kge.load_state_dict(payload["state_dict"])
        stats = {k: v for k, v in saved.items() if k not in fields}
        return cls(kge, meta["entities"], meta["relations"], config, graph=payload["graph"].numpy(), stats=stats)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"WorldModel({c.model}, dim={c.dim}, entities={self.num_entities}, "
            f"relations={self.num_relations}, score_mode={c.score_mode})"
        )


def ensure_world_model(
    home: str | os.PathLike,
    dataset: KGDataset,
    config: WorldModelConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The cached world model of `dataset`, trained on its walkable graph first when missing."""
    path = Home(home).world_model(dataset.name)
    if not path.is_file():
        config = config or WorldModelConfig()
        if progress is not None:
            progress(f"training the world model of {dataset.name} ({config.model}, {config.epochs} epochs) ...")
        WorldModel.train(dataset, config).save(path)
    return path
