"""A trained path policy with everything it walks with: net, WalkGraph, world model. No Ray.

A policy folder (settings.home / "policies" / <dataset>) holds config.json (the net and the
training meta), the net's weights and, when training used one, `world_model.pt`: the world model
that shaped its rewards, proposes its imagined edges and helps the arbiter rank answers.
`load_bundle` rebuilds the exact action tables the policy was trained on (same max_actions, graph
seed and imagined edges).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reverie.policies.config import PolicyMeta
from reverie.policies.net import PathPolicyNet, load_policy, read_policy_meta
from reverie.policies.walkgraph import WalkGraph

WORLD_MODEL_FILE = "world_model.pt"


@dataclass(eq=False)
class PolicyBundle:
    net: PathPolicyNet
    graph: WalkGraph
    world_model: Any | None  # reverie.models.world_model.WorldModel
    meta: PolicyMeta
    folder: Path | None = None

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
    net = load_policy(folder)
    if net.config["num_relation_ids"] != graph.num_relation_ids or net.config["num_entities"] != graph.num_entities:
        raise ValueError(f"the policy in {folder} does not fit the graph of {dataset.name!r}")
    return PolicyBundle(net=net, graph=graph, world_model=world_model, meta=meta, folder=folder)


def arbiter_scores(path_logp: np.ndarray, world_scores: np.ndarray | None, weight: float = 1.0, floor: float = -10.0) -> np.ndarray:
    """Answer scores [Q, E] from the rollouts' path log-probabilities and the world model's scores.

    A product of experts: log p_world(e) + weight * log(p_paths(e) + e^floor), where p_world is the
    world model's softmax over entities and p_paths the best path's probability (0 when no rollout
    reached e). Path evidence reorders what the world model believes; an entity no path reaches is
    not ruled out, only pushed down. Without a world model, the path scores alone.
    """
    paths = np.logaddexp(np.where(np.isfinite(path_logp), path_logp, -np.inf), floor)
    if world_scores is None:
        return np.where(np.isfinite(path_logp), path_logp, -np.inf)
    w = np.asarray(world_scores, dtype=np.float64)
    top = w.max(axis=1, keepdims=True)
    log_world = w - top - np.log(np.exp(w - top).sum(axis=1, keepdims=True))
    return log_world + weight * paths
