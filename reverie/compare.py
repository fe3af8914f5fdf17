"""`reverie compare A B`: two homes (or bundles) asked the same questions, measured side by side.
No Ray: the questions, the measures and the table. The answering goes through each home's
Pipeline and actors (`Reverie.ask_many`, `Reverie.time_llm`); the CLI (`reverie compare`) joins them.

Questions come from a dataset's split (`dataset_questions`: a KG test fact (head, relation, tail)
is asked as a question worded from its head and relation, and its tail is the known answer) or
from a file (`file_questions`). Question i is asked with seed i on both sides, so the rollouts of a
home asked twice are the same.

Measures of each side:
- ranking (questions with known answers): filtered tail ranking over the Verdict's candidates —
  the rank of the best-placed known answer, other true answers skipped; an answer missing from the
  candidates (or a question the home could not link) ranks as infinity, so MRR and Hits@k are
  lower bounds when the candidates are few (`reverie compare` asks for 10);
- faithfulness of the sure answers' sentences (`reverie.llm.faithfulness`: answer_included,
  chain_grounded), and the share said by the LLM rather than fallen back to the template;
- latency: each stage's milliseconds as the Verdict times them, and end to end as the caller
  waits, p50 and p95;
- LLM speed: Verdicts carry no token counts, and the verbaliser answers a prompt it has seen
  from its cache; so each side's LLM actor streams a fixed set of verbalize prompts (those of A's
  first sure answers, the same for both sides) one at a time, decoded as the verbaliser decodes
  them (`Reverie.time_llm`): tokens are the backend's own count of generated tokens, seconds the
  wall time of each stream as the caller waits;
- size: the bytes the home takes on disk (allocated, as du counts them), by part.
Between the sides: answer agreement (the same answer entity, None for "not sure" included; the
same sureness; the same top candidate).

The JSON report (`compare_report`, `reverie compare --json`), schema "reverie.compare/1":

    {"schema": "reverie.compare/1",
     "questions": {"source": str, "count": int, "with_answers": int},
     "llm": bool,                       # whether the answers were put in words by the LLM
     "agreement": {"answer_entity": f, "sure": f, "top_candidate": f},   # shares of all questions
     "sides": {"A": SIDE, "B": SIDE},
     "per_question": [{"question": str, "answers": [str], "A": ANSWER, "B": ANSWER}]}
    SIDE = {"home": str, "bundle": str | null,
            "settings": {"walker", "rollouts", "hops", "llm_backends", "confidence_threshold"},
            "answered": int, "unlinked": int, "sure": f,        # unlinked: no entity or no walk reached an answer
            "ranking": {"questions": int, "mrr": f, "hits@1": f, "hits@10": f} | null,
            "faithfulness": {"sentences": int, "answer_included": f, "chain_grounded": f,
                             "llm": f, "template": f} | null,   # over the sure answers
            "latency_ms": {STAGE: {"p50": f, "p95": f}, ..., "end_to_end": {"p50": f, "p95": f}},
            "llm_speed": {"prompts": int, "tokens": int, "seconds": f, "tokens_per_s": f}
                         | null,                               # null with --no-llm, or no LLM
            "size_bytes": {"graph", "vectors", "models", "student", "other", "total"}}
    ANSWER = {"answer_entity": str | null, "sure": bool, "top_candidate": str | null,
              "rank": f | null, "backend": str | null, "sentence": str | null, "ms": f}
Shares are fractions in [0, 1]; "rank" is null for a question without known answers or an
answer not among the candidates; "sentence" is the answer sentence, or for an unlinked question
why there is none.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reverie.config import Settings
from reverie.errors import ReverieError
from reverie.home import Home
from reverie.schemas import Verdict

SCHEMA = "reverie.compare/1"
STAGES = ("encode", "route", "link", "resolve", "retrieve", "dream", "arbitrate", "verbalize", "remember")
KG_WORDINGS = ("Tell me what {head} {relation}.", "Which entity does {head} {relation}?")
"""How a KG fact's (head, relation) is asked, the wordings taken in turn (bench/questions.py asks with them too)."""
SPEED_PROMPTS = 8
BUNDLE_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Asked:
    """A question, with what is known of its answer."""

    question: str
    answers: frozenset[str] = frozenset()
    """The right answers; empty when not known."""
    known: frozenset[str] = frozenset()
    """Every true answer (the answers included): filtered ranking skips the others."""


