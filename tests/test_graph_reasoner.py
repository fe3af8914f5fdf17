"""The graph reasoner (reverie/models/graph_reasoner.py): it learns a known rule and explains a held-out
answer with the rule's path; temperature scaling recovers a known miscalibration; its file round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reverie.data.kg import KGDataset
from reverie.models.graph_reasoner import GraphReasoner, ReasonerConfig, train_reasoner
from reverie.ranking import expected_calibration_error, fit_temperature, softmax, top_answer_confidence
from reverie.schemas import Triple


def family(held_out: int = 6, seed: int = 0) -> KGDataset:
    """A forest of parent edges (child -> parent) with grandparent = parent . parent, and random 'likes'
    edges as distractors; `held_out` grandparent facts are the test split, two more the dev split."""
    rng = np.random.default_rng(seed)
    n = 60
    parent = {i: int(rng.integers(0, i)) for i in range(1, n)}
    facts = [Triple(head=f"p{c}", relation="parent", tail=f"p{p}", source="toy") for c, p in parent.items()]
    grand = [
        Triple(head=f"p{c}", relation="grandparent", tail=f"p{parent[p]}", source="toy")
        for c, p in parent.items()
        if p in parent
    ]
    for i in range(n):
        for j in rng.choice([k for k in range(n) if k != i], size=2, replace=False):
            facts.append(Triple(head=f"p{i}", relation="likes", tail=f"p{j}", source="toy"))
    order = rng.permutation(len(grand))
    test = [grand[i] for i in order[:held_out]]
    dev = [grand[i] for i in order[held_out : held_out + 2]]
    rest = [grand[i] for i in order[held_out + 2 :]]
    graph = facts + rest
    return KGDataset(name="family", graph=graph, train=graph, dev=dev, test=test)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    data = family()
    reasoner = train_reasoner(
        data, ReasonerConfig(dim=16, layers=3, heads=2, batch_size=16, epochs=40, lr=1e-2, patience=0, seed=0)
    )
    return data, reasoner


def test_it_learns_the_grandparent_rule_and_explains_held_out_answers_with_it(trained):
    data, reasoner = trained
    test = reasoner.encode(data.test)
    scores = reasoner.score_tails(test[:, 0], test[:, 1])
    assert (scores.argmax(axis=1) == test[:, 2]).mean() >= 5 / 6  # answers it never saw, from the rule alone
    assert reasoner.evaluate(data, "test")["mrr"] >= 0.9
    explained = 0
    for h, r, t in test.tolist():
        paths = reasoner.explain(h, r, t, top=3)
        assert paths and all(
            p.steps[0].what == reasoner.entities[h] and p.steps[-1].result == reasoner.entities[t] for p in paths
        )
        assert [p.importance for p in paths] == sorted((p.importance for p in paths), reverse=True)
        best = paths[0].steps
        explained += [s.action for s in best] == ["parent", "parent"]
    assert explained >= len(test) - 1  # the top path is the rule's: child -parent-> parent -parent-> grandparent
    step = reasoner.explain(*test[0].tolist(), top=1)[0].steps[0]
    assert step.source == "family" and len(step.edge_id) == 16 and not step.inverse


def test_an_untrained_reasoner_does_not_know_the_rule():
    data = family()
    reasoner = train_reasoner(data, ReasonerConfig(dim=16, layers=3, heads=2, epochs=1, lr=1e-9, patience=0))
    assert reasoner.evaluate(data, "test")["mrr"] < 0.5


def test_pruning_keeps_the_top_nodes_of_each_query_sending():
    """A*Net's pruning: with room for every node nothing changes; with room for one, one node per query
    sends after the first round, so of two grandchildren at most one is reached."""
    from reverie.models.graph_reasoner import GraphReasonerNet

    torch.manual_seed(0)
    edges = torch.tensor([[0, 0, 1, 2], [0, 0, 0, 0], [1, 2, 3, 4]])  # 0 -> 1 -> 3, 0 -> 2 -> 4, relation 0
    full = GraphReasonerNet(6, 1, 8, 2, 2)
    roomy = GraphReasonerNet(6, 1, 8, 2, 2, max_nodes=6)
    tight = GraphReasonerNet(6, 1, 8, 2, 2, max_nodes=1)
    roomy.load_state_dict(full.state_dict(), strict=False)
    tight.load_state_dict(roomy.state_dict())
    heads, relations = torch.tensor([0]), torch.tensor([0])
    with torch.no_grad():
        base = full(heads, relations, edges)[0]
        torch.testing.assert_close(roomy(heads, relations, edges)[0], base)
        pruned = tight(heads, relations, edges)[0]
    unreached = base[5]  # entity 5 has no edge: the query's own score
    assert base[3] != unreached and base[4] != unreached  # both grandchildren reached
    assert (pruned[3] == unreached) or (pruned[4] == unreached)  # not both


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="hide must be one of"):
        ReasonerConfig(hide="everything")
    with pytest.raises(ValueError, match="does not divide"):
        ReasonerConfig(dim=10, heads=4)
    with pytest.raises(ValueError, match="max_nodes"):
        ReasonerConfig(max_nodes=0)


def test_temperature_scaling_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, size=(4000, 12))
    answers = np.array([rng.choice(12, p=p) for p in softmax(true_logits)])
    overconfident = 3.0 * true_logits  # the model's scores: right ranking, three times too sharp
    temperature = fit_temperature(overconfident, answers)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(*top_answer_confidence(overconfident, answers, 1.0))
    after = expected_calibration_error(*top_answer_confidence(overconfident, answers, temperature))
    assert before > 0.15 and after < 0.03


def test_expected_calibration_error_by_hand():
    # two bins: {0.9, 0.9} with 1 of 2 right -> |0.5 - 0.9| ; {0.2} right -> |1 - 0.2|; weights 2/3 and 1/3
    ece = expected_calibration_error(np.array([0.9, 0.9, 0.2]), np.array([1, 0, 1]), bins=10)
    assert ece == pytest.approx(2 / 3 * 0.4 + 1 / 3 * 0.8)
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([]), np.array([]))


def test_masked_other_answers_do_not_count_against_the_top_answer():
    scores = np.array([[5.0, 4.0, 0.0]])
    confidence, correct = top_answer_confidence(scores, np.array([1]), 1.0, [{0}])  # entity 0 is another known answer
    assert correct[0] and confidence[0] == pytest.approx(softmax(np.array([4.0, 0.0]))[0])


def test_a_checkpoint_round_trips(trained, tmp_path):
    data, reasoner = trained
    path = reasoner.save(tmp_path / "reasoners" / "family.pt")
    again = GraphReasoner.load(path)
    heads, relations = np.arange(5), np.zeros(5, np.int64)
    assert np.array_equal(again.score_tails(heads, relations), reasoner.score_tails(heads, relations))
    assert again.temperature == reasoner.temperature != 1.0
    assert again.entities == reasoner.entities and again.config == reasoner.config
    assert again.stats["best_dev_mrr"] == reasoner.stats["best_dev_mrr"]
    with pytest.raises(FileNotFoundError, match="reverie train reasoner"):
        GraphReasoner.load(tmp_path / "missing.pt")
    with pytest.raises(IndexError):
        reasoner.score_tails(np.array([10_000]), np.array([0]))
