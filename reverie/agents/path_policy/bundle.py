"""A trained path policy with everything it walks with: net, WalkGraph, world model. No Ray.

A policy folder (`Home.policy(dataset)`) holds config.json (the net and the
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
from reverie.ranking import arbiter_scores, softmax

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

    def answer_scores(
        self, path_logp: np.ndarray, heads: np.ndarray, relations: np.ndarray
    ) -> dict[str, np.ndarray | None]:
        """The arbiter's scores [Q, E] of (heads, relations, ?) from the rollouts' path log-probabilities,
        with the world model's and the reasoner's own scores beside them ("arbiter", "world_model", "reasoner")."""
        world = reasoner = None
        if self.world_model is not None:
            world = np.asarray(self.world_model.score_tails(heads, relations), dtype=np.float64)
        if self.reasoner is not None:
            reasoner = (
                np.asarray(self.reasoner.score_tails(heads, relations), dtype=np.float64) / self.reasoner.temperature
            )
        arbiter = arbiter_scores(path_logp, world, self.meta.arbiter_weight, reasoner, self.meta.world_weight)
        return {"arbiter": arbiter, "world_model": world, "reasoner": reasoner}

    def confidence(self, arbiter: np.ndarray) -> np.ndarray:
        """Calibrated probabilities [Q, E] of the arbiter's answers (softmax at the temperature fit on dev)."""
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
