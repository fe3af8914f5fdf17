"""The trained policy as a walker, without Ray: posing a question, sampled walks, expert
attribution, ranking, provenance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reverie.agents.path_policy.bundle import PolicyBundle
from reverie.agents.path_policy.config import EnvConfig, NetConfig, PolicyMeta
from reverie.agents.path_policy.net import EXPERT_NAMES, PathPolicyNet
from reverie.agents.path_policy.walkgraph import WalkGraph
from reverie.dreams.policy_walker import PolicyWalker
from reverie.dreams.rollouts import WalkQuery
from reverie.edges import WORLD_MODEL_SOURCE, edge_id
from reverie.errors import NoMatchError
from reverie.graph_store.subgraph import Subgraph
from reverie.ranking import arbiter_scores
from reverie.schemas import LinkedEntity, Triple

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
    net = PathPolicyNet(
        g.num_entities, g.num_relation_ids, NetConfig(8, 8, 8, 8, experts=experts, use_entities=True)
    ).eval()
    return PolicyBundle(net=net, graph=g, world_model=None, meta=PolicyMeta(dataset="toy", env=EnvConfig(hops=hops)))


def query(g: WalkGraph, relation: int, start: str = "a", hops: int = 2) -> WalkQuery:
    return WalkQuery(
        question_vec=np.zeros(4, np.float32),
        starts=np.array([g.entity2id[start]]),
        start_weights=np.ones(1),
        hops=hops,
        relation=relation,
    )


def test_sampled_walks_follow_the_action_tables_and_repeat_with_the_seed():
    g = graph(imagined=True)
    walker = PolicyWalker(bundle(g))
    q = query(g, g.relation2id["q"])
    walks = walker.walk(None, q, 200, np.random.default_rng(3))
    assert walks.nodes.shape == (200, 3) and walks.relations.shape == (200, 2) and len(walks) == 200
    assert ((walks.expert >= 0) & (walks.expert < 4)).all() and (walks.logp < 0).all() and (walks.decisions == 2).all()
    for row in range(200):
        assert walks.nodes[row, 0] == g.entity2id["a"]
        for hop in range(walks.length[row]):
            cur, rel, nxt = walks.nodes[row, hop], walks.relations[row, hop], walks.nodes[row, hop + 1]
            action_rel = rel + g.imagined_offset if walks.imagined[row, hop] else rel
            cols = np.flatnonzero(
                g.action_mask[cur] & (g.action_relations[cur] == action_rel) & (g.action_entities[cur] == nxt)
            )
            assert cols.size == 1  # every hop is an allowed move of the action tables
        assert (walks.nodes[row, walks.length[row] + 1 :] == -1).all()
    assert walks.imagined.any()  # the imagined edge out of a is walkable
    assert (walks.length < 2).any()  # some walks stayed put for a step: a stay is not a hop
    again = walker.walk(None, q, 200, np.random.default_rng(3))
    assert np.array_equal(again.nodes, walks.nodes) and np.allclose(again.logp, walks.logp)
    other = walker.walk(None, q, 200, np.random.default_rng(4))
    assert not np.array_equal(other.nodes, walks.nodes)
    with pytest.raises(ValueError, match="query relation"):
        walker.walk(None, query(g, 2 * g.num_relations), 4, np.random.default_rng(0))


def test_one_expert_is_the_policy():
    g = graph()
    walker = PolicyWalker(bundle(g, experts=1))
    walks = walker.walk(None, query(g, 0), 8, np.random.default_rng(0))
    assert (walks.expert == 0).all() and walker.expert_names == ("policy",)


def test_rank_groups_by_answer_and_keeps_provenance():
    g = graph(imagined=True)
    walker = PolicyWalker(bundle(g))
    e, rid, R = g.entity2id, g.relation2id, g.num_relations
    a, bb, c, d = e["a"], e["b"], e["c"], e["d"]
    no_op, dream = g.no_op, g.imagined_offset + rid["r2"]
    walks = walker.from_steps(
        entities=np.array([[a, bb, c], [a, bb, c], [a, bb, d], [a, d, d], [a, a, a]]),
        taken=np.array(
            [[rid["r1"], rid["r2"]], [rid["r1"], rid["r2"]], [rid["r1"], rid["r1"]], [dream, no_op], [no_op, no_op]]
        ),
        logp=np.array([-1.0, -1.5, -0.5, -3.0, -0.1]),
        expert=np.array([2, 2, 0, 1, 3]),
    )
    np.testing.assert_array_equal(walks.length, [2, 2, 2, 1, 0])
    q = query(g, rid["q"])
    ranked = walker.rank(None, q, walks)
    assert [c_.answer for c_ in ranked] == [
        "d",
        "c",
    ]  # best path wins without a world model; a (stayed) proposes nothing
    assert [c_.votes for c_ in ranked] == [2, 2]
    best_d = ranked[0].best_chain
    assert best_d.expert == EXPERT_NAMES[0] and [s.result for s in best_d.steps] == ["b", "d"]
    assert best_d.steps[0].edge_id == edge_id("a", "r1", "b") and best_d.steps[0].source == "toy"
    assert not any(s.imagined for s in best_d.steps)
    # an imagined hop is flagged, with the world model as its source; the stay is left out
    dream_chain = walker.chain(None, walks, 3)
    assert len(dream_chain.steps) == 1 and dream_chain.steps[0].imagined and dream_chain.answer == "d"
    assert dream_chain.steps[0].source == WORLD_MODEL_SOURCE and dream_chain.steps[0].action == "r2"
    assert dream_chain.steps[0].edge_id == edge_id("a", "r2", "d") and dream_chain.expert == EXPERT_NAMES[1]
    # an inverse hop names the stored fact from its head
    back = walker.from_steps(
        np.array([[c, bb, bb]]), np.array([[rid["r2"] + R, no_op]]), np.array([-1.0]), np.array([0])
    )
    step = walker.rank(None, query(g, rid["q"], start="c"), back)[0].best_chain.steps[0]
    assert step.inverse and step.action == "inverse of r2" and step.edge_id == edge_id("b", "r2", "c")


def test_pose_asks_the_nearest_relation_from_the_linked_entities_it_knows():
    g = graph()
    walker = PolicyWalker(bundle(g))
    R = g.num_relations
    names = ["a", "b"]
    rel_names = ["q", "r1"]  # the retrieved neighbourhood's relations, in its own order
    rel_vecs = np.zeros((4, 4), np.float32)
    rel_vecs[0] = [1, 0, 0, 0]  # "q" matches the question
    rel_vecs[1] = [0, 1, 0, 0]
    rel_vecs[2] = [0.8, 0.6, 0, 0]  # "inverse of q": near, but not by the margin
    sub = Subgraph(
        node_names=names,
        node_types=["entity"] * 2,
        node_vecs=np.array([[0, 0, 1, 0], [0, 0, 0, 1]], np.float32),
        indptr=np.zeros(3, np.int64),
        targets=np.zeros(0, np.int64),
        relations=np.zeros(0, np.int64),
        edge_refs=np.zeros(0, np.int64),
        rel_names=rel_names,
        rel_vecs=rel_vecs,
        edge_ids=[],
        edge_sources=[],
        anchors=np.array([0]),
        anchor_weights=np.ones(1),
    )
    anchors = [
        LinkedEntity(name="a", type="entity", score=0.9, how="exact"),
        LinkedEntity(name="nowhere", type="entity", score=1.0, how="vector"),
        LinkedEntity(name="b", type="entity", score=0.3, how="vector"),
    ]
    question = np.array([1, 0, 0, 0], np.float32)
    posed = walker.pose(sub, question, anchors, hops=5)
    assert posed.relation == g.relation2id["q"] and posed.hops == 2  # the policy walks its own hops
    assert [g.id2entity[i] for i in posed.starts] == ["a", "b"]
    np.testing.assert_allclose(posed.start_weights, [0.75, 0.25])
    rel_vecs[0] = [0.5, 0.5, 0, 0]  # now "inverse of q" is clearly nearer: the inverse is asked
    assert walker.pose(sub, question, anchors, hops=2).relation == g.relation2id["q"] + R
    with pytest.raises(NoMatchError):
        walker.pose(sub, question, anchors[1:2], hops=2)


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


def test_with_a_reasoner_every_candidate_has_a_path_and_a_confidence():
    import dataclasses

    from reverie.data.kg import KGDataset
    from reverie.models.graph_reasoner import ReasonerConfig, train_reasoner

    g = graph()
    facts = [Triple(head=h, relation=r, tail=t, source="toy") for h, r, t in FACTS]
    reasoner = train_reasoner(
        KGDataset(name="toy", graph=facts, train=facts),
        ReasonerConfig(dim=8, layers=2, heads=2, batch_size=4, epochs=20, patience=0),
    )
    walker = PolicyWalker(dataclasses.replace(bundle(g), reasoner=reasoner))
    e, rid = g.entity2id, g.relation2id
    walks = walker.from_steps(
        np.array([[e["a"], e["b"], e["c"]]]), np.array([[rid["r1"], rid["r2"]]]), np.array([-1.0]), np.array([0])
    )
    ranked = walker.rank(None, query(g, rid["q"]), walks)
    assert {"b", "c", "d"} <= {c_.answer for c_ in ranked}  # the reasoner's answers join the one walk's
    assert all(0.0 < c_.confidence <= 1.0 for c_ in ranked) and sum(c_.confidence for c_ in ranked) <= 1.0 + 1e-9
    assert [c_.score for c_ in ranked] == sorted((c_.score for c_ in ranked), reverse=True)
    for c_ in ranked:  # each answer's chain is a walk from the asked entity that ends at it
        steps = c_.best_chain.steps
        assert steps and steps[0].what == "a" and steps[-1].result == c_.answer
        assert all(x.result == y.what for x, y in zip(steps, steps[1:]))
        if c_.votes == 0:
            assert c_.best_chain.expert == "reasoner"
    assert walker.for_rollouts().bundle.reasoner is None  # rollout tasks do not carry it
