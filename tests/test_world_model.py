"""The world-model contract: every model in WORLD_MODELS (ComplEx, RotatE), a small one trained
once per model on `nations`, without Ray, passes the same tests."""

from __future__ import annotations

import os

import numpy as np
import pytest

from reverie.data.kg import KGDataset, load_dataset
from reverie.home import Home
from reverie.models.world_model import WORLD_MODELS, WorldModel, WorldModelConfig, ensure_world_model
from reverie.schemas import Triple


@pytest.fixture(scope="module")
def nations() -> KGDataset:
    return load_dataset("nations")


@pytest.fixture(scope="module", params=sorted(WORLD_MODELS))
def wm(nations, request) -> WorldModel:
    return WorldModel.train(nations, WorldModelConfig(model=request.param, dim=32, epochs=25, seed=0))


def test_ids_follow_sorted_names(nations, wm):
    names = sorted({t.head for t in nations.graph} | {t.tail for t in nations.graph})
    assert wm.entities == names
    assert wm.entity2id == {n: i for i, n in enumerate(names)}
    assert wm.relations == sorted({t.relation for t in nations.graph})
    assert wm.num_relations == len(wm.relations)


def test_learns_the_training_graph_and_generalises(nations, wm):
    random_mrr = float(np.mean(1.0 / np.arange(1, wm.num_entities + 1)))  # ~0.23 over 14 nations
    train = wm.evaluate(nations, split="train")
    assert train["mrr"] > 0.55 and train["hits@10"] > 0.95
    test = wm.evaluate(nations, split="test")
    assert test["mrr"] > 2 * random_mrr


def test_score_tails_matches_score(wm):
    rng = np.random.default_rng(0)
    heads = rng.integers(0, wm.num_entities, 16)
    rels = rng.integers(0, 2 * wm.num_relations, 16)  # forward and inverse ids
    table = wm.score_tails(heads, rels)
    assert table.shape == (16, wm.num_entities) and table.dtype == np.float32
    for tail in range(wm.num_entities):
        np.testing.assert_allclose(wm.score(heads, rels, np.full(16, tail)), table[:, tail], rtol=1e-5, atol=1e-5)


