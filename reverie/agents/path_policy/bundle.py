"""A trained path policy with everything it walks with: net, WalkGraph, world model. No Ray.

A policy folder (settings.home / "policies" / <dataset>) holds config.json (the net and the
training meta), the net's weights and, when training used one, `world_model.pt`: the world model
that shaped its rewards, proposes its imagined edges and helps the arbiter rank answers; and, when
the dataset has a trained graph reasoner, `reasoner.pt`, which ranks answers with them and explains
each with its top paths.
`load_bundle` rebuilds the exact action tables the policy was trained on (same max_actions, graph
seed and imagined edges).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reverie.agents.path_policy.config import PolicyMeta
from reverie.agents.path_policy.net import PathPolicyNet, load_policy, read_policy_meta
from reverie.agents.path_policy.walkgraph import WalkGraph

WORLD_MODEL_FILE = "world_model.pt"
REASONER_FILE = "reasoner.pt"


@dataclass(eq=False)
class PolicyBundle:
    net: PathPolicyNet
    graph: WalkGraph
    world_model: Any | None  # reverie.models.world_model.WorldModel
    meta: PolicyMeta
    folder: Path | None = None
    reasoner: Any | None = None  # reverie.models.graph_reasoner.GraphReasoner

    @property
    def hops(self) -> int:
        return self.meta.hops

    @property
    def mask_source_query_edges(self) -> bool:
        """A policy trained with every query-relation edge hidden at the source walks so at test too."""
        return self.meta.env.mask_query_edges == "all"

    @property
    def arbiter_weight(self) -> float:
        """How much path evidence counts against the world model when ranking answers (fit on dev)."""
        return self.meta.arbiter_weight

    def answer_scores(self, path_logp: np.ndarray, heads: np.ndarray, relations: np.ndarray) -> dict[str, np.ndarray | None]:
        """The arbiter's scores [Q, E] of (heads, relations, ?) from the rollouts' path log-probabilities,
        with the world model's and the reasoner's own scores beside them ("arbiter", "world_model", "reasoner")."""
        world = reasoner = None
        if self.world_model is not None:
            world = np.asarray(self.world_model.score_tails(heads, relations), dtype=np.float64)
        if self.reasoner is not None:
            reasoner = np.asarray(self.reasoner.score_tails(heads, relations), dtype=np.float64) / self.reasoner.temperature
        arbiter = arbiter_scores(path_logp, world, self.meta.arbiter_weight, reasoner, self.meta.world_weight)
        return {"arbiter": arbiter, "world_model": world, "reasoner": reasoner}

    def confidence(self, arbiter: np.ndarray) -> np.ndarray:
        """Calibrated probabilities [Q, E] of the arbiter's answers (softmax at the temperature fit on dev)."""
        from reverie.models.graph_reasoner import softmax

        scores = np.asarray(arbiter, np.float64) / self.meta.temperature
        reached = np.isfinite(scores).any(axis=1, keepdims=True)
        return np.where(reached, softmax(np.where(reached, scores, 0.0)), 0.0)


def load_bundle(folder: str | Path, dataset: Any) -> PolicyBundle:
    """Load the policy in `folder` for `dataset` (a KGDataset); a ValueError if they do not match."""
    folder = Path(folder)
    meta = read_policy_meta(folder)
    graph = WalkGraph.from_dataset(dataset, max_actions=meta.env.max_actions, seed=meta.env.graph_seed)
    if meta.entities and list(meta.entities) != list(graph.id2entity):
        raise ValueError(f"the policy in {folder} was trained on a different graph than {dataset.name!r}")
    world_model = None
    if (folder / WORLD_MODEL_FILE).is_file():
        from reverie.models.world_model import WorldModel

        world_model = WorldModel.load(folder / WORLD_MODEL_FILE)
    if meta.env.imagined_edges:
        if world_model is None:
            raise ValueError(f"the policy in {folder} walks imagined edges but its {WORLD_MODEL_FILE} is missing")
        graph = graph.with_imagined(world_model.score_tails, meta.env.imagined_edges)
    reasoner = None
    if (folder / REASONER_FILE).is_file():
        from reverie.models.graph_reasoner import GraphReasoner

        reasoner = GraphReasoner.load(folder / REASONER_FILE)
        if reasoner.entities != list(graph.id2entity):
            raise ValueError(f"the reasoner in {folder} was trained on a different graph than {dataset.name!r}")
    net = load_policy(folder)
    if net.config["num_relation_ids"] != graph.num_relation_ids or net.config["num_entities"] != graph.num_entities:
        raise ValueError(f"the policy in {folder} does not fit the graph of {dataset.name!r}")
    return PolicyBundle(net=net, graph=graph, world_model=world_model, meta=meta, folder=folder, reasoner=reasoner)


def attach_reasoner(folder: str | Path, dataset: Any, reasoner_file: str | Path) -> PolicyBundle:
    """Put a trained graph reasoner into an existing policy folder and refit the arbiter on dev (weights
    and temperature), so the next `reverie ask`, `reverie eval` and /v1/query rank with it."""
    from reverie.atomic import atomic_copy
    from reverie.agents.path_policy.evaluate import fit_arbiter
    from reverie.agents.path_policy.net import save_policy

    from reverie.models.graph_reasoner import GraphReasoner

    folder = Path(folder)
    if GraphReasoner.load(reasoner_file).entities != list(read_policy_meta(folder).entities):
        raise ValueError(f"the reasoner {reasoner_file} was trained on a different graph than the policy in {folder}")
    atomic_copy(reasoner_file, folder / REASONER_FILE)
    bundle = load_bundle(folder, dataset)
    fit_arbiter(bundle, dataset)
    save_policy(bundle.net, folder, meta=bundle.meta)
    return bundle


def arbiter_scores(path_logp: np.ndarray, world_scores: np.ndarray | None, weight: float = 1.0,
                   reasoner_scores: np.ndarray | None = None, world_weight: float = 1.0, floor: float = -10.0) -> np.ndarray:
    """Answer scores [Q, E]: the one formula `reverie eval`, `reverie ask` and /v1/query rank by.

    A product of experts: log p_reasoner(e) + world_weight * log p_world(e) + weight * log(p_paths(e) + e^floor),
    where p_reasoner and p_world are the reasoner's and the world model's softmax over entities and p_paths
    the best path's probability (0 when no rollout reached e). Without a reasoner the world model's weight
    is 1. Path evidence reorders what the models believe; an entity no path reaches is not ruled out,
    only pushed down. With neither model, the path scores alone.
    """
    paths = np.logaddexp(np.where(np.isfinite(path_logp), path_logp, -np.inf), floor)
    if world_scores is None and reasoner_scores is None:
        return np.where(np.isfinite(path_logp), path_logp, -np.inf)
    total = weight * paths
    if reasoner_scores is not None:
        total = total + log_softmax(reasoner_scores)
    if world_scores is not None:
        total = total + (world_weight if reasoner_scores is not None else 1.0) * log_softmax(world_scores)
    return total


def log_softmax(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    top = s.max(axis=1, keepdims=True)
    return s - top - np.log(np.exp(s - top).sum(axis=1, keepdims=True))
