"""The reward model (reverie/models/reward_model.py): features of rated verdicts and of walks, the
logistic fit with its held-out temperature, its metrics, its file, and the answers rating notes name.
Synthetic ratings with a known preference; no Ray, no mocks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from reverie.calibration import DEFAULT_CALIBRATOR
from reverie.edges import edge_id
from reverie.models.reward_model import (
    EXTRA_FEATURES,
    MIN_PER_LABEL,
    ChainFeatures,
    RewardModel,
    answer_named_in_note,
    expected_calibration_error,
    featurize,
    rating_label,
    roc_auc,
)
from reverie.schemas import Candidate, Chain, FeedbackRecord, Step, Verdict

RELATIONS = ["treats", "causes", "part of", "isa", "affects", "interacts with", "location of"]


def preference_ratings(n: int, seed: int) -> tuple[list[ChainFeatures], list[int]]:
    """Chains that walk "treats" are good with p = 0.9, others with p = 0.15; the confidence is a noisy
    hint of the label and the agreement is noise."""
    rng = np.random.default_rng(seed)
    features, labels = [], []
    for _ in range(n):
        hops = int(rng.integers(1, 5))
        relations = [RELATIONS[int(rng.integers(len(RELATIONS)))] for _ in range(hops)]
        inverse = [bool(rng.random() < 0.3) for _ in range(hops)]
        good = bool(rng.random() < (0.9 if "treats" in relations else 0.15))
        confidence = 1 / (1 + math.exp(-(0.8 * (1 if good else -1) + rng.normal(0, 1.2))))
        features.append(
            ChainFeatures.from_walk(relations, inverse, confidence=confidence, agreement=float(rng.random()))
        )
        labels.append(int(good))
    return features, labels


@pytest.fixture(scope="module")
def fitted() -> tuple[RewardModel, object]:
    features, labels = preference_ratings(600, seed=0)
    model = RewardModel()
    report = model.fit(features, labels, seed=0, holdout=0.4)
    return model, report


def test_it_learns_a_preference_for_a_relation(fitted):
    model, report = fitted
    assert (report.ratings, report.held_out, report.trained_on) == (600, 240, 360)
    assert report.good + report.bad == 600
    assert report.auc > 0.8
    treats = ChainFeatures.from_walk(["isa", "treats"], confidence=0.5, agreement=0.5)
    causes = ChainFeatures.from_walk(["isa", "causes"], confidence=0.5, agreement=0.5)
    assert model.score(treats) > model.score(causes) + 0.1
    # the inverse label reads as the relation walked inversely, and still counts as "treats"
    assert model.score(ChainFeatures.from_walk(["inverse of treats"], confidence=0.5)) > model.score(
        ChainFeatures.from_walk(["inverse of causes"], confidence=0.5)
    )
    assert report.ece_after < 0.1
    assert report.ece_after <= report.ece_before + 0.03
    assert report.nll_after <= report.nll_before
    probs = model.probability([treats, causes])
    assert probs.shape == (2,) and np.all((probs > 0) & (probs < 1))


def test_fitting_is_deterministic_for_a_seed():
    features, labels = preference_ratings(200, seed=3)
    a, b = RewardModel(), RewardModel()
    assert a.fit(features, labels, seed=5) == b.fit(features, labels, seed=5)
    np.testing.assert_array_equal(a.probability(features[:20]), b.probability(features[:20]))


def overfit_ratings(n: int, seed: int) -> tuple[list[ChainFeatures], list[int]]:
    """Many relations, each with its own effect: a weakly regularised fit on few ratings memorises them."""
    rng = np.random.default_rng(seed)
    names = [f"relation {i}" for i in range(40)]
    effect = rng.normal(0, 1.5, len(names))
    features, labels = [], []
    for _ in range(n):
        idx = rng.integers(len(names), size=int(rng.integers(1, 4)))
        p = 1 / (1 + math.exp(-effect[idx].sum()))
        features.append(ChainFeatures.from_walk([names[i] for i in idx], confidence=float(rng.random())))
        labels.append(int(rng.random() < p))
    return features, labels


def test_the_temperature_tames_an_overconfident_fit():
    features, labels = overfit_ratings(240, seed=0)
    model = RewardModel(dim=256, weight_decay=1e-3)
    report = model.fit(features, labels, seed=0, holdout=0.4)
    assert report.train_nll < 0.3  # it memorised the training ratings
    assert report.temperature > 1.5
    assert model.temperature == report.temperature
    assert report.nll_after <= report.nll_before
    assert report.nll_after < 0.95 * report.nll_before


def test_calibrate_undoes_logits_scaled_up(fitted):
    model, _ = fitted
    features, labels = preference_ratings(400, seed=11)  # fresh ratings
    model_t = RewardModel(dim=model.dim)
    model_t.weights, model_t.bias = model.weights * 4.0, model.bias * 4.0  # four times too sure
    before = model_t.probability(features)
    temperature = model_t.calibrate(features, labels)
    assert 2.0 < temperature < 8.0
    after = model_t.probability(features)
    y = np.asarray(labels)

    def nll(p):
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    assert nll(after) < nll(before)


def test_sample_weights_count():
    features, labels = preference_ratings(400, seed=1)
    plain = RewardModel()
    plain.fit(features, labels, seed=0)
    doubled = RewardModel()
    doubled.fit(features, labels, weights=[2.0] * len(labels), seed=0)
    probe = features[:30]
    np.testing.assert_allclose(plain.probability(probe), doubled.probability(probe), atol=1e-6)
    # no weight on the good "treats" ratings: the model no longer prefers "treats"
    weights = [0.0 if (label and "treats" in f.relations) else 1.0 for f, label in zip(features, labels)]
    unweighted = RewardModel()
    unweighted.fit(features, labels, weights=weights, seed=0)
    treats = ChainFeatures.from_walk(["treats"], confidence=0.5)
    assert unweighted.score(treats) < plain.score(treats) - 0.3


def test_too_few_ratings_say_how_many_are_needed():
    features, labels = preference_ratings(200, seed=2)
    good = [f for f, y in zip(features, labels) if y][:7]
    bad = [f for f, y in zip(features, labels) if not y][:30]
    with pytest.raises(
        ValueError, match=rf"at least {MIN_PER_LABEL} good and {MIN_PER_LABEL} bad.*got 7 good and 30 bad"
    ):
        RewardModel().fit(good + bad, [1] * 7 + [0] * 30)
    with pytest.raises(ValueError, match="labels must be 0/1"):
        RewardModel().fit(features[:3], [1, 0, 2])
    with pytest.raises(RuntimeError, match="not fitted"):
        RewardModel().score(features[0])


def test_roc_auc_on_known_inputs():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    # one tie between a positive and a negative counts a half: (1 + 1 + 0.5 + 1) / 4
    assert roc_auc([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(0.875)
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))
    # agrees with counting the pairs
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 60).astype(float), rng.integers(0, 2, 60)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(scores, labels) == pytest.approx(pairs)


def test_expected_calibration_error_on_a_known_case():
    # bin of 0.2: accuracy 0.5 (|0.3|); bin of 0.8: accuracy 1 (|0.2|); each half the items
    assert expected_calibration_error([0.2, 0.2, 0.8, 0.8], [0, 1, 1, 1]) == pytest.approx(0.25)
    assert expected_calibration_error([0.25, 0.25, 0.25, 0.25], [1, 0, 0, 0]) == pytest.approx(0.0)


def test_save_and_load_round_trip(fitted, tmp_path):
    model, report = fitted
    path = model.save(tmp_path / "reward" / "model.json")
    data = json.loads(path.read_text())
    assert data["format"] == "reverie-reward-model" and data["dim"] == model.dim
    assert len(data["weights"]) == model.dim + len(EXTRA_FEATURES)
    loaded = RewardModel.load(path)
    features, _ = preference_ratings(50, seed=9)
    np.testing.assert_array_equal(loaded.probability(features), model.probability(features))
    assert loaded.temperature == model.temperature
    assert loaded.report is not None and loaded.report.held_out == report.held_out
    assert loaded.report.auc == pytest.approx(report.auc, abs=1e-6)
    assert not list(path.parent.glob("*.tmp"))  # written to a temporary name and renamed


def test_loading_something_else_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no reward model"):
        RewardModel.load(tmp_path / "missing.json")
    calibrator = tmp_path / "calibrator.json"
    DEFAULT_CALIBRATOR.save(calibrator)
    with pytest.raises(ValueError, match="not a reward model"):
        RewardModel.load(calibrator)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        RewardModel.load(garbage)
    short = tmp_path / "short.json"
    short.write_text(
        json.dumps(
            {
                "format": "reverie-reward-model",
                "version": 1,
                "dim": 64,
                "weights": [0.0],
                "bias": 0.0,
                "temperature": 1.0,
            }
        )
    )
    with pytest.raises(ValueError, match="damaged"):
        RewardModel.load(short)


@pytest.mark.parametrize(
    ("note", "answer"),
    [
        ("It should be Paris.", "Paris"),
        ("should be: 'Water'", "Water"),
        ("The answer is Aspirin!", "Aspirin"),
        ("correct answer: \u201cglass shard\u201d", "glass shard"),
        ("Correct answer is bounces; the chain went wrong at rubber", "bounces"),
        ("No, Shatters", "Shatters"),
        ("no, it's melts.", "melts"),
        ("wrong chain. It should have been Iron, not steel", "Iron"),
        ("  NO - Rubber Ball ", "Rubber Ball"),
    ],
)
def test_answer_named_in_note(note, answer):
    assert answer_named_in_note(note) == answer


@pytest.mark.parametrize(
    "note",
    [
        "",
        "great answer",
        "nothing to add",
        "no idea why this works",
        "the answer is wrong",
        "the answer is correct",
        "this should be better",
        "no, that's not it",
        "should be:   ",
        "it should be " + "x" * 300,
        "a" * 5000 + " the answer is Paris",  # past the note's bound
    ],
)
def test_notes_that_name_no_answer(note):
    assert answer_named_in_note(note) is None


def make_chain() -> Chain:
    return Chain(
        steps=[
            Step(
                what="glass cup",
                action="made of",
                result="glass",
                edge_id=edge_id("glass cup", "made of", "glass"),
                source="toy",
            ),
            Step(
                what="glass",
                action="inverse of made of",
                result="window",
                edge_id=edge_id("window", "made of", "glass"),
                source="world-model",
                inverse=True,
                imagined=True,
            ),
        ],
        answer="window",
        score=-0.4,
    )


def make_verdict(chain: Chain) -> Verdict:
    return Verdict(
        question="What else is made of what a glass cup is made of?",
        answer="A window.",
        answer_entity="window",
        chain=chain,
        candidates=[
            Candidate(answer="window", score=1.2, votes=30, best_chain=chain, confidence=0.7),
            Candidate(answer="bottle", score=0.4, votes=10, best_chain=chain),
        ],
        alternatives=[],
        linked=[],
        backend="template",
        policy="walker",
        confidence=0.7,
        sure=True,
        rollouts=40,
        timings_ms={},
    )


def make_record(chain: Chain | None, cls: type[FeedbackRecord] = FeedbackRecord, **extra) -> FeedbackRecord:
    return cls(
        verdict_id="v1",
        rating="good",
        note="",
        question="What else is made of what a glass cup is made of?",
        answer_entity=chain.answer if chain else None,
        chain=chain,
        policy="walker",
        **extra,
    )


def test_features_of_a_rated_verdict():
    chain = make_chain()
    record, verdict = make_record(chain), make_verdict(chain)
    features = ChainFeatures.from_record(record, verdict)
    assert features.relations == ("made of", "made of")
    assert features.inverse == (False, True)
    assert features.imagined == (False, True)
    assert features.confidence == pytest.approx(0.7)
    assert features.agreement == pytest.approx(30 / 40)
    assert features.reasoner is None and features.world is None
    # a walk of the same hops has the same features
    assert features == ChainFeatures.from_walk(
        ["made of", "inverse of made of"], imagined=[False, True], confidence=0.7, agreement=0.75
    )
    bare = ChainFeatures.from_record(record)
    assert (bare.confidence, bare.agreement) == (0.5, 0.0)
    empty = ChainFeatures.from_record(make_record(None), verdict)
    assert empty.hops == 0 and empty.agreement == pytest.approx(30 / 40)  # the top candidate's share
    assert rating_label(record.rating) == 1 and rating_label("bad") == 0 and rating_label("neutral") is None


class RecordWithNumbers(FeedbackRecord):
    """A FeedbackRecord that carries its verdict's confidence and agreement itself."""

    confidence: float | None = None
    agreement: float | None = None


