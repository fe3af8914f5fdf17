"""Generated conversations: five turns over a graph, each follow-up of one of four kinds, for
teaching and measuring the conversational memory (no such dataset installs here).

A conversation opens with a self-contained question about a fact (subject, relation) of the
graph and goes on with four follow-ups, each of a kind:

- `same-subject`: a new relation of the same subject, named by a pronoun ("And if you heat it?");
- `new-subject`: a new subject asked the last relation ("What about a rubber ball?");
- `answer-subject`: the last answer as the subject ("And what is that used for?", or with the
  last relation: "And that?");
- `topic-switch`: a new subject and a new relation, named in full, sometimes by a variant of its
  name that is not the graph's ("glass cups", "lumps of clay").

Every turn also carries its `self_contained` rewrite: the same words with the referent named as
the graph names it (the person's own question, had they not leant on the conversation). Asked of
Reverie, those give the ceiling a memory can reach. The rewrite is made by the functions the
memory uses to pose a resolved follow-up (`name_referent`, `swap_subject`), so a memory that
resolves a turn rightly asks exactly the ceiling's question.

The wording of the test split (question frames, openers, follow-up frames) is never used in the
train split; the referring words ("it", "this one", "that", "the result", ...) are shared.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import numpy as np

from reverie.schemas import Triple

FOLLOW_UP_KINDS: tuple[str, ...] = ("same-subject", "new-subject", "answer-subject", "topic-switch")
CONVERSATION_GRAPHS: tuple[str, ...] = ("world", "umls", "kinships")
TURNS = 5

Split = Literal["train", "test"]

# ------------------------------------------------------------------------------------- wording

_WORLD_FRAMES: dict[str, tuple[str, ...]] = {
    "made of": ("What is {s} made of?", "Tell me what {s} is made of.", "What material is {s} made of?"),
    "is a": ("What kind of thing is {s}?", "Tell me what sort of object {s} is.", "{s} is a kind of what?"),
    "found in": ("Where is {s} found?", "Where would you usually find {s}?", "In which place is {s} found?"),
    "used for": ("What is {s} used for?", "What do people use {s} for?", "What can {s} be used for?"),
    "is": ("What is {s} like?", "What properties does {s} have?", "How would you describe {s}?"),
}
_KG_FRAMES = ("What does {s} {r}?", "Which entity does {s} {r}?", "Tell me what {s} {r}.", "Name what {s} {r}.")

_OPENERS = {"train": ("And ", "OK, and ", "Then ", ""), "test": ("So ", "Alright, ", "Next: ")}
_SWITCH_OPENERS = {
    "train": ("Now, ", "Different question: ", ""),
    "test": ("Changing the subject: ", "Another thing: "),
}
_NEW_SUBJECT = {
    "train": ("What about {s}?", "And {s}?", "How about {s}?", "Same question for {s}."),
    "test": ("And for {s}?", "Now {s}?", "{s}, then?"),
}
_ANSWER_LAST_RELATION = {"train": ("And what about {ref}?", "And {ref}?"), "test": ("How about {ref} then?",)}
SAME_SUBJECT_REFS = ("it", "this one", "the same one")
ANSWER_REFS = ("that", "the result", "the answer")
REFERRING = ("the same one", "this one", "that one", "the answer", "the result", "that", "this", "it")
"""Every referring expression the conversations use, longest first: what `name_referent` replaces."""

_REFERRING_RE = re.compile(r"\b(" + "|".join(re.escape(r) for r in REFERRING) + r")\b", re.IGNORECASE)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:1].isupper() and not text[1:2].isupper() else text


def _opened(opener: str, text: str) -> str:
    text = text[:1].upper() + text[1:]
    return opener + _lower_first(text) if opener else text


def name_referent(text: str, mention: str) -> str | None:
    """The text with its first referring expression ("it", "that", "the result") replaced by
    `mention`; None when it has none."""
    match = _REFERRING_RE.search(text)
    if match is None:
        return None
    return text[: match.start()] + mention + text[match.end() :]


def swap_subject(question: str, old_mention: str, new_mention: str) -> str | None:
    """A self-contained question asked again of another subject: its mention of the old subject
    replaced (case-insensitively, whole words); None when the question does not name it."""
    match = re.search(r"\b" + re.escape(old_mention) + r"\b", question, re.IGNORECASE)
    if match is None:
        return None
    return question[: match.start()] + new_mention + question[match.end() :]


# ------------------------------------------------------------------------------------- graphs


def display(name: str) -> str:
    """How a name reads, as reverie.encoders.text.display has it (data/ sits below encoders/)."""
    return name.replace("_", " ").strip()


@dataclass(frozen=True)
class ConversationGraph:
    """A graph's facts as a conversation asks them: tails by (subject, relation), how each
    entity is mentioned, and each relation's question frames."""

    name: str
    tails: dict[tuple[str, str], frozenset[str]]
    relations_of: dict[str, tuple[str, ...]]
    objects: frozenset[str]
    """Entities named with an article ("a glass cup"): the world's objects."""

    def mention(self, entity: str) -> str:
        if entity in self.objects:
            from reverie.data.world import with_article

            return with_article(entity)
        return display(entity)

    def variant(self, entity: str) -> str | None:
        """Another way a person may name the entity, which is not the graph's name: a plural, or a
        number set apart ("person 12"); None when there is none."""
        name = display(entity)
        if " of " in name:  # "lump of clay" -> "lumps of clay"
            head, rest = name.split(" of ", 1)
            return f"{head}s of {rest}"
        if re.fullmatch(r"[a-z]+\d+", name):  # "person12": no other name finds it (not even by vector)
            return None
        if name.endswith("s") or " " not in name and len(name) < 4:
            return None
        return name + "s"

    def frames(self, relation: str, split: Split) -> list[str]:
        """The relation's question frames of a split, each with the slot {s} for the subject."""
        if self.name == "world":
            from reverie.data.world import ACTION_QUESTIONS, _wordings

            options = _wordings(relation, "{s}") if relation in ACTION_QUESTIONS else list(_WORLD_FRAMES[relation])
        else:
            options = [f.replace("{r}", display(relation)) for f in _KG_FRAMES]
        # the last third of the frames (at least one) are the test split's alone
        held = max(1, len(options) // 3)
        return options[:-held] if split == "train" else options[-held:]


def conversation_graph(name: str) -> ConversationGraph:
    """The facts a home that ingested the dataset holds (`reverie ingest --dataset NAME`)."""
    from reverie.data.kg import load_dataset

    kg = load_dataset(name)
    return graph_of(kg.name, kg.graph)


def graph_of(name: str, triples: list[Triple]) -> ConversationGraph:
    tails: dict[tuple[str, str], set[str]] = defaultdict(set)
    for t in triples:
        tails[(t.head, t.relation)].add(t.tail)
    relations: dict[str, list[str]] = defaultdict(list)
    for head, relation in sorted(tails):
        relations[head].append(relation)
    objects: frozenset[str] = frozenset()
    if name == "world":
        from reverie.data.world import OBJECTS

        objects = frozenset(o[0] for o in OBJECTS)
    return ConversationGraph(
        name=name,
        tails={k: frozenset(v) for k, v in tails.items()},
        relations_of={k: tuple(v) for k, v in relations.items()},
        objects=objects,
    )


# ------------------------------------------------------------------------------------- turns


@dataclass(frozen=True)
class ConversationTurn:
    text: str
    """What the person says."""
    kind: str
    """"first" or one of FOLLOW_UP_KINDS."""
    subject: str
    relation: str
    answers: frozenset[str]
    """Every tail of (subject, relation) in the graph: a right answer is any of them."""
    said: str
    """The answer the conversation goes on from (one of `answers`): what Reverie is taken to have said."""
    self_contained: str
    """The same question with its referent named as the graph names it: the ceiling's question."""
    carries_relation: bool = False
    """Whether the turn asks the last turn's relation without naming it ("What about a rubber ball?")."""


@dataclass(frozen=True)
class Conversation:
    graph: str
    turns: tuple[ConversationTurn, ...]


def conversations(graph: ConversationGraph, split: Split, count: int, seed: int = 0) -> list[Conversation]:
    """`count` conversations of TURNS turns over the graph, the follow-up kinds taken in turn (each
    kind about equally often), from a seeded generator: the same list for the same arguments. The
    test split is generated from another stream than the train split and in its own wording."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, sum(map(ord, graph.name))])
    subjects = sorted(graph.relations_of)
    out: list[Conversation] = []
    while len(out) < count:
        made = _conversation(graph, split, subjects, rng, first_kind=len(out))
        if made is not None:
            out.append(Conversation(graph.name, made))
    return out


def _pick(rng: np.random.Generator, options) -> str:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _first(graph: ConversationGraph, split: Split, subjects: list[str], rng) -> ConversationTurn:
    subject = _pick(rng, subjects)
    relation = _pick(rng, graph.relations_of[subject])
    frame = _pick(rng, graph.frames(relation, split))
    text = _opened("", frame.format(s=graph.mention(subject)))
    answers = graph.tails[(subject, relation)]
    return ConversationTurn(text, "first", subject, relation, answers, _pick(rng, sorted(answers)), text)


def _conversation(graph, split, subjects, rng, first_kind: int) -> tuple[ConversationTurn, ...] | None:
    turns = [_first(graph, split, subjects, rng)]
    for i in range(TURNS - 1):
        kind = FOLLOW_UP_KINDS[(first_kind + i) % len(FOLLOW_UP_KINDS)]
        for _ in range(20):  # a kind the last turn cannot lead to (an answer with no facts) is tried again
            turn = _follow_up(graph, split, subjects, turns[-1], kind, rng)
            if turn is not None:
                break
        else:
            return None
        turns.append(turn)
    return tuple(turns)


def _follow_up(graph, split, subjects, last: ConversationTurn, kind: str, rng) -> ConversationTurn | None:
    opener = _pick(rng, _OPENERS[split])
    if kind == "same-subject":
        others = [r for r in graph.relations_of[last.subject] if r != last.relation]
        if not others:
            return None
        relation = _pick(rng, others)
        frame = _pick(rng, graph.frames(relation, split))
        text = _opened(opener, frame.format(s=_pick(rng, SAME_SUBJECT_REFS)))
        return _turn(graph, text, kind, last.subject, relation, rng)
    if kind == "new-subject":
        others = [s for s in subjects if s != last.subject and (s, last.relation) in graph.tails]
        if not others:
            return None
        subject = _pick(rng, others)
        named = _named(graph, subject, rng)
        text = _pick(rng, _NEW_SUBJECT[split]).format(s=named)
        return _turn(graph, text[:1].upper() + text[1:], kind, subject, last.relation, rng, last, carries=True)
    if kind == "answer-subject":
        subject = last.said
        if subject not in graph.relations_of:
            return None
        ref = _pick(rng, ANSWER_REFS)
        if (subject, last.relation) in graph.tails and rng.random() < 0.25:
            text = _pick(rng, _ANSWER_LAST_RELATION[split]).format(ref=ref)
            return _turn(graph, text, kind, subject, last.relation, rng, last, carries=True)
        relation = _pick(rng, graph.relations_of[subject])
        frame = _pick(rng, graph.frames(relation, split))
        return _turn(graph, _opened(opener, frame.format(s=ref)), kind, subject, relation, rng)
    subject = _pick(rng, [s for s in subjects if s not in (last.subject, last.said)])
    relation = _pick(rng, [r for r in graph.relations_of[subject] if r != last.relation] or graph.relations_of[subject])
    frame = _pick(rng, graph.frames(relation, split))
    opener = _pick(rng, _SWITCH_OPENERS[split])
    text = _opened(opener, frame.format(s=_named(graph, subject, rng)))
    contained = _opened(opener, frame.format(s=graph.mention(subject)))
    answers = graph.tails[(subject, relation)]
    return ConversationTurn(text, kind, subject, relation, answers, _pick(rng, sorted(answers)), contained)


def _named(graph: ConversationGraph, subject: str, rng) -> str:
    """How the person names a new subject: the graph's name, or half the time a variant of it."""
    variant = graph.variant(subject)
    return variant if variant is not None and rng.random() < 0.5 else graph.mention(subject)


def _turn(graph, text, kind, subject, relation, rng, last=None, carries=False) -> ConversationTurn | None:
    # rewritten with the graph's own names, as the memory poses a follow-up (reverie.answer.posed_question)
    if carries:
        contained = swap_subject(last.self_contained, display(last.subject), display(subject))
    else:
        contained = name_referent(text, display(subject))
    if contained is None:
        return None
    answers = graph.tails[(subject, relation)]
    return ConversationTurn(text, kind, subject, relation, answers, _pick(rng, sorted(answers)), contained, carries)
