"""What a student LLM learns from: answer-sentence prompts made from graphs, and a teacher's replies.

A prompt is what Reverie's verbaliser gives an LLM (reverie/llm/verbalize.py `build_prompt`): the
facts of one chain and its answer, and the question. Here the chains are made from a graph's facts
directly, as the walker would find them: one fact, two facts in a row, and some hops walked against a
fact's direction; the questions are worded as Reverie's own generated questions are
(reverie/calibration.py TEMPLATES). A teacher LLM answers each prompt once; the replies are cached
in a JSONL file (Home.sentences(teacher)) and checked by the same grounding check Reverie uses, so
a student learns only the sentences Reverie would have said.

Imports neither Ray nor torch: the teacher backend brings its own.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import re
import sys
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reverie.atomic import atomic_file
from reverie.calibration import TEMPLATES
from reverie.edges import edge_id, relation_label
from reverie.errors import ReverieError
from reverie.llm.verbalize import SENTENCE_ENDS, build_prompt, grounded_sentence
from reverie.schemas import Chain, Step, Triple

if TYPE_CHECKING:
    from reverie.config import Settings
    from reverie.llm.base import LLMBackend

log = logging.getLogger(__name__)

BUILTIN_GRAPHS = ("world", "umls", "kinship")
"""The graphs every home can make prompts from; any other name is the home's own graph."""
HOME_GRAPH = "home"
"""The name that asks for the home's own graph (its snapshot); its prompts carry the home folder's name."""
CHAIN_EXPERT = "sentences"
"""The `expert` of a made chain: no policy walked it."""
TEACHER_MAX_NEW_TOKENS = 48
"""As Reverie verbalises: one sentence, cut at the first sentence end, at most 48 tokens."""
# Shares of the kinds of chain a graph's prompts have: one fact; two facts forward; two facts, the
# first walked against its direction; one fact walked against its direction.
SORT_WINDOW_BATCHES = 4
CHAIN_KINDS = (("fact", 0.45), ("path", 0.25), ("inverse path", 0.15), ("inverse fact", 0.15))


class SentenceDataError(ReverieError):
    """A graph that cannot give prompts, or a cache file that cannot be read."""


def _display(name: str) -> str:
    # The text encoder's display (reverie.encoders.text.display), without importing the encoders.
    return name.replace("_", " ").strip()


@dataclass(frozen=True)
class SentencePrompt:
    """One answer-sentence prompt: the graph it came from, the question, and the chain that answers it."""

    graph: str
    question: str
    chain: Chain

    @cached_property
    def _messages(self) -> tuple[str, str]:
        return build_prompt(self.question, self.chain)

    @property
    def system(self) -> str:
        """The system message Reverie's verbaliser sends: the chain's facts and its answer."""
        return self._messages[0]

    @property
    def user(self) -> str:
        """The user message: the question."""
        return self._messages[1]

    @property
    def answer(self) -> str:
        return self.chain.answer

    @property
    def subject(self) -> str:
        """The entity the question asks about: where the chain starts."""
        return self.chain.steps[0].what

    @property
    def key(self) -> tuple[str, str]:
        """What a teacher's reply depends on: (system, user)."""
        return self.system, self.user

    def to_json(self) -> dict[str, Any]:
        return {"graph": self.graph, "question": self.question, "chain": self.chain.model_dump(mode="json")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SentencePrompt:
        return cls(graph=data["graph"], question=data["question"], chain=Chain.model_validate(data["chain"]))


@dataclass
class TaughtSentence:
    """A teacher's reply to one prompt: the raw text, and the sentence Reverie would keep (None: not grounded)."""

    prompt: SentencePrompt
    teacher: str
    text: str
    sentence: str | None

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt.to_json(), "teacher": self.teacher, "text": self.text, "sentence": self.sentence}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaughtSentence:
        return cls(
            prompt=SentencePrompt.from_json(data["prompt"]),
            teacher=data["teacher"],
            text=data["text"],
            sentence=data["sentence"],
        )


class Teaching(list):
    """teach()'s records, in the prompts' order, with how many of them the teacher wrote this time
    (the rest came from the cache)."""

    def __init__(self, records: Iterable[TaughtSentence], generated: int):
        super().__init__(records)
        self.generated = generated


# ---------- prompts from graphs ----------


