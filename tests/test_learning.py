"""Learning from use, without Ray: the prioritised replay buffer, EWC against forgetting, the reasoner
teaching the policy, ratings as experience, facts folded in after training, and the learner's versions."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from reverie.agents.path_policy.config import LearnerConfig, NetConfig, PolicyMeta
from reverie.agents.path_policy.learner import PolicyLearner, clone, demonstrations, sample_walks
from reverie.agents.path_policy.net import PathPolicyNet, read_policy_meta, save_policy
from reverie.agents.path_policy.replay import EPSILON, PrioritizedReplay
from reverie.agents.path_policy.walkgraph import WalkGraph
from reverie.data.kg import KGDataset
from reverie.schemas import Chain, FeedbackRecord, Step, Triple

SMALL_NET = NetConfig(entity_dim=8, relation_dim=8, lstm_dim=8, state_dim=8)


# ---------------------------------------------------------------------- replay


def test_replay_draws_by_priority_with_importance_weights():
    replay = PrioritizedReplay(capacity=10, alpha=1.0, beta=0.5)
    replay.add(np.array([[0, 0, i] for i in range(4)]), np.ones(4))
    replay.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]) - EPSILON)
    np.testing.assert_allclose(replay.probabilities(), [0.1, 0.2, 0.3, 0.4])
    drawn = replay.sample(20_000, np.random.default_rng(0))
    frequency = np.bincount(drawn.index, minlength=4) / 20_000
    np.testing.assert_allclose(frequency, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    # w_i = (N P(i))^-beta / max_k w_k: the rarest experience weighs 1, the others less
    expected = (4 * np.array([0.1, 0.2, 0.3, 0.4])) ** -0.5 / (4 * 0.1) ** -0.5
    np.testing.assert_allclose(drawn.weights, expected[drawn.index])
    np.testing.assert_array_equal(drawn.queries[:, 2], drawn.index)
    # new experience enters at the largest priority, so it is drawn soon
    replay.add(np.array([[1, 1, 9]]), np.zeros(1))
    assert replay.priorities[-1] == pytest.approx(4.0)


def test_a_full_replay_drops_the_least_surprising_and_survives_a_round_trip(tmp_path):
    replay = PrioritizedReplay(capacity=3, alpha=0.6, beta=0.4)
    replay.add(np.array([[0, 0, i] for i in range(3)]), np.ones(3), np.array([1.0, 0.5, 0.25]))
    replay.update_priorities(np.arange(3), np.array([0.9, 0.1, 0.5]))
    replay.add(np.array([[0, 0, 7]]), np.zeros(1))
    assert len(replay) == 3 and sorted(replay.queries[:, 2].tolist()) == [0, 2, 7]  # 1 was least surprising
    path = replay.save(tmp_path / "replay.npz")
    loaded = PrioritizedReplay.load(path)
    np.testing.assert_array_equal(loaded.queries, replay.queries)
    np.testing.assert_array_equal(loaded.priorities, replay.priorities)
    np.testing.assert_array_equal(loaded.own_weights, replay.own_weights)
    assert (loaded.capacity, loaded.alpha, loaded.beta) == (3, 0.6, 0.4)
    (tmp_path / "broken.npz").write_bytes(b"not a buffer")
    with pytest.raises(ValueError, match="not a replay buffer"):
        PrioritizedReplay.load(tmp_path / "broken.npz")
    with pytest.raises(ValueError, match="empty"):
        PrioritizedReplay().sample(1, np.random.default_rng(0))


# ---------------------------------------------------------------------- EWC


def _two_relation_graphs():
    """Sources s_i with an x edge to a_i and a y edge to b_i. Relation A (s_i, a_i) is known from the
    start; relation B (s_i, b_i) arrives later, with its facts."""
    old, new = [], []
    for i in range(16):
        old += [
            Triple(head=f"s{i}", relation="x", tail=f"a{i}"),
            Triple(head=f"s{i}", relation="y", tail=f"b{i}"),
            Triple(head=f"s{i}", relation="A", tail=f"a{i}"),
        ]
        new.append(Triple(head=f"s{i}", relation="B", tail=f"b{i}"))
    return old, new


def _success(net, graph, queries) -> float:
    walks = sample_walks(net, graph, np.repeat(queries, 16, 0), 1, torch.Generator().manual_seed(1))
    return float((walks.ends == np.repeat(queries, 16, 0)[:, 2]).mean())


def _sessions(ewc: float) -> tuple[float, float, float]:
    """A is learnt, then B arrives and is learnt: A's success after session 1, and A's and B's after 2."""
    old, new = _two_relation_graphs()
    first, second = WalkGraph.from_triples(old), WalkGraph.from_triples(old + new)
    torch.manual_seed(0)
    settings = dict(lr=1e-2, queries_per_update=16, replay=False, ewc=ewc, entropy=0.1, reward_model_weight=0)
    learner = PolicyLearner(
        PathPolicyNet(first.num_entities, first.num_relation_ids, SMALL_NET),
        first,
        1,
        first.encode(old),
        LearnerConfig(updates=8, **settings),
    )
    asked_a = first.encode([t for t in old if t.relation == "A"])
    for _ in range(8):
        learner.add(asked_a, np.ones(len(asked_a)))
    learner.update()
    after_first = _success(learner.net, first, asked_a)
    learner.consolidate(asked_a)
    learner.grow(second, second.encode(old + new))
    learner.config = LearnerConfig(updates=60, **settings)
    asked_b = second.encode(new)
    for _ in range(60):
        learner.add(asked_b, np.ones(len(asked_b)))
    learner.update()
    asked_a = second.encode([t for t in old if t.relation == "A"])
    return after_first, _success(learner.net, second, asked_a), _success(learner.net, second, asked_b)