@dataclass(frozen=True)
class Answered:
    """One question as a side answered it: its Verdict, or None when the home linked nothing or
    no walk reached an answer (a NoMatchError), and the wall time the caller waited."""

    verdict: Verdict | None
    seconds: float
    error: str | None = None


@dataclass
class Side:
    """One side of a comparison: its home (a bundle is imported into a temporary home first)."""

    label: str
    home: Path
    settings: Settings
    bundle: Path | None = None
    answered: list[Answered] = field(default_factory=list)
    llm_speed: dict | None = None


# ---------------------------------------------------------------------------------- questions


def kg_question(head: str, relation: str, index: int) -> str:
    """A KG fact's (head, relation) as a question, in the index-th wording (taken in turn)."""
    from reverie.encoders.text import display

    return KG_WORDINGS[index % len(KG_WORDINGS)].format(head=display(head), relation=display(relation))


def dataset_questions(name: str, split: str = "test", limit: int | None = None) -> tuple[list[Asked], str]:
    """A dataset's questions and a line saying where they come from. The built-in world: its
    questions with their answers (it has no splits). A KG dataset: each fact of the split, asked
    from its head and relation, its tail the answer, every tail of that (head, relation) in any
    split a known one."""
    from reverie.data.kg import load_dataset

    if limit is not None and limit < 1:
        raise ReverieError(f"the limit of questions must be at least 1, got {limit}")
    kg = load_dataset(name)
    if kg.name == "world":
        from reverie.data.world import world_questions

        asked = [Asked(q.question, frozenset({q.answer}), frozenset({q.answer})) for q in world_questions()]
        return asked[:limit], "dataset world (its questions)"
    facts = {"test": kg.test, "dev": kg.dev}.get(split)
    if facts is None:
        raise ReverieError(f"unknown split {split!r}: use test or dev")
    if not facts:
        raise ReverieError(f"dataset {kg.name!r} has no {split} split")
    tails: dict[tuple[str, str], set[str]] = defaultdict(set)
    for t in [*kg.graph, *kg.train, *kg.dev, *kg.test]:
        tails[t.head, t.relation].add(t.tail)
    asked = [
        Asked(kg_question(t.head, t.relation, i), frozenset({t.tail}), frozenset(tails[t.head, t.relation]))
        for i, t in enumerate(facts[:limit])
    ]
    return asked, f"dataset {kg.name} {split}"


def file_questions(path: str | Path, limit: int | None = None) -> tuple[list[Asked], str]:
    """Questions from a file: one a line, or JSON lines {"question": ..., "answer": str or [str]}
    (the answer optional). Blank lines and lines starting with # are skipped."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise ReverieError(f"the limit of questions must be at least 1, got {limit}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReverieError(f"{path}: {exc.strerror or exc}") from None
    asked = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("{"):
            asked.append(Asked(line))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReverieError(f"{path}:{lineno}: not a JSON object: {exc.msg}") from None
        question = record.get("question") if isinstance(record, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise ReverieError(f'{path}:{lineno}: a JSON line needs "question", a non-empty string')
        answer = record.get("answer")
        answers = [answer] if isinstance(answer, str) else answer or []
        if not isinstance(answers, list) or not all(isinstance(a, str) and a for a in answers):
            raise ReverieError(f'{path}:{lineno}: "answer" is a string or a list of strings')
        asked.append(Asked(question.strip(), frozenset(answers), frozenset(answers)))
    if not asked:
        raise ReverieError(f"{path}: no questions in the file")
    return asked[:limit], f"file {path}"


# ---------------------------------------------------------------------------------- sides


def is_bundle(path: Path) -> bool:
    return (path / BUNDLE_MANIFEST).is_file()


def check_side(path: str | Path, label: str) -> Path:
    """The path of a home (a folder with a graph snapshot) or a bundle (a folder with a manifest),
    else a ReverieError naming the side."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise ReverieError(f"{label}: {path}: no such folder")
    if not is_bundle(folder) and not Home(folder).snapshot.is_file():
        raise ReverieError(
            f"{label}: {path} is neither a Reverie home (no {Home(folder).snapshot.relative_to(folder)}: "
            f"ingest something first) nor a bundle (no {BUNDLE_MANIFEST})"
        )
    return folder


