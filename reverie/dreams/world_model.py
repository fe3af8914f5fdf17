"""A knowledge-graph embedding "world model" trained with PyKEEN; no Ray.

The path policy uses it as a reward shaper (``score``) and to propose imagined edges (``propose``).

Ids follow the WalkGraph convention (reverie/policies/walkgraph.py): entity and relation ids are the
positions of the SORTED names of the walkable graph; relation ids ``0..R-1`` are the stored
relations and ``R..2R-1`` their inverses (``R + r`` walks ``r`` against its direction).

Training uses PyKEEN's LCWA loop with ``create_inverse_triples=True``, so PyKEEN learns a separate
embedding for every inverse relation; internally PyKEEN numbers relation ``r`` as ``2r`` and its
inverse as ``2r + 1`` (``pykeen.inverse.DefaultRelationInverter``).

Scoring modes (``config["score_mode"]``):
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
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from reverie.graph_store.datasets import KGDataset
    from reverie.schemas import Triple

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODELS = ("complex", "rotate")
SCORE_MODES = ("forward", "both")

# Training defaults per model (everything PyKEEN needs besides the data and the dimension).
DEFAULTS: dict[str, dict[str, Any]] = {
    "complex": {
        "loss": "crossentropy",
        "optimizer": "adam",
        "lr": 0.01,
        "batch_size": 256,
        "regularizer_weight": 0.01,  # N3: sum of cubed moduli of the looked-up embeddings
        "label_smoothing": 0.0,
    },
    "rotate": {
        "loss": "crossentropy",
        "optimizer": "adam",
        "lr": 0.01,
        "batch_size": 256,
        "regularizer_weight": 0.0,
        "label_smoothing": 0.0,
    },
}


def _sorted_ids(names) -> dict[str, int]:
    return {name: i for i, name in enumerate(sorted(set(names)))}


def _build_model(config: dict[str, Any], num_entities: int, num_relations: int, seed: int | None):
    """The PyKEEN model for `config`, over an empty factory (the sizes are all a model needs)."""
    from pykeen.triples import CoreTriplesFactory

    factory = CoreTriplesFactory(
        mapped_triples=torch.empty((0, 3), dtype=torch.long),
        num_entities=num_entities,
        num_relations=num_relations,
        create_inverse_triples=True,
    )
    return _make_pykeen_model(config, factory, seed)


def _make_pykeen_model(config: dict[str, Any], factory, seed: int | None):
    from pykeen.models import ComplEx, RotatE
    from pykeen.models.base import NoRandomSeedNecessary
    from pykeen.nn.init import xavier_normal_
    from pykeen.regularizers import PowerSumRegularizer

    common = {
        "triples_factory": factory,
        "embedding_dim": int(config["dim"]),
        "loss": config["loss"],
        "random_seed": NoRandomSeedNecessary if seed is None else seed,
    }
    if config["model"] == "complex":
        weight = float(config["regularizer_weight"])
        return ComplEx(
            **common,
            # PyKEEN's default (standard normal) init trains badly here; xavier works.
            entity_initializer=xavier_normal_,
            relation_initializer=xavier_normal_,
            # N3 (Lacroix et al., 2018): |x|^3 summed over the complex coordinates.
            regularizer=PowerSumRegularizer if weight > 0 else None,
            regularizer_kwargs={"weight": weight, "p": 3.0, "normalize": True} if weight > 0 else None,
        )
    if config["model"] == "rotate":
        return RotatE(**common)
    raise ValueError(f"unknown world model {config['model']!r}: use one of {', '.join(MODELS)}")


class WorldModel:
    """A trained KGE model over the walkable graph, addressed with WalkGraph ids."""

    def __init__(
        self,
        model,
        entities: list[str],
        relations: list[str],
        config: dict[str, Any],
        graph: np.ndarray | None = None,
    ) -> None:
        self.model = model.eval()
        self.entities = list(entities)
        self.relations = list(relations)
        self.entity2id = {name: i for i, name in enumerate(self.entities)}
        self.relation2id = {name: i for i, name in enumerate(self.relations)}
        self.num_entities = len(self.entities)
        self.num_relations = len(self.relations)  # R forward relations; ids R..2R-1 are their inverses
        self.config = dict(config)
        self.graph = np.zeros((0, 3), dtype=np.int64) if graph is None else np.asarray(graph, dtype=np.int64)
        self._graph_tails: dict[tuple[int, int], set[int]] | None = None

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        dataset: KGDataset,
        model: str = "complex",
        dim: int = 200,
        epochs: int = 200,
        seed: int = 0,
        progress: bool = False,
        **overrides: Any,
    ) -> WorldModel:
        """Train on `dataset.graph` (the walkable facts) only.

        `overrides` may set any key of ``DEFAULTS[model]`` (loss, optimizer, lr, batch_size,
        regularizer_weight, label_smoothing) and ``score_mode``.
        """
        from pykeen.training import LCWATrainingLoop
        from pykeen.triples import CoreTriplesFactory

        model = model.lower()
        if model not in MODELS:
            raise ValueError(f"unknown world model {model!r}: use one of {', '.join(MODELS)}")
        unknown = set(overrides) - set(DEFAULTS[model]) - {"score_mode"}
        if unknown:
            raise TypeError(f"unknown training options {sorted(unknown)}")
        if not dataset.graph:
            raise ValueError(f"dataset {dataset.name!r} has no walkable triples to train on")
        config = {"model": model, "dim": int(dim), "epochs": int(epochs), "seed": int(seed), "score_mode": "forward"}
        config.update(DEFAULTS[model])
        config.update(overrides)
        if config["score_mode"] not in SCORE_MODES:
            raise ValueError(f"score_mode must be one of {SCORE_MODES}")

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
        torch.manual_seed(seed)
        np.random.seed(seed)
        kge = _make_pykeen_model(config, factory, seed)
        loop = LCWATrainingLoop(
            model=kge,
            triples_factory=factory,
            optimizer=config["optimizer"],
            optimizer_kwargs={"lr": float(config["lr"])},
            automatic_memory_optimization=False,
        )
        start = time.perf_counter()
        losses = loop.train(
            triples_factory=factory,
            num_epochs=int(epochs),
            batch_size=int(config["batch_size"]),
            label_smoothing=float(config["label_smoothing"]),
            use_tqdm=progress,
            use_tqdm_batch=False,
            pin_memory=False,
        )
        config["train_seconds"] = round(time.perf_counter() - start, 2)
        config["final_loss"] = float(losses[-1]) if losses else None
        config["dataset"] = dataset.name
        config["num_graph_triples"] = int(len(mapped))
        return cls(
            kge,
            entities=sorted(entity2id, key=entity2id.get),
            relations=sorted(relation2id, key=relation2id.get),
            config=config,
            graph=mapped,
        )

    # ------------------------------------------------------------------ scoring

    @property
    def score_mode(self) -> str:
        """"forward" (default) or "both"; see the module docstring."""
        return self.config.get("score_mode", "forward")

    @score_mode.setter
    def score_mode(self, mode: str) -> None:
        if mode not in SCORE_MODES:
            raise ValueError(f"score_mode must be one of {SCORE_MODES}")
        self.config["score_mode"] = mode

    def _internal(self, relations: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """PyKEEN ids for WalkGraph relation ids: (the direction asked, the reverse direction)."""
        rel = np.asarray(relations, dtype=np.int64)
        R = self.num_relations
        if rel.size and (rel.min() < 0 or rel.max() >= 2 * R):
            raise IndexError(f"relation ids must be in [0, {2 * R}) (forward 0..{R - 1}, inverse {R}..{2 * R - 1})")
        inverse = rel >= R
        base = np.where(inverse, rel - R, rel)
        asked = 2 * base + inverse  # PyKEEN: r -> 2r, inverse of r -> 2r + 1
        reverse = 2 * base + (~inverse)
        return torch.from_numpy(asked), torch.from_numpy(reverse)

    def _entities(self, ids: np.ndarray) -> torch.Tensor:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_entities):
            raise IndexError(f"entity ids must be in [0, {self.num_entities})")
        return torch.from_numpy(ids)

    def score_tails(self, heads: np.ndarray, relations: np.ndarray) -> np.ndarray:
        """float32 [B, E]: the score of every entity as the tail of (head, relation)."""
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
            logger.warning("evaluate: %d of %d %s triples use entities or relations the graph lacks; left out",
                           len(queries) - len(triples), len(queries), split)
        if len(triples) == 0:
            return {"hits@1": 0.0, "hits@3": 0.0, "hits@10": 0.0, "mrr": 0.0}
        known: dict[tuple[int, int], set[int]] = defaultdict(set)
        for h, r, t in self._ids([*dataset.graph, *dataset.train, *dataset.dev, *dataset.test]).tolist():
            known[(h, r)].add(t)
        ranks = []
        for start in range(0, len(triples), batch_size):
            batch = triples[start : start + batch_size]
            scores = self.score_tails(batch[:, 0], batch[:, 1]).astype(np.float64)
            answers = batch[:, 2]
            rows, cols = [], []
            for i, (h, r, t) in enumerate(batch.tolist()):
                others = [o for o in known[(h, r)] if o != t]
                rows.extend([i] * len(others))
                cols.extend(others)
            scores[np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)] = -np.inf
            target = scores[np.arange(len(batch)), answers][:, None]
            better = (scores > target).sum(axis=1)
            ties = (scores == target).sum(axis=1) - 1  # the answer itself is not a tie
            ranks.append(1.0 + better + ties / 2.0)
        return ranking_summary(np.concatenate(ranks))

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write one file atomically (temp file in the same folder, then os.replace)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT_VERSION,
            "config": self.config,
            "entities": self.entities,
            "relations": self.relations,
        }
        payload = {
            "meta_json": json.dumps(meta),
            "state_dict": self.model.state_dict(),
            "graph": torch.from_numpy(np.ascontiguousarray(self.graph)),
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(payload, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> WorldModel:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        meta = json.loads(payload["meta_json"])
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported world model format {meta.get('format')!r}")
        config = meta["config"]
        kge = _build_model(config, len(meta["entities"]), len(meta["relations"]), seed=None)
        kge.load_state_dict(payload["state_dict"])
        return cls(kge, meta["entities"], meta["relations"], config, graph=payload["graph"].numpy())

    def __repr__(self) -> str:
        c = self.config
        return (f"WorldModel({c['model']}, dim={c['dim']}, entities={self.num_entities}, "
                f"relations={self.num_relations}, score_mode={c.get('score_mode')})")


def ranking_summary(ranks: np.ndarray) -> dict[str, float]:
    """Hits@1/3/10 and MRR (fractions) of 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {"hits@1": 0.0, "hits@3": 0.0, "hits@10": 0.0, "mrr": 0.0}
    return {
        "hits@1": float((ranks <= 1).mean()),
        "hits@3": float((ranks <= 3).mean()),
        "hits@10": float((ranks <= 10).mean()),
        "mrr": float((1.0 / ranks).mean()),
    }