def _step(head: str, relation: str, tail: str, source: str, inverse: bool) -> Step:
    """The hop over the stored fact (head, relation, tail), walked from head, or from tail when inverse."""
    what, result = (tail, head) if inverse else (head, tail)
    return Step(
        what=what,
        action=relation_label(relation, inverse),
        result=result,
        edge_id=edge_id(head, relation, tail),
        source=source,
        inverse=inverse,
    )


def _question(subject: str, relation: str, rng: np.random.Generator) -> str:
    """Worded as Reverie's generated questions are (reverie/calibration.py), about the last hop's relation."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return template.format(subject=_display(subject), relation=relation)


def _graph_prompts(graph: str, triples: Sequence[Triple], count: int, rng: np.random.Generator) -> list[SentencePrompt]:
    """About `count` distinct prompts from one graph's facts, in the shares of CHAIN_KINDS."""
    if not triples:
        raise SentenceDataError(f"graph {graph!r} has no facts to make prompts from")
    facts = list(dict.fromkeys((t.head, t.relation, t.tail, t.source) for t in triples))
    out_facts: dict[str, list[int]] = defaultdict(list)
    in_facts: dict[str, list[int]] = defaultdict(list)
    for i, (head, _, tail, _) in enumerate(facts):
        out_facts[head].append(i)
        in_facts[tail].append(i)

    def one_fact(inverse: bool) -> list[Step] | None:
        head, relation, tail, source = facts[int(rng.integers(len(facts)))]
        if head == tail:
            return None
        return [_step(head, relation, tail, source, inverse)]

    def two_facts(first_inverse: bool) -> list[Step] | None:
        # The first hop ends at `middle`; the second goes forward from it along a stored fact.
        first = _step(*facts[int(rng.integers(len(facts)))], inverse=first_inverse)
        onward = out_facts.get(first.result, [])
        if not onward:
            return None
        second = _step(*facts[onward[int(rng.integers(len(onward)))]], inverse=False)
        if second.result in (first.what, first.result):  # a chain never revisits an entity
            return None
        return [first, second]

    makers = {
        "fact": lambda: one_fact(False),
        "inverse fact": lambda: one_fact(True),
        "path": lambda: two_facts(False),
        "inverse path": lambda: two_facts(True),
    }
    kinds = [kind for kind, _ in CHAIN_KINDS]
    shares = np.array([share for _, share in CHAIN_KINDS])
    prompts: dict[tuple[str, str], SentencePrompt] = {}
    # One draw after another, whatever `count` is: fewer prompts are the first of more, so a
    # teacher cache filled part way holds every prompt of a smaller count.
    for _ in range(20 * count):  # a small graph has few distinct chains
        if len(prompts) >= count:
            break
        steps = makers[kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))]]()
        if steps is None:
            continue
        last = steps[-1]
        chain = Chain(steps=steps, answer=last.result, score=0.0, expert=CHAIN_EXPERT)
        prompt = SentencePrompt(graph, _question(steps[0].what, last.action, rng), chain)
        prompts.setdefault(prompt.key, prompt)
    return list(prompts.values())


def sentence_prompts(graphs: dict[str, list[Triple]], per_graph: int, seed: int) -> list[SentencePrompt]:
    """About `per_graph` distinct answer-sentence prompts from each graph (name -> its facts).

    Each is a chain of stored facts as Reverie's walker makes them (the answer is the last hop's
    result; a hop walked against a fact's direction is labelled "inverse of <relation>" and keeps
    the stored fact's edge id), and a question about the chain's first entity and its last relation.
    The graphs take turns (each one's first prompt, then each one's second, ...), and a smaller
    `per_graph` gives the first of a larger one's prompts; the same seed gives the same prompts."""
    if per_graph < 1:
        raise SentenceDataError(f"per_graph must be at least 1, not {per_graph}")
    by_graph = [
        _graph_prompts(graph, triples, per_graph, np.random.default_rng([seed, zlib.crc32(graph.encode())]))
        for graph, triples in sorted(graphs.items())
    ]
    return [prompt for turn in itertools.zip_longest(*by_graph) for prompt in turn if prompt is not None]


