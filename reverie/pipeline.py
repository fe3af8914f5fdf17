"""The way of one question, written once: the CLI and Serve both call Pipeline.

encode -> link -> retrieve -> dream -> arbitrate -> verbalize -> remember, each stage timed.
Ingest is the reverse way: parse (all of it, before any write) -> plan -> encode -> apply.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentResponse

from reverie.actors import Services, init_ray, policy_rollout_task, rollout_placements, rollout_task
from reverie.config import Settings
from reverie.dreams import EmbeddingWalker
from reverie.dreams.walker import residual
from reverie.errors import NoMatchError, ReverieError
from reverie.graph_store.datasets import KGDataset
from reverie.memory import Turn
from reverie.schemas import Entity, EntityView, Feedback, FeedbackRecord, GraphStats, IngestReport, LinkedEntity, Query, Triple, Verdict

ENCODE_BATCH = 2048
INVERSE_MARGIN = 0.1  # cosine margin an inverse relation's text needs over the best forward one
log = logging.getLogger(__name__)


def get(refs):
    """ray.get (or a Serve response's result) that re-raises the user's error (a ReverieError)
    rather than Ray's wrapper."""
    try:
        if isinstance(refs, DeploymentResponse):
            return refs.result()
        return ray.get(refs)
    except RayTaskError as exc:
        raise user_error(exc) from None


def user_error(exc: RayTaskError) -> BaseException:
    """The user's error (a ReverieError) inside Ray's wrapper, or the wrapper when it holds a bug."""
    return exc.cause if isinstance(exc.cause, ReverieError) else exc


class TrainedPolicy:
    """A policy bundle in Ray's object store, with what a question needs to pose it a query."""

    def __init__(self, bundle, stamp: float):
        self.bundle = bundle
        self.stamp = stamp
        self.ref = ray.put(bundle)
        # rollout tasks need no world model, and unpickling one imports PyKEEN (seconds per worker)
        self.walk_ref = ray.put(dataclasses.replace(bundle, world_model=None))
        self.name = f"path-policy:{bundle.meta.get('dataset', bundle.folder.name if bundle.folder else '?')}"
        self.source = str(bundle.meta.get("dataset", ""))

    def query_relation(self, sub, question_vec: np.ndarray) -> int:
        """The relation the question asks: the policy relation (forward or inverse) whose text is
        nearest the question among those the retrieved neighbourhood holds. The linked entities are
        projected out of the question first ("what does a steroid interact with" should match
        "interacts with", not whatever steroids mostly do). The sentence encoder hardly tells
        "X interacts with ?" from "? interacts with X", so the stored direction wins unless the
        inverse's text ("inverse of ...") is clearly nearer."""
        graph = self.bundle.graph
        known = [i for i, name in enumerate(sub.rel_names) if name in graph.relation2id]
        if not known:
            raise NoMatchError("the question's neighbourhood has no relation the trained policy knows")
        R_sub, R = sub.num_relations, graph.num_relations
        sims = sub.rel_vecs @ residual(question_vec, sub.node_vecs[sub.seeds])
        forward = max((float(sims[i]), graph.relation2id[sub.rel_names[i]]) for i in known)
        inverse = max((float(sims[R_sub + i]), graph.relation2id[sub.rel_names[i]] + R) for i in known)
        return inverse[1] if inverse[0] > forward[0] + INVERSE_MARGIN else forward[1]

    def start_ids(self, seeds: list[LinkedEntity], count: int, seed: int) -> np.ndarray:
        """`count` start entities, spread over the linked entities the policy knows, by link score."""
        e2i = self.bundle.graph.entity2id
        known = [e for e in seeds if e.name in e2i]
        weights = np.array([max(e.score, 1e-6) for e in known])
        pick = np.random.default_rng(seed).choice(len(known), size=count, p=weights / weights.sum())
        return np.array([e2i[known[i].name] for i in pick], np.int64)


class TrainedPolicies:
    """The trained policies under REVERIE_HOME/policies, loaded when first needed and again when retrained."""

    def __init__(self, settings: Settings):
        self.root = Path(settings.home) / "policies"
        self.loaded: dict[Path, TrainedPolicy] = {}

    def find(self, entity_names: list[str]) -> TrainedPolicy | None:
        """The policy whose graph holds the most of `entity_names`, if any holds one."""
        best, best_hits = None, 0
        for config in sorted(self.root.glob("*/config.json")):
            policy = self._load(config)
            hits = sum(name in policy.bundle.graph.entity2id for name in entity_names) if policy else 0
            if hits > best_hits:
                best, best_hits = policy, hits
        return best

    def _load(self, config: Path) -> TrainedPolicy | None:
        from reverie.graph_store.datasets import load_dataset
        from reverie.policies.bundle import load_bundle
        from reverie.policies.net import read_policy_config

        stamp = config.stat().st_mtime
        cached = self.loaded.get(config.parent)
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            meta = read_policy_config(config).get("meta", {})
            bundle = load_bundle(config.parent, load_dataset(str(meta.get("dataset_arg") or config.parent.name)))
        except (OSError, ValueError, KeyError, ReverieError) as exc:
            log.warning("skipping the policy in %s: %s", config.parent, exc)
            return None
        self.loaded[config.parent] = TrainedPolicy(bundle, stamp)
        return self.loaded[config.parent]


class Pipeline:
    def __init__(self, settings: Settings, services: Services | None = None):
        self.settings = settings
        if services is None:
            init_ray(settings)
            services = Services.start(settings)
        self.services = services
        self.policies = TrainedPolicies(settings)

    # ---------- asking ----------
    def answer(self, query: Query) -> Verdict:
        s = self.settings
        svc = self.services
        timings: dict[str, float] = {}

        @contextmanager
        def stage(name: str):
            start = time.perf_counter()
            yield
            timings[name] = round((time.perf_counter() - start) * 1000, 2)

        branches = query.branches or s.branches
        hops = query.hops or s.hops
        seed = query.seed if query.seed is not None else int(np.random.SeedSequence().entropy % (2**31))

        with stage("encode"):
            question_vec = get(svc.encoder.encode.remote([query.question]))[0]
        with stage("link"):
            history = get(svc.memory.recall.remote(query.session_id)) if query.session_id else []
            try:
                linked = get(svc.store.link.remote(query.question, question_vec, s.link_top_k, s.link_min_score))
            except NoMatchError:
                if not history:
                    raise
                linked = []
            linked = self._with_memory(linked, history)
            seeds = [e for e in linked if e.how != "vector"] or linked
        with stage("retrieve"):
            sub_ref = svc.store.retrieve.remote([e.name for e in seeds], [e.score for e in seeds], hops, s.max_subgraph_nodes)
            ray.wait([sub_ref], fetch_local=False)
        sizes = [min(s.rollouts_per_task, branches - i) for i in range(0, branches, s.rollouts_per_task)]
        policy = self.policies.find([e.name for e in seeds])
        placements = rollout_placements(len(sizes))  # task i walks with seed + i wherever it runs
        with stage("dream"):
            if policy is not None:  # the trained path policy of the graph the question is about
                relation = policy.query_relation(get(sub_ref), question_vec)
                sources = policy.start_ids(seeds, branches, seed)
                starts = np.split(sources, np.cumsum(sizes)[:-1])
                tasks = [
                    policy_rollout_task.options(scheduling_strategy=where).remote(policy.walk_ref, part, relation, seed + i)
                    for i, (part, where) in enumerate(zip(starts, placements))
                ]
                policy_name = policy.name
            else:
                walker = EmbeddingWalker(s.walker_temperature, s.stop_bias, s.walker_inverse_bias)
                tasks = [
                    rollout_task.options(scheduling_strategy=where).remote(sub_ref, question_vec, n, hops, walker, seed + i)
                    for i, (n, where) in enumerate(zip(sizes, placements))
                ]
                policy_name = walker.name
            parts = [rollouts for rollouts, _ in tasks]
            nodes: dict[str, int] = {}
            for size, node in zip(sizes, get([node for _, node in tasks])):
                nodes[node] = nodes.get(node, 0) + size
        with stage("arbitrate"):
            if policy is not None:
                candidates = get(svc.arbiter.rank_policy.remote(policy.ref, policy.source, 1 + s.alternatives, *parts))
            else:
                candidates = get(svc.arbiter.rank.remote(sub_ref, question_vec, 1 + s.alternatives, *parts))
        if not candidates:
            raise NoMatchError(f"no walk from {', '.join(e.name for e in seeds)} reached an answer within {hops} hops")
        best = candidates[0]
        with stage("verbalize"):
            if query.verbalize:
                sentence, backend = get(svc.llm.verbalize.remote(query.question, best.best_chain, seed))
            else:
                from reverie.llm import template_sentence

                sentence, backend = template_sentence(query.question, best.best_chain), "template"
        with stage("remember"):
            if query.session_id:
                turn = Turn(question=query.question, answer_entity=best.answer, linked=[e.name for e in linked])
                svc.memory.remember.remote(query.session_id, turn)
        verdict = Verdict(
            question=query.question,
            answer=sentence,
            answer_entity=best.answer,
            chain=best.best_chain,
            candidates=candidates,
            alternatives=[c.best_chain for c in candidates[1:]],
            linked=linked,
            backend=backend,
            policy=policy_name,
            rollouts=branches,
            nodes=nodes,
            timings_ms=timings,
            session_id=query.session_id,
        )
        svc.feedback.remember.remote(verdict)  # so a client can rate it by id
        return verdict

    def feedback(self, feedback: Feedback) -> FeedbackRecord:
        return get(self.services.feedback.rate.remote(feedback))

    def entity(self, name: str) -> EntityView:
        return get(self.services.store.entity_view.remote(name))

    def stats(self) -> GraphStats:
        return get(self.services.store.stats.remote())

    @staticmethod
    def _with_memory(linked: list[LinkedEntity], history: list[Turn]) -> list[LinkedEntity]:
        """A follow-up that names nothing exactly ("and what if it is heated?") continues from the last answer's subject."""
        if not history or any(e.how == "exact" for e in linked):
            return linked
        last = history[-1]
        names = {e.name for e in linked}
        recalled = [LinkedEntity(name=n, type="entity", score=1.0, how="memory") for n in last.linked[:1] if n not in names]
        return recalled + linked

    # ---------- ingesting ----------
    def ingest(
        self,
        triples: list[Triple],
        entities: list[Entity] | None = None,
        source: str = "",
        progress: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Add facts. Nothing is written until every vector is ready; re-ingesting adds nothing."""
        start = time.perf_counter()
        store, encoder = self.services.store, self.services.encoder
        plan = get(store.plan.remote(triples, entities or []))
        planned = time.perf_counter()
        texts = plan.entity_texts + plan.relation_texts
        vecs = []
        for i in range(0, len(texts), ENCODE_BATCH):
            vecs.append(get(encoder.encode.remote(texts[i : i + ENCODE_BATCH])))
            if progress:
                progress(min(i + ENCODE_BATCH, len(texts)), len(texts))
        vecs = np.concatenate(vecs) if vecs else np.zeros((0, 384), np.float32)
        n = len(plan.entities)
        encoded = time.perf_counter()
        get(store.apply.remote(plan, vecs[:n], vecs[n:]))
        written = time.perf_counter()
        return IngestReport(
            source=source,
            triples_read=plan.triples_read,
            triples_added=len(plan.triples),
            entities_added=len(plan.entities),
            relations_added=len(plan.relations),
            seconds=round(written - start, 3),
            timings_s={"plan": round(planned - start, 3), "encode": round(encoded - planned, 3), "write": round(written - encoded, 3)},
        )

    def ingest_dataset(self, dataset: KGDataset, progress=None) -> IngestReport:
        return self.ingest(dataset.graph, dataset.entities, source=dataset.name, progress=progress)

