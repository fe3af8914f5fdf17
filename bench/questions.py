"""Questions the graph answers and questions it does not: is each answer right and sure, is each
unanswerable question flagged, and is the confidence calibrated?

    .venv/bin/python -m bench.questions

The world: every object x every action relation the world has, in three wordings (one per pair by
default, rotating; `--all-wordings` for all three); the graph decides which are answerable (a chain
from the object ends in the action). UMLS and Kinships (PyKEEN's bundled splits): the training
facts are ingested and asked about one hop deep ("hops 1"): answerable questions are (head,
relation) pairs with a stored fact; unanswerable ones are test facts whose (head, relation) has
no stored fact (held out: their answer was removed from the graph) and (head, relation) pairs with
no fact in any split (never). Everything goes through the Pipeline on a local Ray, with the
embedding walker and the calibrator it fit on each graph at ingest.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from bench.common import fresh_home, write_table
from reverie.compare import KG_WORDINGS


@dataclass
class Asked:
    text: str
    answers: frozenset[str]
    kind: str = "answerable"


def world_set(all_wordings: bool) -> list[Asked]:
    from reverie.data.world import WORDINGS, action_questions

    questions = action_questions()
    if not all_wordings:
        pairs = sorted({(q.obj, q.action) for q in questions})
        turn = {pair: i % WORDINGS for i, pair in enumerate(pairs)}
        questions = [q for q in questions if q.wording == turn[q.obj, q.action]]
    return [Asked(q.text, q.answers, "answerable" if q.answers else "no chain") for q in questions]


def kg_set(dataset, per_kind: int, seed: int = 0) -> list[Asked]:
    """Answerable: (head, relation) pairs with a stored fact. Held out: test facts whose (head,
    relation) has no stored fact, their answer removed from the graph. Never: (head, relation) pairs
    with no fact in any split."""
    from reverie.encoders.text import display

    stored: dict[tuple[str, str], set[str]] = defaultdict(set)
    for t in dataset.graph:
        stored[t.head, t.relation].add(t.tail)
    anywhere = {(t.head, t.relation) for t in [*dataset.graph, *dataset.train, *dataset.dev, *dataset.test]}
    held = sorted({(t.head, t.relation) for t in dataset.test} - set(stored))
    heads = sorted({t.head for t in dataset.graph})
    relations = sorted({t.relation for t in dataset.graph})
    rng = np.random.default_rng(seed)
    never: set[tuple[str, str]] = set()
    while len(never) < per_kind:
        pair = (heads[int(rng.integers(len(heads)))], relations[int(rng.integers(len(relations)))])
        if pair not in anywhere:
            never.add(pair)

    def ask(head: str, relation: str, answers, kind: str) -> Asked:
        wording = KG_WORDINGS[int(rng.integers(len(KG_WORDINGS)))]
        return Asked(wording.format(head=display(head), relation=display(relation)), frozenset(answers), kind)

    answerable = sorted(stored)
    out = [
        ask(h, r, stored[h, r], "answerable")
        for h, r in (answerable[i] for i in rng.permutation(len(answerable))[:per_kind])
    ]
    out += [ask(h, r, (), "held out") for h, r in (held[i] for i in rng.permutation(len(held))[:per_kind])]
    out += [ask(h, r, (), "never") for h, r in sorted(never)]
    return out


def measure(pipeline, questions: list[Asked], hops: int | None) -> dict:
    from reverie.errors import ReverieError
    from reverie.ranking import expected_calibration_error
    from reverie.schemas import Query

    right, sure, confidence, answerable, kinds, errors = [], [], [], [], [], 0
    start = time.perf_counter()
    for i, q in enumerate(questions):
        try:
            verdict = pipeline.answer(Query(question=q.text, seed=i, verbalize=False, hops=hops))
        except ReverieError:  # nothing linked or nothing reached: no answer, which is not a sure one
            errors += 1
            right.append(False), sure.append(False), confidence.append(0.0), answerable.append(bool(q.answers))
            kinds.append(q.kind)
            continue
        kinds.append(q.kind)
        right.append(verdict.candidates[0].answer in q.answers)
        sure.append(verdict.sure)
        confidence.append(verdict.confidence)
        answerable.append(bool(q.answers))
    seconds = time.perf_counter() - start
    right_, sure_, answerable_ = (np.array(v, bool) for v in (right, sure, answerable))
    conf = np.array(confidence)
    flagged_by_kind = {
        kind: float((~sure_)[np.array(kinds) == kind].mean()) for kind in sorted(set(kinds)) if kind != "answerable"
    }
    return {
        "flagged_by_kind": flagged_by_kind,
        "questions": len(questions),
        "answerable": int(answerable_.sum()),
        "right": float(right_[answerable_].mean()),
        "right_and_sure": float((right_ & sure_)[answerable_].mean()),
        "flagged": float((~sure_)[~answerable_].mean()),
        "confident_wrong": float((sure_ & ~right_).mean()),
        "ece": expected_calibration_error(conf, right_),
        "errors": errors,
        "ms": 1000 * seconds / len(questions),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["world", "umls", "kinships"])
    parser.add_argument("--all-wordings", action="store_true", help="the world's three wordings of every question")
    parser.add_argument("--per-kind", type=int, default=200, help="KG questions of each kind (answerable, held out)")
    args = parser.parse_args(argv)

    from reverie.config import Settings
    from reverie.data.kg import load_dataset
    from reverie.pipeline import Pipeline

    rows = []
    for name in args.datasets:
        hops = None if name == "world" else 1
        settings = Settings(home=fresh_home(f"questions-{name}"), **({} if hops is None else {"hops": hops}))
        pipeline = Pipeline(settings)
        dataset = load_dataset(name)
        report = pipeline.ingest_dataset(dataset)
        questions = world_set(args.all_wordings) if name == "world" else kg_set(dataset, args.per_kind)
        m = measure(pipeline, questions, hops)
        print(name, m, file=sys.stderr)
        rows.append(
            [
                name,
                m["questions"],
                m["answerable"],
                f"{m['right']:.3f}",
                f"{m['right_and_sure']:.3f}",
                f"{m['flagged']:.3f} ("
                + ", ".join(
                    f"{k} {v:.3f} of {sum(q.kind == k for q in questions)}" for k, v in m["flagged_by_kind"].items()
                )
                + ")",
                f"{m['confident_wrong']:.3f}",
                f"{m['ece']:.3f}",
                f"{report.timings_s.get('calibrate', 0):.1f}",
                f"{m['ms']:.0f}",
            ]
        )
        pipeline.services.stop()
    command = "python -m bench.questions " + " ".join(argv if argv is not None else sys.argv[1:])
    write_table(
        "questions",
        "Questions the graph answers and questions it does not (embedding walker, calibrated at ingest)",
        command.strip(),
        [
            "graph",
            "questions",
            "answerable",
            "answerable: right",
            "answerable: right and sure (goal ≥ 0.95 world)",
            "unanswerable: flagged not sure (goal ≥ 0.90)",
            "confident and wrong (all)",
            "ECE",
            "calibrate s",
            "ms / question",
        ],
        rows,
        notes=__doc__.split("\n\n", 2)[2]
        + "\n'right': the top candidate is one of the graph's answers, sure or not. 'confident and wrong': sure, and"
        " not right (every sure answer to an unanswerable question is wrong), over all questions. ECE: the"
        " verdict's confidence against 'right', 15 bins. Confidence threshold 0.5 (REVERIE_CONFIDENCE_THRESHOLD).",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
