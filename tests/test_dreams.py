"""The embedding walker and its arbiter on hand-made subgraphs, without Ray."""

import numpy as np
import pytest

from reverie.dreams import Arbiter, EmbeddingWalker, Rollouts, dream, walk
from reverie.graph_store.subgraph import Subgraph

D = 8


def unit(i: int) -> np.ndarray:
    v = np.zeros(D, np.float32)
    v[i] = 1.0
    return v


def make_subgraph(nodes, rels, facts, node_vecs=None, rel_vecs=None, anchors=(0,)):
    """facts: (head, relation, tail) indices; inverse edges are added as the store does."""
    n, r = len(nodes), len(rels)
    src = [h for h, _, t in facts] + [t for h, _, t in facts]
    dst = [t for h, _, t in facts] + [h for h, _, t in facts]
    rel = [x for _, x, _ in facts] + [x + r for _, x, _ in facts]
    ref = list(range(len(facts))) * 2
    order = np.argsort(src, kind="stable")
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    node_vecs = np.zeros((n, D), np.float32) if node_vecs is None else node_vecs
    rel_vecs = np.zeros((2 * r, D), np.float32) if rel_vecs is None else rel_vecs
    return Subgraph(
        node_names=list(nodes),
        node_types=["entity"] * n,
        node_vecs=node_vecs,
        indptr=indptr,
        targets=np.asarray(dst)[order],
        relations=np.asarray(rel)[order],
        edge_refs=np.asarray(ref)[order],
        rel_names=list(rels),
        rel_vecs=rel_vecs,
        edge_ids=[f"e{i}" for i in range(len(facts))],
        edge_sources=["test"] * len(facts),
        anchors=np.asarray(anchors),
        anchor_weights=np.ones(len(anchors)) / len(anchors),
    )


def chain_graph():
    # cup -made of-> glass -is-> brittle -when dropped-> shatters ; cup -found in-> kitchen
    nodes = ["cup", "glass", "brittle", "shatters", "kitchen"]
    rels = ["made of", "is", "when dropped", "found in"]
    facts = [(0, 0, 1), (1, 1, 2), (2, 2, 3), (0, 3, 4)]
    rel_vecs = np.zeros((8, D), np.float32)
    rel_vecs[2] = unit(0)  # "when dropped" matches the question
    rel_vecs[0] = rel_vecs[1] = 0.6 * unit(0) + 0.8 * unit(1)
    rel_vecs[3] = unit(2)
    return make_subgraph(nodes, rels, facts, rel_vecs=rel_vecs), unit(0)


def rollouts(sub, q, count, hops, walker, seed):
    return dream(walker, sub, walker.pose(sub, q, [], hops), count, seed)


def test_walks_never_revisit_and_respect_hops():
    sub, q = chain_graph()
    for hops in (1, 2, 3, 5):
        r = rollouts(sub, q, 200, hops, EmbeddingWalker(temperature=1.0), seed=3)
        assert r.nodes.shape == (200, hops + 1) and (r.length <= hops).all()
        for b in range(200):
            path = r.nodes[b, : r.length[b] + 1]
            assert len(set(path.tolist())) == len(path)
            assert (r.nodes[b, r.length[b] + 1 :] == -1).all()
        assert (r.logp <= 1e-9).all()


def test_steps_follow_edges_of_the_subgraph():
    sub, q = chain_graph()
    r = rollouts(sub, q, 100, 3, EmbeddingWalker(temperature=0.5), seed=0)
    for b in range(100):
        for k in range(r.length[b]):
            u, v = r.nodes[b, k], r.nodes[b, k + 1]
            out = np.arange(sub.indptr[u], sub.indptr[u + 1])
            hop = out[(sub.targets[out] == v) & (sub.relations[out] == r.relations[b, k])]
            assert hop.size == 1 and sub.edge_refs[hop[0]] == r.edge_refs[b, k]
        assert (r.relations[b, r.length[b] :] == -1).all() and not r.imagined[b].any()


def test_same_seed_same_rollouts_and_walks_follow_the_question():
    sub, q = chain_graph()
    walker = EmbeddingWalker(temperature=0.1, stop_bias=-1.0)
    a = rollouts(sub, q, 128, 3, walker, seed=7)
    b = rollouts(sub, q, 128, 3, walker, seed=7)
    assert (a.nodes == b.nodes).all() and np.allclose(a.logp, b.logp)
    # "made of" (0.6 on the question) beats "found in" (0) at a low temperature
    assert (a.nodes[:, 1] == 1).mean() > 0.9
    assert (a.answers == 3).mean() > 0.8


