"""The rules of one question, as plain functions: no Ray. `Pipeline.answer` (pipeline.py) carries
them over Ray's actors and tasks; a unit test of them needs no cluster.

The stages: encode -> link -> retrieve -> dream -> arbitrate -> verbalize -> remember. What is
decided here: each question's rollouts, hops and random seed; which entities anchor the rollouts
(the image as the subject, the question's exact matches, a follow-up's remembered subject); how
the rollouts are cut into batches; and the Verdict itself, with its `sure` flag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from reverie.config import Settings
from reverie.errors import NoMatchError
from reverie.memory import Turn
from reverie.schemas import Candidate, ImageCandidate, ImageLink, LinkedEntity, Query, RolloutTree, Verdict


@dataclass(frozen=True)
class Budget:
    """How one question is dreamt: the query's own values, else the settings'."""

    rollouts: int
    hops: int
    seed: int
    """The random seed of the first batch of rollouts; batch i walks with seed + i."""

    @classmethod
    def of(cls, query: Query, settings: Settings) -> "Budget":
        # A SeedSequence made without entropy draws an int from the OS; numpy types `entropy` wider.
        seed = query.seed if query.seed is not None else int(cast(int, np.random.SeedSequence().entropy) % (2**31))
        return cls(rollouts=query.rollouts or settings.rollouts, hops=query.hops or settings.hops, seed=seed)

    def batches(self, per_task: int) -> list[int]:
        """Rollouts per batch (one Ray task each when they leave the answering process)."""
        return [min(per_task, self.rollouts - i) for i in range(0, self.rollouts, per_task)]


def image_link(
    links: list[LinkedEntity], token: int | None, link_scale: float, candidates: int, min_probability: float
) -> ImageLink:
    """What the question's image was linked to: its nearest entities, each with the probability
    softmax(link_scale * cosine) over them. The first `candidates` of them whose probability reaches
    `min_probability` (the nearest always) are the subjects the rollouts start from."""
    scores = np.array([e.score for e in links], np.float64)
    probability = np.exp(link_scale * (scores - scores.max()))
    probability /= probability.sum()
    kept = [i for i in range(min(candidates, len(links))) if i == 0 or probability[i] >= min_probability]
    considered = probability[kept] / probability[kept].sum()
    return ImageLink(
        entity=links[0].name,
        type=links[0].type,
        score=links[0].score,
        token=token,
        runners_up=links[1:],
        probability=round(float(probability[0]), 4),
        candidates=[
            ImageCandidate(name=links[i].name, type=links[i].type, score=links[i].score, probability=round(float(p), 4))
            for i, p in zip(kept, considered, strict=True)
        ],
    )


def image_subjects(image: ImageLink | None) -> list[LinkedEntity]:
    """The image's candidates as linked entities, weighted by their probability."""
    if image is None:
        return []
    return [LinkedEntity(name=c.name, type=c.type, score=c.probability, how="image") for c in image.candidates]


def may_link_nothing(history: list[Turn], image: ImageLink | None) -> bool:
    """A question whose words name no entity still goes on when the image or the conversation
    gives it a subject."""
    return bool(history) or image is not None


def linked_entities(
    linked: list[LinkedEntity], image_subjects: list[LinkedEntity], history: list[Turn]
) -> list[LinkedEntity]:
    """Every entity the question links to, its subjects first: the image's candidates ("What
    happens if I drop this?"), else a follow-up's remembered subject when its words name nothing exactly."""
    if image_subjects:
        names = {e.name for e in image_subjects}
        linked = [*image_subjects, *(e for e in linked if e.name not in names)]
    return with_memory(linked, history)


def with_memory(linked: list[LinkedEntity], history: list[Turn]) -> list[LinkedEntity]:
    """A follow-up that names nothing exactly ("and what if it is heated?") continues from the last answer's subject."""
    if not history or any(e.how in ("exact", "image") for e in linked):
        return linked
    names = {e.name for e in linked}
    recalled = [
        LinkedEntity(name=n, type="entity", score=1.0, how="memory") for n in history[-1].linked[:1] if n not in names
    ]
    return recalled + linked


def anchors(linked: list[LinkedEntity]) -> list[LinkedEntity]:
    """The entities the rollouts start from: those linked by name, image or memory; only when none
    is, the nearest by vector."""
    return [e for e in linked if e.how != "vector"] or linked


def no_answer(anchored: list[LinkedEntity], hops: int) -> NoMatchError:
    return NoMatchError(f"no walk from {', '.join(e.name for e in anchored)} reached an answer within {hops} hops")


def link_certainty(best: Candidate, candidates: list[Candidate], image: ImageLink | None, threshold: float) -> float:
    """How sure the image's link is for this answer: the probability of the image candidates its
    rollouts started from, among the candidates from which some answer does what was asked (sure on
    its own). A look-alike that answers nothing the question asks costs no confidence; two look-alikes
    that answer differently split it. 1 for a question without an image."""
    if image is None or not image.candidates:
        return 1.0
    probability = {c.name: c.probability for c in image.candidates}
    own = {s for s in best.subjects if s in probability}
    if not own:
        return 1.0  # reached from the words' own entities, not from the image
    answering = own | {
        s for c in candidates if (c.confidence or 0.0) >= threshold for s in c.subjects if s in probability
    }
    return sum(probability[s] for s in own) / sum(probability[s] for s in answering)


