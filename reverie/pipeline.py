"""The way of one question, written once: the CLI, the Python API and Serve all call Pipeline.

encode -> link -> retrieve -> dream -> arbitrate -> verbalize -> remember, each stage timed. The
rules of each stage are plain functions in answer.py; this module carries them over Ray.
Ingest is the reverse way: parse (all of it, before any write) -> plan -> encode -> apply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from reverie import answer
from reverie.actors import Services, here, init_ray, rollout_placements, rollout_task
from reverie.batching import JoinedCalls
from reverie.calibration import AnswerCalibrator, needs_refit
from reverie.config import Settings
from reverie.data.kg import KGDataset
from reverie.dreams import Rollouts, Walker, arbitrate, dream, make_walker
from reverie.dreams.embedding_walker import EmbeddingWalker
from reverie.encoders.text import text_dim
from reverie.errors import IngestError, NoMatchError, ReverieError
from reverie.graph_store.images import DEPICTS, IMAGE_TYPE, ImageLine, ImageRef
from reverie.graph_store.triples import TripleTable
from reverie.home import LEARNED_FACTS_FILE
from reverie.images import decode_base64
from reverie.memory import Turn
from reverie.schemas import (
    Entity,
    EntityView,
    Feedback,
    FeedbackRecord,
    GraphStats,
    IngestReport,
    LinkedEntity,
    Query,
    SearchResult,
    Triple,
    Verdict,
)

ENCODE_BATCH = 2048
IMAGE_BATCH = 64
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


@dataclass
class HostedWalker:
    """A walker and what Ray ships of it: to each rollout task, and to the arbiter. A trained
    policy is put in the object store once (twice: the tasks' copy has no world model); the
    embedding walker is small and travels by value."""

    walker: Walker
    to_rollouts: Any
    to_arbiter: Any

    @classmethod
    def host(cls, walker: Walker, by_reference: bool) -> "HostedWalker":
        if not by_reference:
            return cls(walker, walker.for_rollouts(), walker)
        return cls(walker, ray.put(walker.for_rollouts()), ray.put(walker))


class Walkers:
    """The walker of each question (settings.walker): with "auto", the trained policy whose graph
    holds the most linked entities, else the embedding walker. Policies under
    REVERIE_HOME/policies load when first needed and again when retrained."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.paths.policies
        self.loaded: dict[Path, tuple[tuple[float, float | None], HostedWalker]] = {}
        self._embedding: tuple[float | None, HostedWalker] | None = None

    @property
    def embedding(self) -> HostedWalker:
        """The embedding walker, with the calibrator last fit on this graph (reloaded when refit,
        perhaps by another replica's ingest)."""
        path = self.settings.paths.calibration
        stamp = path.stat().st_mtime if path.exists() else None
        if self._embedding is None or self._embedding[0] != stamp:
            self._embedding = (stamp, HostedWalker.host(make_walker("embedding", self.settings), by_reference=False))
        return self._embedding[1]

    def for_question(self, entity_names: list[str]) -> HostedWalker:
        if self.settings.walker == "embedding":
            return self.embedding
        best, best_hits = None, 0
        for config in sorted(self.root.glob("*/config.json")):
            policy = self._load(config)
            hits = policy.walker.knows(entity_names) if policy else 0
            if hits > best_hits:
                best, best_hits = policy, hits
        if best is None and self.settings.walker == "path-policy":
            raise NoMatchError(
                f"no trained policy under {self.root} knows {', '.join(entity_names)}: run `reverie train policy`"
            )
        return best or self.embedding

    def fold(self, triples: list[Triple]) -> dict[str, int]:
        """New facts join the graph of every trained policy that knows one of their entities: walkable
        by its next answer, learnt from by its next `reverie learn`. Returns the facts folded per policy."""
        from reverie.agents.path_policy.bundle import fold_facts
        from reverie.agents.path_policy.net import read_policy_meta

        out = {}
        for config in sorted(self.root.glob("*/config.json")):
            try:
                known = set(read_policy_meta(config).entities)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("not folding facts into %s: %s", config.parent, exc)
                continue
            touching = [t for t in triples if t.head in known or t.tail in known]
            if touching and (count := fold_facts(config.parent, touching)):
                out[config.parent.name] = count
        return out

    def _load(self, config: Path) -> HostedWalker | None:
        from reverie.agents.path_policy.bundle import load_bundle
        from reverie.agents.path_policy.net import read_policy_meta
        from reverie.data.kg import load_dataset

        learned = config.parent / LEARNED_FACTS_FILE  # facts folded in since: walkable at once
        stamp = (config.stat().st_mtime, learned.stat().st_mtime if learned.exists() else None)
        cached = self.loaded.get(config.parent)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            meta = read_policy_meta(config)
            bundle = load_bundle(config.parent, load_dataset(meta.dataset_arg or config.parent.name))
        except (OSError, ValueError, KeyError, TypeError, ReverieError) as exc:
            log.warning("skipping the policy in %s: %s", config.parent, exc)
            return None
        hosted = HostedWalker.host(make_walker("path-policy", self.settings, bundle), by_reference=True)
        self.loaded[config.parent] = (stamp, hosted)
        return hosted


class Pipeline:
    def __init__(self, settings: Settings, services: Services | None = None):
        self.settings = settings
        if services is None:
            init_ray(settings)
            services = Services.start(settings)
        self.services = services
        self.walkers = Walkers(settings)
        self._reward: tuple[float | None, answer.Refine | None] | None = None
        self._router: Any = None  # the hub, loaded (or trained) on the first message
        self._memory: tuple[Any, Any] | None = None
        self._vectors: Any = None
        # Questions answered at the same time (Serve's threads) share one encoder call.
        self.encode_questions = JoinedCalls(lambda texts: get(services.encoder.encode.remote(texts)), max_items=64)
        # and concurrent answer sentences one LLM batch (on a CPU, 8 greedy replies took less time than one alone).
        self.say_answers = JoinedCalls(lambda answers: get(services.llm.verbalize_many.remote(answers)), max_items=8)

    # ---------- asking ----------
    def answer(self, query: Query, history: list[Turn] | None = None, memory: str | None = None) -> Verdict:
        """One question's Verdict. `history`: the conversation so far, instead of the session's
        remembered turns, and `memory`: a `conversation_memory` setting for this question (what the
        conversation benchmark gives each follow-up)."""
        s = self.settings
        memory = memory or s.conversation_memory
        svc = self.services
        timings: dict[str, float] = {}

        @contextmanager
        def stage(name: str):
            start = time.perf_counter()
            yield
            timings[name] = round((time.perf_counter() - start) * 1000, 2)

        budget = answer.Budget.of(query, s)
        if history is None:
            history = get(svc.memory.recall.remote(query.session_id)) if query.session_id else []
        with stage("encode"):
            image_ref = svc.images.encode_images.remote([decode_base64(query.image)]) if query.image else None
            # the last turn's words are the hub's memory message: one encoder call for both
            vecs = self.encode_questions([query.question, *(t.question for t in history[-1:])])
            question_vec = vecs[0]
            image_vec = get(image_ref)[0] if image_ref is not None else None
        with stage("route"):
            route = self.route(question_vec, image_vec is not None, vecs[1] if history else None)
        with stage("link"):
            image = None
            if image_vec is not None:
                scale_ref = svc.images.image_link_scale.remote()
                image_links, token = get(
                    svc.store.link_image.remote(
                        image_vec, max(1 + s.alternatives, s.image_candidates), s.image_link_min_score
                    )
                )
                image = answer.image_link(
                    image_links, token, get(scale_ref), s.image_candidates, s.image_candidate_min_probability
                )
            try:
                linked = get(svc.store.link.remote(query.question, question_vec, s.link_top_k, s.link_min_score))
            except NoMatchError as exc:
                no_match, linked = exc, []
            # small talk names nothing the graph holds; a message that names an entity is asked of the graph
            if route == "small-talk" and image is None and not any(e.how == "exact" for e in linked):
                return self.small_talk(query, timings)
            if not linked and not answer.may_link_nothing(history, image):
                raise no_match
            posed = query.question
        with stage("resolve"):
            if history and image is None and memory == "learned":
                posed, question_vec, linked = self.resolve(query.question, question_vec, linked, history)
                route = "follow-up" if posed != query.question else route
            elif memory == "rule":
                linked = answer.linked_entities(linked, answer.image_subjects(image), history)
            elif image is not None:
                linked = answer.linked_entities(linked, answer.image_subjects(image), [])
            anchors = answer.anchors(linked)
            if not anchors:
                raise NoMatchError("no entity in the graph matches the question")
        with stage("retrieve"):
            sub_ref = svc.store.retrieve.remote(
                [e.name for e in anchors], [e.score for e in anchors], budget.hops, s.max_subgraph_nodes
            )
            sub = get(sub_ref)
        # Batch i walks with seed + i, in this process or as a task wherever it runs: the same rollouts either way.
        sizes = budget.batches(s.rollouts_per_task)
        hosted = self.walkers.for_question([e.name for e in anchors])
        walker = hosted.walker
        local = budget.rollouts <= s.local_rollouts_max
        with stage("dream"):
            walk_query = walker.pose(sub, question_vec, anchors, budget.hops, posed)
            if local:
                graph = sub if walker.walks_retrieved else None
                parts = [dream(walker, graph, walk_query, n, budget.seed + i) for i, n in enumerate(sizes)]
                nodes = {here(): budget.rollouts}
            else:
                graph = sub_ref if walker.walks_retrieved else None
                tasks = [
                    rollout_task.options(scheduling_strategy=where).remote(
                        hosted.to_rollouts, graph, walk_query, n, budget.seed + i
                    )
                    for i, (n, where) in enumerate(zip(sizes, rollout_placements(len(sizes)), strict=True))
                ]
                parts = [rollouts for rollouts, _ in tasks]
                nodes = {}
                for size, node in zip(sizes, get([node for _, node in tasks]), strict=True):
                    nodes[node] = nodes.get(node, 0) + size
        with stage("arbitrate"):
            tree_walks = s.tree_walks if query.tree else 0
            if local:
                candidates, tree = arbitrate(
                    walker, graph, walk_query, Rollouts.concat(parts), 1 + s.alternatives, tree_walks
                )
            else:
                candidates, tree = get(
                    svc.arbiter.rank.remote(
                        hosted.to_arbiter, graph, walk_query, 1 + s.alternatives, tree_walks, *parts
                    )
                )
        if not candidates:
            raise answer.no_answer(anchors, walk_query.hops)
        best = candidates[0]
        refine = self.refinement()
        sure = answer.verdict_confidence(candidates, image, s.confidence_threshold, refine) >= s.confidence_threshold
        with stage("verbalize"):
            from reverie.llm import no_fact_sentence, template_sentence

            if not sure:  # no LLM: it would put the nearest chain in words as if it answered
                sentence, backend = no_fact_sentence([c.best_chain for c in candidates]), "template"
            elif query.verbalize:
                [(sentence, backend)] = self.say_answers([(posed, best.best_chain, budget.seed)])
            else:
                sentence, backend = template_sentence(posed, best.best_chain), "template"
        verdict = answer.verdict(
            query, budget, candidates, linked, image, sentence, backend, walker.name, nodes, timings, tree, s, refine
        )
        verdict.policy_version, verdict.asked_relation = walker.version, walker.asked(walk_query)
        verdict.route = "graph" if route == "follow-up" and not history else route
        verdict.resolved_question = posed if posed != query.question else None
        with stage("remember"):
            if query.session_id:
                svc.memory.remember.remote(query.session_id, answer.remembered_turn(query, verdict))
        verdict.timings_ms.update(timings)
        # so a client can rate it by id; the tree is for the eye, not the feedback dataset
        svc.feedback.remember.remote(verdict.model_copy(update={"tree": None}) if tree else verdict)
        return verdict

    # ---------- conversation ----------
    def load_conversation_models(self) -> None:
        """Load the router and the conversational memory now (start-up), not on the first message."""
        self.router()
        self.conversation_memory()

    def router(self):
        """The hub (or the MLP, `router: mlp`): the home's, else the one Reverie ships."""
        if self._router is None:
            from reverie.models.hub import router_for_home

            name = self.settings.router
            self._router = router_for_home(self.settings.paths.router(name), name, self.embed_texts)
        return self._router

    def route(self, question_vec: np.ndarray, has_image: bool, memory_vec: np.ndarray | None) -> str:
        """Where the router sends the message: graph, follow-up, image or small-talk."""
        memory = np.zeros_like(question_vec) if memory_vec is None else memory_vec
        [decision] = self.router().route(
            np.asarray(question_vec, np.float32)[None], np.array([has_image]), np.asarray(memory, np.float32)[None]
        )
        return decision.route

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return np.asarray(get(self.services.encoder.encode.remote(list(texts))), np.float32)

    def conversation_memory(self):
        """The memory `reverie train memory` trained into the home, else the one Reverie ships;
        reloaded when retrained."""
        from reverie.models.conversation_memory import SHIPPED, load_memory

        folder = self.settings.paths.conversation_memory
        folder = folder if (folder / "memory.json").exists() else SHIPPED
        stamp = (folder, (folder / "memory.safetensors").stat().st_mtime_ns if folder.exists() else None)
        if self._memory is None or self._memory[0] != stamp:
            self._memory = (stamp, load_memory(folder))
        return self._memory[1]

    def resolve(
        self, question: str, question_vec: np.ndarray, linked: list[LinkedEntity], history: list[Turn]
    ) -> tuple[str, np.ndarray, list[LinkedEntity]]:
        """A follow-up resolved by the conversational memory: the self-contained question it poses,
        that question's vector, and the entities linked with the resolved subject first."""
        from reverie.models.conversation_memory import (
            HISTORY_TURNS,
            VectorCache,
            entity_vectors,
            history_matrix,
            memory_candidates,
        )

        s = self.settings
        if self._vectors is None or len(self._vectors.vectors) > 100_000:
            self._vectors = VectorCache(self.embed_texts)
        turns = answer.remembered(history)[-HISTORY_TURNS:]
        candidates = memory_candidates(
            [(e.name, e.how, e.score) for e in linked if e.how in ("exact", "vector")],
            turns,
            lambda names: get(self.services.store.facts_about.remote(names)),
        )
        if not candidates:
            return question, question_vec, linked
        resolution = self.conversation_memory().resolve(
            question,
            question_vec,
            history_matrix(self._vectors, turns),
            candidates,
            entity_vectors(self._vectors, [c.name for c in candidates]),
        )
        chosen = next(c for c in candidates if c.name == resolution.subject)
        in_text = bool(chosen.roles & {"exact", "vector"})
        posed = answer.posed_question(question, resolution.subject, resolution.carries_relation, in_text, history[-1])
        if posed != question:
            question_vec = self.encode_questions([posed])[0]
            try:
                linked = get(self.services.store.link.remote(posed, question_vec, s.link_top_k, s.link_min_score))
            except NoMatchError:
                pass
        return posed, question_vec, answer.with_subject(linked, resolution.subject)

    def small_talk(self, query: Query, timings: dict[str, float]) -> Verdict:
        """A message the hub took for small talk: the LLM's plain chat reply (the template's when
        `verbalize` is off, or when no LLM can answer), no graph."""
        start = time.perf_counter()
        reply, backend = answer.SMALL_TALK_TEMPLATE, "template"
        if query.verbalize:
            try:
                said = "".join(
                    p
                    for p in self.chat(query.question, answer.SMALL_TALK_SYSTEM, {"seed": query.seed})
                    if isinstance(p, str)
                )
            except Exception as exc:  # noqa: BLE001 - no LLM: small talk still gets its sentence
                log.warning("small talk falls back to the template: %s", exc)
                said = ""
            if said.strip():
                reply, backend = said.strip(), self.settings.llm_backends[0]
        timings["chat"] = round((time.perf_counter() - start) * 1000, 2)
        return answer.small_talk_verdict(query, reply, backend, timings)

    def _stream(self, method: str, *args) -> Iterator:
        """A streaming method of the LLM: an actor's (the CLI, the Python API) or a Serve deployment's."""
        llm = self.services.llm
        if isinstance(llm, DeploymentHandle):
            yield from getattr(llm.options(stream=True), method).remote(*args)
        else:
            for ref in getattr(llm, method).options(num_returns="streaming").remote(*args):
                yield get(ref)

    def chat(self, message: str, system: str | None, options: dict) -> Iterator:
        """The LLM's reply to a plain message, streamed: text pieces, then a Finish."""
        yield from self._stream("generate", message, system, {k: v for k, v in options.items() if v is not None})

    def stream_answer(self, question: str, chain, seed: int | None) -> Iterator[dict[str, str]]:
        """The answer sentence as the LLM writes it ({"token"}), then the checked one ({"answer", "backend"})."""
        yield from self._stream("stream_answer", question, chain, seed)

    def refinement(self) -> answer.Refine | None:
        """The reward model's refinement of confidence, once ratings fit one that beats the confidence
        before it (`reverie learn --from-feedback`); reloaded when refit."""
        from reverie.models.reward_model import RewardModel

        path = self.settings.paths.reward_model
        stamp = path.stat().st_mtime if path.exists() else None
        if self._reward is None or self._reward[0] != stamp:
            refine = None
            if stamp is not None:
                try:
                    model = RewardModel.load(path)
                    refine = answer.reward_refinement(model) if model.use_for_confidence else None
                except (OSError, ValueError) as exc:
                    log.warning("confidence stays unrefined: %s", exc)
            self._reward = (stamp, refine)
        return self._reward[1]

    def feedback(self, feedback: Feedback, client: str = "local") -> FeedbackRecord:
        return get(self.services.feedback.rate.remote(feedback, client))

    def entity(self, name: str) -> EntityView:
        return get(self.services.store.entity_view.remote(name))

    def stats(self) -> GraphStats:
        return get(self.services.store.stats.remote())

    def search(self, text: str, limit: int) -> SearchResult:
        """Entities by name, then by the text's vector (the web page's graph search)."""
        vector = self.encode_questions([text])[0]
        return SearchResult(query=text, hits=get(self.services.store.search.remote(text, vector, limit)))

    def embed(self, texts: list[str]) -> np.ndarray:
        """MiniLM vectors of texts (the embeddings endpoints), joined with concurrent questions' when few."""
        return np.asarray(self.encode_questions(texts), np.float32).reshape(len(texts), -1)

    # ---------- ingesting ----------
    def ingest(
        self,
        triples: list[Triple],
        entities: list[Entity] | None = None,
        source: str = "",
        progress: Callable[[int, int], None] | None = None,
        image_vecs: dict[str, np.ndarray] | None = None,
        codebook: np.ndarray | None = None,
    ) -> IngestReport:
        """Add facts. Nothing is written until every vector is ready; re-ingesting adds nothing.
        Image entities bring their vectors (image_vecs, by name) and the tower's codebook."""
        start = time.perf_counter()
        store, encoder = self.services.store, self.services.encoder
        plan = get(store.plan.remote(TripleTable.of(triples), entities or []))  # as columns: cheap to send
        planned = time.perf_counter()
        image_vecs = image_vecs or {}
        texts = [t for e, t in zip(plan.entities, plan.entity_texts) if e.name not in image_vecs] + plan.relation_texts
        vecs = []
        for i in range(0, len(texts), ENCODE_BATCH):
            vecs.append(get(encoder.encode.remote(texts[i : i + ENCODE_BATCH])))
            if progress:
                progress(min(i + ENCODE_BATCH, len(texts)), len(texts))
        dim = text_dim()
        vecs = iter(np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32))
        entity_vecs = (
            np.stack([image_vecs[e.name] if e.name in image_vecs else next(vecs) for e in plan.entities])
            if plan.entities
            else np.zeros((0, dim), np.float32)
        )
        relation_vecs = np.array(list(vecs), np.float32).reshape(-1, dim)
        encoded = time.perf_counter()
        parts = get(store.apply.remote(plan, entity_vecs, relation_vecs, codebook)) or {}
        written = time.perf_counter()
        if plan.triples:
            try:
                self.calibrate()
            except (
                ReverieError,
                ValueError,
                np.linalg.LinAlgError,
            ) as exc:  # the facts are in; the old confidence stays
                log.warning("the walker's confidence was not refit: %s", exc)
        calibrated = time.perf_counter()
        folded = self.walkers.fold(plan.triples) if plan.triples else {}
        return IngestReport(
            source=source,
            triples_read=plan.triples_read,
            triples_added=len(plan.triples),
            entities_added=len(plan.entities),
            relations_added=len(plan.relations),
            seconds=round(written - start, 3),
            timings_s={
                "plan": round(planned - start, 3),
                "encode": round(encoded - planned, 3),
                "write": round(written - encoded, 3),
                **{f"write_{part}": round(seconds, 3) for part, seconds in parts.items()},
                "calibrate": round(calibrated - written, 3),
            },
            folded=folded,
        )

    def calibrate(self, seed: int = 0, force: bool = False) -> AnswerCalibrator | None:
        """Fit the embedding walker's confidence on questions made from the graph (reverie/calibration.py)
        and save it under REVERIE_HOME, where every answering process finds it. Unless forced, only
        when the graph has grown by REFIT_GROWTH since the last fit: a stream of small ingests refits
        now and then, not after each."""
        s, svc = self.settings, self.services
        if not s.calibration_questions:
            return None
        facts = get(svc.store.stats.remote()).triples
        if not force and not needs_refit(s.paths.calibration, facts):
            return None
        questions = get(svc.store.calibration_questions.remote(s.hops, s.calibration_questions, seed))
        if not questions:
            return None
        vecs = get(svc.encoder.encode.remote([q.text for q in questions]))

        def subgraphs():  # a few at a time: on a large graph each is tens of megabytes
            for i in range(0, len(questions), 16):
                yield from get(
                    [
                        svc.store.retrieve.remote([q.subject], [1.0], s.hops, s.max_subgraph_nodes)
                        for q in questions[i : i + 16]
                    ]
                )

        walker = EmbeddingWalker(s.walker_temperature, s.stop_bias, s.walker_inverse_bias)
        calibrator = walker.calibrate(questions, vecs, subgraphs(), s.hops, s.rollouts, seed)
        calibrator = replace(calibrator, facts=facts)
        calibrator.save(s.paths.calibration)
        return calibrator

    def ingest_images(
        self, lines: list[ImageLine], source: str = "", progress: Callable[[int, int], None] | None = None
    ) -> IngestReport:
        """Images with captions or entities, and triplets whose sides may be images (graph_store/images.py).
        Every image is encoded and every link found before anything is written."""
        s, svc = self.settings, self.services
        images = list({ref.name: ref for line in lines for ref in line.images}.values())
        vecs = []
        for i in range(0, len(images), IMAGE_BATCH):
            vecs.append(get(svc.images.encode_images.remote([ref.data for ref in images[i : i + IMAGE_BATCH]])))
            if progress:
                progress(min(i + IMAGE_BATCH, len(images)), len(images))
        image_vecs = dict(zip((ref.name for ref in images), np.concatenate(vecs)))
        codebook = get(svc.images.image_codebook.remote())
        captions = [line.caption for line in lines if line.caption and not line.entity]
        caption_vecs = iter(get(svc.encoder.encode.remote(captions)) if captions else [])
        entities: dict[str, Entity] = {}
        triples: list[Triple] = []

        def node(ref: ImageRef | str, line: ImageLine, caption: str = "") -> str:
            if isinstance(ref, str):
                return ref
            if ref.name not in entities:
                entities[ref.name] = Entity(name=ref.name, type=IMAGE_TYPE, description=caption, image=str(ref.path))
                if not line.image:  # a triplet's image: what it depicts is the nearest entity
                    try:
                        links, _ = get(svc.store.link_image.remote(image_vecs[ref.name], 1, s.image_link_min_score))
                    except NoMatchError as exc:
                        raise IngestError(f"{line.where}: {ref.path.name}: {exc.message}") from None
                    triples.append(Triple(head=ref.name, relation=DEPICTS, tail=links[0].name, source=line.where))
            return ref.name

        for line in lines:
            if line.image is not None:
                depicted = line.entity
                if depicted is None:
                    caption_vec = next(caption_vecs)
                    try:
                        linked = get(svc.store.link.remote(line.caption, caption_vec, 1, s.link_min_score))
                    except NoMatchError:
                        raise IngestError(
                            f'{line.where}: the caption {line.caption!r} names no entity of the graph; give "entity" instead'
                        ) from None
                    depicted = linked[0].name
                triples.append(
                    Triple(
                        head=node(line.image, line, line.caption or f"an image of {depicted}"),
                        relation=DEPICTS,
                        tail=depicted,
                        source=line.where,
                    )
                )
            else:
                triples.append(
                    Triple(
                        head=node(line.what, line),
                        relation=line.action,
                        tail=node(line.result, line),
                        source=line.where,
                    )
                )
        return self.ingest(triples, list(entities.values()), source=source, image_vecs=image_vecs, codebook=codebook)

    def ingest_dataset(self, dataset: KGDataset, progress=None) -> IngestReport:
        return self.ingest(dataset.graph, dataset.entities, source=dataset.name, progress=progress)