def held_out_subject(graph: str, subject: str, held_out: float, seed: int) -> bool:
    """Whether a subject is held out: a hash of (seed, graph, subject) under `held_out`, so a
    subject is held out or not whatever other prompts there are."""
    digest = hashlib.sha1(f"{seed}\t{graph}\t{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < held_out * 2**64


def split_prompts(
    prompts: Sequence[SentencePrompt], held_out: float, seed: int
) -> tuple[list[SentencePrompt], list[SentencePrompt]]:
    """(train, held out): about a `held_out` share of each graph's subject entities is held out
    (held_out_subject) with every prompt about them; a train prompt that shares a fact (edge id) with a held-out prompt is dropped,
    so no held-out fact is trained on."""
    if not 0 < held_out < 1:
        raise SentenceDataError(f"held_out must be between 0 and 1, not {held_out}")
    held = [p for p in prompts if held_out_subject(p.graph, p.subject, held_out, seed)]
    held_facts = {(p.graph, step.edge_id) for p in held for step in p.chain.steps}
    train = [
        p
        for p in prompts
        if not held_out_subject(p.graph, p.subject, held_out, seed)
        and not any((p.graph, step.edge_id) in held_facts for step in p.chain.steps)
    ]
    return train, held


def graph_triples(name: str, settings: Settings | None = None) -> list[Triple]:
    """The facts of a graph by name: "world" (the built-in world), "umls" and "kinship" (PyKEEN's,
    their training graph: what Reverie walks), or "home" (the home's own graph, read from its
    snapshot without taking the store's index)."""
    key = name.strip().lower()
    if key == "world":
        from reverie.data.world import build_world

        return build_world()[1]
    if key in ("umls", "kinship", "kinships"):
        from reverie.data.kg import load_dataset

        return load_dataset(key).graph
    if key == HOME_GRAPH:
        if settings is None:
            raise SentenceDataError("the home's own graph needs the home's settings")
        return home_triples(settings)
    raise SentenceDataError(f"unknown graph {name!r}: use one of {', '.join((*BUILTIN_GRAPHS, HOME_GRAPH))}")


def home_triples(settings: Settings) -> list[Triple]:
    """The facts a home's graph snapshot holds; read-only (the snapshot alone, not the vector index)."""
    from reverie.graph_store.store import GraphStore

    store = GraphStore(settings)
    if not store.snapshot_path.is_file():
        raise SentenceDataError(f"{settings.home} has no graph yet: reverie ingest some facts first")
    # calibration_questions reads the facts the same way; the snapshot is the source of truth.
    store._ensure_loaded()
    return [store._triple(row) for row in range(len(store._heads))]


# ---------- the teacher ----------


def teacher_name(backend: LLMBackend) -> str:
    """The backend's name, with its model where it has one (Ollama's)."""
    model = getattr(backend, "model", None)
    return f"{backend.name}:{model}" if isinstance(model, str) and model else backend.name


def read_cache(cache_path: str | Path) -> dict[tuple[str, str], TaughtSentence]:
    """The cached replies by (system, user); empty when there is no cache yet."""
    path = Path(cache_path)
    if not path.is_file():
        return {}
    cached: dict[tuple[str, str], TaughtSentence] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = TaughtSentence.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise SentenceDataError(
                    f"{path}:{number}: not a taught sentence ({exc}); delete the file to start again"
                ) from None
            cached[record.prompt.key] = record
    return cached


def _write_cache(cache_path: Path, cached: dict[tuple[str, str], TaughtSentence]) -> None:
    with atomic_file(cache_path) as handle:
        for record in cached.values():
            handle.write(json.dumps(record.to_json(), ensure_ascii=False).encode() + b"\n")


def teach(
    prompts: Sequence[SentencePrompt],
    backend: LLMBackend,
    cache_path: str | Path,
    batch_size: int = 16,
    progress: bool = True,
) -> Teaching:
    """The teacher's reply to each prompt, greedy and cut at the first sentence end as Reverie
    verbalises, with the sentence Reverie's grounding check keeps (None when it keeps none).

    Replies are cached in the JSONL at `cache_path` by (system, user): only the prompts not there
    are generated, in batches of `batch_size` (`generate_many`), and the file is rewritten
    (atomically) after each batch, so a killed run loses one batch at most. The student learns the
    records whose `sentence` is not None."""
    from tqdm.auto import tqdm

    from reverie.llm.base import Sampling

    if batch_size < 1:
        raise SentenceDataError(f"batch_size must be at least 1, not {batch_size}")
    cache_path = Path(cache_path)
    cached = read_cache(cache_path)
    missing = list({p.key: p for p in prompts if p.key not in cached}.values())
    # Prompts of like length share a batch, so little of it is padding; sorted only within a few
    # batches, so that a run stopped part way has answered the first prompts (sentence_prompts
    # gives the first of them for a smaller count).
    window = SORT_WINDOW_BATCHES * batch_size
    missing = [
        prompt
        for start in range(0, len(missing), window)
        for prompt in sorted(missing[start : start + window], key=lambda p: len(p.system) + len(p.user))
    ]
    sampling = Sampling(temperature=0.0, top_k=1, max_new_tokens=TEACHER_MAX_NEW_TOKENS, stop=SENTENCE_ENDS)
    teacher = teacher_name(backend)
    with tqdm(total=len(missing), desc=f"teacher {teacher}", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            replies = backend.generate_many([(p.user, p.system, None) for p in batch], sampling)
            for prompt, text in zip(batch, replies, strict=True):
                sentence = grounded_sentence(text, prompt.question, prompt.chain)
                if sentence is not None and not sentence.endswith((".", "!", "?")):
                    sentence = f"{sentence}."  # as verbalize() says it: the stop string took the full stop
                cached[prompt.key] = TaughtSentence(prompt, teacher, text, sentence)
            _write_cache(cache_path, cached)
            bar.update(len(batch))
    return Teaching((cached[p.key] for p in prompts), generated=len(missing))


def home_prompts(
    settings: Settings, graphs: Sequence[str], per_graph: int, seed: int, held_out: float
) -> tuple[list[SentencePrompt], list[SentencePrompt]]:
    """(train, held out) prompts from `graphs` (names as graph_triples takes them; the home's own
    graph carries the home folder's name), split by subject (split_prompts). The same arguments
    give the same prompts: teach_home and the student benchmark (bench/student.py) agree on them."""
    return split_prompts(home_prompts_unsplit(settings, graphs, per_graph, seed), held_out, seed)


def home_prompts_unsplit(settings: Settings, graphs: Sequence[str], per_graph: int, seed: int) -> list[SentencePrompt]:
    """sentence_prompts of the graphs named (the home's own graph carries the home folder's name)."""
    named = {}
    for name in graphs:
        label = Path(settings.home).name if name.strip().lower() == HOME_GRAPH else name.strip().lower()
        named[label] = graph_triples(name, settings)
    return sentence_prompts(named, per_graph, seed)


def teach_home(
    settings: Settings,
    graphs: Sequence[str] = BUILTIN_GRAPHS,
    per_graph: int = 1200,
    seed: int = 0,
    held_out: float = 0.1,
    teacher: str = "local",
    progress: bool = True,
) -> tuple[list[TaughtSentence], list[SentencePrompt]]:
    """(the grounded teacher sentences of the train prompts, the held-out prompts) of a home.

    The prompts are home_prompts'; the teacher (an LLM_BACKENDS name) answers all of them (the
    held-out ones too: a benchmark compares on them) into the home's cache, Home.sentences(teacher),
    so a second call generates nothing, and a call with a smaller `per_graph` nothing either once a
    larger one has run part way past it."""
    from reverie.llm.registry import LLM_BACKENDS

    if teacher not in LLM_BACKENDS:
        raise SentenceDataError(f"unknown teacher {teacher!r}: use one of {', '.join(LLM_BACKENDS)}")
    prompts = home_prompts_unsplit(settings, graphs, per_graph, seed)
    backend = LLM_BACKENDS[teacher].from_settings(settings)
    taught = teach(prompts, backend, settings.paths.sentences(teacher), progress=progress)
    train, held = split_prompts(prompts, held_out, seed)
    by_key = {record.prompt.key: record for record in taught}
    return [by_key[p.key] for p in train if by_key[p.key].sentence is not None], held


# ---------- more sentences in the teacher's own words ----------


def chain_entities(prompt: SentencePrompt) -> list[str]:
    """The entities a prompt's chain walks through, in order, as a sentence names them."""
    steps = prompt.chain.steps
    return [_display(steps[0].what)] + [_display(step.result) for step in steps]


def _chain_shape(prompt: SentencePrompt) -> tuple:
    return prompt.graph, tuple(step.action for step in prompt.chain.steps)


def sentence_pattern(sentence: str, prompt: SentencePrompt) -> str | None:
    """The sentence with each chain entity it names replaced by a numbered slot ({0} the subject,
    {1} the first hop's result, ...); None when it does not name the answer, or when two of the
    chain's entities read alike (a slot would be ambiguous)."""
    names = chain_entities(prompt)
    if len({name.lower() for name in names}) < len(names):
        return None
    pattern = sentence.replace("{", "{{").replace("}", "}}")
    for i in sorted(range(len(names)), key=lambda i: -len(names[i])):  # "glass cup" before "glass"
        pattern = re.sub(rf"(?<![\w{{]){re.escape(names[i])}(?!\w)", f"{{{i}}}", pattern, flags=re.IGNORECASE)
    return pattern if f"{{{len(names) - 1}}}" in pattern else None


def delexicalised(
    taught: Sequence[TaughtSentence], prompts: Sequence[SentencePrompt], per_sentence: int, seed: int
) -> list[TaughtSentence]:
    """More sentences in the teacher's words, as data-to-text generation delexicalises (Wen et al.
    2015): each chain-grounded teacher sentence becomes a pattern (sentence_pattern), filled with
    the entities of up to `per_sentence` other prompts whose chains walk the same relations in the
    same order. A filled sentence is kept only when it is chain-grounded for its own prompt. The
    student then learns to copy the prompt's entities where the teacher put them, which is what
    the few hundred sentences the teacher grounds cannot teach a small network alone."""
    from reverie.llm.faithfulness import chain_grounded

    rng = np.random.default_rng(seed)
    by_shape: dict[tuple, list[SentencePrompt]] = defaultdict(list)
    for prompt in prompts:
        by_shape[_chain_shape(prompt)].append(prompt)
    taught_keys = {record.prompt.key for record in taught}
    made: dict[tuple[str, str], TaughtSentence] = {}
    for record in taught:
        sentence = record.sentence
        if sentence is None or not chain_grounded(sentence, record.prompt.question, record.prompt.chain):
            continue
        pattern = sentence_pattern(sentence, record.prompt)
        if pattern is None:
            continue
        others = [p for p in by_shape.get(_chain_shape(record.prompt), []) if p.key not in taught_keys]
        for k in rng.permutation(len(others))[:per_sentence]:
            other = others[int(k)]
            text = pattern.format(*chain_entities(other))
            text = text[:1].upper() + text[1:]
            if other.key not in made and chain_grounded(text, other.question, other.chain):
                made[other.key] = TaughtSentence(other, f"{record.teacher}+delexicalised", text, text)
    return list(made.values())


def cached_per_graph(
    settings: Settings, graphs: Sequence[str] = BUILTIN_GRAPHS, seed: int = 0, teacher: str = "local", up_to: int = 1200
) -> int:
    """The largest `per_graph` (at most `up_to`) whose prompts the teacher cache holds every reply
    to: teach_home with it (or less) generates nothing."""
    cached = read_cache(settings.paths.sentences(teacher))
    prompts = home_prompts_unsplit(settings, graphs, up_to, seed)
    ranks: dict[str, int] = defaultdict(int)
    for prompt in prompts:  # the graphs take turns, so a prompt's rank is its graph's count so far
        if prompt.key not in cached:
            return ranks[prompt.graph]
        ranks[prompt.graph] += 1
    return up_to


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m reverie.llm.sentences --home H --per-graph N`: fill a home's teacher cache."""
    from reverie.config import Settings

    parser = argparse.ArgumentParser(prog="python -m reverie.llm.sentences", description=main.__doc__)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--per-graph", type=int, default=1200)
    parser.add_argument("--graphs", nargs="+", default=list(BUILTIN_GRAPHS))
    parser.add_argument("--teacher", default="local")
    parser.add_argument("--held-out", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--status", action="store_true", help="only say how many prompts per graph are cached")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = Settings(home=args.home)
        if args.status:
            count = cached_per_graph(settings, args.graphs, args.seed, args.teacher, args.per_graph)
            print(f"{settings.paths.sentences(args.teacher)} answers every prompt of --per-graph {count}")
            return 0
        train, held = teach_home(settings, args.graphs, args.per_graph, args.seed, args.held_out, args.teacher)
    except ReverieError as exc:
        print(f"reverie: error: {exc.message}", file=sys.stderr)
        return 2
    print(
        f"{len(train)} grounded train sentences, {len(held)} held-out prompts in {settings.paths.sentences(args.teacher)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
