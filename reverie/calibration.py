"""How sure an embedding-walker answer is, before anyone has rated one: a logistic calibrator fit on
questions made from the graph itself. No Ray.

After an ingest that grows the graph by 5% or more since the last fit (the first always),
`calibration_questions` draws (subject, relation) questions from
the graph, of three kinds:
- answerable: some chain of at most `hops` hops from the subject ends in the relation; the graph's
  answers are the tails those chains reach;
- held out: the same question with the facts that answer it removed from the walked subgraph, so
  the nearest chains end in other relations (how "heat a glass cup" looks to a graph that says
  nothing about heating glass);
- unanswerable: no chain from the subject ends in the relation.

Each is worded from its relation's own text, walked and arbitrated as a user's question is, and the
top answer's features (how surely its last relation is the asked one, its share of the rollouts, its
margin over the runner-up) are regressed on whether it is right: held-out and unanswerable
questions have no right answer. The fitted probability is each Candidate's `confidence`, and the
Verdict says `sure: false` below the threshold. Like the reasoner's temperature, it is fit on
held-out facts; unlike it, it needs no training run and follows the graph as it grows.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from reverie.atomic import atomic_write
from reverie.schemas import Triple

FEATURES = ("asked", "support", "margin", "against")
"""Per answer: how surely its last relation is the asked one, its share of the rollouts that do what
was asked, its score's margin over the next answer, the share of its chain's hops walked against a
fact's direction (reverie/dreams/arbiter.py)."""

TEMPLATES = ("What happens to {subject} {relation}?", "{subject} {relation} what?", "What is {subject} {relation}?")
"""Wordings of a generated question: any graph's relations read in them, and the asked-relation
feature is relative (a softmax over the graph's relations), so the wording matters little."""


@dataclass(frozen=True)
class GraphQuestion:
    subject: str
    relation: str
    text: str
    answers: frozenset[str]
    """The graph's answers; empty when it has none (held out or unanswerable)."""
    held_out: frozenset[tuple[str, str, str]] = frozenset()
    """(head, relation, tail) facts removed from the walked subgraph."""
    kind: str = "answerable"