def test_log_probabilities_are_the_softmax_of_the_choices():
    # one node with two edges of logits 1 and 0 and no stop at the first step: p = e/(e+1)
    nodes, rels = ["s", "a", "b"], ["x", "y"]
    sub = make_subgraph(nodes, rels, [(0, 0, 1), (0, 1, 2)])
    logits = np.where(sub.relations == 0, 1.0, 0.0)  # inverse edges never leave s
    r = walk(sub, logits, stop_logit=0.0, starts=np.zeros(4000, np.int64), hops=1, rng=np.random.default_rng(0))
    took_a = r.nodes[:, 1] == 1
    p_a = np.e / (np.e + 1)
    assert abs(took_a.mean() - p_a) < 0.03
    assert np.allclose(r.logp[took_a], np.log(p_a)) and np.allclose(r.logp[~took_a], np.log(1 - p_a))


def test_dead_end_ends_the_walk():
    sub = make_subgraph(["alone", "x"], ["r"], [(1, 0, 0)])
    r = rollouts(sub, unit(0), 10, 3, EmbeddingWalker(), seed=0)
    # from "alone" the only edge is the inverse to x; from x nothing unvisited remains
    assert (r.length == 1).all() and (r.answers == 1).all()


def test_concat_pads_to_the_longest():
    sub, q = chain_graph()
    walker = EmbeddingWalker()
    parts = [rollouts(sub, q, 3, 1, walker, 0), rollouts(sub, q, 2, 3, walker, 1)]
    both = Rollouts.concat(parts)
    assert both.nodes.shape == (5, 4) and both.relations.shape == both.edge_refs.shape == both.imagined.shape == (5, 3)
    assert len(both) == 5 and (both.nodes[:3, 2:] == -1).all() and (both.relations[:3, 1:] == -1).all()
    np.testing.assert_array_equal(both.nodes[3:], parts[1].nodes)


def test_arbiter_ranks_by_agreement_path_and_relevance():
    sub, q = chain_graph()
    walker = EmbeddingWalker(temperature=0.3)
    query = walker.pose(sub, q, [], 3)
    r = dream(walker, sub, query, 64, seed=1)
    ranked = walker.rank(sub, query, r, limit=10)
    assert ranked[0].answer == "shatters"
    assert sum(c.votes for c in ranked) == int(((r.length > 0) & ~np.isin(r.answers, sub.anchors)).sum())
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    chain = ranked[0].best_chain
    assert [(s.what, s.action, s.result) for s in chain.steps] == [
        ("cup", "made of", "glass"),
        ("glass", "is", "brittle"),
        ("brittle", "when dropped", "shatters"),
    ]
    assert [s.edge_id for s in chain.steps] == ["e0", "e1", "e2"] and not any(s.inverse for s in chain.steps)


def test_arbiter_marks_inverse_steps_and_skips_seed_answers():
    sub, q = chain_graph()
    sub.anchors = np.array([2])  # start at brittle: "glass" is reached against "is"
    walker = EmbeddingWalker(temperature=5.0)
    query = walker.pose(sub, q, [], 1)
    ranked = walker.rank(sub, query, dream(walker, sub, query, 64, seed=2))
    inverse = [c for c in ranked if c.answer == "glass"]
    assert inverse and inverse[0].best_chain.steps[0].inverse
    assert inverse[0].best_chain.steps[0].action == "inverse of is"
    assert all(c.answer != "brittle" for c in ranked)


def test_arbiter_weights_are_validated():
    with pytest.raises(ValueError):
        Arbiter(agreement=-1)
    with pytest.raises(ValueError):
        EmbeddingWalker(temperature=0)


def test_the_asked_relation_decides_which_chain_answers():
    sub, drop = chain_graph()
    walker = EmbeddingWalker(temperature=0.3)
    for question, answer in ((drop, "shatters"), (unit(2), "kitchen")):
        query = walker.pose(sub, question, [], 3)
        ranked = walker.rank(sub, query, dream(walker, sub, query, 256, seed=3))
        assert ranked[0].answer == answer and ranked[0].subjects == ["cup"]
        assert ranked[0].confidence > max(c.confidence for c in ranked[1:])
    scores = Arbiter().score(sub, dream(walker, sub, walker.pose(sub, drop, [], 3), 256, seed=3), drop)
    by_answer = {sub.node_names[s.answer]: s for s in scores}
    assert by_answer["shatters"].asked == pytest.approx(1.0)  # the most asked relation scores 1
    assert by_answer["kitchen"].asked < 1e-6  # "found in" is orthogonal to dropping
    assert sum(s.support for s in scores) == pytest.approx(1.0) and by_answer["shatters"].support > 0.99
    assert by_answer["shatters"].against == 0.0 and by_answer["shatters"].starts == (0,)
    with pytest.raises(ValueError):
        Arbiter(relation_temperature=0)
