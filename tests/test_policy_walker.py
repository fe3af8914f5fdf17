"""The trained policy's dreams without Ray: sampled walks, expert attribution, ranking, provenance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reverie.dreams.policy_walker import WORLD_MODEL_SOURCE, PolicyRollouts, policy_rollouts, rank_policy_rollouts
from reverie.graph_store.store import edge_id
from reverie.policies.bundle import PolicyBundle, arbiter_scores
from reverie.policies.net import EXPERT_NAMES, PathPolicyNet
from reverie.policies.walkgraph import WalkGraph
from reverie.schemas import Triple

FACTS = [("a", "r1", "b"), ("b", "r2", "c"), ("a", "q", "c"), ("c", "r1", "d"), ("b", "r1", "d")]


def graph(imagined: bool = False) -> WalkGraph:
    g = WalkGraph.from_triples([Triple(head=h, relation=r, tail=t) for h, r, t in FACTS])
    if imagined:
        E, R = g.num_entities, g.num_relations
        table = np.full((E, 2 * R, E), -5.0)
        table[g.entity2id["a"], g.relation2id["r2"], g.entity2id["d"]] = 5.0  # imagine a -r2-> d
        g = g.with_imagined(lambda h, r: table[h, r], per_entity=1)
    return g


def bundle(g: WalkGraph, experts: int = 4, hops: int = 2) -> PolicyBundle:
    torch.manual_seed(0)
    net = PathPolicyNet(g.num_entities, g.num_relation_ids, entity_dim=8, relation_dim=8, lstm_dim=8, state_dim=8,
                        experts=experts, use_entities=1).eval()
    return PolicyBundle(net=net, graph=g, world_model=None, meta={"hops": hops, "dataset": "toy"})


def test_sampled_walks_follow_edges_and_repeat_with_the_seed():
    g = graph(imagined=True)
    b = bundle(g)
    src = np.full(200, g.entity2id["a"])
    walks = policy_rollouts(b, src, g.relation2id["q"], seed=3)
    assert walks.entities.shape == (200, 3) and walks.relations.shape == (200, 2) and len(walks) == 200
    assert ((walks.expert >= 0) & (walks.expert < 4)).all() and (walks.logp <= 0).all()
    for row in range(200):
        for hop in range(2):
            cur, rel, nxt = walks.entities[row, hop], walks.relations[row, hop], walks.entities[row, hop + 1]
            cols = np.flatnonzero(g.action_mask[cur] & (g.action_relations[cur] == rel) & (g.action_entities[cur] == nxt))
            assert cols.size == 1  # every hop is an allowed move of the action tables
    assert g.is_imagined(walks.relations).any()  # the imagined edge out of a is walkable
    again = policy_rollouts(b, src, g.relation2id["q"], seed=3)
    assert np.array_equal(again.entities, walks.entities) and np.allclose(again.logp, walks.logp)
    with pytest.raises(ValueError, match="query relation"):
        policy_rollouts(b, src, 2 * g.num_relations, seed=0)


def test_one_expert_is_the_policy():
    g = graph()
    walks = policy_rollouts(bundle(g, experts=1), np.zeros(8, np.int64), 0, seed=0)
    assert (walks.expert == 0).all()


def test_rank_groups_by_answer_and_keeps_provenance():
    g = graph(imagined=True)
    b = bundle(g)
    e, rid, R = g.entity2id, g.relation2id, g.num_relations
    a, bb, c, d = e["a"], e["b"], e["c"], e["d"]
    no_op, dream = g.no_op, g.imagined_offset + rid["r2"]
    walks = PolicyRollouts(
        entities=np.array([[a, bb, c], [a, bb, c], [a, bb, d], [a, d, d], [a, a, a]]),
        relations=np.array([[rid["r1"], rid["r2"]], [rid["r1"], rid["r2"]], [rid["r1"], rid["r1"]], [dream, no_op], [no_op, no_op]]),
        logp=np.array([-1.0, -1.5, -0.5, -3.0, -0.1]),
        expert=np.array([2, 2, 0, 1, 3]),
        relation=rid["q"],
    )
    ranked = rank_policy_rollouts(b, walks, source="toy")
    assert [c_.answer for c_ in ranked] == ["d", "c"]  # best path wins without a world model; a (stayed) proposes nothing
    assert [c_.votes for c_ in ranked] == [2, 2]
    best_d = ranked[0].best_chain
    assert best_d.expert == EXPERT_NAMES[0] and [s.result for s in best_d.steps] == ["b", "d"]
    assert best_d.steps[0].edge_id == edge_id("a", "r1", "b") and best_d.steps[0].source == "toy"
    assert not any(s.imagined for s in best_d.steps)
    # an imagined hop is flagged, with the world model as its source; the stay is left out
    dream_chain = rank_policy_rollouts(b, PolicyRollouts(walks.entities[3:4], walks.relations[3:4], walks.logp[3:4],
                                                         walks.expert[3:4], walks.relation), source="toy")[0].best_chain
    assert len(dream_chain.steps) == 1 and dream_chain.steps[0].imagined
    assert dream_chain.steps[0].source == WORLD_MODEL_SOURCE and dream_chain.steps[0].action == "r2"
    # an inverse hop names the stored fact from its head
    back = PolicyRollouts(np.array([[c, bb, bb]]), np.array([[rid["r2"] + R, no_op]]), np.array([-1.0]), np.array([0]), rid["q"])
    step = rank_policy_rollouts(b, back, source="toy")[0].best_chain.steps[0]
    assert step.inverse and step.action == "inverse of r2" and step.edge_id == edge_id("b", "r2", "c")


def test_arbiter_scores_mix_world_and_paths():
    paths = np.array([[-np.inf, np.log(0.5), np.log(0.01)]])
    world = np.array([[2.0, 1.0, 1.0]])
    only_world = arbiter_scores(paths, world, weight=0.0)
    assert np.argmax(only_world[0]) == 0  # the world model's favourite, though no path reached it
    mixed = arbiter_scores(paths, world, weight=1.0)
    assert mixed[0, 1] > mixed[0, 2] > mixed[0, 0]  # path evidence reorders; the unreached favourite drops last
    assert np.argmax(mixed[0]) == 1
    no_world = arbiter_scores(paths, None)
    assert no_world[0, 0] == -np.inf and no_world[0, 1] == np.log(0.5)