@dataclass(frozen=True)
class AnswerCalibrator:
    """P(answer right) = sigmoid(weights . features + bias)."""

    weights: tuple[float, ...]
    bias: float
    questions: int = 0
    """How many generated questions it was fit on (0: the built-in default)."""
    accuracy: float | None = None
    """Share of the answerable generated questions answered right."""
    ece: float | None = None
    """Expected calibration error on the questions it was fit on."""
    facts: int = 0
    """How many facts the graph held when it was fit."""
    features: tuple[str, ...] = field(default=FEATURES)

    def confidence(self, features: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(features, np.float64))
        return 1.0 / (1.0 + np.exp(-(x @ np.asarray(self.weights) + self.bias)))

    @classmethod
    def fit(cls, features: np.ndarray, correct: np.ndarray, l2: float = 1e-2) -> "AnswerCalibrator":
        """Logistic regression by Newton's method, lightly L2-regularised (the bias is not)."""
        from reverie.ranking import expected_calibration_error

        x = np.asarray(features, np.float64)
        y = np.asarray(correct, np.float64)
        if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(x) != len(y) or not len(y):
            raise ValueError(f"features must be (n, {len(FEATURES)}) with n = len(correct) > 0")
        design = np.hstack([x, np.ones((len(x), 1))])
        w = np.zeros(design.shape[1])
        penalty = np.full(design.shape[1], l2)
        penalty[-1] = 0.0
        for _ in range(50):
            p = 1.0 / (1.0 + np.exp(-(design @ w)))
            grad = design.T @ (p - y) + penalty * w
            hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(w))
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        fitted = cls(weights=tuple(float(v) for v in w[:-1]), bias=float(w[-1]), questions=len(y))
        ece = expected_calibration_error(fitted.confidence(x), y)
        return replace(fitted, ece=round(ece, 4))

    def save(self, path: str | os.PathLike) -> None:
        atomic_write(path, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AnswerCalibrator":
        data = json.loads(open(path, encoding="utf-8").read())
        if tuple(data.get("features", ())) != FEATURES:
            raise ValueError(f"{path}: a calibrator of other features {data.get('features')}; ingest again to refit")
        data["weights"], data["features"] = tuple(data["weights"]), tuple(data["features"])
        return cls(**data)


REFIT_GROWTH = 0.05
"""An ingest refits the calibrator once the graph holds this much more than when it was last fit."""


def needs_refit(path: str | os.PathLike, facts: int) -> bool:
    """Whether a graph of `facts` facts should refit the calibrator saved at `path`."""
    try:
        fitted = AnswerCalibrator.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return True  # none yet, or one of other features
    return facts >= fitted.facts * (1 + REFIT_GROWTH) or facts < fitted.facts


DEFAULT_CALIBRATOR = AnswerCalibrator(weights=(7.0, 4.5, 0.5, -10.0), bias=-9.5)
"""For a graph ingested before calibration existed: an answer whose last relation is surely the
asked one is likely right, one whose relation is not, unlikely. Any ingest that adds facts replaces it."""


def chain_answers(triples: Sequence[Triple], hops: int) -> dict[tuple[str, str], dict[str, set[tuple[str, str, str]]]]:
    """(subject, relation) -> {answer: the last-hop facts that give it} over forward chains of at
    most `hops` hops (a chain never revisits an entity)."""
    out_edges: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for t in triples:
        out_edges[t.head].append((t.relation, t.tail))
    found: dict[tuple[str, str], dict[str, set[tuple[str, str, str]]]] = {}

    def walk(subject: str, node: str, depth: int, seen: frozenset[str]) -> None:
        for relation, tail in out_edges.get(node, ()):
            if tail in seen:
                continue
            found.setdefault((subject, relation), {}).setdefault(tail, set()).add((node, relation, tail))
            if depth + 1 < hops:
                walk(subject, tail, depth + 1, seen | {tail})

    for subject in list(out_edges):
        walk(subject, subject, 0, frozenset({subject}))
    return found


def calibration_questions(
    triples: Sequence[Triple], hops: int, count: int, rng: np.random.Generator, display: Callable[[str], str] = str
) -> list[GraphQuestion]:
    """About `count` questions from the graph, a third of each kind (fewer when the graph is small)."""
    found = chain_answers(triples, hops)
    relations = sorted({t.relation for t in triples})
    subjects = sorted({s for s, _ in found})
    if not found or len(relations) < 2:
        return []
    answerable = sorted(found)
    per_kind = max(1, count // 3)

    def text(subject: str, relation: str) -> str:
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        return template.format(subject=display(subject), relation=relation)

    questions = []
    for i in rng.permutation(len(answerable))[:per_kind]:
        subject, relation = answerable[i]
        answers = found[subject, relation]
        questions.append(GraphQuestion(subject, relation, text(subject, relation), frozenset(answers)))
    for i in rng.permutation(len(answerable))[:per_kind]:
        subject, relation = answerable[i]
        facts = frozenset(f for facts in found[subject, relation].values() for f in facts)
        questions.append(GraphQuestion(subject, relation, text(subject, relation), frozenset(), facts, "held out"))
    picked: set[tuple[str, str]] = set()
    tries = 0
    while len(picked) < per_kind and tries < 20 * per_kind:  # distinct pairs: a small graph has few
        tries += 1
        subject = subjects[int(rng.integers(len(subjects)))]
        relation = relations[int(rng.integers(len(relations)))]
        if (subject, relation) not in found and (subject, relation) not in picked:
            picked.add((subject, relation))
            questions.append(
                GraphQuestion(subject, relation, text(subject, relation), frozenset(), kind="unanswerable")
            )
    return questions