def home_settings(home: Path, **changes) -> Settings:
    """The settings a home answers with, as `reverie` run with REVERIE_HOME=home reads them (the
    REVERIE_* variables, then $REVERIE_CONFIG or the home's config.yaml), with `changes` made."""
    import yaml

    before = os.environ.get("REVERIE_HOME")
    os.environ["REVERIE_HOME"] = str(home)  # where Settings looks for the home's config.yaml
    try:
        return Settings(**changes, home=home)
    except yaml.YAMLError as exc:  # the settings' validation errors reach the CLI as they are
        raise ReverieError(f"the settings of {home} do not read as YAML: {str(exc).splitlines()[0]}") from None
    finally:
        if before is None:
            del os.environ["REVERIE_HOME"]
        else:
            os.environ["REVERIE_HOME"] = before


def open_side(path: Path, label: str, scratch: Path, **changes) -> Side:
    """A side ready to ask: a home as it is, or a bundle imported into a fresh home under `scratch`."""
    if not is_bundle(path):
        return Side(label, path, home_settings(path, **changes))
    from reverie.bundle import import_bundle  # reverie/bundle.py: the bundles' own reader

    home = scratch / f"home-{label}"
    import_bundle(path, home)
    return Side(label, home, home_settings(home, **changes), bundle=path)


def home_size(home: Path) -> dict[str, int]:
    """Bytes a home takes on disk, by part: graph (snapshot, calibration), vectors (the index),
    models (every trained network and model cache but the student), student, other, total."""
    paths = Home(home)

    def size(root: Path) -> int:  # allocated bytes, as du counts them: the vector index's files are sparse
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        return sum(p.stat().st_blocks * 512 for p in files)

    parts = {
        "graph": size(paths.graph),
        "vectors": size(paths.qdrant) - (size(paths.server) if paths.server.exists() else 0),
        "student": size(paths.student),
    }
    networks = [paths.models, paths.policies, paths.lr_control, paths.root / "world_models", paths.root / "reasoners"]
    parts["models"] = sum(size(p) for p in networks if p.exists()) - parts["student"]
    total = size(paths.root)
    parts["other"] = total - sum(parts.values())
    parts["total"] = total
    return parts


# ---------------------------------------------------------------------------------- measures


def candidate_rank(verdict: Verdict | None, asked: Asked) -> float:
    """Filtered rank of the best-placed known answer among the Verdict's candidates (1 = first):
    other true answers placed above it do not count. Infinity when it is not among them."""
    if verdict is None:
        return math.inf
    rank = 1
    for candidate in verdict.candidates:
        if candidate.answer in asked.answers:
            return float(rank)
        if candidate.answer not in asked.known:
            rank += 1
    return math.inf


def ranking(answered: Sequence[Answered], questions: Sequence[Asked]) -> dict | None:
    """MRR, Hits@1 and Hits@10 over the questions with known answers; None when none has one."""
    from reverie.ranking import ranking_metrics

    ranks = [candidate_rank(a.verdict, q) for a, q in zip(answered, questions, strict=True) if q.answers]
    if not ranks:
        return None
    metrics = ranking_metrics(ranks)
    return {"questions": len(ranks), "mrr": metrics["mrr"], "hits@1": metrics["hits@1"], "hits@10": metrics["hits@10"]}


def faithfulness(verdicts: Iterable[Verdict]) -> dict | None:
    """How faithful the sure answers' sentences are to their chains (reverie/llm/faithfulness.py),
    and the share the LLM said rather than the template; None without a sure answer."""
    from reverie.llm.faithfulness import answer_included, chain_grounded
    from reverie.llm.verbalize import TEMPLATE_BACKEND

    said = [(v.answer, v.question, v.chain, v.backend) for v in verdicts if v.sure and v.chain is not None]
    if not said:
        return None
    included = [bool(answer_included(sentence, question, chain)) for sentence, question, chain, _ in said]
    grounded = [bool(chain_grounded(sentence, question, chain)) for sentence, question, chain, _ in said]
    template = [backend == TEMPLATE_BACKEND for *_, backend in said]
    return {
        "sentences": len(said),
        "answer_included": float(np.mean(included)),
        "chain_grounded": float(np.mean(grounded)),
        "llm": 1.0 - float(np.mean(template)),
        "template": float(np.mean(template)),
    }


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2)}


