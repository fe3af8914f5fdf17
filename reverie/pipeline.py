"""The way of one question, written once: the CLI and Serve both call Pipeline.

encode -> link -> retrieve -> dream -> arbitrate -> verbalize -> remember, each stage timed.
Ingest is the reverse way: parse (all of it, before any write) -> plan -> encode -> apply.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import ray
from ray.exceptions import RayTaskError

from reverie.actors import Services, init_ray, rollout_task
from reverie.config import Settings
from reverie.dreams import EmbeddingWalker
from reverie.errors import NoMatchError, ReverieError
from reverie.graph_store.datasets import KGDataset
from reverie.memory import Turn
from reverie.schemas import Entity, IngestReport, LinkedEntity, Query, Triple, Verdict

ENCODE_BATCH = 2048


def get(refs):
    """ray.get that re-raises the user's error (a ReverieError) rather than Ray's wrapper."""
    try:
        return ray.get(refs)
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, ReverieError):
            raise cause from None
        raise


class Pipeline:
    def __init__(self, settings: Settings, services: Services | None = None):
        self.settings = settings
        if services is None:
            init_ray(settings)
            services = Services.start(settings)
        self.services = services

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
        with stage("dream"):
            walker = EmbeddingWalker(s.walker_temperature, s.stop_bias, s.walker_inverse_bias)
            sizes = [min(s.rollouts_per_task, branches - i) for i in range(0, branches, s.rollouts_per_task)]
            parts = [rollout_task.remote(sub_ref, question_vec, n, hops, walker, seed + i) for i, n in enumerate(sizes)]
            ray.wait(parts, num_returns=len(parts), fetch_local=False)
        with stage("arbitrate"):
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
        return Verdict(
            question=query.question,
            answer=sentence,
            answer_entity=best.answer,
            chain=best.best_chain,
            candidates=candidates,
            alternatives=[c.best_chain for c in candidates[1:]],
            linked=linked,
            backend=backend,
            policy=walker.name,
            rollouts=branches,
            timings_ms=timings,
            session_id=query.session_id,
        )

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