def test_inverse_ids_are_pykeens_inverse_relations(wm):
    """Default "forward" mode: relation R + r is PyKEEN's learned inverse of r (internal id 2r + 1),
    i.e. scoring (t, R + r, h) is PyKEEN's score of (h, r, t) by way of its inverse triple."""
    import torch

    assert wm.score_mode == "forward"
    rng = np.random.default_rng(1)
    R = wm.num_relations
    h = rng.integers(0, wm.num_entities, 32)
    r = rng.integers(0, R, 32)
    t = rng.integers(0, wm.num_entities, 32)
    with torch.inference_mode():
        forward = wm.model.predict_hrt(torch.from_numpy(np.stack([h, r, t], 1))).numpy().ravel()
        via_inverse = wm.model.score_hrt_inverse(torch.from_numpy(np.stack([h, 2 * r, t], 1))).numpy().ravel()
        heads_of = wm.model.predict_h(torch.from_numpy(np.stack([r, t], 1))).numpy()  # f(?, r, t)
        tails_of = wm.model.predict_t(torch.from_numpy(np.stack([h, r], 1))).numpy()  # f(h, r, ?)
    np.testing.assert_allclose(wm.score(h, r, t), forward, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(wm.score(t, r + R, h), via_inverse, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(wm.score_tails(t, r + R), heads_of, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(wm.score_tails(h, r), tails_of, rtol=1e-5, atol=1e-5)
    # the two directions are learned separately but agree on what is true: the true heads of
    # training facts rank near the top of their inverse queries too
    g = wm.graph
    inv_rows = wm.score_tails(g[:, 2], g[:, 1] + R)
    answer = inv_rows[np.arange(len(g)), g[:, 0]].copy()
    for i, (head, rel, tail) in enumerate(g.tolist()):
        inv_rows[i, list(wm.graph_tails(tail, rel + R) - {head})] = -np.inf  # filtered
    rank = 1 + (inv_rows > answer[:, None]).sum(1)
    random_mrr = float(np.mean(1.0 / np.arange(1, wm.num_entities + 1)))
    assert np.mean(1.0 / rank) > 2 * random_mrr


def test_both_mode_swaps_head_and_tail_exactly(wm):
    """score_mode="both": one number per fact, whichever direction it is asked in."""
    rng = np.random.default_rng(2)
    R = wm.num_relations
    h = rng.integers(0, wm.num_entities, 32)
    r = rng.integers(0, R, 32)
    t = rng.integers(0, wm.num_entities, 32)
    wm.score_mode = "both"
    try:
        np.testing.assert_allclose(wm.score(t, r + R, h), wm.score(h, r, t), rtol=1e-5, atol=1e-5)
        inv_rows = wm.score_tails(t, r + R)  # tails of (t, r_inv) are the heads of (., r, t)
        for i in range(4):
            E = wm.num_entities
            heads = wm.score(np.arange(E), np.full(E, r[i]), np.full(E, t[i]))
            np.testing.assert_allclose(inv_rows[i], heads, rtol=1e-5, atol=1e-5)
        table = wm.score_tails(h, r + R)
        for tail in range(wm.num_entities):
            np.testing.assert_allclose(wm.score(h, r + R, np.full(32, tail)), table[:, tail], rtol=1e-5, atol=1e-5)
    finally:
        wm.score_mode = "forward"
    with pytest.raises(ValueError):
        wm.score_mode = "sideways"


def test_bad_ids_raise(wm):
    with pytest.raises(IndexError):
        wm.score_tails(np.array([0]), np.array([2 * wm.num_relations]))
    with pytest.raises(IndexError):
        wm.score(np.array([wm.num_entities]), np.array([0]), np.array([0]))


def test_propose_skips_graph_edges(nations, wm):
    R = wm.num_relations
    h, r, t = wm.graph[0]
    for rel, head in ((r, h), (r + R, t)):
        known = wm.graph_tails(head, rel)
        assert known  # the stored edge (or its inverse) is there
        out = wm.propose(head, rel, k=5, exclude={0})
        assert 0 < len(out) <= 5
        tails = [x for x, _ in out]
        assert not set(tails) & (known | {0, head})
        scores = [s for _, s in out]
        assert scores == sorted(scores, reverse=True)
        row = wm.score_tails(np.array([head]), np.array([rel]))[0]
        np.testing.assert_allclose(scores, row[tails], rtol=1e-5)
    assert wm.propose(h, r, k=0, exclude=set()) == []
    everything = set(range(wm.num_entities))
    assert wm.propose(h, r, k=3, exclude=everything) == []


def test_save_load_round_trip(tmp_path, wm, nations):
    path = wm.save(tmp_path / "wm" / "nations.pt")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["nations.pt"]  # no temp file left behind
    loaded = WorldModel.load(path)
    assert loaded.entities == wm.entities and loaded.relations == wm.relations
    assert loaded.config == wm.config
    heads = np.arange(wm.num_entities)
    rels = np.arange(wm.num_entities) % (2 * wm.num_relations)
    np.testing.assert_array_equal(loaded.score_tails(heads, rels), wm.score_tails(heads, rels))
    np.testing.assert_array_equal(loaded.graph, wm.graph)
    assert loaded.propose(0, 1, 3, set()) == wm.propose(0, 1, 3, set())
    # overwrite in place: still one file, still loadable
    wm.save(path)
    assert sorted(os.listdir(path.parent)) == ["nations.pt"]
    WorldModel.load(path)


def test_filtered_ranks_with_ties():
    """A hand-made graph and a model whose scores are all equal: ranks are the filtered mean rank."""
    triples = [Triple(head=h, relation="r", tail=t) for h, t in [("a", "b"), ("a", "c"), ("b", "c"), ("c", "d")]]
    ds = KGDataset(name="tiny", graph=triples, train=triples, test=[Triple(head="a", relation="r", tail="d")])
    wm = WorldModel.train(ds, WorldModelConfig(dim=4, epochs=1, seed=0))
    wm.score_tails = lambda heads, rels: np.zeros((len(heads), wm.num_entities), dtype=np.float32)
    # 4 entities, (a, r) has known tails b, c (filtered): d ties with a -> mean rank 1.5
    assert wm.evaluate(ds, "test")["mrr"] == pytest.approx(1 / 1.5)


def test_the_cache_trains_once(tmp_path, nations):
    config = WorldModelConfig(dim=8, epochs=1)
    said = []
    path = ensure_world_model(tmp_path, nations, config, said.append)
    assert path == Home(tmp_path).world_model("nations") and path.is_file() and len(said) == 1
    stamp = path.stat().st_mtime_ns
    assert ensure_world_model(tmp_path, nations, config, said.append) == path
    assert len(said) == 1 and path.stat().st_mtime_ns == stamp


def test_unknown_model_and_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="unknown world model 'transe'"):
        WorldModelConfig(model="transe")
    with pytest.raises(ValueError, match="score_mode"):
        WorldModelConfig(score_mode="sideways")
    with pytest.raises(ValueError):
        WorldModelConfig(epochs=0)