def latency(answered: Sequence[Answered]) -> dict[str, dict[str, float] | None]:
    """p50 and p95 milliseconds of each stage (the Verdict's timings) and end to end, over the
    questions answered."""
    verdicts = [a.verdict for a in answered if a.verdict is not None]
    out = {stage: percentiles([v.timings_ms[stage] for v in verdicts if stage in v.timings_ms]) for stage in STAGES}
    out["end_to_end"] = percentiles([1000 * a.seconds for a in answered if a.verdict is not None])
    return out


def speed_prompts(answered: Sequence[Answered], count: int) -> list[tuple[str, str]]:
    """The verbalize prompts (system, user) of the first `count` sure answers: the fixed set both
    sides' LLMs are timed on."""
    from reverie.llm.verbalize import build_prompt

    prompts = []
    for a in answered:
        if len(prompts) >= count:
            break
        if a.verdict is not None and a.verdict.sure and a.verdict.chain is not None:
            prompts.append(build_prompt(a.verdict.question, a.verdict.chain))
    return prompts


def llm_speed(timed: Sequence[tuple[int, float]]) -> dict | None:
    """Tokens per second over (generated tokens, seconds) of each timed prompt
    (`Reverie.time_llm`); None when nothing was timed."""
    if not timed:
        return None
    tokens = sum(t for t, _ in timed)
    seconds = sum(s for _, s in timed)
    return {
        "prompts": len(timed),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else 0.0,
    }


def agreement(a: Sequence[Answered], b: Sequence[Answered]) -> dict[str, float]:
    """Shares of the questions on which the two sides give the same answer entity (both "not sure"
    agrees), are as sure, and rank the same candidate first."""

    def entity(x: Answered):
        return x.verdict.answer_entity if x.verdict is not None else None

    def sure(x: Answered) -> bool:
        return x.verdict is not None and x.verdict.sure

    def top(x: Answered):
        return x.verdict.candidates[0].answer if x.verdict is not None and x.verdict.candidates else None

    pairs = list(zip(a, b, strict=True))
    if not pairs:
        return {"answer_entity": 0.0, "sure": 0.0, "top_candidate": 0.0}
    return {
        "answer_entity": float(np.mean([entity(x) == entity(y) for x, y in pairs])),
        "sure": float(np.mean([sure(x) == sure(y) for x, y in pairs])),
        "top_candidate": float(np.mean([top(x) == top(y) for x, y in pairs])),
    }


def side_report(side: Side, questions: Sequence[Asked]) -> dict:
    """One side's measures, as the JSON report's SIDE."""
    s = side.settings
    answered = side.answered
    verdicts = [a.verdict for a in answered if a.verdict is not None]
    return {
        "home": str(side.home),
        "bundle": str(side.bundle) if side.bundle else None,
        "settings": {
            "walker": s.walker,
            "rollouts": s.rollouts,
            "hops": s.hops,
            "llm_backends": list(s.llm_backends),
            "confidence_threshold": s.confidence_threshold,
        },
        "answered": len(verdicts),
        "unlinked": len(answered) - len(verdicts),
        "sure": float(np.mean([v.sure for v in verdicts])) if verdicts else 0.0,
        "ranking": ranking(answered, questions),
        "faithfulness": faithfulness(verdicts),
        "latency_ms": latency(answered),
        "llm_speed": side.llm_speed,
        "size_bytes": home_size(side.home),
    }


def _answer(answered: Answered, asked: Asked) -> dict:
    v = answered.verdict
    rank = candidate_rank(v, asked) if asked.answers else math.inf
    return {
        "answer_entity": v.answer_entity if v else None,
        "sure": bool(v and v.sure),
        "top_candidate": v.candidates[0].answer if v and v.candidates else None,
        "rank": rank if math.isfinite(rank) else None,
        "backend": v.backend if v else None,
        "sentence": v.answer if v else answered.error,
        "ms": round(1000 * answered.seconds, 2),
    }


