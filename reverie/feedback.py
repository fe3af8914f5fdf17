"""Ratings of verdicts, kept as a dataset for later learning: one JSON line per rating.

The log remembers the last verdicts it was shown, so a client can rate a verdict by its id.
Every rating rewrites the file to a temporary name and renames it into place: a reader (or a
crash) sees the old dataset or the new one, never a half-written line.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from reverie.atomic import atomic_write
from reverie.errors import NotFoundError, ReverieError
from reverie.schemas import Feedback, FeedbackRecord, Verdict

FEEDBACK_FILE = "feedback.jsonl"


class FeedbackLog:
    def __init__(self, folder: Path, remember_last: int = 10_000):
        self.path = Path(folder) / FEEDBACK_FILE
        self.remember_last = remember_last
        # As JSON, about 5 KB each: the pydantic objects took about 40 KB, 400 MB for the last 10,000.
        self._verdicts: OrderedDict[str, str] = OrderedDict()

    def remember(self, verdict: Verdict) -> None:
        self._verdicts[verdict.id] = verdict.model_dump_json()
        self._verdicts.move_to_end(verdict.id)
        while len(self._verdicts) > self.remember_last:
            self._verdicts.popitem(last=False)

    def rate(self, feedback: Feedback, client: str = "local") -> FeedbackRecord:
        """Append the rating with what was rated; `client` says who rated (the learner bounds how much
        one client's ratings weigh together)."""
        remembered = self._verdicts.get(feedback.verdict_id)
        verdict = feedback.verdict or (Verdict.model_validate_json(remembered) if remembered else None)
        if verdict is None:
            raise NotFoundError(
                f"no verdict {feedback.verdict_id!r} among the last {self.remember_last} answers; send the verdict itself in `verdict`"
            )
        if verdict.id != feedback.verdict_id:
            raise ReverieError(
                f"verdict_id {feedback.verdict_id!r} does not match the id of the verdict sent ({verdict.id!r})"
            )
        record = FeedbackRecord(
            verdict_id=verdict.id,
            rating=feedback.rating,
            note=feedback.note,
            question=verdict.question,
            answer_entity=verdict.answer_entity,
            chain=verdict.chain,
            policy=verdict.policy,
            policy_version=verdict.policy_version,
            asked_relation=verdict.asked_relation,
            subject=rated_subject(verdict),
            confidence=verdict.confidence,
            agreement=agreement(verdict),
            client=client[:64],
        )
        self._append(record.model_dump_json() + "\n")
        return record

    def _append(self, line: str) -> None:
        old = self.path.read_bytes() if self.path.exists() else b""
        atomic_write(self.path, old + line.encode())

    def records(self) -> list[FeedbackRecord]:
        if not self.path.exists():
            return []
        return [FeedbackRecord.model_validate_json(line) for line in self.path.read_text().splitlines() if line]


def rated_subject(verdict: Verdict) -> str | None:
    """Where the answer's walks started: the chain's first entity, else the best candidate's subject."""
    if verdict.chain is not None and verdict.chain.steps:
        return verdict.chain.steps[0].what
    best = verdict.candidates[0] if verdict.candidates else None
    return best.subjects[0] if best is not None and best.subjects else None


def agreement(verdict: Verdict) -> float | None:
    """The best answer's share of the votes of the ranked answers."""
    votes = sum(c.votes for c in verdict.candidates)
    return round(verdict.candidates[0].votes / votes, 4) if votes else None