Refine = Callable[[Candidate, list[Candidate], float], float]
"""A refinement of the best answer's confidence, from what ratings taught (the reward model)."""


def verdict_confidence(
    candidates: list[Candidate], image: ImageLink | None, threshold: float, refine: Refine | None = None
) -> float:
    best = candidates[0]
    own = best.confidence if best.confidence is not None else 0.0
    confidence = own * link_certainty(best, candidates, image, threshold)
    return round(refine(best, candidates, confidence) if refine is not None else confidence, 4)


def reward_refinement(model: Any) -> Refine:
    """The reward model's P(good) of the best chain, given the confidence before and the answer's share
    of the votes: the features a rating records (reverie/feedback.py)."""
    from reverie.models.reward_model import ChainFeatures

    def refine(best: Candidate, candidates: list[Candidate], confidence: float) -> float:
        votes = sum(c.votes for c in candidates)
        features = ChainFeatures.from_chain(
            best.best_chain, confidence=confidence, agreement=best.votes / votes if votes else 0.0
        )
        return model.score(features)

    return refine


def verdict(
    query: Query,
    budget: Budget,
    candidates: list[Candidate],
    linked: list[LinkedEntity],
    image: ImageLink | None,
    sentence: str,
    backend: str,
    policy: str,
    nodes: dict[str, int],
    timings_ms: dict[str, float],
    tree: RolloutTree | None,
    settings: Settings,
    refine: Refine | None = None,
) -> Verdict:
    """The answer to one question: the best candidate's chain, the others as alternatives. When the
    confidence misses the threshold the graph does not say: no answer, every chain an alternative."""
    best = candidates[0]
    confidence = verdict_confidence(candidates, image, settings.confidence_threshold, refine)
    sure = confidence >= settings.confidence_threshold
    return Verdict(
        question=query.question,
        answer=sentence,
        answer_entity=best.answer if sure else None,
        chain=best.best_chain if sure else None,
        candidates=candidates,
        alternatives=[c.best_chain for c in (candidates[1:] if sure else candidates)],
        linked=linked,
        image=image,
        backend=backend,
        policy=policy,
        confidence=confidence,
        sure=sure,
        rollouts=budget.rollouts,
        nodes=nodes,
        timings_ms=timings_ms,
        session_id=query.session_id,
        tree=tree,
    )


def remembered_turn(query: Query, verdict: Verdict) -> Turn:
    """What a follow-up recalls: the question as asked and as posed, its subject (where the answer's
    walks started), and the answer when there was one."""
    from reverie.feedback import rated_subject

    return Turn(
        question=query.question,
        answer_entity=verdict.answer_entity or "",
        linked=[e.name for e in verdict.linked],
        subject=rated_subject(verdict) or "",
        posed=verdict.resolved_question or query.question,
    )


# ---------------------------------------------------------------------- conversation


def remembered(history: list[Turn]) -> list:
    """The turns as the conversational memory reads them (a turn from before subjects were kept
    counts its first linked entity as its subject, as the rule does)."""
    from reverie.models.conversation_memory import RememberedTurn

    return [RememberedTurn(t.question, t.subject or (t.linked[:1] or [""])[0], t.answer_entity) for t in history]


def posed_question(question: str, subject: str, carries_relation: bool, in_text: bool, last: Turn) -> str:
    """A follow-up asked as a self-contained question: the last question asked again of the new
    subject ("What about a rubber ball?" after "What happens when you drop a glass cup?"), or the
    referring words replaced by the subject's name ("And if you heat it?" -> "And if you heat glass
    cup?"). The question itself when its words name the subject, or when the rewrite finds nothing
    to replace (the subject is then its anchor all the same)."""
    from reverie.data.conversations import name_referent, swap_subject
    from reverie.encoders.text import display

    if carries_relation:
        last_subject = last.subject or (last.linked[:1] or [""])[0]
        if last_subject:
            swapped = swap_subject(last.posed or last.question, display(last_subject), display(subject))
            if swapped is not None:
                return swapped
        return question
    if in_text:
        return question
    return name_referent(question, display(subject)) or question


def with_subject(linked: list[LinkedEntity], subject: str) -> list[LinkedEntity]:
    """The resolved subject first, as the anchor the walks start from ("memory" unless the words
    name it exactly); the other entities the words link only by vector, so they stay out of the anchors."""
    named = next((e for e in linked if e.name == subject and e.how == "exact"), None)
    first = named or LinkedEntity(name=subject, type="entity", score=1.0, how="memory")
    rest = [e if e.how == "vector" else e.model_copy(update={"how": "vector"}) for e in linked if e.name != subject]
    return [first, *rest]


SMALL_TALK_SYSTEM = (
    "You are Reverie, an assistant that answers questions from a knowledge graph by walking its facts. "
    "Reply to the user's small talk in one or two short, friendly sentences."
)
SMALL_TALK_TEMPLATE = "Hello! I answer questions from my knowledge graph: ask me about something it holds."


def small_talk_verdict(query: Query, reply: str, backend: str, timings_ms: dict[str, float]) -> Verdict:
    """What small talk gets: the LLM's reply (or the template's), and nothing of the graph."""
    return Verdict(
        question=query.question,
        answer=reply,
        answer_entity=None,
        chain=None,
        candidates=[],
        alternatives=[],
        linked=[],
        backend=backend,
        policy="none",
        confidence=0.0,
        sure=False,
        rollouts=0,
        timings_ms=timings_ms,
        session_id=query.session_id,
        route="small-talk",
    )