def compare_report(a: Side, b: Side, questions: Sequence[Asked], source: str, llm: bool) -> dict:
    """The whole comparison, as the JSON schema in this module's docstring."""
    return {
        "schema": SCHEMA,
        "questions": {
            "source": source,
            "count": len(questions),
            "with_answers": sum(bool(q.answers) for q in questions),
        },
        "llm": llm,
        "agreement": agreement(a.answered, b.answered),
        "sides": {a.label: side_report(a, questions), b.label: side_report(b, questions)},
        "per_question": [
            {"question": q.question, "answers": sorted(q.answers), a.label: _answer(x, q), b.label: _answer(y, q)}
            for q, x, y in zip(questions, a.answered, b.answered, strict=True)
        ],
    }


# ---------------------------------------------------------------------------------- the table


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def render_table(report: dict) -> str:
    """The report as a plain-text table: one row per measure, one column per side."""
    labels = list(report["sides"])
    sides = [report["sides"][label] for label in labels]
    rows: list[tuple[str, list[str]]] = []

    def row(name: str, cells: Iterable[str]) -> None:
        rows.append((name, list(cells)))

    def of(path: Sequence[str], fmt: str = "{:.3f}") -> list[str]:
        out = []
        for side in sides:
            value = side
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            out.append("—" if value is None else fmt.format(value))
        return out

    row("home", [s["home"] + (f" (bundle {s['bundle']})" if s["bundle"] else "") for s in sides])
    row(
        "walker · rollouts · hops",
        [f"{s['settings']['walker']} · {s['settings']['rollouts']} · {s['settings']['hops']}" for s in sides],
    )
    row("LLM backends", [", ".join(s["settings"]["llm_backends"]) for s in sides])
    row("answered (unlinked)", [f"{s['answered']} ({s['unlinked']})" for s in sides])
    row("sure", of(["sure"]))
    if any(s["ranking"] for s in sides):
        row("MRR", of(["ranking", "mrr"]))
        row("Hits@1", of(["ranking", "hits@1"]))
        row("Hits@10", of(["ranking", "hits@10"]))
    row("answer included", of(["faithfulness", "answer_included"]))
    row("chain grounded", of(["faithfulness", "chain_grounded"]))
    row(
        "said by LLM / template",
        [
            "—"
            if s["faithfulness"] is None
            else f"{s['faithfulness']['llm']:.3f} / {s['faithfulness']['template']:.3f}"
            for s in sides
        ],
    )
    for stage in [*STAGES, "end_to_end"]:
        row(
            f"{stage.replace('_', ' ')} ms p50 / p95",
            [
                "—"
                if s["latency_ms"][stage] is None
                else f"{s['latency_ms'][stage]['p50']:.1f} / {s['latency_ms'][stage]['p95']:.1f}"
                for s in sides
            ],
        )
    row(
        "LLM tokens/s",
        [
            "—"
            if s["llm_speed"] is None
            else f"{s['llm_speed']['tokens_per_s']:.1f} ({s['llm_speed']['tokens']} tokens, {s['llm_speed']['prompts']} prompts)"
            for s in sides
        ],
    )
    for part in ("graph", "vectors", "models", "student", "total"):
        row(f"size: {part}", [_mb(s["size_bytes"][part]) for s in sides])

    q = report["questions"]
    head = f"{q['count']} questions ({q['source']}; {q['with_answers']} with known answers), LLM {'on' if report['llm'] else 'off'}"
    agree = report["agreement"]
    foot = (
        f"agreement: same answer {agree['answer_entity']:.3f}, as sure {agree['sure']:.3f}, "
        f"same top candidate {agree['top_candidate']:.3f}"
    )
    names = [name for name, _ in rows]
    width = max(len(n) for n in names)
    widths = [max(len(labels[i]), *(len(cells[i]) for _, cells in rows)) for i in range(len(labels))]
    lines = [head, "  ".join([" " * width, *(labels[i].ljust(widths[i]) for i in range(len(labels)))]).rstrip()]
    lines += [
        "  ".join([name.ljust(width), *(cells[i].ljust(widths[i]) for i in range(len(labels)))]).rstrip()
        for name, cells in rows
    ]
    lines.append(foot)
    return "\n".join(lines)
