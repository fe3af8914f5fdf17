"""Dreams walked by the trained path policy, and their arbitration. No Ray.

`policy_rollouts` samples walks of the policy over its own WalkGraph from the linked entities for
one query relation, recording for each walk which expert most likely produced it (the largest
posterior gate_k * prod_t pi_k(a_t)). `rank_policy_rollouts` groups walks by the entity they end
at and ranks answers the way `reverie eval` does (bundle.arbiter_scores: the world model's belief
times the path evidence), so the CLI, HTTP and the benchmark rank alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reverie.graph_store.store import edge_id
from reverie.policies.bundle import PolicyBundle, arbiter_scores
from reverie.policies.net import expert_name
from reverie.schemas import Candidate, Chain, Step

WORLD_MODEL_SOURCE = "world-model"


@dataclass
class PolicyRollouts:
    entities: np.ndarray   # (B, H + 1) WalkGraph entity ids, the start first
    relations: np.ndarray  # (B, H) relation ids taken (NO_OP: stayed)
    logp: np.ndarray       # (B,) log-probability of the whole walk under the policy
    expert: np.ndarray     # (B,) index of the expert that most likely produced it
    relation: int          # the query relation id asked

    def __len__(self) -> int:
        return int(self.logp.shape[0])

    @staticmethod
    def concat(parts: list["PolicyRollouts"]) -> "PolicyRollouts":
        return PolicyRollouts(
            entities=np.concatenate([p.entities for p in parts]),
            relations=np.concatenate([p.relations for p in parts]),
            logp=np.concatenate([p.logp for p in parts]),
            expert=np.concatenate([p.expert for p in parts]),
            relation=parts[0].relation,
        )


@torch.no_grad()
def policy_rollouts(bundle: PolicyBundle, sources: np.ndarray, relation: int, seed: int) -> PolicyRollouts:
    """One sampled walk of `bundle.hops` steps from each of `sources` (WalkGraph ids) for `relation`."""
    graph, net = bundle.graph, bundle.net
    src = np.asarray(sources, np.int64)
    n, hops = len(src), bundle.hops
    if not 0 <= relation < 2 * graph.num_relations:
        raise ValueError(f"query relation id {relation} is outside 0..{2 * graph.num_relations - 1}")
    generator = torch.Generator().manual_seed(int(seed))
    entities = np.repeat(src[:, None], hops + 1, axis=1)
    relations = np.full((n, hops), graph.no_op, np.int64)
    logp = torch.zeros(n, dtype=torch.float64)
    expert_logp = None
    qrel = np.full(n, relation, np.int64)
    for step in range(hops):
        cur = entities[:, step]
        allowed = graph.action_mask[cur].copy()
        if bundle.mask_source_query_edges:
            allowed &= ~((cur == src)[:, None] & (graph.action_relations[cur] == relation))
        obs = {
            "source": src, "query_relation": qrel, "current": cur, "step": np.full(n, step, np.int64),
            "path_relations": relations, "path_entities": entities[:, 1:],
            "action_relations": graph.action_relations[cur], "action_entities": graph.action_entities[cur],
            "action_mask": allowed.astype(np.int8),
        }
        mixed, per_expert, log_gate = net.expert_log_probs({k: torch.as_tensor(v) for k, v in obs.items()})
        if expert_logp is None:
            expert_logp = log_gate.double().clone()
        action = torch.multinomial(mixed.exp(), 1, generator=generator).squeeze(-1)
        logp += mixed[torch.arange(n), action].double()
        expert_logp += per_expert[torch.arange(n), :, action].double()
        a = action.numpy()
        relations[:, step] = graph.action_relations[cur, a]
        entities[:, step + 1] = graph.action_entities[cur, a]  # later columns stay the source: the env's padding
    return PolicyRollouts(entities=entities, relations=relations, logp=logp.numpy(),
                          expert=expert_logp.argmax(dim=1).numpy(), relation=int(relation))


def rank_policy_rollouts(bundle: PolicyBundle, rollouts: PolicyRollouts, source: str = "", limit: int = 10) -> list[Candidate]:
    """Ranked answers, best first; walks that end where they started propose nothing."""
    graph = bundle.graph
    ends = rollouts.entities[:, -1]
    valid = ends != rollouts.entities[:, 0]
    if not valid.any():
        return []
    idx = np.flatnonzero(valid)
    path_logp = np.full((1, graph.num_entities), -np.inf)
    np.maximum.at(path_logp[0], ends[idx], rollouts.logp[idx])
    world = None
    if bundle.world_model is not None:
        start = np.array([rollouts.entities[idx[0], 0]])
        world = np.asarray(bundle.world_model.score_tails(start, np.array([rollouts.relation])), dtype=np.float64)
    score = arbiter_scores(path_logp, world, bundle.arbiter_weight)[0]
    candidates = []
    for answer in np.unique(ends[idx]):
        members = idx[ends[idx] == answer]
        best = int(members[np.argmax(rollouts.logp[members])])
        candidates.append(Candidate(answer=graph.id2entity[answer], score=float(score[answer]), votes=int(members.size),
                                    best_chain=policy_chain(bundle, rollouts, best, source)))
    candidates.sort(key=lambda c: (-c.score, c.answer))
    return candidates[:limit]


def policy_chain(bundle: PolicyBundle, rollouts: PolicyRollouts, index: int, source: str = "") -> Chain:
    """Walk `index` as (what, action, result) steps with provenance; stays (NO_OP) are left out."""
    graph = bundle.graph
    names, relation_names = graph.id2entity, graph.id2relation
    R = graph.num_relations
    steps = []
    for hop, rel in enumerate(rollouts.relations[index].tolist()):
        if rel == graph.no_op:
            continue
        imagined = bool(graph.is_imagined(rel))
        stored = int(graph.stored_relation(rel))
        inverse = stored >= R
        what, result = names[rollouts.entities[index, hop]], names[rollouts.entities[index, hop + 1]]
        name = relation_names[stored - R if inverse else stored]
        head, tail = (result, what) if inverse else (what, result)
        steps.append(Step(what=what, action=f"inverse of {name}" if inverse else name, result=result,
                          edge_id=edge_id(head, name, tail), source=WORLD_MODEL_SOURCE if imagined else source,
                          inverse=inverse, imagined=imagined))
    experts = int(bundle.net.config.get("experts", 1))
    return Chain(steps=steps, answer=names[rollouts.entities[index, -1]],
                 score=float(rollouts.logp[index] / max(len(steps), 1)),
                 expert=expert_name(int(rollouts.expert[index]), experts))
