"""The rules of one question, as plain functions: no Ray. `Pipeline.answer` (pipeline.py) carries
them over Ray's actors and tasks; a unit test of them needs no cluster.

The stages: encode -> link -> retrieve -> dream -> arbitrate -> verbalize -> remember. What is
decided here: each question's rollouts, hops and random seed; which entities anchor the rollouts
(the image as the subject, the question's exact matches, a follow-up's remembered subject); how
the rollouts are cut into batches; and the Verdict itself, with its `sure` flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from reverie.config import Settings
from reverie.errors import NoMatchError
from reverie.memory import Turn
from reverie.schemas import Candidate, ImageLink, LinkedEntity, Query, RolloutTree, Verdict


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


def image_link(links: list[LinkedEntity], token: int | None) -> ImageLink:
    """What the question's image was linked to: the nearest entity, with the runners-up."""
    return ImageLink(entity=links[0].name, type=links[0].type, score=links[0].score, token=token, runners_up=links[1:])


def may_link_nothing(history: list[Turn], image: ImageLink | None) -> bool:
    """A question whose words name no entity still goes on when the image or the conversation
    gives it a subject."""
    return bool(history) or image is not None


def linked_entities(
    linked: list[LinkedEntity], image_links: list[LinkedEntity] | None, history: list[Turn]
) -> list[LinkedEntity]:
    """Every entity the question links to, its subject first: the image's entity ("What happens if I
    drop this?"), else a follow-up's remembered subject when its words name nothing exactly."""
    if image_links:
        linked = [image_links[0], *(e for e in linked if e.name != image_links[0].name)]
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


def is_sure(confidence: float | None, threshold: float) -> bool | None:
    """Whether a verdict's calibrated confidence clears the threshold; None when nothing calibrates it."""
    return None if confidence is None else confidence >= threshold


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
) -> Verdict:
    """The answer to one question: the best candidate's chain, the others as alternatives."""
    best = candidates[0]
    return Verdict(
        question=query.question,
        answer=sentence,
        answer_entity=best.answer,
        chain=best.best_chain,
        candidates=candidates,
        alternatives=[c.best_chain for c in candidates[1:]],
        linked=linked,
        image=image,
        backend=backend,
        policy=policy,
        confidence=best.confidence,
        sure=is_sure(best.confidence, settings.confidence_threshold),
        rollouts=budget.rollouts,
        nodes=nodes,
        timings_ms=timings_ms,
        session_id=query.session_id,
        tree=tree,
    )


def remembered_turn(query: Query, answer_entity: str, linked: list[LinkedEntity]) -> Turn:
    return Turn(question=query.question, answer_entity=answer_entity, linked=[e.name for e in linked])