def test_ewc_keeps_the_old_relation_that_naive_fine_tuning_forgets():
    naive = _sessions(ewc=0.0)
    kept = _sessions(ewc=20.0)
    assert naive[0] > 0.85 and kept[0] > 0.85  # A was learnt in the first session
    assert naive[2] > 0.9 and kept[2] > 0.9  # and B in the second, either way
    assert naive[1] < 0.2  # naive fine-tuning forgot A
    assert kept[1] > 0.6  # EWC kept it


# ---------------------------------------------------------------------- the reasoner teaches


def _family(seed: int = 0) -> KGDataset:
    """Parents and grandparents; a quarter of the grandparent facts held out as the test split."""
    rng = np.random.default_rng(seed)
    parent = {i: int(rng.integers(max(0, i - 6), i)) for i in range(1, 60)}
    parents = [Triple(head=f"p{c}", relation="parent", tail=f"p{p}") for c, p in parent.items()]
    grand = [
        Triple(head=f"p{c}", relation="grandparent", tail=f"p{parent[p]}") for c, p in parent.items() if p in parent
    ]
    order = rng.permutation(len(grand))
    test = [grand[i] for i in order[: len(grand) // 4]]
    train = parents + [grand[i] for i in order[len(grand) // 4 :]]
    return KGDataset(name="family", graph=train, train=train, dev=test[:3], test=test)


def _paths_mrr(net, graph, data) -> float:
    from reverie.agents.path_policy.evaluate import beam_scores, tail_queries
    from reverie.ranking import filtered_ranks, ranking_metrics

    queries = tail_queries(graph, data.test)
    known = graph.known_answers(data.train, data.test, inverse=False)
    scores = beam_scores(net, graph, queries[:, :2], 2, beam=32)
    return ranking_metrics(filtered_ranks(scores, queries[:, 2], [known.get((s, r), ()) for s, r, _ in queries]))["mrr"]


def test_behaviour_cloning_from_the_reasoners_paths_raises_the_paths_alone_mrr():
    from reverie.models.graph_reasoner import train_reasoner
    from reverie.models.reasoner_config import ReasonerConfig

    data = _family()
    graph = WalkGraph.from_dataset(data)
    reasoner = train_reasoner(data, ReasonerConfig(dim=16, heads=2, layers=2, epochs=6, patience=0, eval_every=0))
    train = graph.encode(data.train)
    R = graph.num_relations
    queries = np.concatenate([train, np.stack([train[:, 2], train[:, 1] + R, train[:, 0]], 1)])
    demos = demonstrations(reasoner, graph, queries, hops=2, top=2)
    assert len(demos) > len(queries) // 2
    # every demonstration walks to its answer without the asked fact
    at = demos.queries[:, 0].copy()
    for step in range(2):
        at = graph.action_entities[at, demos.actions[:, step]]
    assert (at == demos.queries[:, 2]).all()
    torch.manual_seed(0)
    net = PathPolicyNet(graph.num_entities, graph.num_relation_ids, SMALL_NET)
    before = _paths_mrr(net, graph, data)
    losses = clone(net, demos, epochs=40, batch=64, lr=1e-2)
    after = _paths_mrr(net, graph, data)
    assert losses[-1] < losses[0]
    assert after > before + 0.2 and after > 0.6, (before, after)


# ---------------------------------------------------------------------- ratings as experience


def _record(verdict: str, rating: str, answer: str | None, note: str = "", client: str = "key:a") -> FeedbackRecord:
    steps = [Step(what="s1", action="A", result=answer or "a1", edge_id="e", source="toy")]
    return FeedbackRecord(
        verdict_id=verdict,
        rating=rating,
        note=note,
        question="what is A of s1?",
        answer_entity=answer,
        chain=Chain(steps=steps, answer=answer or "a1", score=0.5) if answer else None,
        policy="path-policy:toy",
        asked_relation="A",
        subject="s1",
        confidence=0.6,
        agreement=0.5,
        client=client,
    )


def test_ratings_become_experience_and_one_clients_flood_is_bounded():
    from reverie.agents.path_policy.online import experience_from_ratings

    old, _ = _two_relation_graphs()
    graph = WalkGraph.from_triples(old)
    e, A = graph.entity2id, graph.relation2id["A"]
    records = [
        _record("v1", "good", "a1"),
        _record("v2", "bad", "b1", note="it should be A1."),  # names the right answer, in any case
        _record("v3", "neutral", "a1"),
        _record("v4", "bad", "s2", note="wrong"),
        _record("v5", "good", "a1", client="key:other"),
    ]
    records[0] = records[0].model_copy(update={"policy": "path-policy:elsewhere"})  # another policy's verdict
    flood = [_record(f"f{i}", "bad", "b1", client="key:flood") for i in range(500)]
    experience = experience_from_ratings(records + flood, graph, "path-policy:toy", {}, cap=25.0)
    rows = {(tuple(q), r) for q, r in zip(experience.queries.tolist(), experience.rewards.tolist())}
    s1 = e["s1"]
    assert ((s1, A, e["b1"]), 0.0) in rows and ((s1, A, e["a1"]), 1.0) in rows and ((s1, A, e["s2"]), 0.0) in rows
    flooded = experience.weights[-500:]
    assert flooded.sum() == pytest.approx(25.0)  # 500 ratings from one key weigh as 25
    assert experience.clients == {"key:a": 2, "key:other": 1, "key:flood": 500}
    # a verdict rated twice by one client counts once
    again = experience_from_ratings(
        [_record("v9", "good", "a1"), _record("v9", "bad", "a1")], graph, "path-policy:toy", {}, 25.0
    )
    assert experience_from_ratings and again.rewards.tolist() == [0.0]


# ---------------------------------------------------------------------- a policy home


@pytest.fixture()
def toy_home(tmp_path):
    """A home with an untrained policy of a folder dataset, saved as `reverie train policy` saves one."""
    from reverie.config import Settings

    old, new = _two_relation_graphs()
    folder = tmp_path / "toy"
    folder.mkdir()
    lines = [f"{t.head}\t{t.relation}\t{t.tail}" for t in old]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    (folder / "test.txt").write_text("\n".join(lines[:3]) + "\n")
    settings = Settings(home=tmp_path / "home")
    graph = WalkGraph.from_triples(old)
    torch.manual_seed(0)
    net = PathPolicyNet(graph.num_entities, graph.num_relation_ids, SMALL_NET)
    meta = PolicyMeta(dataset="toy", dataset_arg=str(folder), entities=graph.id2entity, relations=graph.id2relation)
    meta.env = meta.env.__class__(hops=1, shaping=0.0)
    save_policy(net, settings.paths.policy("toy"), meta)
    return settings, new


def _write_ratings(settings, records) -> None:
    path = settings.paths.feedback / "feedback.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for record in records:
            handle.write(record.model_dump_json() + "\n")


def test_learn_publishes_a_version_keeps_the_last_and_folds_new_facts(toy_home):
    from reverie.agents.path_policy.bundle import fold_facts, load_bundle
    from reverie.agents.path_policy.online import learn, learning_status
    from reverie.data.kg import load_dataset

    settings, new = toy_home
    folder = settings.paths.policy("toy")
    config = LearnerConfig(updates=3, queries_per_update=16, walks_per_query=4)
    assert learn(settings, "toy", config)["version"] is None  # nothing new to learn from

    good = [_record(f"g{i}", "good", "a1") for i in range(10)]
    bad = [_record(f"b{i}", "bad", "b1", note="it should be a1") for i in range(10)]
    _write_ratings(settings, good + bad)
    # a new relation and a new entity arrive: walkable at once, before any update
    assert fold_facts(folder, new + [Triple(head="s1", relation="B", tail="newcomer")]) == 17
    assert fold_facts(folder, new) == 0  # already folded
    bundle = load_bundle(folder, load_dataset(read_policy_meta(folder).dataset_arg))
    assert "newcomer" in bundle.graph.entity2id and "B" in bundle.graph.relation2id
    assert bundle.net.config["num_entities"] == bundle.graph.num_entities
    s1 = bundle.graph.entity2id["s1"]
    moves = set(bundle.graph.action_entities[s1][bundle.graph.action_mask[s1]].tolist())
    assert bundle.graph.entity2id["newcomer"] in moves

    done = learn(settings, "toy", config)
    assert done["version"] == 1 and done["ratings"] == 30 and done["facts"] == 17
    # a fifth of the ratings is kept aside to measure the model against the confidence before it
    assert done["reward_model"]["ratings"] == 16 and done["reward_model"]["versus_confidence"]["ratings"] == 4
    meta = read_policy_meta(folder)
    assert meta.version == 1 and "newcomer" in meta.entities  # the grown graph is the new version's
    assert (folder / "versions" / "v0000" / "config.json").is_file()
    assert json.loads((folder / "versions" / "v0000" / "config.json").read_text())["meta"]["version"] == 0
    learning = settings.paths.learning("toy")
    assert (learning / "replay.npz").is_file() and (learning / "ewc.pt").is_file()
    assert settings.paths.reward_model.is_file()  # one for the home: it refines every verdict's confidence
    [status] = learning_status(settings)
    assert status["version"] == 1 and status["kept_versions"] == [0] and status["ratings_used"] == 30
    assert status["facts_folded"] == 17 and status["last_update"]["updates"] == 3
    assert learn(settings, "toy", config)["version"] is None  # the same ratings are not read twice
    runs = sorted(p.name for p in settings.paths.runs.glob("*.jsonl"))
    assert len(runs) == 1 and "learner" in runs[0]


def test_a_learner_killed_mid_update_leaves_the_served_version_and_buffer_whole(toy_home):
    from reverie.agents.path_policy.bundle import load_bundle
    from reverie.data.kg import load_dataset

    settings, _ = toy_home
    folder = settings.paths.policy("toy")
    _write_ratings(settings, [_record(f"g{i}", "good", "a1") for i in range(10)])
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    env = {**os.environ, "REVERIE_HOME": str(settings.home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "reverie.cli", "learn", "--dataset", "toy", "--from-feedback", "--updates", "100000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
            p.stat().st_size > 200 for p in settings.paths.runs.glob("*.jsonl")
        ):  # a header and at least one update
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.2)
        assert time.monotonic() < deadline, "the learner never updated"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before  # the served version: not a byte changed
    assert not (settings.paths.learning("toy") / "replay.npz").exists()  # nothing half-written either
    assert load_bundle(folder, load_dataset(read_policy_meta(folder).dataset_arg)).meta.version == 0


def test_ratings_refine_the_confidence_only_where_they_beat_the_one_before(tmp_path):
    """The reward model is measured against the confidence the rated verdicts carried, on ratings kept
    aside; answers take its probability only when it does better. Here the verdicts' confidence says
    nothing and the relation walked says much: the refined confidence wins, and ranks a good chain above
    a poor one."""
    from reverie import answer
    from reverie.agents.path_policy.online import fit_reward_model
    from reverie.models.reward_model import RewardModel
    from reverie.schemas import Candidate

    rng = np.random.default_rng(0)
    records = []
    for i in range(300):
        relation = "treats" if i % 2 else "causes"
        good = rng.random() < (0.9 if relation == "treats" else 0.15)
        record = _record(f"r{i}", "good" if good else "bad", "a1").model_copy(
            update={"confidence": float(rng.random())}
        )
        record.chain.steps[0].action = relation
        records.append(record)
    path = tmp_path / "reward_model.json"
    report = fit_reward_model(records, path)
    versus = report["versus_confidence"]
    assert versus["auc_after"] > 0.8 and abs(versus["auc_before"] - 0.5) < 0.15
    assert report["use_for_confidence"] is True
    model = RewardModel.load(path)
    assert model.use_for_confidence and model.versus_confidence == versus
    refine = answer.reward_refinement(model)

    def candidate(relation: str) -> Candidate:
        step = Step(what="s1", action=relation, result="a1", edge_id="e", source="toy")
        return Candidate(answer="a1", score=0.0, votes=10, best_chain=Chain(steps=[step], answer="a1", score=0.0))

    treats, causes = candidate("treats"), candidate("causes")
    assert refine(treats, [treats], 0.5) > 0.75 > 0.3 > refine(causes, [causes], 0.5)
    # too few ratings of one kind: no model, and the old one stays
    assert fit_reward_model(records[:10], tmp_path / "other.json") is None
    assert not (tmp_path / "other.json").exists()


@pytest.mark.ray
def test_the_learner_beside_the_service_publishes_when_ratings_arrive(ray_cluster, toy_home):
    """`reverie serve --learn`'s actor: idle while nothing is new, a new version once ratings arrive."""
    import ray

    from reverie.actors import learner_actor

    settings, _ = toy_home
    settings = settings.model_copy(update={"learn": True, "learn_interval_s": 0.5, "learn_minutes": 0.05})
    actor = learner_actor(settings)
    try:
        time.sleep(2)
        assert read_policy_meta(settings.paths.policy("toy")).version == 0  # nothing new: no version
        _write_ratings(settings, [_record(f"g{i}", "good", "a1") for i in range(4)])
        deadline = time.monotonic() + 300  # the actor's first update imports torch's optimisers: slow on a busy machine
        while time.monotonic() < deadline and read_policy_meta(settings.paths.policy("toy")).version == 0:
            time.sleep(0.5)
        status = ray.get(actor.status.remote())
        assert read_policy_meta(settings.paths.policy("toy")).version == 1, status
        assert status["alive"] and status["error"] is None
    finally:
        ray.get(actor.stop.remote())
        ray.kill(actor)


def test_reverie_learn_says_what_is_missing_in_one_line(tmp_path):
    env = {**os.environ, "REVERIE_HOME": str(tmp_path / "home")}

    def learn(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "reverie.cli", "learn", *args], env=env, capture_output=True, text=True, timeout=120
        )

    nothing = learn()
    assert nothing.returncode == 2 and nothing.stderr.count("\n") == 1
    assert "no trained policy" in nothing.stderr and "reverie train policy" in nothing.stderr
    missing = learn("--dataset", "umls")
    assert missing.returncode == 2 and "no trained policy for 'umls'" in missing.stderr
    no_file = learn("--facts", str(tmp_path / "absent.tsv"))
    assert no_file.returncode == 2 and "absent.tsv" in no_file.stderr and no_file.stderr.count("\n") == 1
