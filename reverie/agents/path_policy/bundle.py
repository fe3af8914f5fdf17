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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reverie.agents.path_policy.config import PolicyMeta
from reverie.agents.path_policy.net import PathPolicyNet, load_policy, read_policy_meta
from reverie.agents.path_policy.walkgraph import WalkGraph
from reverie.atomic import atomic_write
from reverie.home import LEARNED_FACTS_FILE
from reverie.ranking import arbiter_scores, softmax
from reverie.schemas import Triple

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


def read_learned_facts(folder: str | Path) -> list[Triple]:
    """The facts folded into a policy after training (ingested since, or given to `reverie learn`)."""
    path = Path(folder) / LEARNED_FACTS_FILE
    if not path.is_file():
        return []
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [Triple(head=h, relation=r, tail=t, source="learned") for h, r, t in rows]


def fold_facts(folder: str | Path, triples: Sequence[Triple]) -> int:
    """Add facts to a policy's walkable graph (write, then rename); returns how many were new. Names
    must not hold tabs or newlines."""
    known = {(t.head, t.relation, t.tail) for t in read_learned_facts(folder)}
    fresh = []
    for t in triples:
        key = (t.head, t.relation, t.tail)
        if key not in known and not any("\t" in x or "\n" in x for x in key):
            known.add(key)
            fresh.append(key)
    if fresh:
        path = Path(folder) / LEARNED_FACTS_FILE
        old = path.read_bytes() if path.is_file() else b""
        atomic_write(path, old + "".join(f"{h}\t{r}\t{t}\n" for h, r, t in fresh).encode())
    return len(fresh)


def load_bundle(folder: str | Path, dataset: Any) -> PolicyBundle:
    """Load the policy in `folder` for `dataset` (a KGDataset); a ValueError if they do not match.

    Facts folded in after training (`fold_facts`) join the walkable graph: new entities and relations
    get rows in the policy's tables (`grow_net`), the graph reasoner reads them at once (it is
    entity-inductive), and the world model, whose embeddings are per entity, sits out until retrained
    when the graph has entities or relations it never saw."""
    folder = Path(folder)
    meta = read_policy_meta(folder)
    learned = read_learned_facts(folder)
    if learned:
        dataset = dataclasses.replace(dataset, graph=list(dataset.graph) + learned)
    graph = WalkGraph.from_dataset(dataset, max_actions=meta.env.max_actions, seed=meta.env.graph_seed)
    trained_on = (list(meta.entities), list(meta.relations))
    grown = bool(meta.entities) and trained_on != (graph.id2entity, graph.id2relation)
    if grown and not (
        learned and set(meta.entities) <= set(graph.id2entity) and set(meta.relations) <= set(graph.id2relation)
    ):
        raise ValueError(f"the policy in {folder} was trained on a different graph than {dataset.name!r}")
    world_model = None
    if (folder / WORLD_MODEL_FILE).is_file():
        from reverie.models.world_model import WorldModel

        world_model = WorldModel.load(folder / WORLD_MODEL_FILE)
        if learned and world_model.entities != graph.id2entity:
            world_model = None  # transductive: it has no vector for an entity that came after it
    if meta.env.imagined_edges:
        if grown:
            raise ValueError(f"the policy in {folder} walks imagined edges and cannot take new entities: retrain it")
        if world_model is None:
            raise ValueError(f"the policy in {folder} walks imagined edges but its {WORLD_MODEL_FILE} is missing")
        graph = graph.with_imagined(world_model.score_tails, meta.env.imagined_edges)
    reasoner = None
    if (folder / REASONER_FILE).is_file():
        from reverie.models.graph_reasoner import GraphReasoner

        reasoner = GraphReasoner.load(folder / REASONER_FILE)
        if learned and reasoner.relations == graph.id2relation:
            forward = graph.edges[graph.edges[:, 1] < graph.num_relations]
            reasoner = reasoner.on_graph(graph.id2entity, forward)
        elif learned:
            reasoner = None  # a relation it has no vector for: it sits out until retrained
        elif reasoner.entities != list(graph.id2entity):
            raise ValueError(f"the reasoner in {folder} was trained on a different graph than {dataset.name!r}")
    net = load_policy(folder)
    if grown:
        from reverie.agents.path_policy.learner import grow_net

        net = grow_net(net, meta.entities, meta.relations, graph)
    if net.config["num_relation_ids"] != graph.num_relation_ids or net.config["num_entities"] != graph.num_entities:
        raise ValueError(f"the policy in {folder} does not fit the graph of {dataset.name!r}")
    return PolicyBundle(net=net, graph=graph, world_model=world_model, meta=meta, folder=folder, reasoner=reasoner)
