"""The walker contract: every walker in WALKERS, built by its kind, on one small graph held by a
real GraphStore (real MiniLM vectors), without Ray. The path policy is untrained: the contract is
about shape and provenance, not skill."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from reverie.agents.path_policy.bundle import PolicyBundle
from reverie.agents.path_policy.config import EnvConfig, NetConfig, PolicyMeta
from reverie.agents.path_policy.net import PathPolicyNet
from reverie.agents.path_policy.walkgraph import WalkGraph
from reverie.config import Settings
from reverie.dreams import WALKERS, make_walker
from reverie.edges import WORLD_MODEL_SOURCE, edge_id, parse_relation_label
from reverie.graph_store import GraphStore
from reverie.schemas import LinkedEntity, Triple

FACTS = [
    ("glass cup", "made of", "glass"),
    ("glass", "is", "brittle"),
    ("brittle", "when dropped", "shatters"),
    ("glass cup", "found in", "kitchen"),
    ("kitchen", "part of", "house"),
    ("glass", "is", "transparent"),
    ("steel pan", "made of", "steel"),
    ("steel pan", "found in", "kitchen"),
    ("steel", "is", "hard"),
]
SOURCE = "toy"
ANCHORS = [LinkedEntity(name="glass cup", type="entity", score=1.0, how="exact")]
QUESTION = "What happens when you drop a glass cup?"


@pytest.fixture(scope="module")
def triples():
    return [Triple(head=h, relation=r, tail=t, source=SOURCE) for h, r, t in FACTS]


@pytest.fixture(scope="module")
def retrieved(tmp_path_factory, encoder, triples):
    """(subgraph around the seed, question vector) from a real store."""
    store = GraphStore(Settings(home=tmp_path_factory.mktemp("walkers")))
    plan = store.plan(triples)
    store.apply(plan, encoder.encode(plan.entity_texts), encoder.encode(plan.relation_texts))
    sub = store.retrieve([s.name for s in ANCHORS], [s.score for s in ANCHORS], hops=3, max_nodes=100)
    store.close()
    return sub, encoder.encode([QUESTION])[0]


@pytest.fixture(scope="module", params=sorted(WALKERS))
def walker(request, triples):
    torch.manual_seed(0)
    graph = WalkGraph.from_triples(triples)
    net = PathPolicyNet(graph.num_entities, graph.num_relation_ids, NetConfig(8, 8, 8, 8, experts=2)).eval()
    bundle = PolicyBundle(
        net=net, graph=graph, world_model=None, meta=PolicyMeta(dataset=SOURCE, env=EnvConfig(hops=3))
    )
    return make_walker(request.param, Settings(), bundle)


def walked_graph(walker, sub):
    return sub if walker.walks_retrieved else None


def test_a_walker_is_its_kind(walker):
    assert walker.kind in WALKERS and walker.name and walker.expert_names
    with pytest.raises(ValueError, match="unknown walker"):
        make_walker("teleport", Settings())


def test_pose_starts_at_the_linked_entities(walker, retrieved):
    sub, question = retrieved
    query = walker.pose(sub, question, ANCHORS, hops=3)
    assert query.hops == 3 and len(query.starts) == len(query.start_weights) == 1
    assert np.isclose(query.start_weights.sum(), 1.0)
    assert walker.knows(["glass cup", "steel pan"]) == 2 and walker.knows(["glass cup", "tea"]) == (
        2 if walker.walks_retrieved else 1
    )


def test_walks_follow_stored_facts_and_repeat_with_the_seed(walker, retrieved, triples):
    sub, question = retrieved
    query = walker.pose(sub, question, ANCHORS, hops=3)
    graph = walked_graph(walker, sub)
    walks = walker.walk(graph, query, 64, np.random.default_rng(5))
    assert len(walks) == 64 and walks.nodes.shape == (64, query.hops + 1) and walks.relations.shape == (64, query.hops)
    assert np.isin(walks.nodes[:, 0], query.starts).all()
    assert np.isfinite(walks.logp).all() and (walks.logp <= 1e-9).all()
    assert ((walks.expert >= 0) & (walks.expert < len(walker.expert_names))).all()
    for b in range(64):
        assert (walks.nodes[b, walks.length[b] + 1 :] == -1).all() and (
            walks.relations[b, walks.length[b] :] == -1
        ).all()
    again = walker.walk(graph, query, 64, np.random.default_rng(5))
    assert np.array_equal(again.nodes, walks.nodes) and np.array_equal(again.relations, walks.relations)
    np.testing.assert_allclose(again.logp, walks.logp)
    # what Ray ships to a rollout task walks the same, after a pickle round trip
    shipped = pickle.loads(pickle.dumps(walker.for_rollouts()))
    np.testing.assert_array_equal(shipped.walk(graph, query, 64, np.random.default_rng(5)).nodes, walks.nodes)


def test_ranked_answers_carry_chains_of_stored_facts(walker, retrieved):
    sub, question = retrieved
    query = walker.pose(sub, question, ANCHORS, hops=3)
    graph = walked_graph(walker, sub)
    walks = walker.walk(graph, query, 128, np.random.default_rng(1))
    ranked = walker.rank(graph, query, walks, limit=5)
    assert 1 <= len(ranked) <= 5
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    assert sum(c.votes for c in ranked) <= len(walks) and len({c.answer for c in ranked}) == len(ranked)
    for cand in ranked:
        chain = cand.best_chain
        assert chain.answer == cand.answer and chain.steps and chain.steps[0].what == "glass cup"
        assert chain.steps[-1].result == cand.answer and chain.expert in walker.expert_names
        for a, b in zip(chain.steps, chain.steps[1:]):
            assert a.result == b.what
        for step in chain.steps:
            relation, inverse = parse_relation_label(step.action)
            assert inverse == step.inverse
            head, tail = (step.result, step.what) if step.inverse else (step.what, step.result)
            assert step.edge_id == edge_id(head, relation, tail)
            assert (head, relation, tail) in FACTS and step.source == SOURCE and step.source != WORLD_MODEL_SOURCE


def test_the_rollout_tree_merges_walks_by_prefix_and_its_counts_add_up(walker, retrieved):
    from reverie.dreams import arbitrate

    sub, question = retrieved
    query = walker.pose(sub, question, ANCHORS, hops=3)
    graph = walked_graph(walker, sub)
    walks = walker.walk(graph, query, 128, np.random.default_rng(3))
    distinct = {
        (tuple(walks.nodes[b, : walks.length[b] + 1]), tuple(walks.relations[b, : walks.length[b]]))
        for b in range(len(walks))
    }
    candidates, tree = arbitrate(walker, graph, query, walks, 5, tree_walks=len(distinct))
    assert candidates == walker.rank(graph, query, walks, 5)
    assert tree.rollouts == tree.shown == 128
    nodes = {n.id: n for n in tree.nodes}
    children: dict[int, list] = {}
    for node in tree.nodes:
        if node.parent is None:
            assert node.step is None and node.entity == "glass cup"
        else:
            assert node.parent < node.id, "parents come before their children"
            parent = nodes[node.parent]
            assert node.step.what == parent.entity and node.step.result == node.entity
            children.setdefault(node.parent, []).append(node)
    for node in tree.nodes:
        below = children.get(node.id, [])
        assert node.rollouts == node.ends + sum(c.rollouts for c in below)
        assert len({(c.step.edge_id, c.step.inverse) for c in below}) == len(below), "one branch per hop"
    assert sum(n.ends for n in tree.nodes) == 128 == sum(n.rollouts for n in tree.nodes if n.parent is None)
    # each answer's votes are the walks that ended at it
    for cand in candidates:
        assert sum(n.ends for n in tree.nodes if n.entity == cand.answer and n.parent is not None) == cand.votes
    # one walk: the most frequent, and only its nodes
    _, top = arbitrate(walker, graph, query, walks, 5, tree_walks=1)
    counts = {}
    for b in range(len(walks)):
        key = (tuple(walks.nodes[b, : walks.length[b] + 1]), tuple(walks.relations[b, : walks.length[b]]))
        counts[key] = counts.get(key, 0) + 1
    assert top.shown == max(counts.values()) and len(top.nodes) == len(max(counts, key=counts.get)[0])
    assert arbitrate(walker, graph, query, walks, 5)[1] is None