def test_a_records_own_confidence_comes_first():
    chain = make_chain()
    record = make_record(chain, RecordWithNumbers, confidence=0.2, agreement=0.1)
    features = ChainFeatures.from_record(record, make_verdict(chain))
    assert (features.confidence, features.agreement) == (pytest.approx(0.2), pytest.approx(0.1))
    unset = make_record(chain, RecordWithNumbers)
    assert ChainFeatures.from_record(unset, make_verdict(chain)).confidence == pytest.approx(0.7)


def test_featurize_layout_is_stable_and_tells_directions_apart():
    forward = ChainFeatures.from_walk(["made of", "is"], confidence=0.9, agreement=0.25, world=2.0)
    inverse = ChainFeatures.from_walk(["made of", "inverse of is"], confidence=0.9, agreement=0.25, world=2.0)
    x, y = featurize(forward, dim=32), featurize(inverse, dim=32)
    assert x.shape == (32 + len(EXTRA_FEATURES),)
    np.testing.assert_array_equal(x, featurize(forward, dim=32))
    assert not np.array_equal(x[:32], y[:32])
    extra = dict(zip(EXTRA_FEATURES, x[32:]))
    assert extra["hops=2"] == 1.0 and extra["hops=0"] == 0.0
    assert extra["confidence logit"] == pytest.approx(math.log(0.9 / 0.1))
    assert extra["agreement"] == 0.25
    assert (extra["world"], extra["world present"], extra["reasoner present"]) == (2.0, 1.0, 0.0)
    assert dict(zip(EXTRA_FEATURES, y[32:]))["inverse share"] == 0.5
    long = featurize(ChainFeatures.from_walk(["a"] * 6), dim=8)
    assert dict(zip(EXTRA_FEATURES, long[8:]))["hops>=4"] == 1.0
    with pytest.raises(ValueError, match="confidence"):
        ChainFeatures.from_walk(["a"], confidence=1.5)
    with pytest.raises(ValueError, match="one length"):
        ChainFeatures(relations=("a", "b"), inverse=(False,), imagined=(False, False))
