"""Learning from use, measured the way the continual-learning literature does (GEM's backward transfer).

    .venv/bin/python -m bench.learning --dataset kinships umls --sessions 5 --ratings-per-session 200 --seeds 0

Protocol, per dataset and seed:
- The relations are split into `sessions` groups (seeded). A fifth of each group's training facts is held
  out: the facts that session ingests. Everything before the first session sees the rest only.
- Before the first session: a graph reasoner is trained on the facts known then (it is entity-inductive,
  so it reads every later fact without retraining), and the path policy is cloned from its paths and
  trained by the learner's PPO on those facts. That policy is the "frozen" arm and every arm's start.
- Session s: its held-out facts are folded in (walkable at once); simulated users ask `ratings` test
  queries (head, relation, ?) of group s; Reverie answers (the arbiter: the reasoner on the current
  graph times the policy's path evidence); a rating is "good" when the answer is a gold tail, 15% of
  ratings flipped, and 10% of "bad" ratings name the right answer in the note. The ratings refit the
  reward model and become experience; the folded facts too. Each arm then updates.
- Arms at equal ratings: frozen; naive fine-tuning (no replay, no EWC); + prioritised replay; + EWC;
  + both; joint retraining (from the pre-session policy on everything so far, as many updates as all
  sessions so far together: the upper bound).
- After each session, Hits@1 of every group seen so far (its test queries), for Reverie's answers and
  for the policy's paths alone (beam search, MINERVA's measure). Reported: the average over seen groups
  after the last session; backward transfer BWT = mean over groups g < last of (Hits@1 after the last
  session - Hits@1 right after session g); Hits@1 on the session's queries that need its new facts (a
  query whose head or tail a new fact touches), right after that session; the ROC-AUC of the reward
  model fit on the earlier sessions' (noisy) ratings against the clean labels of the next session's
  answers (held out); seconds per session.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from typing import Any

import numpy as np

from bench.common import write_table

ARMS = {
    "frozen": None,
    "naive": {"replay": False, "ewc": 0.0},
    "replay": {"replay": True, "ewc": 0.0},
    "ewc": {"replay": False, "ewc": 20.0},
    "replay+ewc": {"replay": True, "ewc": 20.0},
    "joint": "joint",
}
BEAM = 64
FLIP = 0.15
NAMED = 0.10


def split_sessions(graph, data, sessions: int, seed: int):
    """Relation groups, the held-out facts of each group, and each group's test queries (graph ids)."""
    rng = np.random.default_rng(seed)
    relations = rng.permutation(graph.num_relations)
    groups = [set(g.tolist()) for g in np.array_split(relations, sessions)]
    train = graph.encode(data.train)
    test = graph.encode(data.test)
    held, tests = [], []
    keep = np.ones(len(train), bool)
    for group in groups:
        members = np.flatnonzero(np.isin(train[:, 1], list(group)))
        out = rng.permutation(members)[: len(members) // 5]
        keep[out] = False
        held.append(train[out])
        tests.append(test[np.isin(test[:, 1], list(group))])
    return groups, train[keep], held, tests


def make_graph(data, facts, graph0):
    """The WalkGraph over the same names (ids unchanged) with exactly `facts` as edges."""
    from reverie.agents.path_policy.walkgraph import WalkGraph

    return WalkGraph.from_ids(
        facts[:, 0],
        facts[:, 1],
        facts[:, 2],
        graph0.num_entities,
        graph0.num_relations,
        graph0.entity2id,
        graph0.relation2id,
        max_actions=200,
    )


class Scorer:
    """Reverie's answers and the paths alone on a graph: the reasoner reads the current facts."""

    def __init__(self, reasoner, graph, facts, hops: int, weight: float = 0.3):
        self.reasoner = reasoner.on_graph(graph.id2entity, facts)
        self.graph, self.hops, self.weight = graph, hops, weight

    def scores(self, net, queries):
        from reverie.agents.path_policy.evaluate import beam_scores
        from reverie.ranking import arbiter_scores

        paths = beam_scores(net, self.graph, queries[:, :2], self.hops, BEAM)
        reasoner = self.reasoner.score_tails(queries[:, 0], queries[:, 1]) / self.reasoner.temperature
        return arbiter_scores(paths, None, self.weight, reasoner), paths


def hits1(scores, queries, known) -> float:
    from reverie.ranking import filtered_ranks

    if not len(queries):
        return float("nan")
    ranks = filtered_ranks(scores, queries[:, 2], [known.get((s, r), ()) for s, r, _ in queries.tolist()])
    return float((np.asarray(ranks) <= 1).mean())


def rate(queries, answers, known, rng, graph, net, hops):
    """Simulated users' ratings of Reverie's answers: FeedbackRecord-like rows (query, answer, label,
    named answer) and the reward model's features of each (the answer's chain, confidence, agreement)."""
    import torch

    from reverie.agents.path_policy.learner import sample_walks
    from reverie.models.reward_model import ChainFeatures

    gold = [known.get((s, r), set()) for s, r, _ in queries.tolist()]
    right = np.array([a in g for a, g in zip(answers.tolist(), gold)])
    label = right ^ (rng.random(len(right)) < FLIP)
    named = (~label) & (rng.random(len(right)) < NAMED)
    walks = sample_walks(net, graph, np.repeat(queries, 16, 0), hops, torch.Generator().manual_seed(0))
    ends = walks.ends.reshape(-1, 16)
    names, R = graph.relation_names, graph.num_relations
    features = []
    for i, answer in enumerate(answers.tolist()):
        agreement = float((ends[i] == answer).mean())
        hit = np.flatnonzero(ends[i] == answer)
        steps = [r for r in walks.relations[i * 16 + hit[0]].tolist() if r != graph.no_op] if len(hit) else []
        features.append(
            ChainFeatures.from_walk(
                [names[r] for r in steps], [R <= r < 2 * R for r in steps], confidence=0.5, agreement=agreement
            )
        )
    return label, named, features, right


def experience(queries, answers, label, named, gold_first):
    """Ratings as the learner's experience, as reverie/agents/path_policy/online.py makes it."""
    rows = [(s, r, a, float(good)) for (s, r, _), a, good in zip(queries.tolist(), answers.tolist(), label)]
    rows += [(s, r, g, 1.0) for (s, r, _), g, n in zip(queries.tolist(), gold_first, named) if n]
    table = np.asarray(rows, np.float64).reshape(-1, 4)
    return table[:, :3].astype(np.int64), table[:, 3]


def walk_reward(model, graph):
    """The reward model over walks, as the learner calls it (reverie/agents/path_policy/online.py)."""
    from reverie.models.reward_model import ChainFeatures

    R = graph.num_relations

    def reward(queries, relations, ends, agreement):
        features = []
        for row, agree in zip(relations.tolist(), agreement.tolist()):
            steps = [x for x in row if x != graph.no_op]
            features.append(
                ChainFeatures.from_walk(
                    [graph.relation_names[x] for x in steps], [R <= x < 2 * R for x in steps], agreement=agree
                )
            )
        return model.probability(features)

    return reward


def run(dataset: str, sessions: int, ratings: int, seed: int, updates: int, pretrain_minutes: float) -> dict:
    import torch

    from reverie.agents.path_policy.config import LearnerConfig, NetConfig
    from reverie.agents.path_policy.learner import PolicyLearner, clone, demonstrations
    from reverie.agents.path_policy.net import PathPolicyNet
    from reverie.agents.path_policy.walkgraph import WalkGraph
    from reverie.data.kg import load_dataset
    from reverie.models.graph_reasoner import train_reasoner
    from reverie.models.reasoner_config import ReasonerConfig
    from reverie.models.reward_model import RewardModel, roc_auc

    torch.set_num_threads(2)
    hops = 3
    data = load_dataset(dataset)
    graph0 = WalkGraph.from_dataset(data)
    R = graph0.num_relations
    groups, initial, held, tests = split_sessions(graph0, data, sessions, 0)  # one split; seeds vary the learning
    everything = graph0.known_answers(data.train, data.dev, data.test, inverse=False)
    rng = np.random.default_rng(seed)

    # before the first session: the reasoner and the policy on the facts known then
    started = time.perf_counter()
    known = {tuple(x) for x in initial.tolist()}
    e2i, r2i = graph0.entity2id, graph0.relation2id
    before = [t for t in data.train if (e2i[t.head], r2i[t.relation], e2i[t.tail]) in known]
    reasoner = train_reasoner(
        dataclasses.replace(data, graph=before, train=before),
        ReasonerConfig(minutes=pretrain_minutes, epochs=1000, patience=0, seed=seed),
    )
    reasoner_seconds = time.perf_counter() - started
    graph = make_graph(data, initial, graph0)
    both = np.concatenate([initial, np.stack([initial[:, 2], initial[:, 1] + R, initial[:, 0]], 1)])
    started = time.perf_counter()
    demos = demonstrations(reasoner, graph, both[rng.permutation(len(both))[:2000]], hops, top=3)
    torch.manual_seed(seed)
    net = PathPolicyNet(graph.num_entities, graph.num_relation_ids, NetConfig())
    clone(net, demos, epochs=30, seed=seed)
    base = LearnerConfig(updates=updates, queries_per_update=64, walks_per_query=4, seed=seed)
    pre = PolicyLearner(net, graph, hops, initial, dataclasses.replace(base, updates=60, replay=False), demos=demos)
    pick = rng.permutation(len(both))[: 60 * 64]
    pre.add(both[pick], np.ones(len(pick)))
    pre.update()
    anchor = pre.consolidate(both)
    pretrain_seconds = time.perf_counter() - started
    start_state = {k: v.clone() for k, v in pre.net.state_dict().items()}
    print(f"{dataset} seed {seed}: reasoner {reasoner_seconds:.0f} s, policy {pretrain_seconds:.0f} s", flush=True)

    def start_net():
        fresh = PathPolicyNet(graph.num_entities, graph.num_relation_ids, NetConfig())
        fresh.load_state_dict(start_state)
        return fresh.eval()

    # the same users in every arm: each session asks the same queries, with the same flips and notes
    asked = [t[rng.choice(len(t), size=ratings, replace=len(t) < ratings)] for t in tests]
    results = {}
    for arm, settings in ARMS.items():
        arm_started = time.perf_counter()
        net = start_net()
        learner = None
        if isinstance(settings, dict):
            config = dataclasses.replace(base, **settings)
            learner = PolicyLearner(net, graph, hops, initial, config, anchor=anchor if settings["ewc"] else None)
        facts = initial.copy()
        experience_so_far: list[tuple[np.ndarray, np.ndarray]] = []
        feats: list = []
        labels: list[int] = []
        matrix = np.full((sessions, sessions), np.nan)  # [after session, group]: Reverie's Hits@1
        matrix_paths = np.full((sessions, sessions), np.nan)
        new_fact, new_fact_paths, aucs, session_seconds = [], [], [], []
        model = None
        for s in range(sessions):
            t_session = time.perf_counter()
            facts = np.concatenate([facts, held[s]])
            current = make_graph(data, facts, graph0)
            scorer = Scorer(reasoner, current, facts, hops)
            if learner is not None:
                learner.grow(current, facts)
            queries = asked[s]
            arbiter, _ = scorer.scores(net, queries)
            answers = arbiter.argmax(1)
            label, named, features, right = rate(
                queries, answers, everything, np.random.default_rng(seed * 100 + s), current, net, hops
            )
            if model is not None:  # the model fit on earlier sessions, against this session's clean labels
                aucs.append(roc_auc(model.probability(features), right.astype(int)))
            # a note names the asked test tail: a right answer
            q_exp, r_exp = experience(queries, answers, label, named, queries[:, 2].tolist())
            experience_so_far.append((q_exp, r_exp))
            feats += features
            labels += label.astype(int).tolist()
            reward = None
            if min(labels.count(0), labels.count(1)) >= 8:
                model = RewardModel()
                model.fit(feats, labels, seed=seed)
                reward = walk_reward(model, current)
            if learner is not None:
                learner.reward_model = reward
                learner.add_facts(held[s])
                learner.add(q_exp, r_exp)
                learner.update()
                net = learner.net
            elif settings == "joint":  # from the start, on everything so far, as many updates as all sessions
                joint = PolicyLearner(
                    start_net(),
                    current,
                    hops,
                    facts,
                    dataclasses.replace(base, updates=updates * (s + 1), ewc=0.0),
                    reward_model=reward,
                )
                for q, r in experience_so_far:
                    joint.replay.add(q, r)
                for h in held[: s + 1]:
                    joint.replay.add(
                        np.concatenate([h, np.stack([h[:, 2], h[:, 1] + R, h[:, 0]], 1)]), np.ones(2 * len(h))
                    )
                for _ in range(joint.config.updates):
                    drawn = joint.replay.sample(base.queries_per_update, joint.rng)
                    joint._step(drawn.queries, drawn.rewards, drawn.weights, drawn.index, 0, 1)
                net = joint.net
            session_seconds.append(time.perf_counter() - t_session)
            for g in range(s + 1):
                arb, paths = scorer.scores(net, tests[g])
                matrix[s, g] = hits1(arb, tests[g], everything)
                matrix_paths[s, g] = hits1(paths, tests[g], everything)
            touched = set(held[s][:, 0].tolist()) | set(held[s][:, 2].tolist())
            need = tests[s][[h in touched or t in touched for h, _, t in tests[s].tolist()]]
            if len(need):
                arb, paths = scorer.scores(net, need)
                new_fact.append(hits1(arb, need, everything))
                new_fact_paths.append(hits1(paths, need, everything))
        last = sessions - 1
        results[arm] = {
            "avg_hits1": float(np.nanmean(matrix[last])),
            "bwt": float(np.mean([matrix[last, g] - matrix[g, g] for g in range(last)])) if last else 0.0,
            "new_fact_hits1": float(np.mean(new_fact)) if new_fact else float("nan"),
            "paths_avg_hits1": float(np.nanmean(matrix_paths[last])),
            "paths_bwt": float(np.mean([matrix_paths[last, g] - matrix_paths[g, g] for g in range(last)]))
            if last
            else 0.0,
            "paths_new_fact_hits1": float(np.mean(new_fact_paths)) if new_fact_paths else float("nan"),
            "reward_auc": float(np.nanmean(aucs)) if aucs else float("nan"),
            "session_seconds": float(np.mean(session_seconds)),
            "seconds": time.perf_counter() - arm_started,
        }
        print(f"  {dataset} seed {seed} {arm}: {json.dumps(results[arm])}", flush=True)
    return {"arms": results, "reasoner_seconds": reasoner_seconds, "pretrain_seconds": pretrain_seconds}


def mean_over_seeds(runs: list[dict]) -> dict:
    arms = {}
    for arm in ARMS:
        keys = runs[0]["arms"][arm].keys()
        arms[arm] = {k: float(np.nanmean([r["arms"][arm][k] for r in runs])) for k in keys}
        arms[arm]["avg_hits1_std"] = float(np.std([r["arms"][arm]["avg_hits1"] for r in runs]))
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", nargs="+", default=["kinships", "umls"], help="dataset names or folders")
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--ratings-per-session", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=20, help="learner updates per session")
    parser.add_argument("--pretrain-minutes", type=float, default=2.0, help="the reasoner's training before session 1")
    parser.add_argument("--json", action="store_true", help="print the arms' figures as JSON (no table written)")
    args = parser.parse_args()
    if args.sessions < 2:
        parser.error("--sessions must be at least 2 (backward transfer needs an earlier session)")
    out: dict[str, Any] = {}
    for dataset in args.dataset:
        runs = [
            run(dataset, args.sessions, args.ratings_per_session, s, args.updates, args.pretrain_minutes)
            for s in args.seeds
        ]
        out[dataset] = {
            "arms": mean_over_seeds(runs),
            "reasoner_seconds": float(np.mean([r["reasoner_seconds"] for r in runs])),
            "pretrain_seconds": float(np.mean([r["pretrain_seconds"] for r in runs])),
        }
        if not args.json:
            write_results(out, args)  # after each dataset: a long run keeps what it has measured
    if args.json:
        print(json.dumps(out[args.dataset[0]] if len(args.dataset) == 1 else out))


def write_results(out: dict[str, Any], args: argparse.Namespace) -> None:
    rows = []
    for dataset, result in out.items():
        for arm, m in result["arms"].items():
            rows.append(
                [
                    dataset,
                    arm,
                    f"{m['avg_hits1']:.3f}" + (f" ± {m['avg_hits1_std']:.3f}" if len(args.seeds) > 1 else ""),
                    f"{m['bwt']:+.3f}",
                    f"{m['new_fact_hits1']:.3f}",
                    f"{m['paths_avg_hits1']:.3f}",
                    f"{m['paths_bwt']:+.3f}",
                    f"{m['paths_new_fact_hits1']:.3f}",
                    "n/a" if math.isnan(m["reward_auc"]) else f"{m['reward_auc']:.3f}",
                    f"{m['session_seconds']:.0f}",
                ]
            )
    command = "cd /work/main && .venv/bin/python -m bench.learning " + " ".join(
        [
            "--dataset",
            *out,
            "--sessions",
            str(args.sessions),
            "--ratings-per-session",
            str(args.ratings_per_session),
            "--seeds",
            *map(str, args.seeds),
            "--updates",
            str(args.updates),
            "--pretrain-minutes",
            str(args.pretrain_minutes),
        ]
    )
    write_table(
        "learning",
        "Learning from use: sessions of new facts and ratings (GEM's protocol)",
        command,
        [
            "dataset",
            "arm",
            "Reverie avg Hits@1 (seen groups, after last)",
            "Reverie BWT",
            "Reverie new-fact Hits@1",
            "paths avg Hits@1",
            "paths BWT",
            "paths new-fact Hits@1",
            "reward model ROC-AUC",
            "s / session",
        ],
        rows,
        notes=(__doc__ or "").split("Protocol, per dataset and seed:")[1].strip()
        + "".join(
            f"\n\nBefore session 1 on {d}: the reasoner trained {r['reasoner_seconds']:.0f} s; the policy cloned from "
            f"its paths and updated 60 times, {r['pretrain_seconds']:.0f} s."
            for d, r in out.items()
        )
        + f"\n\nSeeds: {args.seeds}. Goal: replay+ewc within 0.03 of joint on avg Hits@1; BWT >= -0.03; new-fact Hits@1 >= 0.8; "
        "each session <= 5 minutes on 2 cores. Reverie's answers rank by the reasoner (read on the current graph) "
        "times the policy's path evidence (weight 0.3); 'paths' by the beam's best path alone.",
    )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
