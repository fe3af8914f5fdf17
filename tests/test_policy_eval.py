"""Beam-search evaluation on a hand-made graph whose ranks are known."""

import numpy as np
import torch

from reverie.agents.path_policy.bundle import PolicyBundle
from reverie.agents.path_policy.config import EnvConfig, PolicyMeta
from reverie.agents.path_policy.evaluate import beam_scores, countries_auc_pr, evaluate_bundle
from reverie.agents.path_policy.walkgraph import WalkGraph
from reverie.data.kg import KGDataset
from reverie.schemas import Triple


def T(h, r, t):
    return Triple(head=h, relation=r, tail=t)


GRAPH = [T("a", "r1", "b"), T("b", "r2", "c"), T("a", "r1", "d"), T("d", "r3", "e"), T("x", "q", "y")]


class RelationPreference(torch.nn.Module):
    """A fixed policy for the test: prefers actions by relation id, and NO_OP least.

    It takes the same observation batch as PathPolicyNet and returns (logits, values)."""

    def __init__(self, preference: dict[int, float]):
        super().__init__()
        self.preference = preference

    def forward(self, obs):
        rel = obs["action_relations"].numpy()
        logits = np.vectorize(lambda r: self.preference.get(int(r), -5.0))(rel).astype(np.float32)
        logits[obs["action_mask"].numpy() == 0] = -1e9
        return torch.as_tensor(logits), torch.zeros(len(rel))


def test_beam_ranks_follow_path_probability():
    graph = WalkGraph.from_triples(GRAPH)
    r = graph.relation2id
    policy = RelationPreference({r["r1"]: 2.0, r["r2"]: 1.0, r["r3"]: 0.0})
    e = graph.entity2id
    scores = beam_scores(policy, graph, np.array([[e["a"], r["q"]]]), hops=2, beam=16)[0]
    # a -r1-> b -r2-> c is the likeliest two-hop path, then a -r1-> d -r3-> e
    assert scores[e["c"]] > scores[e["e"]] > -np.inf
    assert scores[e["x"]] == -np.inf and scores[e["y"]] == -np.inf  # unreachable
    # a beam of one keeps only the best path
    narrow = beam_scores(policy, graph, np.array([[e["a"], r["q"]]]), hops=2, beam=1)[0]
    assert np.isfinite(narrow).sum() == 1 and np.isfinite(narrow[e["c"]])
    # MINERVA's sum pooling: an entity scores the log of the summed probability of every beam path to it
    pooled = beam_scores(policy, graph, np.array([[e["a"], r["q"]]]), hops=2, beam=16, pools=("max", "sum"))
    np.testing.assert_array_equal(pooled["max"][0], scores)
    reached = np.isfinite(scores)
    assert (pooled["sum"][0][reached] >= scores[reached]).all()
    assert np.array_equal(np.isfinite(pooled["sum"][0]), reached)
    # a stays at a (NO_OP twice) and comes back (r1 then its inverse): two paths, so summing adds up
    assert pooled["sum"][0][e["a"]] > scores[e["a"]] + 1e-9


class FixedWorld:
    """A world model stand-in: the same entity scores for every query."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, np.float64)

    def score_tails(self, heads, relations):
        return np.tile(self.scores, (len(heads), 1))


def test_evaluate_filters_known_answers_and_ranks_three_ways():
    graph = WalkGraph.from_triples(GRAPH)
    r, e = graph.relation2id, graph.entity2id
    policy = RelationPreference({r["r1"]: 2.0, r["r2"]: 1.0, r["r3"]: 0.0})
    bundle = PolicyBundle(
        net=policy, graph=graph, world_model=None, meta=PolicyMeta(dataset="toy", env=EnvConfig(hops=2))
    )
    # test asks (a, q, e); c is a known answer from dev, so it is filtered and e ranks first
    data = KGDataset(name="hand", graph=GRAPH, train=GRAPH, dev=[T("a", "q", "c")], test=[T("a", "q", "e")])
    metrics = evaluate_bundle(bundle, data, split="test", beam=16)
    assert metrics["hits@1"] == 1.0 and metrics["mrr"] == 1.0 and metrics["queries"] == 1
    assert metrics["policy"]["mrr"] == 1.0 and metrics["world_model"] is None and metrics["reached"] == 1.0
    # without the dev fact, c outranks e: rank 2
    data.dev = []
    metrics = evaluate_bundle(bundle, data, split="test", beam=16)
    assert metrics["hits@1"] == 0.0 and metrics["mrr"] == 0.5
    # a world model sure of e turns the arbiter's ranking around, not the policy's
    world = np.zeros(graph.num_entities)
    world[e["e"]] = 8.0
    bundle.world_model = FixedWorld(world)
    metrics = evaluate_bundle(bundle, data, split="test", beam=16)
    assert metrics["mrr"] == 1.0 and metrics["policy"]["mrr"] == 0.5 and metrics["world_model"]["mrr"] == 1.0


def test_countries_auc_pr_is_one_for_a_perfect_scorer():
    scores = np.array([[0.0, 5.0, 1.0], [3.0, 0.0, -np.inf]])
    queries = np.array([[9, 0, 1], [8, 0, 0]])
    assert countries_auc_pr(scores, queries, regions=[0, 1, 2]) == 1.0
    worst = countries_auc_pr(-scores, queries, regions=[0, 1])
    assert worst < 1.0


def test_beam_can_hide_the_query_relation_at_the_source():
    graph = WalkGraph.from_triples(GRAPH)
    r, e = graph.relation2id, graph.entity2id
    policy = RelationPreference({r["q"]: 5.0})
    queries = np.array([[e["x"], r["q"]], [e["x"], r["r1"]]])
    scores = beam_scores(policy, graph, queries, hops=1, beam=8, mask_source_query_edges=True)
    assert scores[0, e["y"]] == -np.inf  # the stored fact (x, q, y) is not a path for the query (x, q)
    assert np.isfinite(scores[1, e["y"]])  # for another relation it is
    # by default (a policy trained to skip only the fact asked) the other facts are evidence
    plain = beam_scores(policy, graph, queries, hops=1, beam=8)
    assert np.isfinite(plain[0, e["y"]]) and plain[0, e["y"]] == plain[0].max()


def test_countries_candidates_sit_at_the_level_of_the_test_answers():
    from reverie.agents.path_policy.evaluate import countries_regions
    from reverie.data.kg import KGDataset
    from reverie.schemas import Triple

    def T(h, r, t):
        return Triple(head=h, relation=r, tail=t)

    geo = [
        T("west_eu", "locatedIn", "europe"),
        T("east_af", "locatedIn", "africa"),
        T("france", "locatedIn", "west_eu"),
        T("france", "locatedIn", "europe"),
        T("kenya", "locatedIn", "east_af"),
        T("france", "neighborOf", "spain"),
    ]
    s1 = KGDataset(name="countries_s1", graph=geo, train=geo, test=[T("spain", "locatedIn", "europe")])
    g = WalkGraph.from_dataset(s1)
    assert [g.id2entity[i] for i in countries_regions(g, s1)] == ["africa", "europe"]
    s2 = KGDataset(name="countries_s2", graph=geo, train=geo, test=[T("spain", "locatedIn", "west_eu")])
    g = WalkGraph.from_dataset(s2)
    assert [g.id2entity[i] for i in countries_regions(g, s2)] == ["east_af", "west_eu"]
