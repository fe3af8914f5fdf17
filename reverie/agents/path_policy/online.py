"""Learning from use over a REVERIE_HOME: ratings and new facts in, policy versions out. No Ray.

`learn(settings, dataset)` is one learner update of one trained policy:

1. the reward model (reverie/models/reward_model.py) is refit on every good and bad rating of the
   feedback dataset, when there are enough of each (saved as `learning/<dataset>/reward_model.json`);
2. ratings of this policy's verdicts not read before become experience: a good answer is a query
   whose answer earns 1, a bad one a query whose answer earns 0, and a note that names the right
   answer ("it should be X") a query whose X earns 1, when X is an entity of the graph. A client's
   ratings together weigh at most `max_client_weight`, and a verdict rated twice by one client
   counts once (the last rating), so one key's volume cannot steer the policy;
3. facts folded into the policy since its last update (`bundle.fold_facts`, which ingest calls) are
   rewarded from now on and become queries to learn;
4. `PolicyLearner.update` runs, EWC is anchored at the new weights, and the new version is published:
   the previous one is kept under `<policy>/versions/v<N>/`, then the policy's checkpoint is
   replaced (weights first, then config.json by rename), so a reader, or a learner killed mid-update,
   leaves the served version whole. The replay buffer, EWC anchor and state are written after it,
   each by rename. Every process that answers reloads a policy when its config.json changes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from reverie.agents.path_policy.bundle import PolicyBundle, load_bundle, read_learned_facts
from reverie.agents.path_policy.config import LearnerConfig
from reverie.agents.path_policy.learner import ElasticAnchor, PolicyLearner, UpdateReport
from reverie.agents.path_policy.net import read_policy_meta, save_policy
from reverie.agents.path_policy.replay import PrioritizedReplay
from reverie.agents.path_policy.walkgraph import WalkGraph
from reverie.atomic import atomic_write
from reverie.checkpoints import CONFIG_FILE
from reverie.edges import parse_relation_label
from reverie.feedback import FeedbackLog
from reverie.schemas import FeedbackRecord

log = logging.getLogger(__name__)

STATE_FILE = "learner.json"
REPLAY_FILE = "replay.npz"
ANCHOR_FILE = "ewc.pt"
VERSIONS_FOLDER = "versions"
KEEP_VERSIONS = 10
"""Earlier versions kept beside the served one; older ones are removed."""


@dataclass
class LearningState:
    """What a policy's learner has consumed and made (learning/<dataset>/learner.json)."""

    dataset: str
    version: int = 0
    ratings_read: int = 0
    """Lines of the feedback dataset read so far (every policy's and walker's)."""
    ratings_used: int = 0
    """Ratings of this policy's verdicts that became experience."""
    facts_folded: int = 0
    """Learned facts (the policy folder's learned_facts.tsv) taken in."""
    experiences: int = 0
    client_ratings: dict[str, int] = field(default_factory=dict)
    """Ratings used per client: what bounds one client's weight."""
    last_update: dict[str, Any] | None = None
    reward_model: dict[str, Any] | None = None
    """The reward model's last fit report (held-out ROC-AUC, ECE before and after temperature)."""
    versions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, dataset: str) -> "LearningState":
        if not path.is_file():
            return cls(dataset)
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        atomic_write(path, json.dumps(dataclasses.asdict(self), indent=2, default=str).encode())


@dataclass
class Experience:
    queries: np.ndarray
    rewards: np.ndarray
    weights: np.ndarray
    used: int
    clients: dict[str, int]


def experience_from_ratings(
    records: list[FeedbackRecord], graph: WalkGraph, policy: str, client_ratings: dict[str, int], cap: float
) -> Experience:
    """Queries with rewards from the ratings of `policy`'s verdicts in `graph`'s ids (see the module docstring)."""
    from reverie.models.reward_model import answer_named_in_note

    e2i, r2i, R = graph.entity2id, graph.relation2id, graph.num_relations
    lower = {name.lower(): i for name, i in e2i.items()}
    last: dict[tuple[str, str], FeedbackRecord] = {}
    for record in records:  # one client's ratings of one verdict: the last counts
        if record.policy == policy and record.rating != "neutral":
            last[(record.client, record.verdict_id)] = record
    counts = dict(client_ratings)
    for client, _ in last:
        counts[client] = counts.get(client, 0) + 1
    rows: list[tuple[int, int, int, float, float]] = []
    for (client, _), record in last.items():
        if not record.asked_relation or not record.subject or record.subject not in e2i:
            continue
        name, inverse = parse_relation_label(record.asked_relation)
        if name not in r2i:
            continue
        source, relation = e2i[record.subject], r2i[name] + (R if inverse else 0)
        weight = min(1.0, cap / counts[client])
        if record.answer_entity in e2i:
            rows.append((source, relation, e2i[record.answer_entity], float(record.rating == "good"), weight))
        named = answer_named_in_note(record.note) if record.rating == "bad" else None
        if named is not None and named.lower() in lower:
            rows.append((source, relation, lower[named.lower()], 1.0, weight))
    table = np.asarray(rows, np.float64).reshape(-1, 5)
    return Experience(
        table[:, :3].astype(np.int64), table[:, 3], table[:, 4], len(rows), {c: n for c, n in counts.items()}
    )


