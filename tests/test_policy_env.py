"""WalkGraph action tables and the vectorised path environment, on a hand-made graph and on UMLS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reverie.agents.path_policy.config import EnvConfig
from reverie.agents.path_policy.env import KGPathVectorEnv
from reverie.agents.path_policy.walkgraph import WalkGraph
from reverie.data.kg import KGDataset, load_dataset
from reverie.schemas import Triple


def T(h: str, r: str, t: str) -> Triple:
    return Triple(head=h, relation=r, tail=t)


# a -r1-> b -r2-> c is the 2-hop path behind the query fact (a, q, c); (a, q, e) is a second answer.
TRAIN = [
    T("a", "r1", "b"),
    T("b", "r2", "c"),
    T("a", "q", "c"),
    T("a", "q", "e"),
    T("c", "r1", "d"),
    T("a", "r1", "b"),  # duplicate fact: one edge
]
TEST = [T("b", "q", "d")]  # not walkable
HUB = [T("h", "r3", f"x{i}") for i in range(10)]


def toy(extra=()) -> KGDataset:
    train = TRAIN + list(extra)
    return KGDataset(name="toy", graph=train, train=train, test=TEST)


def edges_of(g: WalkGraph) -> set[tuple[int, int, int]]:
    rows, cols = np.nonzero(g.action_mask[:, 1:])
    cols = cols + 1
    return set(zip(rows.tolist(), g.action_relations[rows, cols].tolist(), g.action_entities[rows, cols].tolist()))


def col_of(g: WalkGraph, source: str, relation: int, target: str) -> int:
    e = g.entity2id
    row = e[source]
    hit = np.nonzero(
        g.action_mask[row] & (g.action_relations[row] == relation) & (g.action_entities[row] == e[target])
    )[0]
    assert hit.size == 1, (source, relation, target)
    return int(hit[0])


def make_env(config=None, **kwargs) -> KGPathVectorEnv:
    """The env without training's exploration (action dropout) and reward shaping unless a test
    asks for them: these tests pin masks and rewards exactly."""
    return KGPathVectorEnv({"action_dropout": 0.0, "shaping": 0.0, **dict(config or {}), **kwargs})


def test_the_env_takes_training_defaults_from_one_config():
    env = KGPathVectorEnv({"dataset": toy(), "num_envs": 1})
    assert env.settings == EnvConfig() and env.action_dropout == EnvConfig().action_dropout > 0
    assert env.shaping == EnvConfig().shaping
    with pytest.raises(ValueError, match="unknown config keys"):
        KGPathVectorEnv({"dataset": toy(), "num_envs": 1, "shapeing": 1.0})


# ---------------------------------------------------------------------------------- WalkGraph
def test_ids_and_action_tables():
    g = WalkGraph.from_triples(TRAIN)
    assert list(g.entity2id) == ["a", "b", "c", "d", "e"]
    assert list(g.relation2id) == ["q", "r1", "r2"]
    E, R = 5, 3
    assert (g.num_entities, g.num_relations, g.num_relation_ids, g.no_op) == (E, R, 2 * R + 1, 2 * R)
    # a has 3 out edges (r1 b, q c, q e); c has r2^-1 b, q^-1 a, r1 d: max degree 3 -> A = 4.
    assert g.max_actions == 4
    for tab in (g.action_relations, g.action_entities):
        assert tab.dtype == np.int64 and tab.shape == (E, 4)
    assert g.action_mask.dtype == bool
    # Column 0: NO_OP to itself, always allowed.
    assert (g.action_relations[:, 0] == g.no_op).all()
    assert (g.action_entities[:, 0] == np.arange(E)).all()
    assert g.action_mask[:, 0].all()
    # Mask = 1 + degree allowed columns, left-aligned; padding is NO_OP to itself.
    assert (g.action_mask.sum(1) == 1 + g.degree).all()
    assert g.degree.tolist() == [3, 2, 3, 1, 1]
    pad = ~g.action_mask
    assert (g.action_relations[pad] == g.no_op).all()
    assert (g.action_entities[pad] == np.nonzero(pad)[0]).all()
    # Forward and inverse edges, exactly.
    e, r = g.entity2id, g.relation2id
    forward = {(e[t.head], r[t.relation], e[t.tail]) for t in TRAIN}
    inverse = {(o, rel + R, s) for s, rel, o in forward}
    assert edges_of(g) == forward | inverse
    assert g.inverse_relation(r["q"]) == r["q"] + R and g.inverse_relation(r["q"] + R) == r["q"]
    assert g.inverse_relation(g.no_op) == g.no_op
    assert g.relation_names[r["r1"] + R] == "inverse of r1" and g.relation_names[g.no_op] == "NO_OP"


def test_sampled_cap_is_respected_and_seeded():
    g = WalkGraph.from_triples(TRAIN + HUB, max_actions=4, seed=3)
    assert g.max_actions == 4
    hub = g.entity2id["h"]
    assert g.degree[hub] == 10
    assert g.action_mask[hub].all()  # 1 NO_OP + 3 sampled edges
    real = {(hub, g.relation2id["r3"], g.entity2id[f"x{i}"]) for i in range(10)}
    kept = {x for x in edges_of(g) if x[0] == hub}
    assert len(kept) == 3 and kept <= real
    # Entities under the cap keep all their edges.
    assert (g.action_mask.sum(1) == 1 + np.minimum(g.degree, 3)).all()
    again = WalkGraph.from_triples(TRAIN + HUB, max_actions=4, seed=3)
    assert np.array_equal(again.action_entities, g.action_entities)
    samples = {
        frozenset(g2.action_entities[hub, 1:].tolist())
        for g2 in (WalkGraph.from_triples(TRAIN + HUB, max_actions=4, seed=s) for s in range(8))
    }
    assert len(samples) > 1  # the seed matters


def test_known_answers_and_extra_vocabulary():
    g = WalkGraph.from_dataset(toy())
    e, r, R = g.entity2id, g.relation2id, g.num_relations
    known = g.known_answers(TRAIN)
    assert known[(e["a"], r["q"])] == {e["c"], e["e"]}
    assert known[(e["c"], r["q"] + R)] == {e["a"]}
    assert (e["b"], r["q"]) not in known
    assert g.known_answers(TRAIN, TEST)[(e["b"], r["q"])] == {e["d"]}
    assert (e["b"], r["q"], e["d"]) not in edges_of(g)
    small = WalkGraph.from_triples([T("a", "r1", "b")], entities=["z"], relations=["zz"])
    assert list(small.entity2id) == ["a", "b", "z"] and list(small.relation2id) == ["r1", "zz"]
    assert small.action_mask[small.entity2id["z"]].tolist() == [True, False]


# ---------------------------------------------------------------------------------- env
def query(env: KGPathVectorEnv, s: str, rel: str, o: str, inverse: bool = False) -> list[int]:
    g = env.graph
    r = g.relation2id[rel] + (g.num_relations if inverse else 0)
    return [g.entity2id[s], r, g.entity2id[o]]


def test_the_asked_fact_is_masked_both_ways_and_other_query_edges_stay():
    env = make_env({"dataset": toy(), "num_envs": 2, "hops": 2, "seed": 0})
    g = env.graph
    R, q = g.num_relations, g.relation2id["q"]
    obs, info = env.reset(options={"queries": [query(env, "a", "q", "c"), query(env, "a", "q", "e")]})
    assert info == {}
    fwd_c, fwd_e = col_of(g, "a", q, "c"), col_of(g, "a", q, "e")
    # each walk loses exactly the edge of its own fact; the other answer's edge is evidence, as
    # in MINERVA and MultiHopKG (a -q-> e <-q- x -q-> ... is how similar sources share answers)
    assert obs["action_mask"][:, fwd_c].tolist() == [0, 1] and obs["action_mask"][:, fwd_e].tolist() == [1, 0]
    assert obs["action_mask"][:, 0].all()
    # Taking the masked edge anyway is a NO_OP: the walk stays at the source.
    r1 = col_of(g, "a", g.relation2id["r1"], "b")
    obs, *_ = env.step(np.array([fwd_c, r1]))
    assert obs["current"].tolist() == [g.entity2id["a"], g.entity2id["b"]]
    assert obs["path_relations"][0].tolist() == [g.no_op, g.no_op]
    # At the answer, the inverse of the query edge back to the source is masked too.
    env.reset(options={"queries": [query(env, "a", "q", "c")] * 2})
    obs, *_ = env.step(np.array([r1, r1]))
    obs, *_ = env.step(np.array([col_of(g, "b", g.relation2id["r2"], "c")] * 2))
    assert obs["current"].tolist() == [g.entity2id["c"]] * 2
    back = col_of(g, "c", q + R, "a")
    assert (obs["action_mask"][:, back] == 0).all()
    # An inverse query masks the same fact from its side.
    env.reset(options={"queries": [query(env, "c", "q", "a", inverse=True)] * 2})
    obs = env._observe()
    assert (obs["action_mask"][:, back] == 0).all()


def test_mask_all_query_edges_at_the_source():
    env = make_env({"dataset": toy(), "num_envs": 1, "hops": 2, "mask_query_edges": "all"})
    g = env.graph
    obs, _ = env.reset(options={"queries": [query(env, "a", "q", "c")]})
    q = g.relation2id["q"]
    assert obs["action_mask"][0, [col_of(g, "a", q, "c"), col_of(g, "a", q, "e")]].tolist() == [0, 0]
    assert obs["action_mask"][0, col_of(g, "a", g.relation2id["r1"], "b")] == 1
    with pytest.raises(ValueError, match="mask_query_edges"):
        make_env({"dataset": toy(), "num_envs": 1, "mask_query_edges": "some"})


def test_action_dropout_hides_edges_but_never_no_op():
    data = toy(extra=HUB)
    kept = []
    for p in (0.0, 0.5):
        env = make_env({"dataset": data, "num_envs": 2000, "hops": 1, "action_dropout": p, "seed": 0})
        g = env.graph
        obs, _ = env.reset(options={"queries": [query(env, "h", "r3", "x0")] * 2000})
        mask = obs["action_mask"]
        assert mask[:, 0].all()
        kept.append(mask[:, 1:].sum() / (2000 * 9))  # x0's own edge is masked: 9 walkable left
        # a hidden action is a NO_OP when taken anyway
        hidden = np.argmin(mask[:, 1:], axis=1) + 1
        rows = mask[np.arange(2000), hidden] == 0
        nxt, *_ = env.step(hidden)
        assert (nxt["current"][rows] == g.entity2id["h"]).all()
    assert kept[0] == 1.0
    assert abs(kept[1] - 0.5) < 0.02


def test_reward_is_one_exactly_at_a_correct_answer():
    data = toy(extra=[T("b", "r4", "e")])  # a second path, to the other answer e
    env = make_env(dataset=data, num_envs=4, hops=2, any_answer=True, seed=0)
    g = env.graph
    e, rid = g.entity2id, g.relation2id
    env.reset(options={"queries": [query(env, "a", "q", "c")] * 4})
    step1 = [col_of(g, "a", rid["r1"], "b")] * 3 + [0]
    obs, rew, term, trunc, _ = env.step(np.array(step1))
    assert rew.tolist() == [0.0] * 4 and not term.any() and not trunc.any()
    assert obs["step"].tolist() == [1] * 4
    step2 = [col_of(g, "b", rid["r2"], "c"), 0, col_of(g, "b", rid["r4"], "e"), 0]
    obs, rew, term, trunc, info = env.step(np.array(step2))
    assert obs["current"].tolist() == [e["c"], e["b"], e["e"], e["a"]]
    # c: the sampled answer; b: wrong; e: another known answer of (a, q) (any_answer); a: wrong.
    assert rew.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert term.all() and not trunc.any() and info == {}
    assert obs["path_relations"][0].tolist() == [rid["r1"], rid["r2"]]
    assert obs["path_entities"][0].tolist() == [e["b"], e["c"]]
    assert obs["path_relations"][3].tolist() == [g.no_op, g.no_op]

    strict = make_env(dataset=data, num_envs=1, hops=2, any_answer=False, seed=0)
    strict.reset(options={"queries": [query(strict, "a", "q", "c")]})
    strict.step(np.array([col_of(g, "a", rid["r1"], "b")]))
    _, rew, term, _, _ = strict.step(np.array([col_of(g, "b", rid["r4"], "e")]))
    assert term.all() and rew.tolist() == [0.0]


class TableScorer:
    """Deterministic scorer: score_tails returns rows of a fixed (relation id, entity) table."""

    def __init__(self, table: np.ndarray):
        self.table = table
        self.calls = []

    def score_tails(self, heads, relations):
        self.calls.append((np.asarray(heads).tolist(), np.asarray(relations).tolist()))
        return self.table[np.asarray(relations)]


def test_shaping_uses_the_world_model_score_for_wrong_answers_only():
    data = toy(extra=[T("a", "r5", "e")])  # a one-hop path to the other answer e
    g = WalkGraph.from_dataset(data)
    table = np.zeros((2 * g.num_relations, g.num_entities))
    table[g.relation2id["q"], g.entity2id["b"]] = math.log(3.0)  # sigmoid = 0.75
    table[g.relation2id["q"], g.entity2id["a"]] = -math.log(3.0)  # sigmoid = 0.25
    scorer = TableScorer(table)
    env = make_env(
        {
            "dataset": data,
            "num_envs": 3,
            "hops": 1,
            "shaping": 0.2,
            "world_model": scorer,
            "any_answer": True,
            "shaping_mode": "sigmoid",
        }
    )
    qa = query(env, "a", "q", "c")
    env.reset(options={"queries": [qa] * 3})
    acts = [col_of(g, "a", g.relation2id["r1"], "b"), 0, col_of(g, "a", g.relation2id["r5"], "e")]
    _, rew, term, _, _ = env.step(np.array(acts))
    assert term.all()
    np.testing.assert_allclose(rew, [0.2 * 0.75, 0.2 * 0.25, 1.0])
    assert scorer.calls == [([qa[0]] * 2, [qa[1]] * 2)]  # only the two misses were scored
    # The default "relative" belief: exp(score - the query's best score); b is the favourite.
    rel = make_env({"dataset": data, "num_envs": 3, "hops": 1, "shaping": 0.2, "world_model": scorer})
    rel.reset(options={"queries": [qa] * 3})
    _, rew, *_ = rel.step(np.array(acts))
    np.testing.assert_allclose(rew, [0.2, 0.2 / 9, 0.2 / 3])  # e (score 0) is not the asked answer: shaped too
    with pytest.raises(ValueError, match="shaping_mode"):
        make_env({"dataset": data, "num_envs": 1, "shaping_mode": "tanh"})
    # Without shaping the world model is not consulted.
    plain = make_env({"dataset": toy(), "num_envs": 1, "hops": 1, "world_model": TableScorer(table)})
    assert plain.world_model is None


def test_the_graph_reasoner_can_shape_instead_of_the_world_model(tmp_path):
    from reverie.agents.path_policy.env import RowCache
    from reverie.models.graph_reasoner import ReasonerConfig, train_reasoner

    data = toy(extra=[T("a", "r5", "e")])
    g = WalkGraph.from_dataset(data)
    path = train_reasoner(data, ReasonerConfig(dim=8, layers=2, heads=2, epochs=2, patience=0)).save(
        tmp_path / "toy.pt"
    )
    world = TableScorer(np.zeros((2 * g.num_relations, g.num_entities)))
    env = make_env(
        {
            "dataset": data,
            "num_envs": 3,
            "hops": 1,
            "shaping": 0.2,
            "shaper": "reasoner",
            "reasoner_path": str(path),
            "world_model": world,
        }
    )
    qa = query(env, "a", "q", "c")
    env.reset(options={"queries": [qa] * 3})
    acts = [col_of(g, "a", g.relation2id["r1"], "b"), 0, col_of(g, "a", g.relation2id["r5"], "e")]
    _, rew, *_ = env.step(np.array(acts))
    from reverie.models.graph_reasoner import GraphReasoner

    scores = GraphReasoner.load(path).score_tails(np.array([qa[0]]), np.array([qa[1]]))[0]
    belief = np.exp(scores - scores.max())
    np.testing.assert_allclose(rew, 0.2 * belief[[g.entity2id["b"], g.entity2id["a"], g.entity2id["e"]]], rtol=1e-5)
    assert world.calls == []  # the world model did not shape
    with pytest.raises(ValueError, match="reasoner_path"):
        make_env({"dataset": data, "num_envs": 1, "shaping": 0.2, "shaper": "reasoner"})
    with pytest.raises(ValueError, match="shaper must be one of"):
        make_env({"dataset": data, "num_envs": 1, "shaper": "oracle"})
    # each (head, relation) row is computed once
    inner = TableScorer(np.arange(12.0).reshape(3, 4))
    cache = RowCache(inner.score_tails)
    first = cache.score_tails(np.array([0, 1, 0]), np.array([2, 1, 2]))
    again = cache.score_tails(np.array([1, 0, 5]), np.array([1, 2, 0]))
    assert inner.calls == [([0, 1], [2, 1]), ([5], [0])]
    np.testing.assert_array_equal(first, inner.table[[2, 1, 2]])
    np.testing.assert_array_equal(again, inner.table[[1, 2, 0]])


def test_next_step_autoreset():
    env = make_env({"dataset": toy(), "num_envs": 3, "hops": 2, "seed": 1})
    from gymnasium.vector import AutoresetMode

    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    env.reset(seed=5)
    env.step(np.zeros(3, np.int64))
    obs, rew, term, _, _ = env.step(np.zeros(3, np.int64))
    assert term.all() and (obs["step"] == 2).all()
    # Next step: every sub-env restarts, its action ignored, reward 0, not terminated.
    obs, rew, term, trunc, _ = env.step(np.array([1, 2, 3]))
    assert rew.tolist() == [0.0] * 3 and not term.any() and not trunc.any()
    assert (obs["step"] == 0).all() and (obs["current"] == obs["source"]).all()
    assert (obs["path_relations"] == env.graph.no_op).all()
    assert (obs["path_entities"] == obs["source"][:, None]).all()
    posed = {tuple(x) for x in env.queries.tolist()}
    for s, r in zip(obs["source"].tolist(), obs["query_relation"].tolist()):
        assert any(p[0] == s and p[1] == r for p in posed)
    # Queries are the training facts plus their inverses.
    g = env.graph
    fwd = {tuple(x) for x in g.encode(TRAIN).tolist()}
    assert posed == fwd | {(o, r + g.num_relations, s) for s, r, o in fwd}
    # Same seed, same queries.
    a, _ = env.reset(seed=11)
    b, _ = env.reset(seed=11)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_observations_match_the_spaces_on_umls():
    env = make_env({"dataset": "umls", "num_envs": 8, "hops": 3, "seed": 0})
    assert env.single_action_space.n == env.graph.max_actions == 200
    assert env.action_space.shape == (8,)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(7):
        assert env.observation_space.contains(obs)
        for i in range(env.num_envs):
            one = {k: np.asarray(v[i]) for k, v in obs.items()}
            assert env.single_observation_space.contains(one)
        for k, space in env.single_observation_space.spaces.items():
            assert obs[k].dtype == space.dtype and obs[k].shape == (8, *space.shape), k
        mask = obs["action_mask"]
        acts = np.argmax(rng.random(mask.shape) * mask, axis=1)
        obs, rew, term, trunc, info = env.step(acts)
        assert rew.dtype == np.float64 and term.dtype == bool and trunc.dtype == bool and info == {}
        assert ((rew >= 0) & (rew <= 1)).all()


def test_walkable_graph_is_exactly_the_training_edges_on_umls():
    ds = load_dataset("umls")
    g = WalkGraph.from_dataset(ds, max_actions=10**6)  # no sampling
    R = g.num_relations
    train = {tuple(x) for x in g.encode(ds.train).tolist()}
    forward = {x for x in edges_of(g) if x[1] < R}
    inverse = {x for x in edges_of(g) if R <= x[1] < 2 * R}
    assert forward == train
    assert inverse == {(o, r + R, s) for s, r, o in train}
    held_out = {tuple(x) for x in g.encode(ds.dev + ds.test).tolist()} - train
    assert held_out and not (held_out & forward)
    # The env's (sampled) tables are a subset of the same edges.
    env = make_env({"dataset": ds, "num_envs": 2})
    assert edges_of(env.graph) <= forward | inverse


class HeadTableScorer:
    """score_tails rows from a fixed [E, 2R, E] table: scores[head, relation id, tail]."""

    def __init__(self, table: np.ndarray):
        self.table = table

    def score_tails(self, heads, relations):
        return self.table[np.asarray(heads), np.asarray(relations)]


def test_imagined_edges_are_the_world_models_best_missing_edges():
    g = WalkGraph.from_dataset(toy())
    E, R = g.num_entities, g.num_relations
    e, rid = g.entity2id, g.relation2id
    table = np.zeros((E, 2 * R, E))
    table[e["a"], rid["r1"], e["b"]] = 9.0  # a stored edge: never imagined
    table[e["a"], rid["r2"], e["d"]] = 5.0  # the best missing edge out of a
    table[e["a"], rid["q"] + R, e["c"]] = 4.0  # second best
    table[e["a"], rid["q"], e["a"]] = 8.0  # a self loop: never imagined
    img = g.with_imagined(HeadTableScorer(table).score_tails, per_entity=2)
    assert img.num_relation_ids == 4 * R + 1 and img.max_actions == g.max_actions + 2
    assert (img.action_relations[:, : g.max_actions] == g.action_relations).all()  # stored columns unchanged
    row = e["a"]
    extra = list(zip(img.action_relations[row, -2:].tolist(), img.action_entities[row, -2:].tolist()))
    assert extra == [(img.imagined_offset + rid["r2"], e["d"]), (img.imagined_offset + rid["q"] + R, e["c"])]
    assert img.action_mask[row, -2:].all() and img.is_imagined(extra[0][0]) and not img.is_imagined(rid["r2"])
    assert img.stored_relation(extra[0][0]) == rid["r2"]
    assert img.relation_names[extra[0][0]] == "r2?"
    with pytest.raises(ValueError):
        img.with_imagined(HeadTableScorer(table).score_tails, per_entity=1)


def test_an_imagined_step_costs_reward():
    data = toy()
    g = WalkGraph.from_dataset(data)
    E, R = g.num_entities, g.num_relations
    e, rid = g.entity2id, g.relation2id
    table = np.full((E, 2 * R, E), -5.0)
    table[e["a"], rid["r2"], e["c"]] = 5.0  # imagined a -r2-> c: straight to the answer
    scorer = HeadTableScorer(table)
    with pytest.raises(ValueError, match="world model"):
        make_env({"dataset": data, "num_envs": 1, "imagined_edges": 1})
    env = make_env(
        {"dataset": data, "num_envs": 2, "hops": 1, "imagined_edges": 1, "imagined_cost": 0.25, "world_model": scorer}
    )
    assert env.single_observation_space["action_relations"].high.max() == 4 * R
    obs, _ = env.reset(options={"queries": [query(env, "a", "q", "c")] * 2})
    dream = env.graph.max_actions - 1
    assert obs["action_relations"][0, dream] == env.graph.imagined_offset + rid["r2"]
    obs, rew, term, _, _ = env.step(np.array([dream, 0]))
    assert obs["path_relations"][0, 0] == env.graph.imagined_offset + rid["r2"] and term.all()
    np.testing.assert_allclose(rew, [1.0 - 0.25, 0.0])
