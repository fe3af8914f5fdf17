"""Question-and-answer pairs for the fractal network (issue 28): seed 001's file format
(`[{"question": ..., "answer": ...}]`), read with clear errors, and pairs generated from the
graphs Reverie ships (the world, UMLS), with a held-out split.

A generated pair asks one fact (subject, relation) in one of the relation's question frames
(the frames reverie.data.conversations uses); its answer is the fact's tail (several tails joined
by "and", in name order), and `answers` lists every tail, so that naming any one counts as right.
The held-out split holds out whole facts (a fifth of the (subject, relation) pairs, seeded), asked
in the frames of the test split, which training never sees.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reverie.errors import ReverieError

QA_GRAPHS: tuple[str, ...] = ("world", "umls")
MAX_TAILS = 3
"""Facts with more tails than this are left out: their answer is a list, not an answer."""
MAX_FIELD_CHARS = 2_000


class QAFileError(ReverieError):
    """A Q&A file that cannot be used: says which entry is wrong and how."""

    status = 422


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    answers: tuple[str, ...] = field(default=())
    """Every answer that counts as right (the answer itself first)."""
    source: str = "file"

    def accepted(self) -> tuple[str, ...]:
        return self.answers or (self.answer,)


def read_qa_file(path: str | Path) -> list[QAPair]:
    """Seed 001's format: a JSON list of {"question": str, "answer": str} (other keys refused)."""
    path = Path(path)
    if not path.is_file():
        raise QAFileError(f"no Q&A file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise QAFileError(f"{path} is not JSON: {error}") from error
    return pairs_from_json(data, str(path))


def pairs_from_json(data: object, where: str = "the Q&A data") -> list[QAPair]:
    if not isinstance(data, list) or not data:
        raise QAFileError(f'{where} must be a non-empty JSON list of {{"question": ..., "answer": ...}}')
    pairs = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or set(item) != {"question", "answer"}:
            keys = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise QAFileError(f'{where}, entry {i}: needs exactly "question" and "answer", not {keys}')
        question, answer = item["question"], item["answer"]
        for name, value in (("question", question), ("answer", answer)):
            if not isinstance(value, str) or not value.strip():
                raise QAFileError(f"{where}, entry {i}: {name} must be non-empty text")
            if len(value) > MAX_FIELD_CHARS:
                raise QAFileError(f"{where}, entry {i}: {name} is over {MAX_FIELD_CHARS} characters")
        pairs.append(QAPair(question.strip(), answer.strip(), source="file"))
    return pairs


def graph_pairs(name: str, split: str, held_out: float = 0.2, seed: int = 0) -> list[QAPair]:
    """The pairs of one graph's split ("train" or "test"): every frame of the split for each fact
    of it. Facts are split by (subject, relation), so a test fact is never trained on."""
    from reverie.data.conversations import conversation_graph

    if split not in ("train", "test"):
        raise ValueError(f"split is train or test, not {split!r}")
    graph = conversation_graph(name)
    facts = sorted(key for key, tails in graph.tails.items() if len(tails) <= MAX_TAILS)
    order = np.random.default_rng(seed).permutation(len(facts))
    cut = max(1, int(round(held_out * len(facts))))
    chosen = order[:cut] if split == "test" else order[cut:]
    pairs = []
    for index in sorted(chosen):
        subject, relation = facts[index]
        tails = sorted(_display(t) for t in graph.tails[(subject, relation)])
        answer = " and ".join(tails)
        for frame in graph.frames(relation, split):  # type: ignore[arg-type]
            question = _sentence(frame.format(s=graph.mention(subject)))
            pairs.append(QAPair(question, answer, (answer, *tails) if len(tails) > 1 else (answer,), source=name))
    return pairs


def _display(name: str) -> str:
    return name.replace("_", " ").strip()


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


# ------------------------------------------------------------------------------- measures

_TOKEN = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> str:
    """Lower case, articles and punctuation gone, spaces squeezed (SQuAD's normalisation)."""
    words = _TOKEN.findall(text.lower())
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def exact_match(prediction: str, accepted: tuple[str, ...]) -> bool:
    said = normalise(prediction)
    return any(said == normalise(a) for a in accepted)


def token_f1(prediction: str, accepted: tuple[str, ...]) -> float:
    """SQuAD's token F1, the best over the accepted answers."""
    said = normalise(prediction).split()
    best = 0.0
    for answer in accepted:
        gold = normalise(answer).split()
        common: dict[str, int] = {}
        for word in said:
            common[word] = common.get(word, 0) + 1
        overlap = 0
        for word in gold:
            if common.get(word, 0) > 0:
                overlap += 1
                common[word] -= 1
        if not overlap:
            continue
        precision, recall = overlap / len(said), overlap / len(gold)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def parroted(prediction: str, accepted: tuple[str, ...], training_answers: set[str]) -> bool:
    """A wrong reply that is, word for word, one of the training answers: the answer was recalled,
    not reached."""
    return not exact_match(prediction, accepted) and normalise(prediction) in training_answers