def fit_reward_model(records: list[FeedbackRecord], path: Path, seed: int = 0) -> dict[str, Any] | None:
    """Refit the reward model on every good and bad rating and save it; None (the old model kept) when
    there are too few of either. A fifth of the ratings (stratified) is kept aside to measure it against
    the confidence the verdicts carried before: ROC-AUC and ECE of each ("versus_confidence"). Answers
    take the model's refined confidence only where it did better (`use_for_confidence`)."""
    from reverie.models.reward_model import (
        ChainFeatures,
        RewardModel,
        expected_calibration_error,
        rating_label,
        roc_auc,
    )

    rated = [(r, rating_label(r.rating)) for r in records]
    rated = [(r, label) for r, label in rated if label is not None]
    labels = np.array([label for _, label in rated], np.int64)
    rng = np.random.default_rng(seed)
    aside = np.zeros(len(rated), bool)
    for value in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == value))
        aside[members[: len(members) // 5]] = True
    features = [ChainFeatures.from_record(r) for r, _ in rated]
    model = RewardModel()
    try:
        report = model.fit([f for f, a in zip(features, aside) if not a], labels[~aside].tolist(), seed=seed)
    except ValueError as exc:
        log.info("the reward model waits for more ratings: %s", exc)
        return None
    out = dataclasses.asdict(report)
    held = [f for f, a in zip(features, aside) if a]
    if len(set(labels[aside].tolist())) == 2:
        before = np.array([r.confidence if r.confidence is not None else 0.5 for (r, _), a in zip(rated, aside) if a])
        after = model.probability(held)
        out["versus_confidence"] = {
            "ratings": int(aside.sum()),
            "auc_before": roc_auc(before, labels[aside]),
            "auc_after": roc_auc(after, labels[aside]),
            "ece_before": expected_calibration_error(before, labels[aside]),
            "ece_after": expected_calibration_error(after, labels[aside]),
        }
        v = out["versus_confidence"]
        out["use_for_confidence"] = bool(v["auc_after"] > v["auc_before"] and v["ece_after"] <= v["ece_before"] + 0.02)
    else:
        out["use_for_confidence"] = False
    model.versus_confidence, model.use_for_confidence = out.get("versus_confidence"), out["use_for_confidence"]
    model.save(path)
    return out


def walk_reward(model: Any, bundle: PolicyBundle) -> Callable[..., np.ndarray]:
    """The reward model as the learner's reward of walks: P(good) of each walk's relations, with the
    share of the query's walks that agree on its answer and the reasoner's belief in it (the features a
    verdict carries)."""
    from reverie.models.reward_model import ChainFeatures

    graph = bundle.graph
    names, R = graph.relation_names, graph.num_relations

    def reward(queries: np.ndarray, relations: np.ndarray, ends: np.ndarray, agreement: np.ndarray) -> np.ndarray:
        confidence = np.full(len(queries), 0.5)
        if bundle.reasoner is not None:
            scores = bundle.reasoner.probabilities(bundle.reasoner.score_tails(queries[:, 0], queries[:, 1]))
            confidence = scores[np.arange(len(queries)), ends]
        features = []
        for row, conf, agree in zip(relations.tolist(), confidence.tolist(), agreement.tolist()):
            steps = [r for r in row if r != graph.no_op]
            features.append(
                ChainFeatures.from_walk(
                    [names[r] for r in steps], [R <= r < 2 * R for r in steps], confidence=conf, agreement=agree
                )
            )
        return model.probability(features)

    return reward


def learn(
    settings: Any,
    dataset: str,
    config: LearnerConfig | None = None,
    from_feedback: bool = True,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """One learner update of the policy of `dataset` under settings.home; returns what it did: the new
    version (None when there was nothing new to learn from), ratings and facts taken, and the update's numbers."""
    from reverie.data.kg import load_dataset
    from reverie.runs import RunLog

    config = config or LearnerConfig()
    folder = settings.paths.policy(dataset)
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"no trained policy for {dataset!r} in {folder}: run `reverie train policy` first")
    meta = read_policy_meta(folder)
    bundle = load_bundle(folder, load_dataset(meta.dataset_arg or dataset))
    home = settings.paths.learning(meta.dataset)
    state = LearningState.load(home / STATE_FILE, meta.dataset)
    policy_name = f"path-policy:{meta.dataset}"

    records: list[FeedbackRecord] = []
    if from_feedback:
        records = FeedbackLog(settings.paths.feedback).records()
    fresh_records = records[state.ratings_read :] if from_feedback else []
    reward_path = settings.paths.reward_model
    reward_report = fit_reward_model(records, reward_path, config.seed) if fresh_records else None

    experience = experience_from_ratings(
        fresh_records, bundle.graph, policy_name, state.client_ratings, config.max_client_weight
    )
    learned = read_learned_facts(folder)
    new_facts = bundle.graph.encode(learned[state.facts_folded :], skip_unknown=True)

    replay = _load_or(home / REPLAY_FILE, PrioritizedReplay.load) if config.replay else None
    anchor = _load_or(home / ANCHOR_FILE, ElasticAnchor.load) if config.ewc > 0 else None
    reward_model = None
    if config.reward_model_weight > 0 and reward_path.is_file():
        from reverie.models.reward_model import RewardModel

        model = RewardModel.load(reward_path)
        # only a model that beat the confidence before it on ratings kept aside shapes the reward
        reward_model = walk_reward(model, bundle) if model.use_for_confidence else None
    graph = bundle.graph
    facts = graph.edges[graph.edges[:, 1] < graph.num_relations]
    learner = PolicyLearner(bundle.net, graph, bundle.hops, facts, config, reward_model, replay, anchor)
    learner.add(experience.queries, experience.rewards, experience.weights)
    learner.add_facts(new_facts)
    done: dict[str, Any] = {
        "dataset": meta.dataset,
        "version": None,
        "ratings": experience.used,
        "facts": len(new_facts),
        "reward_model": reward_report,
    }
    if not learner.pending():  # nothing new: replay alone would only repeat the last update
        state.ratings_read = len(records) if from_feedback else state.ratings_read
        state.reward_model = reward_report or state.reward_model
        state.save(home / STATE_FILE)
        return done

    run_log = RunLog(settings.home, "learner", f"{meta.dataset}-v{meta.version + 1}")  # the Runs view lists versions
    with run_log:
        report = learner.update(run_log.and_then(progress))
    learner.consolidate()
    meta.entities, meta.relations = learner.graph.id2entity, learner.graph.id2relation  # grown with new facts
    meta.version = publish(folder, learner.net, meta)
    if learner.replay is not None and config.replay:
        learner.replay.save(home / REPLAY_FILE)
    if learner.anchor is not None:
        learner.anchor.save(home / ANCHOR_FILE)
    state.version = meta.version
    state.ratings_read = len(records) if from_feedback else state.ratings_read
    state.ratings_used += experience.used
    state.facts_folded = len(learned)
    state.experiences += experience.used + 2 * len(new_facts)
    state.client_ratings = experience.clients
    state.reward_model = reward_report or state.reward_model
    state.last_update = _update_json(report, experience.used, len(new_facts))
    state.versions.append({"version": meta.version, **state.last_update})
    state.versions = state.versions[-100:]
    state.save(home / STATE_FILE)
    done.update(version=meta.version, update=state.last_update)
    return done


def _update_json(report: UpdateReport, ratings: int, facts: int) -> dict[str, Any]:
    return {
        **report.to_json(),
        "ratings": ratings,
        "facts": facts,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _load_or(path: Path, load: Callable[[Path], Any]) -> Any:
    if not path.is_file():
        return None
    try:
        return load(path)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("starting %s afresh: %s", path.name, exc)
        return None


def publish(folder: Path, net: Any, meta: Any) -> int:
    """Keep the served version under versions/v<N>/, then serve `net` as version N + 1; returns N + 1.
    The kept copy is made in a temporary folder and renamed into place."""
    current = read_policy_meta(folder).version
    kept = folder / VERSIONS_FOLDER / f"v{current:04d}"
    if not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=kept.parent, prefix=".staging-"))
        config = json.loads((folder / CONFIG_FILE).read_text())
        shutil.copy2(folder / config["weights"], staging / config["weights"])
        shutil.copy2(folder / CONFIG_FILE, staging / CONFIG_FILE)
        staging.rename(kept)
    meta.version = current + 1
    save_policy(net, folder, meta=meta)
    for old in sorted((folder / VERSIONS_FOLDER).glob("v*"))[:-KEEP_VERSIONS]:
        shutil.rmtree(old, ignore_errors=True)
    return meta.version


def trained_policies(settings: Any) -> list[str]:
    """The datasets with a trained policy under settings.home."""
    return sorted(config.parent.name for config in settings.paths.policies.glob(f"*/{CONFIG_FILE}"))


def learning_status(settings: Any) -> list[dict[str, Any]]:
    """Every trained policy's learning: its version, what it consumed, its last update and earlier versions."""
    out = []
    for config in sorted(settings.paths.policies.glob("*/config.json")):
        try:
            meta = read_policy_meta(config)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("skipping %s: %s", config.parent, exc)
            continue
        state = LearningState.load(settings.paths.learning(meta.dataset) / STATE_FILE, meta.dataset)
        kept = sorted(int(p.name[1:]) for p in (config.parent / VERSIONS_FOLDER).glob("v*") if p.name[1:].isdigit())
        out.append(
            {
                "dataset": meta.dataset,
                "version": meta.version,
                "teacher": meta.teacher,
                "kept_versions": kept,
                "ratings_read": state.ratings_read,
                "ratings_used": state.ratings_used,
                "facts_folded": state.facts_folded,
                "learned_facts": len(read_learned_facts(config.parent)),
                "experiences": state.experiences,
                "last_update": state.last_update,
                "reward_model": state.reward_model,
                "versions": state.versions[-20:],
            }
        )
    return out
